//! `OPTIONS ('after_ingest' …)`: what becomes of a landing file once a raw table has
//! committed its rows. Kept by default; deleted or moved away, a location that is
//! delivered to forever stays small, so listing it (at every build) costs what is new.

use object_store::path::Path as StorePath;
use object_store::{ObjectStore, ObjectStoreExt};

use crate::commit_log::SourceFile;
use crate::error::{Result, StorageError};
use crate::store::{StoreOptions, StoreUrl};

/// `OPTIONS ('after_ingest' 'keep' | 'delete' | 'move')`.
pub const AFTER_INGEST: &str = "after_ingest";
/// `OPTIONS ('after_ingest.move_to' '…')`: where `move` puts the files, in the same store.
pub const MOVE_TO: &str = "after_ingest.move_to";

/// The options this module owns.
pub const OPTION_NAMES: [&str; 2] = [AFTER_INGEST, MOVE_TO];

/// What a landing file becomes once its rows are committed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum AfterIngest {
    /// It stays where it was delivered (the default).
    #[default]
    Keep,
    /// It is deleted, when every row of it was ingested: a file with rejected rows (whose
    /// text the rejects table may keep only in part) or rejected whole stays.
    Delete,
    /// It is moved below this location, under its path below the landing location.
    Move(String),
}

/// What one pass over a build's landing files did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Cleared {
    pub removed: u64,
    /// Files left where they were: with rejected rows (`delete`), or changed since they
    /// were read (delivered again under the same name).
    pub kept: u64,
}

impl AfterIngest {
    /// Reads the options (names compared without case); a bad value says what is allowed.
    pub fn from_options<'a>(
        options: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> std::result::Result<Self, String> {
        let mut mode = None;
        let mut move_to = None;
        for (key, value) in options {
            match key.to_ascii_lowercase().as_str() {
                AFTER_INGEST => mode = Some(value.trim().to_ascii_lowercase()),
                MOVE_TO => move_to = Some(value.trim().to_owned()),
                _ => {}
            }
        }
        match (mode.as_deref(), move_to) {
            (None | Some("keep"), None) => Ok(AfterIngest::Keep),
            (Some("delete"), None) => Ok(AfterIngest::Delete),
            (Some("move"), Some(to)) if !to.is_empty() => Ok(AfterIngest::Move(to)),
            (Some("move"), _) => Err(format!(
                "'{AFTER_INGEST}' is 'move'; say where with '{MOVE_TO}' (a directory in the same store)"
            )),
            (None | Some("keep" | "delete"), Some(_)) => Err(format!(
                "'{MOVE_TO}' is given, but '{AFTER_INGEST}' is not 'move'"
            )),
            (Some(other), _) => Err(format!(
                "'{AFTER_INGEST}' is '{other}'; it must be 'keep', 'delete' or 'move'"
            )),
        }
    }

    /// Whether ingested files leave their location, so the location no longer holds the
    /// table's history (a full refresh of the raw table would lose it).
    pub fn removes(&self) -> bool {
        !matches!(self, AfterIngest::Keep)
    }

    /// Checks that `move_to` is a location in the store of every landing location.
    pub fn check(&self, locations: &[String]) -> std::result::Result<(), String> {
        let AfterIngest::Move(to) = self else {
            return Ok(());
        };
        let to = StoreUrl::parse(to).map_err(|error| error.to_string())?;
        for location in locations {
            let from = StoreUrl::parse(location).map_err(|error| error.to_string())?;
            if from.root() != to.root() {
                return Err(format!(
                    "'{MOVE_TO}' is {}, in another store than the location {location}; files are moved within their store",
                    to.display()
                ));
            }
            if is_below(from.path(), to.path()) || is_below(to.path(), from.path()) {
                return Err(format!(
                    "'{MOVE_TO}' is {}, which overlaps the location {location}; moved files would be listed again",
                    to.display()
                ));
            }
        }
        Ok(())
    }

    /// Deletes or moves the files a build committed from the landing `locations`, each
    /// only while it is still the file that was read; `true` beside a file says some of
    /// its rows were rejected.
    pub async fn clear(
        &self,
        locations: &[String],
        files: &[(SourceFile, bool)],
        options: &StoreOptions,
    ) -> Result<Cleared> {
        let mut cleared = Cleared::default();
        if !self.removes() {
            return Ok(cleared);
        }
        let roots = locations
            .iter()
            .map(|location| StoreUrl::parse(location))
            .collect::<Result<Vec<_>>>()?;
        for (file, rejected) in files {
            let url = StoreUrl::parse(&file.path)?;
            let path = url.path().clone();
            let root = roots
                .iter()
                .find(|root| root.root() == url.root() && is_below(&path, root.path()))
                .unwrap_or(&url);
            let store = url.open(options)?;
            let unchanged = match store.head(&path).await {
                Ok(meta) => {
                    meta.size == file.size
                        && meta.last_modified.timestamp_millis().max(0) as u64 == file.modified_ms
                        && (file.etag.is_none() || file.etag == meta.e_tag)
                }
                Err(object_store::Error::NotFound { .. }) => continue,
                Err(error) => return Err(StorageError::store(&file.path, &error)),
            };
            let removed = match self {
                AfterIngest::Keep => false,
                AfterIngest::Delete if *rejected || !unchanged => false,
                AfterIngest::Delete => {
                    store
                        .delete(&path)
                        .await
                        .map_err(|error| StorageError::store(&file.path, &error))?;
                    true
                }
                AfterIngest::Move(_) if !unchanged => false,
                AfterIngest::Move(to) => {
                    let to = StoreUrl::parse(to)?;
                    move_file(&store, root, &path, to.path(), file.modified_ms).await?;
                    true
                }
            };
            if removed {
                cleared.removed += 1;
            } else {
                cleared.kept += 1;
            }
        }
        Ok(cleared)
    }
}

/// Moves `path` (below the location `root`) to the same relative path below `to`; when
/// a file of that name was moved there before, below `to/<modified ms>/` instead, so no
/// earlier delivery is overwritten.
async fn move_file(
    store: &std::sync::Arc<dyn ObjectStore>,
    root: &StoreUrl,
    path: &StorePath,
    to: &StorePath,
    modified_ms: u64,
) -> Result<()> {
    let relative: Vec<String> = match path.prefix_match(root.path()) {
        Some(parts) if path != root.path() => parts.map(|part| part.as_ref().to_owned()).collect(),
        _ => path.filename().map(str::to_owned).into_iter().collect(),
    };
    let below = |base: StorePath| {
        relative
            .iter()
            .fold(base, |path, part| path.join(part.as_str()))
    };
    let target = below(to.clone());
    let failed = |error: object_store::Error| StorageError::store(&root.url_of(path), &error);
    match store.rename_if_not_exists(path, &target).await {
        Ok(()) => Ok(()),
        Err(object_store::Error::AlreadyExists { .. }) => store
            .rename_if_not_exists(path, &below(to.clone().join(modified_ms.to_string())))
            .await
            .map_err(failed),
        // A store without create-only renames: the moved name is checked first instead.
        Err(
            object_store::Error::NotSupported { .. } | object_store::Error::NotImplemented { .. },
        ) => {
            let target = match store.head(&target).await {
                Err(object_store::Error::NotFound { .. }) => target,
                _ => below(to.clone().join(modified_ms.to_string())),
            };
            store.rename(path, &target).await.map_err(failed)
        }
        Err(error) => Err(failed(error)),
    }
}

/// Whether `path` is `base` or below it.
fn is_below(path: &StorePath, base: &StorePath) -> bool {
    path.prefix_match(base).is_some()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_choose_what_becomes_of_a_file_and_bad_ones_say_what_is_allowed() {
        assert_eq!(AfterIngest::from_options([]).unwrap(), AfterIngest::Keep);
        assert_eq!(
            AfterIngest::from_options([("AFTER_INGEST", "Delete")]).unwrap(),
            AfterIngest::Delete
        );
        assert_eq!(
            AfterIngest::from_options([("after_ingest", "move"), (MOVE_TO, "done/")]).unwrap(),
            AfterIngest::Move("done/".into())
        );
        let unknown = AfterIngest::from_options([("after_ingest", "archive")]).unwrap_err();
        assert!(unknown.contains("'keep', 'delete' or 'move'"), "{unknown}");
        let nowhere = AfterIngest::from_options([("after_ingest", "move")]).unwrap_err();
        assert!(nowhere.contains(MOVE_TO), "{nowhere}");
        let stray = AfterIngest::from_options([(MOVE_TO, "done/")]).unwrap_err();
        assert!(stray.contains("is not 'move'"), "{stray}");
    }

    #[test]
    fn a_move_stays_in_its_store_and_out_of_the_location() {
        let moving = |to: &str| AfterIngest::Move(to.into());
        let locations = ["/data/landing/orders/".to_owned()];
        assert!(moving("/data/done/orders/").check(&locations).is_ok());
        let other = moving("s3://bucket/done/").check(&locations).unwrap_err();
        assert!(other.contains("another store"), "{other}");
        let inside = moving("/data/landing/orders/_done/")
            .check(&locations)
            .unwrap_err();
        assert!(inside.contains("overlaps"), "{inside}");
    }

    #[tokio::test]
    async fn cleared_files_leave_the_location_unless_changed_or_partly_rejected() {
        let root = std::env::temp_dir().join(format!("strata-after-ingest-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        let landing = root.join("landing/orders");
        std::fs::create_dir_all(landing.join("2026-12-07")).unwrap();
        let deliver = |name: &str, text: &str| {
            let path = landing.join(name);
            std::fs::write(&path, text).unwrap();
            let meta = std::fs::metadata(&path).unwrap();
            let modified = meta.modified().unwrap();
            SourceFile {
                path: path.to_string_lossy().into_owned(),
                size: meta.len(),
                modified_ms: modified
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap()
                    .as_millis() as u64,
                etag: None,
            }
        };
        let location = [format!("{}/", landing.display())];
        let options = StoreOptions::default();

        let clean = deliver("a.csv", "id\n1\n");
        let partly = deliver("b.csv", "id\nx\n");
        let changed = deliver("c.csv", "id\n3\n");
        std::fs::write(landing.join("c.csv"), "id\n3\n4\n").unwrap();
        let cleared = AfterIngest::Delete
            .clear(
                &location,
                &[(clean, false), (partly, true), (changed, false)],
                &options,
            )
            .await
            .unwrap();
        assert_eq!(
            cleared,
            Cleared {
                removed: 1,
                kept: 2
            }
        );
        assert!(!landing.join("a.csv").exists());
        assert!(landing.join("b.csv").exists() && landing.join("c.csv").exists());

        let done = root.join("done/orders");
        let moving = AfterIngest::Move(done.to_string_lossy().into_owned());
        let nested = deliver("2026-12-07/d.csv", "id\n5\n");
        let first = deliver("e.csv", "id\n6\n");
        moving
            .clear(
                &location,
                &[(nested, false), (first.clone(), true)],
                &options,
            )
            .await
            .unwrap();
        assert!(done.join("2026-12-07/d.csv").exists() && done.join("e.csv").exists());
        // The same name delivered again does not overwrite the earlier delivery.
        let again = deliver("e.csv", "id\n7\n");
        moving
            .clear(&location, &[(again.clone(), false)], &options)
            .await
            .unwrap();
        assert_eq!(
            std::fs::read_to_string(done.join("e.csv")).unwrap(),
            "id\n6\n"
        );
        let kept = done.join(again.modified_ms.to_string()).join("e.csv");
        assert_eq!(std::fs::read_to_string(kept).unwrap(), "id\n7\n");
        assert!(!landing.join("e.csv").exists());
        std::fs::remove_dir_all(&root).unwrap();
    }
}

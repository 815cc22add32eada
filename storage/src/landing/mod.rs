//! Landing files: finding them by the extensions their format is delivered with, and
//! reading CSV and NDJSON ones row by row, so a bad row is set aside, not its file.

pub mod after_ingest;
mod csv;
mod lines;
mod ndjson;
pub mod policy;
mod reader;
mod rejects;
mod typed;

pub use after_ingest::{AfterIngest, Cleared};
pub use csv::CsvLayout;
pub use lines::{RangeStart, skip_to};
pub use policy::{BadRowPolicy, Limit, OnBadRow, Verdict};
pub use reader::{LandingReader, Parsed, RowFormat};
pub use rejects::{RAW_TEXT_LIMIT, Reject, rejects_batch, rejects_schema};

use datafusion::common::parsers::CompressionTypeVariant;
use futures::TryStreamExt;
use object_store::{ObjectMeta, ObjectStoreExt};
use serde::{Deserialize, Serialize};

use crate::commit_log::SourceFile;
use crate::error::{Result, StorageError};
use crate::store::{StoreKind, StoreOptions, StoreUrl};

/// A landing source's file format, as `STORED AS` names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum FileKind {
    Csv,
    /// Newline-delimited JSON.
    Json,
    Parquet,
    Avro,
    Arrow,
}

impl FileKind {
    /// The format `STORED AS` names, if Strata reads it.
    pub fn parse(stored_as: &str) -> Option<Self> {
        match stored_as.to_ascii_uppercase().as_str() {
            "CSV" => Some(FileKind::Csv),
            "JSON" | "NDJSON" => Some(FileKind::Json),
            "PARQUET" => Some(FileKind::Parquet),
            "AVRO" => Some(FileKind::Avro),
            "ARROW" => Some(FileKind::Arrow),
            _ => None,
        }
    }

    /// The extensions files of this format are delivered with.
    pub fn extensions(self) -> &'static [&'static str] {
        match self {
            FileKind::Csv => &[".csv", ".tsv"],
            FileKind::Json => &[".json", ".ndjson", ".jsonl"],
            FileKind::Parquet => &[".parquet"],
            FileKind::Avro => &[".avro"],
            FileKind::Arrow => &[".arrow"],
        }
    }
}

/// How a landing source's files are compressed, as `format.compression` names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Compression {
    Uncompressed,
    Gzip,
    Bzip2,
    Xz,
    Zstd,
}

impl Compression {
    /// The suffix compressed files carry after their format's extension.
    pub fn suffix(self) -> &'static str {
        match self {
            Compression::Uncompressed => "",
            Compression::Gzip => ".gz",
            Compression::Bzip2 => ".bz2",
            Compression::Xz => ".xz",
            Compression::Zstd => ".zst",
        }
    }
}

impl From<CompressionTypeVariant> for Compression {
    fn from(variant: CompressionTypeVariant) -> Self {
        match variant {
            CompressionTypeVariant::GZIP => Compression::Gzip,
            CompressionTypeVariant::BZIP2 => Compression::Bzip2,
            CompressionTypeVariant::XZ => Compression::Xz,
            CompressionTypeVariant::ZSTD => Compression::Zstd,
            CompressionTypeVariant::UNCOMPRESSED => Compression::Uncompressed,
        }
    }
}

impl From<Compression> for CompressionTypeVariant {
    fn from(compression: Compression) -> Self {
        match compression {
            Compression::Uncompressed => CompressionTypeVariant::UNCOMPRESSED,
            Compression::Gzip => CompressionTypeVariant::GZIP,
            Compression::Bzip2 => CompressionTypeVariant::BZIP2,
            Compression::Xz => CompressionTypeVariant::XZ,
            Compression::Zstd => CompressionTypeVariant::ZSTD,
        }
    }
}

/// The ends of the file names a source reads (`.ndjson.gz`, say).
pub fn file_suffixes(kind: FileKind, compression: Compression) -> Vec<String> {
    kind.extensions()
        .iter()
        .map(|extension| format!("{extension}{}", compression.suffix()))
        .collect()
}

/// What a landing location holds: the files its source reads, and the others.
#[derive(Debug, Default)]
pub struct Listing {
    /// Sorted by path.
    pub files: Vec<SourceFile>,
    /// Files whose names end otherwise, sorted.
    pub ignored: Vec<String>,
}

/// The files under a landing location whose names end with one of `suffixes`.
///
/// A location may be one file (read whatever its name) or a directory (searched
/// recursively; hidden and `_`-prefixed entries are skipped, as DataFusion does). In an
/// object store this costs one request per thousand files, and one more to tell a file
/// from a directory when the location does not end with `/`.
pub async fn list_files(
    location: &str,
    options: &StoreOptions,
    suffixes: &[String],
) -> Result<Listing> {
    let root = StoreUrl::parse(location)?;
    let store = root.open(options)?;
    let failed = |error: object_store::Error| StorageError::store(location, &error);
    let mut listing = Listing::default();
    if !location.ends_with('/') {
        match store.head(root.path()).await {
            Ok(meta) => {
                listing.files.push(source_file(&root, meta));
                return Ok(listing);
            }
            Err(object_store::Error::NotFound { .. }) => {}
            Err(error) => return Err(failed(error)),
        }
    }
    let found: Vec<ObjectMeta> = store
        .list(Some(root.path()))
        .try_collect()
        .await
        .map_err(failed)?;
    for meta in found {
        let relative: Vec<String> = meta
            .location
            .prefix_match(root.path())
            .map(|parts| parts.map(|part| part.as_ref().to_owned()).collect())
            .unwrap_or_default();
        if relative
            .iter()
            .any(|part| part.starts_with('.') || part.starts_with('_'))
        {
            continue;
        }
        let name = meta.location.as_ref().to_ascii_lowercase();
        if suffixes
            .iter()
            .any(|suffix| name.ends_with(suffix.as_str()))
        {
            listing.files.push(source_file(&root, meta));
        } else {
            listing.ignored.push(root.url_of(&meta.location));
        }
    }
    listing.files.sort_by(|a, b| a.path.cmp(&b.path));
    listing.ignored.sort();
    Ok(listing)
}

/// A listed file as a source file: a local file by its path, size and modification
/// time (as Strata has always named it), a stored one by its URL and ETag as well.
fn source_file(root: &StoreUrl, meta: ObjectMeta) -> SourceFile {
    SourceFile {
        path: root.url_of(&meta.location),
        size: meta.size,
        modified_ms: meta.last_modified.timestamp_millis().max(0) as u64,
        etag: (root.kind() != StoreKind::Local)
            .then_some(meta.e_tag)
            .flatten(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn ndjson_files_are_found_by_every_usual_extension_and_others_are_named() {
        let dir = std::env::temp_dir().join(format!("strata-landing-list-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("day=1")).unwrap();
        for name in [
            "a.json.gz",
            "day=1/b.NDJSON.gz",
            "c.jsonl.gz",
            "d.csv.gz",
            "e.json",
            "_f.json.gz",
        ] {
            std::fs::write(dir.join(name), b"{}").unwrap();
        }
        let suffixes = file_suffixes(FileKind::Json, Compression::Gzip);
        let options = StoreOptions::default();
        let listing = list_files(&dir.display().to_string(), &options, &suffixes)
            .await
            .unwrap();
        let names: Vec<&str> = listing
            .files
            .iter()
            .map(|file| file.path.rsplit('/').next().unwrap())
            .collect();
        assert_eq!(names, ["a.json.gz", "c.jsonl.gz", "b.NDJSON.gz"]);
        let ignored: Vec<&str> = listing
            .ignored
            .iter()
            .map(|path| path.rsplit('/').next().unwrap())
            .collect();
        assert_eq!(ignored, ["d.csv.gz", "e.json"]);
        let one = list_files(
            &dir.join("e.json").display().to_string(),
            &options,
            &suffixes,
        )
        .await
        .unwrap();
        assert_eq!(one.files.len(), 1, "a location naming one file reads it");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[tokio::test]
    async fn a_stored_landing_zone_is_listed_with_etags() {
        let root = StoreUrl::parse("memory://landing-list/in").unwrap();
        let store = root.open(&StoreOptions::default()).unwrap();
        for name in ["a.csv", "b/c.csv", "d.json", "_tmp/e.csv"] {
            store
                .put(&root.child(name).path().clone(), "x,y".into())
                .await
                .unwrap();
        }
        let suffixes = file_suffixes(FileKind::Csv, Compression::Uncompressed);
        let options = StoreOptions::default();
        let listing = list_files("memory://landing-list/in/", &options, &suffixes)
            .await
            .unwrap();
        let paths: Vec<&str> = listing
            .files
            .iter()
            .map(|file| file.path.as_str())
            .collect();
        assert_eq!(
            paths,
            [
                "memory://landing-list/in/a.csv",
                "memory://landing-list/in/b/c.csv"
            ]
        );
        assert!(
            listing
                .files
                .iter()
                .all(|file| file.etag.is_some() && file.size == 3)
        );
        assert_eq!(listing.ignored, ["memory://landing-list/in/d.json"]);
        let one = list_files("memory://landing-list/in/a.csv", &options, &suffixes)
            .await
            .unwrap();
        assert_eq!(one.files.len(), 1);
    }
}

//! The subjects erased from a warehouse (`strata forget`), one file per erasure under
//! `_strata/suppressed/`, so that every later ingest drops their rows from deliveries
//! still in the landing zone or delivered again.

use futures::TryStreamExt;
use object_store::{ObjectStoreExt, PutMode, PutOptions};
use serde::{Deserialize, Serialize};

use crate::error::{Result, StorageError};
use crate::paths::Warehouse;

/// One erased subject: the rows whose `column` holds `value`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Suppressed {
    pub column: String,
    pub value: String,
    /// The erasure that added it (its report is `_strata/erasures/<erasure>.json`).
    pub erasure: String,
    pub erased_at_ms: u64,
}

/// Every subject erased from a warehouse.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Suppressions {
    subjects: Vec<Suppressed>,
}

impl Suppressions {
    /// The warehouse's list: one listing, and one read per erasure.
    pub async fn load(warehouse: &Warehouse) -> Result<Self> {
        let dir = warehouse.suppressed_dir();
        let listed: Vec<_> = warehouse
            .store()
            .list(Some(&dir))
            .try_collect()
            .await
            .map_err(|error| StorageError::store(&warehouse.display_path(&dir), &error))?;
        let mut subjects = Vec::with_capacity(listed.len());
        for meta in listed {
            let location = warehouse.display_path(&meta.location);
            let bytes = match warehouse.store().get(&meta.location).await {
                Ok(got) => got.bytes().await,
                Err(error) => Err(error),
            }
            .map_err(|error| StorageError::store(&location, &error))?;
            let subject =
                serde_json::from_slice(&bytes).map_err(|error| StorageError::Corrupt {
                    location,
                    reason: error.to_string(),
                })?;
            subjects.push(subject);
        }
        subjects.sort_by(|a: &Suppressed, b| a.erasure.cmp(&b.erasure));
        Ok(Self { subjects })
    }

    /// Adds a subject; an erasure id is written once, so a second add of it is refused.
    pub async fn add(warehouse: &Warehouse, subject: &Suppressed) -> Result<()> {
        let path = warehouse.suppressed(&subject.erasure);
        let location = warehouse.display_path(&path);
        let body = serde_json::to_vec_pretty(subject).map_err(|error| StorageError::Corrupt {
            location: location.clone(),
            reason: error.to_string(),
        })?;
        let create = PutOptions {
            mode: PutMode::Create,
            ..PutOptions::default()
        };
        warehouse
            .store()
            .put_opts(&path, body.into(), create)
            .await
            .map_err(|error| StorageError::store(&location, &error))?;
        Ok(())
    }

    /// The values erased for `column` (named as in the landing table, any case).
    pub fn values_of(&self, column: &str) -> Vec<&str> {
        self.subjects
            .iter()
            .filter(|subject| subject.column.eq_ignore_ascii_case(column))
            .map(|subject| subject.value.as_str())
            .collect()
    }

    pub fn is_empty(&self) -> bool {
        self.subjects.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn subject(erasure: &str, column: &str, value: &str) -> Suppressed {
        Suppressed {
            column: column.into(),
            value: value.into(),
            erasure: erasure.into(),
            erased_at_ms: 1,
        }
    }

    #[tokio::test]
    async fn subjects_added_are_loaded_by_column_and_an_erasure_is_written_once() {
        let root = std::env::temp_dir().join(format!("strata-suppressed-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        let warehouse = Warehouse::local(&root);
        assert!(Suppressions::load(&warehouse).await.unwrap().is_empty());
        Suppressions::add(&warehouse, &subject("e1", "candidate_id", "C1"))
            .await
            .unwrap();
        Suppressions::add(&warehouse, &subject("e2", "Candidate_ID", "C2"))
            .await
            .unwrap();
        Suppressions::add(&warehouse, &subject("e3", "email", "a@b.c"))
            .await
            .unwrap();
        assert!(
            Suppressions::add(&warehouse, &subject("e1", "x", "y"))
                .await
                .is_err()
        );
        let loaded = Suppressions::load(&warehouse).await.unwrap();
        assert_eq!(loaded.values_of("CANDIDATE_ID"), ["C1", "C2"]);
        assert_eq!(loaded.values_of("email"), ["a@b.c"]);
        std::fs::write(root.join("_strata/suppressed/bad.json"), "{").unwrap();
        assert!(matches!(
            Suppressions::load(&warehouse).await,
            Err(StorageError::Corrupt { .. })
        ));
    }
}

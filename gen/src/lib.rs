//! Deterministic synthetic landing data for the recruitment example: candidates,
//! jobs, recruiter searches and tracking events, in the mixed formats apps deliver
//! (gzip CSV, NDJSON, Parquet), with a documented share of bad data.
//!
//! The same options always give the same bytes: there is no clock and no
//! platform-dependent randomness in here.

mod calendar;
mod rng;
mod sources;
mod vocabulary;

use std::path::{Path, PathBuf};

pub use sources::{delivery, delivery_file, generate, is_delivery_file};

/// What to generate.
#[derive(Debug, Clone)]
pub struct Options {
    /// Where to write; data goes under `<out>/landing/<source>/`.
    pub out: PathBuf,
    /// 1.0 is about one million tracking events; fractions make small test sets.
    pub scale: f64,
    /// Seed of every random choice.
    pub seed: u64,
    /// Whether to inject bad rows and one malformed file.
    pub bad_data: bool,
}

/// Shares of bad rows injected when `bad_data` is on; the manifest counts each kind.
pub mod bad_data {
    /// Tracking events with no job id (an enrichment expectation quarantines them).
    pub const EVENTS_MISSING_JOB: f64 = 0.003;
    /// Tracking events dated 2009 (an expectation drops them).
    pub const EVENTS_TOO_OLD: f64 = 0.002;
    /// Tracking events that cannot be parsed (a job id of `n/a`, or a missing field):
    /// raw ingestion sets them aside in `raw.events__rejects`.
    pub const EVENTS_UNPARSABLE: f64 = 0.001;
    /// Candidates with a latitude outside [-90, 90] (quarantined).
    pub const CANDIDATES_BAD_COORDINATES: f64 = 0.002;
}

/// What was written, so tests can compare a pipeline's counts against it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Manifest {
    pub candidates: u64,
    pub candidate_updates: u64,
    pub candidates_bad_coordinates: u64,
    pub jobs: u64,
    pub open_jobs: u64,
    pub searches: u64,
    pub events: u64,
    pub events_missing_job: u64,
    pub events_too_old: u64,
    pub events_unparsable: u64,
    /// Landing files that cannot be parsed, relative to the output directory.
    pub malformed_files: Vec<String>,
    pub files: u64,
    pub bytes: u64,
}

impl Manifest {
    /// The manifest as JSON, written next to the data as `landing/manifest.json`.
    pub fn to_json(&self) -> String {
        let malformed: Vec<String> = self
            .malformed_files
            .iter()
            .map(|file| format!("\"{file}\""))
            .collect();
        format!(
            concat!(
                "{{\n",
                "  \"candidates\": {},\n  \"candidate_updates\": {},\n  \"candidates_bad_coordinates\": {},\n",
                "  \"jobs\": {},\n  \"open_jobs\": {},\n  \"searches\": {},\n",
                "  \"events\": {},\n  \"events_missing_job\": {},\n  \"events_too_old\": {},\n",
                "  \"events_unparsable\": {},\n",
                "  \"malformed_files\": [{}],\n  \"files\": {},\n  \"bytes\": {}\n}}\n"
            ),
            self.candidates,
            self.candidate_updates,
            self.candidates_bad_coordinates,
            self.jobs,
            self.open_jobs,
            self.searches,
            self.events,
            self.events_missing_job,
            self.events_too_old,
            self.events_unparsable,
            malformed.join(", "),
            self.files,
            self.bytes
        )
    }
}

/// Why generation failed.
#[derive(Debug, thiserror::Error)]
pub enum GenError {
    /// A file or directory could not be written.
    #[error("cannot write {}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    /// Arrow or Parquet refused a batch.
    #[error("cannot encode {}: {source}", path.display())]
    Encode {
        path: PathBuf,
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The options make no sense.
    #[error("invalid option: {0}")]
    Invalid(String),
}

impl GenError {
    fn io(path: &Path, source: std::io::Error) -> Self {
        GenError::Io {
            path: path.to_path_buf(),
            source,
        }
    }
}

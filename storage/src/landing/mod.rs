//! Landing files: finding them by the extensions their format is delivered with, and
//! reading CSV and NDJSON ones row by row, so a bad row is set aside, not its file.

mod csv;
mod lines;
mod ndjson;
pub mod policy;
mod reader;
mod rejects;
mod typed;

pub use csv::CsvLayout;
pub use lines::{RangeStart, skip_to};
pub use policy::{BadRowPolicy, Limit, OnBadRow, Verdict};
pub use reader::{LandingReader, Parsed, RowFormat};
pub use rejects::{RAW_TEXT_LIMIT, Reject, rejects_batch, rejects_schema};

use std::path::Path;
use std::time::UNIX_EPOCH;

use datafusion::common::parsers::CompressionTypeVariant;
use serde::{Deserialize, Serialize};

use crate::commit_log::SourceFile;
use crate::error::{Result, StorageError};

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

/// The files under a local landing location whose names end with one of `suffixes`.
///
/// A location may be one file (read whatever its name) or a directory (searched
/// recursively; hidden and `_`-prefixed entries are skipped, as DataFusion does).
pub fn list_files(location: &str, suffixes: &[String]) -> Result<Listing> {
    let root = Path::new(location.strip_prefix("file://").unwrap_or(location));
    let mut listing = Listing::default();
    let mut stack = vec![root.to_path_buf()];
    while let Some(path) = stack.pop() {
        let metadata =
            std::fs::metadata(&path).map_err(|source| StorageError::io(&path, source))?;
        if metadata.is_dir() {
            for entry in
                std::fs::read_dir(&path).map_err(|source| StorageError::io(&path, source))?
            {
                let entry = entry.map_err(|source| StorageError::io(&path, source))?;
                let name = entry.file_name();
                let name = name.to_string_lossy();
                if !name.starts_with('.') && !name.starts_with('_') {
                    stack.push(entry.path());
                }
            }
            continue;
        }
        let name = path.to_string_lossy().to_ascii_lowercase();
        if path != root
            && !suffixes
                .iter()
                .any(|suffix| name.ends_with(suffix.as_str()))
        {
            listing.ignored.push(path.display().to_string());
            continue;
        }
        let modified = metadata
            .modified()
            .ok()
            .and_then(|time| time.duration_since(UNIX_EPOCH).ok())
            .map_or(0, |age| age.as_millis() as u64);
        listing.files.push(SourceFile {
            path: path.display().to_string(),
            size: metadata.len(),
            modified_ms: modified,
        });
    }
    listing.files.sort_by(|a, b| a.path.cmp(&b.path));
    listing.ignored.sort();
    Ok(listing)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ndjson_files_are_found_by_every_usual_extension_and_others_are_named() {
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
        let listing = list_files(&dir.display().to_string(), &suffixes).unwrap();
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
        let one = list_files(&dir.join("e.json").display().to_string(), &suffixes).unwrap();
        assert_eq!(one.files.len(), 1, "a location naming one file reads it");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

//! Finding the files a landing location holds, with what identifies each delivery.

use std::path::Path;
use std::time::UNIX_EPOCH;

use crate::commit_log::SourceFile;
use crate::error::{Result, StorageError};

/// The files under a local landing location whose names end with `extension`, sorted by path.
///
/// A location may be one file or a directory (searched recursively; hidden and
/// `_`-prefixed entries are skipped, as DataFusion does).
pub fn list_files(location: &str, extension: &str) -> Result<Vec<SourceFile>> {
    let root = Path::new(location.strip_prefix("file://").unwrap_or(location));
    let mut found = Vec::new();
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
        } else if path == root || path.to_string_lossy().ends_with(extension) {
            let modified = metadata
                .modified()
                .ok()
                .and_then(|time| time.duration_since(UNIX_EPOCH).ok())
                .map_or(0, |age| age.as_millis() as u64);
            found.push(SourceFile {
                path: path.display().to_string(),
                size: metadata.len(),
                modified_ms: modified,
            });
        }
    }
    found.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(found)
}

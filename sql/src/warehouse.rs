//! The warehouse root: where each layer's tables live, and what relative paths mean.

use std::path::{Path, PathBuf};

use crate::language::TableName;

/// A warehouse on the local file system.
#[derive(Debug, Clone)]
pub struct Warehouse {
    root: PathBuf,
}

impl Warehouse {
    /// A warehouse rooted at a directory (created when a run first writes to it).
    pub fn local(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    /// The root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Resolves a landing `LOCATION`: URLs and absolute paths stay, relative paths are under the root.
    pub fn resolve_location(&self, location: &str) -> String {
        if location.contains("://") || Path::new(location).is_absolute() {
            location.to_owned()
        } else {
            let joined = self.root.join(location).display().to_string();
            // A trailing slash tells DataFusion the location is a directory.
            if location.ends_with('/') && !joined.ends_with('/') {
                format!("{joined}/")
            } else {
                joined
            }
        }
    }

    /// Whether a resolved location is a local path (or glob-free `file://` URL) that does not exist.
    ///
    /// Object-store URLs are not probed here; their errors come when they are listed.
    pub fn is_missing(location: &str) -> bool {
        let local = match location.strip_prefix("file://") {
            Some(path) => path,
            None if location.contains("://") => return false,
            None => location,
        };
        !local.contains(['*', '?', '[']) && !Path::new(local).exists()
    }

    /// Where a built table's files live: `<root>/<layer>/<name>`.
    pub fn table_path(&self, table: &TableName) -> PathBuf {
        self.root.join(table.layer.as_str()).join(&table.name)
    }
}

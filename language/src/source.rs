//! Pipeline source files, and the positions inside them that diagnostics point at.

use std::path::{Path, PathBuf};

use datafusion::sql::sqlparser::tokenizer::{Location, Span};

use crate::error::{LanguageError, Result};

/// Index of a file within a [`Sources`] set, so spans stay small and copyable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FileId(pub usize);

/// A region of one source file, in sqlparser's 1-based lines and character columns.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SourceSpan {
    pub file: FileId,
    pub span: Span,
}

impl SourceSpan {
    /// Pairs a span found by sqlparser with the file it came from.
    pub fn new(file: FileId, span: Span) -> Self {
        Self { file, span }
    }

    /// `path:line:col`, the form editors and terminals turn into links.
    pub fn location(&self, sources: &Sources) -> String {
        format!(
            "{}:{}:{}",
            sources.file(self.file).path.display(),
            self.span.start.line,
            self.span.start.column
        )
    }
}

/// One pipeline file as read from disk.
#[derive(Debug)]
pub struct SourceFile {
    pub path: PathBuf,
    pub text: String,
}

impl SourceFile {
    /// The byte offset of a sqlparser location, clamped to the text.
    pub fn offset(&self, location: Location) -> usize {
        let mut lines = self.text.split_inclusive('\n');
        let mut offset = 0;
        for _ in 1..location.line {
            match lines.next() {
                Some(line) => offset += line.len(),
                None => return self.text.len(),
            }
        }
        let line = &self.text[offset..];
        offset
            + line
                .char_indices()
                .nth(location.column.saturating_sub(1) as usize)
                .map_or(line.len(), |(index, _)| index)
    }

    /// The text of a 1-based line, without its line break.
    pub fn line(&self, number: u64) -> &str {
        self.text
            .lines()
            .nth(number.saturating_sub(1) as usize)
            .unwrap_or("")
    }

    /// The file's text with everything outside `span` blanked, newlines kept.
    ///
    /// Parsing this instead of a slice keeps every position the parser reports
    /// relative to the whole file, so no error message needs re-mapping.
    pub fn masked(&self, span: Span) -> String {
        let (start, end) = (self.offset(span.start), self.offset(span.end));
        self.text
            .char_indices()
            .map(|(index, ch)| {
                if (start..end).contains(&index) || ch == '\n' {
                    ch
                } else {
                    ' '
                }
            })
            .collect()
    }
}

/// Every file of a pipeline, addressed by [`FileId`].
#[derive(Debug, Default)]
pub struct Sources {
    files: Vec<SourceFile>,
}

impl Sources {
    /// Reads a pipeline from files and directories; a directory contributes its `*.sql` files in name order.
    pub fn load(paths: &[PathBuf]) -> Result<Self> {
        let mut files = Vec::new();
        for path in paths {
            if path.is_dir() {
                let mut entries = std::fs::read_dir(path)
                    .map_err(|source| LanguageError::io(path, source))?
                    .map(|entry| entry.map(|entry| entry.path()))
                    .collect::<std::io::Result<Vec<_>>>()
                    .map_err(|source| LanguageError::io(path, source))?;
                entries.retain(|entry| entry.extension().is_some_and(|ext| ext == "sql"));
                entries.sort();
                if entries.is_empty() {
                    return Err(LanguageError::NoPipelineFiles(path.clone()));
                }
                files.extend(entries);
            } else {
                files.push(path.clone());
            }
        }
        if files.is_empty() {
            return Err(LanguageError::NoPipelineFiles(PathBuf::from(".")));
        }
        let mut sources = Sources::default();
        for path in files {
            let text = std::fs::read_to_string(&path)
                .map_err(|source| LanguageError::io(&path, source))?;
            sources.add(path, text);
        }
        Ok(sources)
    }

    /// Adds a file held in memory (tests, submitted pipelines).
    pub fn add(&mut self, path: impl AsRef<Path>, text: impl Into<String>) -> FileId {
        self.files.push(SourceFile {
            path: path.as_ref().to_path_buf(),
            text: text.into(),
        });
        FileId(self.files.len() - 1)
    }

    /// The file behind an id.
    pub fn file(&self, id: FileId) -> &SourceFile {
        &self.files[id.0]
    }

    /// Every file with its id, in load order.
    pub fn iter(&self) -> impl Iterator<Item = (FileId, &SourceFile)> {
        self.files
            .iter()
            .enumerate()
            .map(|(index, file)| (FileId(index), file))
    }
}

//! Problems found in a pipeline, pointing at the file, line and column to fix.

use std::fmt::Write;

use crate::source::{SourceSpan, Sources};

/// One problem in a pipeline, with where it is and, when we can tell, how to fix it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    pub message: String,
    pub span: Option<SourceSpan>,
    pub help: Option<String>,
}

impl Diagnostic {
    /// A problem at a place in the source.
    pub fn error(message: impl Into<String>, span: Option<SourceSpan>) -> Self {
        Self {
            message: message.into(),
            span,
            help: None,
        }
    }

    /// Adds a suggestion shown under the source excerpt.
    pub fn with_help(mut self, help: impl Into<String>) -> Self {
        self.help = Some(help.into());
        self
    }

    /// Renders the problem the way compilers do: message, location, the line, a caret.
    pub fn render(&self, sources: &Sources) -> String {
        let mut out = format!("error: {}\n", self.message);
        if let Some(span) = self.span {
            let location = span.location(sources);
            let file = sources.file(span.file);
            let (start, end) = (span.span.start, span.span.end);
            let line = file.line(start.line);
            let gutter = " ".repeat(start.line.to_string().len());
            let width = if end.line == start.line && end.column > start.column {
                (end.column - start.column) as usize
            } else {
                line.chars()
                    .count()
                    .saturating_sub(start.column as usize - 1)
                    .max(1)
            };
            let _ = writeln!(out, "{gutter}--> {location}");
            let _ = writeln!(out, "{gutter} |");
            let _ = writeln!(out, "{} | {line}", start.line);
            let _ = writeln!(
                out,
                "{gutter} | {}{}",
                " ".repeat(start.column.saturating_sub(1) as usize),
                "^".repeat(width)
            );
        }
        if let Some(help) = &self.help {
            let _ = writeln!(out, "  = help: {help}");
        }
        out
    }
}

/// The closest candidate to a misspelt name, if one is close enough to be a likely typo.
pub fn did_you_mean<'a>(
    name: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> Option<&'a str> {
    use datafusion::common::utils::datafusion_strsim::levenshtein;
    let limit = (name.chars().count() / 2).max(2);
    candidates
        .into_iter()
        .map(|candidate| (levenshtein(name, candidate), candidate))
        .filter(|(distance, _)| *distance <= limit)
        .min()
        .map(|(_, candidate)| candidate)
}

impl Diagnostic {
    /// A planning error of DataFusion's, at its own span when it has one, else at `fallback`.
    pub fn from_engine(
        error: datafusion::error::DataFusionError,
        fallback: crate::source::SourceSpan,
    ) -> Self {
        use datafusion::sql::sqlparser::tokenizer::{Location, Span};
        let span = error
            .diagnostic()
            .and_then(|diagnostic| diagnostic.span)
            .map(|span| {
                let at = |location: datafusion::common::Location| {
                    Location::new(location.line, location.column)
                };
                crate::source::SourceSpan::new(
                    fallback.file,
                    Span::new(at(span.start), at(span.end)),
                )
            })
            .unwrap_or(fallback);
        let message = error.strip_backtrace();
        let message = message
            .strip_prefix("Error during planning: ")
            .or_else(|| message.strip_prefix("Schema error: "))
            .unwrap_or(&message)
            .to_owned();
        Diagnostic::error(message, Some(span))
    }
}

//! Strata's pipeline language: files are parsed into statements with spans, resolved
//! into a table graph, and checked; every problem is a diagnostic that points at the
//! file, line and column to fix.
//!
//! Planning the queries needs an engine's session and lives in `strata-engine`; the
//! rules it applies to what it planned live here, in [`rules`].

mod ast;
mod diagnostic;
mod error;
mod graph;
mod parser;
pub mod rules;
mod source;

pub use ast::{
    DELETED_SUFFIX, Expectation, Format, Layer, OnViolation, Pipeline, Policy, PolicyKind,
    QUARANTINE_SUFFIX, REJECTS_SUFFIX, SetAside, SourceTable, Statement, TableDef, TableName,
    TableRef, WriteMode,
};
pub use diagnostic::{Diagnostic, did_you_mean};
pub use error::{LanguageError, Result};
pub use graph::Graph;
pub use parser::{normalize_ident, parse};
pub use source::{FileId, SourceFile, SourceSpan, Sources};

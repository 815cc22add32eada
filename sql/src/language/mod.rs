//! The pipeline language: sources, parsing, the syntax tree and diagnostics.

mod ast;
mod diagnostic;
mod parser;
mod source;

pub use ast::{
    Expectation, Format, Layer, OnViolation, Pipeline, SourceTable, Statement, TableDef, TableName,
    TableRef, WriteMode,
};
pub use diagnostic::{Diagnostic, did_you_mean};
pub use parser::{normalize_ident, parse};
pub use source::{FileId, SourceFile, SourceSpan, Sources};

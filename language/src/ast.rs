//! The pipeline's syntax tree: what each statement declares, with where it was written.

use std::fmt;

use datafusion::sql::parser::CreateExternalTable;
use datafusion::sql::sqlparser::ast::{Expr, Query};

use crate::source::SourceSpan;

/// The zones data moves through, in order; a table's schema name is its layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Layer {
    Landing,
    Raw,
    Enriched,
    Ranked,
}

impl Layer {
    /// Every layer, in data-flow order.
    pub const ALL: [Layer; 4] = [Layer::Landing, Layer::Raw, Layer::Enriched, Layer::Ranked];

    /// Reads a schema name as a layer (case-insensitive, as SQL identifiers are).
    pub fn parse(name: &str) -> Option<Layer> {
        Layer::ALL
            .into_iter()
            .find(|layer| layer.as_str().eq_ignore_ascii_case(name))
    }

    /// The schema name of the layer.
    pub fn as_str(self) -> &'static str {
        match self {
            Layer::Landing => "landing",
            Layer::Raw => "raw",
            Layer::Enriched => "enriched",
            Layer::Ranked => "ranked",
        }
    }

    /// How tables of this layer are stored: raw is Avro, the rest is Delta (the one
    /// place this rule lives); landing tables are not stored by Strata.
    pub fn format(self) -> Option<Format> {
        match self {
            Layer::Landing => None,
            Layer::Raw => Some(Format::Avro),
            Layer::Enriched | Layer::Ranked => Some(Format::Delta),
        }
    }
}

impl fmt::Display for Layer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A pipeline table's full name, `<layer>.<name>`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TableName {
    pub layer: Layer,
    pub name: String,
}

/// The suffix of the tables that hold rows set aside by `QUARANTINE` expectations;
/// reserved, so no declared table can be mistaken for one.
pub const QUARANTINE_SUFFIX: &str = "__quarantine";

/// The suffix of the tables that hold the landing rows a raw table could not parse;
/// reserved as [`QUARANTINE_SUFFIX`] is.
pub const REJECTS_SUFFIX: &str = "__rejects";

/// The suffix of the tables that remember the keys a `MERGE KEY … DELETE WHEN` table
/// deleted, with the sequence of each deletion; reserved as [`QUARANTINE_SUFFIX`] is.
pub const DELETED_SUFFIX: &str = "__deleted";

impl TableName {
    /// A name as it is written and displayed, `layer.name`; None when it is not one.
    pub fn parse(text: &str) -> Option<TableName> {
        let (layer, name) = text.split_once('.')?;
        Some(TableName {
            layer: Layer::parse(layer)?,
            name: name.to_owned(),
        })
    }

    /// The table that holds this table's quarantined rows, in the same layer.
    pub fn quarantine(&self) -> TableName {
        TableName {
            layer: self.layer,
            name: format!("{}{QUARANTINE_SUFFIX}", self.name),
        }
    }

    /// Whether this names a quarantine table rather than one a pipeline declares.
    pub fn is_quarantine(&self) -> bool {
        self.name.ends_with(QUARANTINE_SUFFIX)
    }

    /// The table that holds this raw table's rejected landing rows.
    pub fn rejects(&self) -> TableName {
        TableName {
            layer: self.layer,
            name: format!("{}{REJECTS_SUFFIX}", self.name),
        }
    }

    /// The raw table whose rejected rows this names, if it names a rejects table.
    pub fn rejects_of(&self) -> Option<TableName> {
        let table = self.name.strip_suffix(REJECTS_SUFFIX)?;
        (self.layer == Layer::Raw && !table.is_empty()).then(|| TableName {
            layer: self.layer,
            name: table.to_owned(),
        })
    }

    /// The table that remembers the keys this table deleted.
    pub fn deleted(&self) -> TableName {
        TableName {
            layer: self.layer,
            name: format!("{}{DELETED_SUFFIX}", self.name),
        }
    }

    /// The table whose rows this names, and what they are, if it names rows set aside
    /// or deleted keys rather than a table a pipeline declares.
    pub fn set_aside_of(&self) -> Option<(TableName, SetAside)> {
        let own = |name: &str| TableName {
            layer: self.layer,
            name: name.to_owned(),
        };
        if let Some(table) = self.name.strip_suffix(QUARANTINE_SUFFIX) {
            Some((own(table), SetAside::Quarantined))
        } else if let Some(table) = self.rejects_of() {
            Some((table, SetAside::Rejected))
        } else {
            let table = self.name.strip_suffix(DELETED_SUFFIX)?;
            Some((own(table), SetAside::DeletedKeys))
        }
    }

    /// Whether this names rows set aside (quarantined or rejected) or a table's deleted
    /// keys, rather than a table a pipeline declares.
    pub fn is_set_aside(&self) -> bool {
        self.is_quarantine() || self.rejects_of().is_some() || self.name.ends_with(DELETED_SUFFIX)
    }
}

/// What a table of rows set aside holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SetAside {
    /// Rows that broke a `QUARANTINE` expectation, with the table's columns.
    Quarantined,
    /// Landing lines a raw table could not parse, as delivered.
    Rejected,
    /// The keys a `MERGE KEY … DELETE WHEN` table deleted.
    DeletedKeys,
}

impl fmt::Display for TableName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.layer, self.name)
    }
}

/// How a built table is stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Format {
    Avro,
    Delta,
    Parquet,
}

impl Format {
    /// Reads a `STORED AS` word.
    pub fn parse(name: &str) -> Option<Format> {
        match name.to_ascii_uppercase().as_str() {
            "AVRO" => Some(Format::Avro),
            "DELTA" => Some(Format::Delta),
            "PARQUET" => Some(Format::Parquet),
            _ => None,
        }
    }
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Format::Avro => "AVRO",
            Format::Delta => "DELTA",
            Format::Parquet => "PARQUET",
        })
    }
}

/// What happens to a row that breaks an expectation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OnViolation {
    /// Move the row to `<layer>.<table>__quarantine` with the broken constraint names.
    Quarantine,
    /// Drop the row and count it.
    DropRow,
    /// Stop this table and its downstream tables; the last good version stays published.
    Fail,
}

/// `CONSTRAINT name EXPECT (predicate) ON VIOLATION action`.
#[derive(Debug, Clone, PartialEq)]
pub struct Expectation {
    pub name: String,
    pub predicate: Expr,
    pub on_violation: OnViolation,
    pub span: SourceSpan,
}

/// How a build's rows combine with the table's current version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WriteMode {
    /// The new rows become the whole table (the default).
    Replace,
    /// The new rows are added to the table.
    Append,
    /// Rows replace the current row with the same key, or are inserted; with a
    /// sequence column the row with the greatest value wins, in a build and against
    /// the table.
    Merge {
        key: Vec<String>,
        sequence_by: Option<String>,
        /// `DELETE WHEN <condition>` (SQL text over the query's columns): a row for which
        /// it holds deletes its key, as a change feed's `op = 'd'` row does.
        delete_when: Option<String>,
    },
    /// Slowly changing dimension, type 2: keeps `valid_from`, `valid_to` and `is_current`.
    Scd2 {
        key: Vec<String>,
        sequence_by: String,
    },
}

impl WriteMode {
    /// The clause's keyword, as a pipeline writes it.
    pub fn keyword(&self) -> &'static str {
        match self {
            WriteMode::Replace => "REPLACE",
            WriteMode::Append => "APPEND",
            WriteMode::Merge { .. } => "MERGE",
            WriteMode::Scd2 { .. } => "SCD2",
        }
    }
}

/// A table a query reads, as written, with where it was written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableRef {
    pub parts: Vec<String>,
    pub span: SourceSpan,
    /// Read as `STREAM(<table>)`: only the rows added since the reader's last build.
    pub stream: bool,
    /// Read as `CHANGES(<table>)`: a stream of the rows its change feed says changed
    /// since the reader's last build, each with `_change_type` (`stream` is set too).
    pub changes: bool,
}

impl TableRef {
    /// The pipeline table it names, when it is written `<layer>.<name>`.
    pub fn table_name(&self) -> Option<TableName> {
        match self.parts.as_slice() {
            [layer, name] => Some(TableName {
                layer: Layer::parse(layer)?,
                name: name.clone(),
            }),
            _ => None,
        }
    }
}

impl fmt::Display for TableRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.parts.join("."))
    }
}

/// A landing source: DataFusion's `CREATE EXTERNAL TABLE`, unchanged.
#[derive(Debug, Clone, PartialEq)]
pub struct SourceTable {
    pub name: TableName,
    pub name_span: SourceSpan,
    pub definition: CreateExternalTable,
    pub span: SourceSpan,
}

/// A built table: `CREATE TABLE <layer>.<name> … AS <query>`.
#[derive(Debug, Clone, PartialEq)]
pub struct TableDef {
    pub name: TableName,
    pub name_span: SourceSpan,
    pub expectations: Vec<Expectation>,
    pub partitioned_by: Vec<String>,
    pub format: Format,
    pub mode: WriteMode,
    pub query: Box<Query>,
    pub query_span: SourceSpan,
    pub reads: Vec<TableRef>,
    pub span: SourceSpan,
}

impl TableDef {
    /// The table it reads incrementally, as `STREAM(<table>)`, if any.
    pub fn stream(&self) -> Option<&TableRef> {
        self.reads.iter().find(|read| read.stream)
    }
}

/// One statement of a pipeline.
#[derive(Debug, Clone, PartialEq)]
pub enum Statement {
    Source(SourceTable),
    Table(TableDef),
}

impl Statement {
    /// The table the statement declares.
    pub fn name(&self) -> &TableName {
        match self {
            Statement::Source(source) => &source.name,
            Statement::Table(table) => &table.name,
        }
    }

    /// Where the declared name was written.
    pub fn name_span(&self) -> SourceSpan {
        match self {
            Statement::Source(source) => source.name_span,
            Statement::Table(table) => table.name_span,
        }
    }

    /// The tables the statement reads (none for a landing source).
    pub fn reads(&self) -> &[TableRef] {
        match self {
            Statement::Source(_) => &[],
            Statement::Table(table) => &table.reads,
        }
    }
}

/// What a policy changes in what a reader sees of its table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PolicyKind {
    /// `CREATE MASK name ON table (column) AS expr`: readers see `expr` in the column.
    Mask { column: String },
    /// `CREATE ROW FILTER name ON table AS predicate`: readers see the rows it holds for.
    RowFilter,
}

impl PolicyKind {
    /// The statement's words, as a pipeline writes them.
    pub fn keyword(&self) -> &'static str {
        match self {
            PolicyKind::Mask { .. } => "MASK",
            PolicyKind::RowFilter => "ROW FILTER",
        }
    }
}

/// A mask or row filter on a built table, applied to every reader of the warehouse.
#[derive(Debug, Clone, PartialEq)]
pub struct Policy {
    pub name: String,
    pub table: TableName,
    pub table_span: SourceSpan,
    pub kind: PolicyKind,
    /// SQL over the table's columns, `current_user()` and `current_role()`.
    pub expr: Expr,
    pub span: SourceSpan,
}

/// A parsed pipeline: every statement of its files, in file order, and the policies
/// on its tables.
#[derive(Debug)]
pub struct Pipeline {
    pub statements: Vec<Statement>,
    pub policies: Vec<Policy>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_aside_tables_name_the_table_whose_rows_they_hold() {
        let people = TableName::parse("raw.people").unwrap();
        assert_eq!(people.set_aside_of(), None);
        assert_eq!(
            people.quarantine().set_aside_of(),
            Some((people.clone(), SetAside::Quarantined))
        );
        assert_eq!(
            people.rejects().set_aside_of(),
            Some((people.clone(), SetAside::Rejected))
        );
        assert_eq!(
            people.deleted().set_aside_of(),
            Some((people, SetAside::DeletedKeys))
        );
        let enriched_rejects = TableName::parse("enriched.x__rejects").unwrap();
        assert_eq!(enriched_rejects.set_aside_of(), None);
    }
}

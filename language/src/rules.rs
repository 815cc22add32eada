//! `check`'s rules for a planned table: what its clauses may name, what it may store
//! and how, given the columns its query produces.

use std::sync::Arc;

use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::common::DFSchema;

use std::ops::ControlFlow;

use datafusion::sql::sqlparser::ast::{Expr as SqlExpr, Visit, Visitor};
use datafusion::sql::sqlparser::dialect::GenericDialect;
use datafusion::sql::sqlparser::parser::Parser;

use crate::ast::{TableDef, WriteMode};
use crate::diagnostic::{Diagnostic, did_you_mean};
use crate::parser::normalize_ident;

/// Columns SCD type 2 adds to every row.
pub const SCD2_COLUMNS: [&str; 3] = ["valid_from", "valid_to", "is_current"];

/// The columns a table stores: the query's, plus the history columns of SCD type 2.
pub fn stored_schema(table: &TableDef, output: &Schema) -> SchemaRef {
    let WriteMode::Scd2 { sequence_by, .. } = &table.mode else {
        return Arc::new(output.clone());
    };
    let sequence_type = output
        .field_with_name(sequence_by)
        .map(|field| field.data_type().clone())
        .unwrap_or(DataType::Null);
    let mut fields: Vec<Field> = output.fields().iter().map(|f| f.as_ref().clone()).collect();
    fields.push(Field::new(SCD2_COLUMNS[0], sequence_type.clone(), false));
    fields.push(Field::new(SCD2_COLUMNS[1], sequence_type, true));
    fields.push(Field::new(SCD2_COLUMNS[2], DataType::Boolean, false));
    Arc::new(Schema::new(fields))
}

/// The columns a `DELETE WHEN` condition names (the last part of a qualified name).
fn condition_columns(condition: &str) -> Result<Vec<String>, String> {
    struct Names(Vec<String>);
    impl Visitor for Names {
        type Break = ();
        fn pre_visit_expr(&mut self, expr: &SqlExpr) -> ControlFlow<()> {
            match expr {
                SqlExpr::Identifier(ident) => self.0.push(normalize_ident(ident)),
                SqlExpr::CompoundIdentifier(parts) => {
                    self.0.extend(parts.last().map(normalize_ident));
                }
                _ => {}
            }
            ControlFlow::Continue(())
        }
    }
    let expr = Parser::new(&GenericDialect {})
        .try_with_sql(condition)
        .and_then(|mut parser| parser.parse_expr())
        .map_err(|error| error.to_string())?;
    let mut names = Names(Vec::new());
    let _ = expr.visit(&mut names);
    Ok(names.0)
}

/// Checks the clauses around a query against the columns it produces.
pub fn check_clauses(table: &TableDef, output: &DFSchema) -> Vec<Diagnostic> {
    let columns: Vec<&str> = output.fields().iter().map(|f| f.name().as_str()).collect();
    let mut problems = Vec::new();
    let mut require = |column: &str, role: &str| {
        if !columns.contains(&column) {
            let hint = did_you_mean(column, columns.iter().copied())
                .map(|name| format!(" — did you mean {name}?"))
                .unwrap_or_default();
            problems.push(
                Diagnostic::error(
                    format!(
                        "{role} column {column} is not an output column of {}{hint}",
                        table.name
                    ),
                    Some(table.name_span),
                )
                .with_help(format!("the query produces: {}", columns.join(", "))),
            );
        }
    };
    for column in &table.partitioned_by {
        require(column, "partition");
    }
    match &table.mode {
        WriteMode::Merge {
            key,
            sequence_by,
            delete_when,
        } => {
            key.iter().for_each(|column| require(column, "key"));
            if let Some(sequence_by) = sequence_by {
                require(sequence_by, "sequence");
            }
            if let Some(condition) = delete_when {
                match condition_columns(condition) {
                    Ok(named) => named
                        .iter()
                        .for_each(|column| require(column, "DELETE WHEN")),
                    Err(error) => problems.push(Diagnostic::error(
                        format!("DELETE WHEN {condition} of {}: {error}", table.name),
                        Some(table.name_span),
                    )),
                }
            }
            if delete_when.is_some() && sequence_by.is_none() {
                problems.push(
                    Diagnostic::error(
                        format!(
                            "{} deletes keys (DELETE WHEN) but says no order of their rows",
                            table.name
                        ),
                        Some(table.name_span),
                    )
                    .with_help(
                        "add SEQUENCE BY <column>, so a deletion and a later row of its key are told apart",
                    ),
                );
            }
        }
        WriteMode::Scd2 { key, sequence_by } => {
            key.iter().for_each(|column| require(column, "key"));
            require(sequence_by, "sequence");
        }
        WriteMode::Replace | WriteMode::Append => {}
    }
    for column in &columns {
        if !is_storable_name(column) {
            problems.push(
                Diagnostic::error(
                    format!(
                        "column \"{column}\" of {} needs a plain name to be stored",
                        table.name
                    ),
                    Some(table.query_span),
                )
                .with_help("give the expression a name with AS, using letters, digits and _"),
            );
        }
        if let WriteMode::Scd2 { .. } = table.mode
            && SCD2_COLUMNS.contains(column)
        {
            problems.push(Diagnostic::error(
                format!(
                    "column {column} of {} is reserved for SCD2 history",
                    table.name
                ),
                Some(table.query_span),
            ));
        }
    }
    if let Some(stored) = table.name.layer.format()
        && stored != table.format
    {
        problems.push(Diagnostic::error(
            format!(
                "{} tables are stored as {stored}; STORED AS {} is not supported",
                table.name.layer, table.format
            ),
            Some(table.name_span),
        ));
    }
    if table.name.layer == crate::ast::Layer::Raw && table.mode != WriteMode::Append {
        problems.push(
            Diagnostic::error(
                format!("raw table {} is append-only", table.name),
                Some(table.name_span),
            )
            .with_help(
                "raw tables take each new landing file once; merge and history belong in enriched",
            ),
        );
    }
    problems
}

fn is_storable_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|first| first.is_alphabetic() || first == '_')
        && chars.all(|ch| ch.is_alphanumeric() || ch == '_')
}

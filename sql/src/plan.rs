//! Planning a pipeline: every table's query planned against a session, in build order,
//! without reading table data. `strata check` is this; `strata run` starts with it.

use std::sync::Arc;

use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::catalog::MemorySchemaProvider;
use datafusion::common::DFSchema;
use datafusion::datasource::empty::EmptyTable;
use datafusion::error::DataFusionError;
use datafusion::logical_expr::{ExprSchemable, LogicalPlan};
use datafusion::prelude::SessionContext;
use datafusion::sql::parser::Statement as DFStatement;
use datafusion::sql::sqlparser::ast::{ExprWithAlias, Statement as SqlStatement};
use datafusion::sql::sqlparser::tokenizer::{Location, Span};

use crate::error::{Error, Result};
use crate::graph::Graph;
use crate::language::{
    Diagnostic, Format, Layer, Pipeline, SourceSpan, SourceTable, Statement, TableDef, WriteMode,
    did_you_mean,
};
use crate::warehouse::Warehouse;

/// A statement that planned cleanly, with what it produces.
#[derive(Debug, Clone)]
pub struct PlannedTable {
    /// Index of the statement in the pipeline.
    pub node: usize,
    /// The logical plan of the table's query (a landing source's scan for sources).
    pub plan: LogicalPlan,
    /// The columns the table stores, including any the write mode adds.
    pub schema: SchemaRef,
}

/// Columns SCD type 2 adds to every row.
pub const SCD2_COLUMNS: [&str; 3] = ["valid_from", "valid_to", "is_current"];

/// Creates the layer schemas on a session so `landing.x` and `raw.y` resolve.
pub fn register_layers(ctx: &SessionContext) -> Result<()> {
    let catalog_name = ctx
        .state()
        .config()
        .options()
        .catalog
        .default_catalog
        .clone();
    let catalog = ctx.catalog(&catalog_name).ok_or_else(|| {
        DataFusionError::Plan(format!("default catalog {catalog_name} is missing"))
    })?;
    for layer in Layer::ALL {
        if catalog.schema(layer.as_str()).is_none() {
            catalog.register_schema(layer.as_str(), Arc::new(MemorySchemaProvider::new()))?;
        }
    }
    Ok(())
}

/// Plans every statement in build order and reports every problem found.
///
/// Landing sources are registered on `ctx` (reading file headers where no columns
/// are declared); built tables are registered as empty tables with their output
/// schema, so downstream queries plan against the real columns.
pub async fn plan_pipeline(
    pipeline: &Pipeline,
    graph: &Graph,
    warehouse: &Warehouse,
    ctx: &SessionContext,
) -> Result<Vec<PlannedTable>> {
    register_layers(ctx)?;
    let mut planned = Vec::new();
    let mut failed = vec![false; pipeline.statements.len()];
    let mut problems = Vec::new();
    for node in graph.order() {
        // A table whose input failed to plan would only repeat that error.
        if graph.upstream(node).iter().any(|&up| failed[up]) {
            failed[node] = true;
            continue;
        }
        let outcome = match &pipeline.statements[node] {
            Statement::Source(source) => plan_source(source, warehouse, ctx).await,
            Statement::Table(table) => plan_table(table, ctx).await,
        };
        match outcome {
            Ok((plan, schema)) => planned.push(PlannedTable { node, plan, schema }),
            Err(mut found) => {
                failed[node] = true;
                problems.append(&mut found);
            }
        }
    }
    if problems.is_empty() {
        Ok(planned)
    } else {
        Err(Error::Invalid(problems))
    }
}

type Planned = std::result::Result<(LogicalPlan, SchemaRef), Vec<Diagnostic>>;

async fn plan_source(source: &SourceTable, warehouse: &Warehouse, ctx: &SessionContext) -> Planned {
    let mut definition = source.definition.clone();
    definition.locations = definition
        .locations
        .iter()
        .map(|location| warehouse.resolve_location(location))
        .collect();
    let missing: Vec<Diagnostic> = definition
        .locations
        .iter()
        .filter(|location| Warehouse::is_missing(location))
        .map(|location| {
            Diagnostic::error(
                format!("landing path {location} of {} does not exist", source.name),
                Some(source.span),
            )
            .with_help(format!(
                "relative LOCATIONs are resolved against the warehouse root {}",
                warehouse.root().display()
            ))
        })
        .collect();
    if !missing.is_empty() {
        return Err(missing);
    }
    let state = ctx.state();
    let registered = async {
        let plan = state
            .statement_to_plan(DFStatement::CreateExternalTable(definition))
            .await?;
        ctx.execute_logical_plan(plan).await?;
        let name = source.name.to_string();
        ctx.table(name.as_str()).await
    }
    .await
    .map_err(|error| vec![engine_error(error, source.span)])?;
    let schema = Arc::new(registered.schema().as_arrow().clone());
    Ok((registered.logical_plan().clone(), schema))
}

async fn plan_table(table: &TableDef, ctx: &SessionContext) -> Planned {
    let mut state = ctx.state();
    // Spans let the engine's errors point at the exact column in the pipeline file.
    state.config_mut().options_mut().sql_parser.collect_spans = true;
    let statement = DFStatement::Statement(Box::new(SqlStatement::Query(table.query.clone())));
    let plan = state
        .statement_to_plan(statement)
        .await
        .map_err(|error| vec![engine_error(error, table.query_span)])?;
    let output = plan.schema().clone();
    let mut problems = check_clauses(table, &output);
    for expectation in &table.expectations {
        let predicate = ExprWithAlias {
            expr: expectation.predicate.clone(),
            alias: None,
        };
        match state
            .create_logical_expr_from_sql_expr(predicate, &output)
            .and_then(|expr| expr.get_type(&output))
        {
            Ok(DataType::Boolean) => {}
            Ok(other) => problems.push(Diagnostic::error(
                format!(
                    "expectation {} of {} must be a boolean condition, but it is {other}",
                    expectation.name, table.name
                ),
                Some(expectation.span),
            )),
            Err(error) => problems.push(engine_error(error, expectation.span)),
        }
    }
    if !problems.is_empty() {
        return Err(problems);
    }
    let schema = stored_schema(table, output.as_arrow());
    let provider = Arc::new(EmptyTable::new(Arc::clone(&schema)));
    ctx.register_table(table.name.to_string().as_str(), provider)
        .map_err(|error| vec![engine_error(error, table.name_span)])?;
    Ok((plan, schema))
}

/// The columns a table stores: the query's, plus the history columns of SCD type 2.
fn stored_schema(table: &TableDef, output: &Schema) -> SchemaRef {
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

/// Checks the clauses around a query against the columns it produces.
fn check_clauses(table: &TableDef, output: &DFSchema) -> Vec<Diagnostic> {
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
        WriteMode::Merge { key } => key.iter().for_each(|column| require(column, "key")),
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
    let supported = match table.name.layer {
        Layer::Raw => table.format == Format::Avro,
        _ => table.format == Format::Delta,
    };
    if !supported {
        problems.push(Diagnostic::error(
            format!(
                "{} tables are stored as {}; STORED AS {:?} is not supported",
                table.name.layer,
                if table.name.layer == Layer::Raw {
                    "AVRO"
                } else {
                    "DELTA"
                },
                table.format
            ),
            Some(table.name_span),
        ));
    }
    if table.name.layer == Layer::Raw && table.mode != WriteMode::Append {
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

/// Turns an engine error into a diagnostic, at the engine's own span when it has one.
fn engine_error(error: DataFusionError, fallback: SourceSpan) -> Diagnostic {
    let span = error
        .diagnostic()
        .and_then(|diagnostic| diagnostic.span)
        .map(|span| {
            let at = |location: datafusion::common::Location| {
                Location::new(location.line, location.column)
            };
            SourceSpan::new(fallback.file, Span::new(at(span.start), at(span.end)))
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

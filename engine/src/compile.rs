//! Compiling a pipeline: parse, resolve and plan, once, on the session the engine runs
//! it with. `strata check`, `strata run`, `strata submit` and the scheduler's pipeline
//! service all call [`compile`], so what check accepts is what run plans.

use std::sync::Arc;

use datafusion::arrow::datatypes::{DataType, SchemaRef};
use datafusion::catalog::MemorySchemaProvider;
use datafusion::datasource::empty::EmptyTable;
use datafusion::error::DataFusionError;
use datafusion::logical_expr::{ExprSchemable, LogicalPlan};
use datafusion::prelude::SessionContext;
use datafusion::sql::parser::Statement as DFStatement;
use datafusion::sql::sqlparser::ast::{ExprWithAlias, Statement as SqlStatement, Value};

use datafusion::common::TableReference;
use strata_access::{HashPii, TablePolicy, Viewer, masking_functions};
use strata_decrypt::Cipher;
use strata_language::rules::{check_clauses, stored_schema};
use strata_language::{
    Diagnostic, Graph, LanguageError, Layer, Pipeline, PolicyKind, SourceTable, Sources, Statement,
    TableDef, TableName, did_you_mean, parse,
};
use strata_storage::landing::after_ingest;
use strata_storage::{Warehouse, increment};

use crate::engine::Engine;
use crate::error::{EngineError, Result};
use crate::landing::LandingSource;
use crate::stream::incremental_problem;

/// A statement that planned cleanly, with what it produces.
#[derive(Debug, Clone)]
pub struct PlannedTable {
    /// Index of the statement in the pipeline.
    pub node: usize,
    /// The logical plan of the table's query (a landing source's scan for sources).
    pub plan: LogicalPlan,
    /// The columns the table stores, including any the write mode adds.
    pub schema: SchemaRef,
    /// A landing source's definition as Strata reads it.
    pub landing: Option<LandingSource>,
}

/// A pipeline compiled on an engine's session, ready to run.
pub struct Compiled {
    /// The statements, with every landing location resolved against the warehouse.
    pub pipeline: Pipeline,
    pub graph: Graph,
    /// Every statement that planned, in build order.
    pub planned: Vec<PlannedTable>,
    /// The session it was planned on; builds run on it.
    pub ctx: SessionContext,
}

impl Compiled {
    /// What a statement plans to, if it planned.
    pub fn planned(&self, node: usize) -> Option<&PlannedTable> {
        self.planned.iter().find(|table| table.node == node)
    }

    /// The plan of `input`, when it is a table `node` reads.
    pub fn planned_input(&self, node: usize, input: &TableName) -> Option<&PlannedTable> {
        self.graph
            .upstream(node)
            .iter()
            .find(|&&up| self.pipeline.statements[up].name() == input)
            .and_then(|&up| self.planned(up))
    }
}

/// Parses, resolves and plans a pipeline on a new session of `engine`, reporting every
/// problem at once.
pub async fn compile(
    sources: &Sources,
    warehouse: &Warehouse,
    engine: &Engine,
) -> Result<Compiled> {
    let (pipeline, graph) = resolve(sources, warehouse)?;
    let ctx = engine.session();
    let planned = plan_pipeline(&pipeline, &graph, warehouse, &ctx).await?;
    check_policies(&pipeline, &planned).await?;
    Ok(Compiled {
        pipeline,
        graph,
        planned,
        ctx,
    })
}

/// Parses and resolves a pipeline, with every landing location resolved against the
/// warehouse.
fn resolve(sources: &Sources, warehouse: &Warehouse) -> Result<(Pipeline, Graph)> {
    let mut pipeline = parse(sources)?;
    let graph = Graph::resolve(&pipeline, sources)?;
    for statement in &mut pipeline.statements {
        if let Statement::Source(source) = statement {
            for location in &mut source.definition.locations {
                *location = warehouse.resolve_location(location);
            }
            for (key, value) in &mut source.definition.options {
                if let Value::SingleQuotedString(location) = value
                    && key.eq_ignore_ascii_case(after_ingest::MOVE_TO)
                {
                    *location = warehouse.resolve_location(location);
                }
            }
        }
    }
    Ok((pipeline, graph))
}

/// A pipeline's landing sources, planning nothing and reading no file: what a trigger
/// on new landing files watches.
pub async fn landing_sources(
    sources: &Sources,
    warehouse: &Warehouse,
    engine: &Engine,
) -> Result<Vec<LandingSource>> {
    let (pipeline, _) = resolve(sources, warehouse)?;
    let state = engine.session().state();
    let mut found = Vec::new();
    for statement in &pipeline.statements {
        if let Statement::Source(source) = statement {
            found.push(LandingSource::from_definition(&source.definition, &state).await?);
        }
    }
    Ok(found)
}

/// Plans each mask and row filter, alone, for a reader with no role, against empty
/// tables shaped as the pipeline's, so a policy that names no column of its table, or
/// filters on something not boolean, fails `strata check` rather than a reader's query.
async fn check_policies(pipeline: &Pipeline, planned: &[PlannedTable]) -> Result<()> {
    if pipeline.policies.is_empty() {
        return Ok(());
    }
    let ctx = SessionContext::new();
    register_layers(&ctx)?;
    strata_udfs::register_all(&ctx);
    for function in masking_functions(HashPii::with_key(&[0; 32])) {
        ctx.register_udf(function.as_ref().clone());
    }
    for table in planned {
        let name = pipeline.statements[table.node].name();
        ctx.register_table(
            TableReference::partial(name.layer.as_str(), name.name.as_str()),
            Arc::new(EmptyTable::new(Arc::clone(&table.schema))),
        )?;
    }
    let checker = Viewer {
        user: "strata check".to_owned(),
        role: None,
    };
    let mut problems = Vec::new();
    for declared in &pipeline.policies {
        let name = declared.table.to_string();
        let schema = planned
            .iter()
            .find(|table| pipeline.statements[table.node].name() == &declared.table)
            .map(|table| Arc::clone(&table.schema));
        if let (PolicyKind::Mask { column }, Some(schema)) = (&declared.kind, schema)
            && schema.field_with_name(column).is_err()
        {
            let columns = schema.fields().iter().map(|field| field.name().as_str());
            let hint = did_you_mean(column, columns)
                .map(|close| format!(" (did you mean {close}?)"))
                .unwrap_or_default();
            problems.push(Diagnostic::error(
                format!(
                    "MASK {} is on column {column}, which {name} does not have{hint}",
                    declared.name
                ),
                Some(declared.span),
            ));
            continue;
        }
        let checked = match TablePolicy::of_one(declared).query(&name, &name, &checker) {
            Ok(sql) => ctx.sql(&sql).await.map(|_| ()),
            Err(error) => Err(DataFusionError::External(Box::new(error))),
        };
        if let Err(error) = checked {
            problems.push(Diagnostic::from_engine(error, declared.span));
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(EngineError::Language(LanguageError::Invalid(problems)))
    }
}

/// Creates the layer schemas on a session so `landing.x` and `raw.y` resolve.
pub fn register_layers(ctx: &SessionContext) -> datafusion::error::Result<()> {
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
async fn plan_pipeline(
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
            Ok((plan, schema, landing)) => planned.push(PlannedTable {
                node,
                plan,
                schema,
                landing,
            }),
            Err(mut found) => {
                failed[node] = true;
                problems.append(&mut found);
            }
        }
    }
    if problems.is_empty() {
        Ok(planned)
    } else {
        Err(EngineError::Language(LanguageError::Invalid(problems)))
    }
}

type Planned =
    std::result::Result<(LogicalPlan, SchemaRef, Option<LandingSource>), Vec<Diagnostic>>;

/// How many of the files a source will not read a problem names.
const NAMED_FILES: usize = 5;

async fn plan_source(source: &SourceTable, warehouse: &Warehouse, ctx: &SessionContext) -> Planned {
    let definition = source.definition.clone();
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
                "relative LOCATIONs are resolved against the warehouse root {warehouse}"
            ))
        })
        .collect();
    if !missing.is_empty() {
        return Err(missing);
    }
    let state = ctx.state();
    let located = |error: DataFusionError| vec![Diagnostic::from_engine(error, source.span)];
    let landing = LandingSource::from_definition(&definition, &state)
        .await
        .map_err(located)?;
    let listing = landing
        .list()
        .await
        .map_err(|error| located(DataFusionError::from(error)))?;
    if listing.files.is_empty() && !listing.ignored.is_empty() {
        let names: Vec<&str> = listing
            .ignored
            .iter()
            .take(NAMED_FILES)
            .map(|path| path.rsplit('/').next().unwrap_or(path))
            .collect();
        let more = listing.ignored.len().saturating_sub(NAMED_FILES);
        return Err(vec![
            Diagnostic::error(
                format!(
                    "{} reads files ending {}, but none of the {} file(s) at its location does: {}{}",
                    source.name,
                    landing.suffixes().join(", "),
                    listing.ignored.len(),
                    names.join(", "),
                    if more > 0 {
                        format!(" and {more} more")
                    } else {
                        String::new()
                    }
                ),
                Some(source.span),
            )
            .with_help(
                if landing.decrypt.is_none()
                    && listing.ignored.iter().any(|path| Cipher::of(path).is_some())
                {
                    "the files are encrypted: name the source's keys with OPTIONS ('decrypt.key_file' …) (see docs/privacy.md)"
                } else {
                    "set STORED AS to the files' format, and OPTIONS ('format.compression' …) to how they are compressed"
                },
            ),
        ]);
    }
    let files = listing.files;
    let registered = async {
        let schema = landing.schema(&files, &state).await?;
        let provider = landing.table(files, Arc::clone(&schema), None, false)?;
        let name = source.name.to_string();
        ctx.deregister_table(name.as_str())?;
        ctx.register_table(name.as_str(), provider)?;
        Ok::<_, DataFusionError>((ctx.table(name.as_str()).await?, schema))
    }
    .await
    .map_err(located)?;
    let (table, schema) = registered;
    Ok((table.logical_plan().clone(), schema, Some(landing)))
}

async fn plan_table(table: &TableDef, ctx: &SessionContext) -> Planned {
    let mut state = ctx.state();
    // A table read as CHANGES(t) has t's columns and those of its change rows.
    if let Some(read) = table.stream().filter(|read| read.changes)
        && let Some(changed) = read.table_name()
        && let Ok(provider) = ctx.table_provider(changed.to_string()).await
    {
        let rows = EmptyTable::new(increment::with_change_columns(&provider.schema()));
        state = crate::stream::session_reading(&state, &changed, Arc::new(rows))
            .await
            .map_err(|error| vec![Diagnostic::from_engine(error, read.span)])?;
    }
    // Spans let the engine's errors point at the exact column in the pipeline file.
    state.config_mut().options_mut().sql_parser.collect_spans = true;
    let statement = DFStatement::Statement(Box::new(SqlStatement::Query(table.query.clone())));
    let plan = state
        .statement_to_plan(statement)
        .await
        .map_err(|error| vec![Diagnostic::from_engine(error, table.query_span)])?;
    let output = plan.schema().clone();
    let mut problems = check_clauses(table, &output);
    if let Some(read) = table.stream()
        && let Some(stream) = read.table_name()
        && let Some(problem) = incremental_problem(&plan, &stream)
    {
        problems.push(
            Diagnostic::error(problem, Some(read.span)).with_help(format!(
                "read {stream} whole (FROM {stream}) and write {} REPLACE, or compute this downstream of an incremental table",
                table.name
            )),
        );
    }
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
            Err(error) => problems.push(Diagnostic::from_engine(error, expectation.span)),
        }
    }
    if !problems.is_empty() {
        return Err(problems);
    }
    let schema = stored_schema(table, output.as_arrow());
    let provider = Arc::new(EmptyTable::new(Arc::clone(&schema)));
    ctx.register_table(table.name.to_string().as_str(), provider)
        .map_err(|error| vec![Diagnostic::from_engine(error, table.name_span)])?;
    Ok((plan, schema, None))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pipeline(name: &str, enriched: &str) -> (Sources, Warehouse) {
        let root =
            std::env::temp_dir().join(format!("strata-compile-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(root.join("landing/jobs")).unwrap();
        std::fs::write(
            root.join("landing/jobs/a.csv"),
            "id,title\n1,Rust engineer\n",
        )
        .unwrap();
        let mut sources = Sources::default();
        sources.add(
            "pipeline.sql",
            format!(
                "CREATE EXTERNAL TABLE landing.jobs STORED AS CSV LOCATION 'landing/jobs/' OPTIONS ('format.has_header' 'true');\n\
                 CREATE TABLE raw.jobs AS SELECT * FROM landing.jobs;\n\
                 {enriched};\n"
            ),
        );
        (sources, Warehouse::local(root))
    }

    #[tokio::test]
    async fn check_and_run_plan_with_the_engines_functions_and_resolved_landing_paths() {
        let (sources, warehouse) = pipeline(
            "functions",
            "CREATE TABLE enriched.jobs AS SELECT id, skill_match(tokenize(title), ['rust']) AS fit, \
             array_length(tokenize(title)) AS words FROM raw.jobs",
        );
        let compiled = compile(&sources, &warehouse, &Engine::Embedded)
            .await
            .unwrap();
        assert_eq!(compiled.planned.len(), 3);
        let Statement::Source(source) = &compiled.pipeline.statements[0] else {
            panic!("the landing table comes first")
        };
        let root = warehouse.local_dir().unwrap();
        let expected = root.join("landing/jobs/").display().to_string();
        assert_eq!(
            source.definition.locations,
            [expected],
            "resolved once, at compile time"
        );
        let columns: Vec<String> = compiled.planned[2]
            .schema
            .fields()
            .iter()
            .map(|field| field.name().clone())
            .collect();
        assert_eq!(columns, ["id", "fit", "words"]);
        std::fs::remove_dir_all(root).unwrap();
    }

    #[tokio::test]
    async fn an_unknown_function_is_a_located_problem() {
        let (sources, warehouse) = pipeline(
            "unknown-function",
            "CREATE TABLE enriched.jobs AS SELECT skill_mach(title) AS fit FROM raw.jobs",
        );
        let Err(EngineError::Language(LanguageError::Invalid(problems))) =
            compile(&sources, &warehouse, &Engine::Embedded).await
        else {
            panic!("expected problems")
        };
        assert_eq!(problems.len(), 1);
        assert!(
            problems[0].message.contains("skill_mach"),
            "{}",
            problems[0].message
        );
        assert_eq!(problems[0].span.unwrap().span.start.line, 3);
        std::fs::remove_dir_all(warehouse.local_dir().unwrap()).unwrap();
    }
}

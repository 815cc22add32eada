//! A client's SQL as a DataFusion plan over one snapshot of the warehouse: read-only,
//! with `?` parameters and `VERSION AS OF` time travel.

use std::sync::Arc;

use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::catalog::{MemorySchemaProvider, SchemaProvider};
use datafusion::common::{ParamValues, ScalarValue, TableReference};
use datafusion::config::Dialect;
use datafusion::error::DataFusionError;
use datafusion::execution::SessionStateBuilder;
use datafusion::execution::runtime_env::RuntimeEnv;
use datafusion::logical_expr::LogicalPlan;
use datafusion::prelude::SessionContext;
use datafusion::sql::parser::Statement as DFStatement;
use datafusion::sql::sqlparser::ast::Statement as SqlStatement;
use datafusion::sql::sqlparser::dialect::GenericDialect;
use datafusion::sql::sqlparser::keywords::Keyword;
use datafusion::sql::sqlparser::tokenizer::{Token, Tokenizer, Word};
use strata_sql::language::{Layer, did_you_mean};
use strata_sql::run::Engine;
use strata_sql::storage::catalog::{self, PublishedTable};
use strata_sql::storage::delta_publish::DeltaReader;
use strata_sql::storage::storage_schema;
use strata_sql::warehouse::Warehouse;
use tonic::Status;

/// The catalog clients see.
pub const CATALOG: &str = "strata";
/// The schema of unqualified table names.
pub const DEFAULT_SCHEMA: &str = "enriched";
/// The schemas clients see, one per layer that holds built tables.
pub const SCHEMAS: [Layer; 3] = [Layer::Raw, Layer::Enriched, Layer::Ranked];

/// Plans queries against the tables a warehouse has published.
pub struct Planner {
    warehouse: Warehouse,
    show_quarantine: bool,
    runtime: Arc<RuntimeEnv>,
    engine: Engine,
}

/// A planned query and the context that runs it.
pub struct Planned {
    pub ctx: SessionContext,
    pub plan: LogicalPlan,
}

impl Planned {
    /// The schema of the streamed result: plain strings and microsecond timestamps,
    /// which every Flight SQL driver reads.
    pub fn schema(&self) -> SchemaRef {
        storage_schema(self.plan.schema().as_arrow())
    }

    /// The types of the `?` parameters, in order; NULL where the query does not fix one.
    pub fn parameter_schema(&self) -> Result<Schema, Status> {
        let fields = self.plan.get_parameter_fields().map_err(planning)?;
        let mut fields: Vec<(usize, Field)> = fields
            .into_iter()
            .map(|(id, field)| {
                let position = id.trim_start_matches('$').parse::<usize>().unwrap_or(0);
                let data_type = field.map_or(DataType::Null, |f| f.data_type().clone());
                (position, Field::new(id, data_type, true))
            })
            .collect();
        fields.sort_by_key(|(position, _)| *position);
        Ok(Schema::new(
            fields
                .into_iter()
                .map(|(_, field)| field)
                .collect::<Vec<_>>(),
        ))
    }
}

impl Planner {
    pub fn new(warehouse: Warehouse, show_quarantine: bool, engine: Engine) -> Self {
        Self {
            warehouse,
            show_quarantine,
            runtime: Arc::new(RuntimeEnv::default()),
            engine,
        }
    }

    /// Where the planned queries run.
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// Delta scans that can run where the engine runs them.
    fn delta_reader(&self) -> DeltaReader {
        if self.engine.is_cluster() {
            DeltaReader::Portable
        } else {
            DeltaReader::Native
        }
    }

    /// The tables clients may see, sorted by layer and name.
    pub fn tables(&self) -> Result<Vec<PublishedTable>, Status> {
        let tables = catalog::published_tables(&self.warehouse).map_err(|error| {
            Status::internal(format!(
                "listing the warehouse {}: {error}",
                self.warehouse.root().display()
            ))
        })?;
        Ok(tables
            .into_iter()
            .filter(|table| self.show_quarantine || !table.is_quarantine())
            .collect())
    }

    /// The schemas clients see for the tables' current versions, opened on one session.
    pub async fn table_schemas(&self, tables: &[PublishedTable]) -> Result<Vec<SchemaRef>, Status> {
        let state = self.context().state();
        let mut schemas = Vec::with_capacity(tables.len());
        for table in tables {
            let provider = catalog::open(table, None, &state, self.delta_reader())
                .await
                .map_err(planning)?;
            schemas.push(storage_schema(&provider.schema()));
        }
        Ok(schemas)
    }

    /// Plans one read-only statement, binding `parameters` to `?` in order if given.
    pub async fn plan(
        &self,
        sql: &str,
        parameters: Option<Vec<ScalarValue>>,
    ) -> Result<Planned, Status> {
        let sql = rewrite(sql)?;
        let ctx = self.context();
        let state = ctx.state();
        let statement = state
            .sql_to_statement(&sql, &Dialect::Generic)
            .map_err(|error| Status::invalid_argument(error.strip_backtrace()))?;
        refuse_writes(&statement)?;
        let references = state
            .resolve_table_references(&statement)
            .map_err(planning)?;
        self.register(&ctx, references).await?;
        let plan = state.statement_to_plan(statement).await.map_err(planning)?;
        let plan = match parameters {
            Some(values) => bind(plan, values)?,
            None => plan,
        };
        Ok(Planned { ctx, plan })
    }

    /// A fresh context whose catalog holds only the schemas; tables come per query.
    fn context(&self) -> SessionContext {
        let config = self
            .engine
            .config()
            .with_default_catalog_and_schema(CATALOG, DEFAULT_SCHEMA)
            .with_information_schema(false);
        let state = SessionStateBuilder::new()
            .with_config(config)
            .with_runtime_env(Arc::clone(&self.runtime))
            .with_default_features()
            .build();
        let ctx = SessionContext::new_with_state(state);
        strata_udfs::register_all(&ctx);
        if let Some(catalog) = ctx.catalog(CATALOG) {
            for layer in SCHEMAS {
                if catalog.schema(layer.as_str()).is_none() {
                    let schema: Arc<dyn SchemaProvider> = Arc::new(MemorySchemaProvider::new());
                    // Registering a schema on a memory catalog cannot fail.
                    let _ = catalog.register_schema(layer.as_str(), schema);
                }
            }
        }
        ctx
    }

    /// Opens every table the statement reads at the version current now, or the one it names.
    async fn register(
        &self,
        ctx: &SessionContext,
        references: Vec<TableReference>,
    ) -> Result<(), Status> {
        let tables = self.tables()?;
        let state = ctx.state();
        for reference in references {
            if reference
                .catalog()
                .is_some_and(|catalog| catalog != CATALOG)
            {
                return Err(Status::not_found(format!(
                    "unknown catalog {}: the only catalog is {CATALOG}",
                    reference.catalog().unwrap_or_default()
                )));
            }
            let schema_name = reference.schema().unwrap_or(DEFAULT_SCHEMA);
            let layer = Layer::parse(schema_name)
                .filter(|layer| SCHEMAS.contains(layer))
                .ok_or_else(|| {
                    Status::not_found(format!(
                        "unknown schema {schema_name}: the schemas are raw, enriched and ranked"
                    ))
                })?;
            let (name, version) = split_version(reference.table())?;
            let table = tables
                .iter()
                .find(|table| table.layer == layer && table.name == name)
                .ok_or_else(|| unknown_table(layer, name, &tables))?;
            let provider = catalog::open(table, version, &state, self.delta_reader())
                .await
                .map_err(planning)?;
            let schema = ctx
                .catalog(CATALOG)
                .and_then(|catalog| catalog.schema(layer.as_str()))
                .ok_or_else(|| Status::internal("the session lost its schemas"))?;
            if !schema.table_exist(reference.table()) {
                schema
                    .register_table(reference.table().to_owned(), provider)
                    .map_err(planning)?;
            }
        }
        Ok(())
    }
}

fn unknown_table(layer: Layer, name: &str, tables: &[PublishedTable]) -> Status {
    let names: Vec<String> = tables
        .iter()
        .map(|table| format!("{}.{}", table.layer, table.name))
        .collect();
    let wanted = format!("{layer}.{name}");
    let hint = did_you_mean(&wanted, names.iter().map(String::as_str))
        .map(|close| format!(" (did you mean {close}?)"))
        .unwrap_or_default();
    Status::not_found(format!("unknown table {wanted}{hint}"))
}

/// `jobs@3` (what `jobs VERSION AS OF 3` becomes) names version 3 of `jobs`.
fn split_version(table: &str) -> Result<(&str, Option<u64>), Status> {
    match table.rsplit_once('@') {
        Some((name, version)) => version
            .parse()
            .map(|version| (name, Some(version)))
            .map_err(|_| Status::invalid_argument(format!("bad table version in {table}"))),
        None => Ok((table, None)),
    }
}

/// Only queries (and EXPLAIN of them) may run: the endpoint never changes state.
fn refuse_writes(statement: &DFStatement) -> Result<(), Status> {
    let allowed = match statement {
        DFStatement::Statement(inner) => match inner.as_ref() {
            SqlStatement::Query(_) => true,
            SqlStatement::Explain { statement, .. } => {
                matches!(statement.as_ref(), SqlStatement::Query(_))
            }
            _ => false,
        },
        DFStatement::Explain(explain) => {
            return refuse_writes(&explain.statement);
        }
        _ => false,
    };
    if allowed {
        return Ok(());
    }
    let text = statement.to_string();
    let kind: Vec<&str> = text.split_whitespace().take(2).collect();
    Err(Status::permission_denied(format!(
        "the Strata Flight SQL endpoint is read-only: {} statements are refused; \
         tables change only through pipeline runs",
        kind.join(" ").to_uppercase()
    )))
}

/// Binds positional parameters, cast to the types the query gives them.
fn bind(plan: LogicalPlan, values: Vec<ScalarValue>) -> Result<LogicalPlan, Status> {
    let fields = plan.get_parameter_fields().map_err(planning)?;
    if fields.len() != values.len() {
        return Err(Status::invalid_argument(format!(
            "the query has {} parameter(s) but {} value(s) were bound",
            fields.len(),
            values.len()
        )));
    }
    let values = values
        .into_iter()
        .enumerate()
        .map(|(index, value)| {
            let wanted = fields
                .get(&format!("${}", index + 1))
                .and_then(|field| field.as_ref().map(|f| f.data_type().clone()));
            match wanted {
                Some(data_type) if data_type != value.data_type() => {
                    value.cast_to(&data_type).map_err(|error| {
                        Status::invalid_argument(format!(
                            "parameter {}: {}",
                            index + 1,
                            error.strip_backtrace()
                        ))
                    })
                }
                _ => Ok(value),
            }
        })
        .collect::<Result<Vec<_>, _>>()?;
    plan.with_param_values(ParamValues::from(values))
        .map_err(planning)
}

/// Rewrites what DataFusion's generic dialect does not take: `?` placeholders become
/// `$1, $2, …`, and `table VERSION AS OF n` becomes the table name `"table@n"`.
fn rewrite(sql: &str) -> Result<String, Status> {
    let dialect = GenericDialect {};
    let tokens = Tokenizer::new(&dialect, sql)
        .tokenize()
        .map_err(|error| Status::invalid_argument(error.to_string()))?;
    let mut out: Vec<Token> = Vec::with_capacity(tokens.len());
    let mut placeholders = 0;
    let mut index = 0;
    while index < tokens.len() {
        let token = &tokens[index];
        if matches!(token, Token::Placeholder(p) if p == "?") {
            placeholders += 1;
            out.push(Token::Placeholder(format!("${placeholders}")));
            index += 1;
            continue;
        }
        if let Some((version, next)) = version_clause(&tokens, index) {
            let table = out
                .iter()
                .rposition(|token| !matches!(token, Token::Whitespace(_)))
                .and_then(|at| match &out[at] {
                    Token::Word(word) => Some((at, word.clone())),
                    _ => None,
                });
            let Some((at, word)) = table else {
                return Err(Status::invalid_argument(
                    "VERSION AS OF must follow a table name",
                ));
            };
            let name = match word.quote_style {
                Some(_) => word.value,
                None => word.value.to_lowercase(),
            };
            out.truncate(at);
            out.push(Token::Word(Word {
                value: format!("{name}@{version}"),
                quote_style: Some('"'),
                keyword: Keyword::NoKeyword,
            }));
            index = next;
            continue;
        }
        out.push(token.clone());
        index += 1;
    }
    Ok(out.iter().map(ToString::to_string).collect())
}

/// At `VERSION AS OF <n>` starting at `index`: the version and the index after it.
fn version_clause(tokens: &[Token], index: usize) -> Option<(u64, usize)> {
    let mut at = index;
    let mut next_word = |expected: Keyword| -> Option<()> {
        while matches!(tokens.get(at), Some(Token::Whitespace(_))) {
            at += 1;
        }
        match tokens.get(at) {
            Some(Token::Word(word)) if word.keyword == expected && word.quote_style.is_none() => {
                at += 1;
                Some(())
            }
            _ => None,
        }
    };
    next_word(Keyword::VERSION)?;
    next_word(Keyword::AS)?;
    next_word(Keyword::OF)?;
    while matches!(tokens.get(at), Some(Token::Whitespace(_))) {
        at += 1;
    }
    match tokens.get(at) {
        Some(Token::Number(number, _)) => number.parse().ok().map(|version| (version, at + 1)),
        _ => None,
    }
}

/// A planning error as the status a client can act on.
pub fn planning(error: DataFusionError) -> Status {
    let message = error.strip_backtrace();
    match error.find_root() {
        DataFusionError::Plan(_) | DataFusionError::SQL(..) | DataFusionError::SchemaError(..) => {
            Status::invalid_argument(message)
        }
        DataFusionError::NotImplemented(_) => Status::unimplemented(message),
        _ => Status::internal(message),
    }
}

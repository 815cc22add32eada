//! A client's SQL as a DataFusion plan over one snapshot of the warehouse: read-only,
//! with `?` parameters and `VERSION AS OF` time travel ([`time_travel`]).

use std::sync::Arc;
use std::time::Duration;

use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::common::{ParamValues, ScalarValue, TableReference};
use datafusion::execution::SessionStateBuilder;
use datafusion::execution::context::SQLOptions;
use datafusion::execution::runtime_env::{RuntimeEnv, RuntimeEnvBuilder};
use datafusion::logical_expr::LogicalPlan;
use datafusion::prelude::SessionContext;
use datafusion::sql::parser::Statement as DFStatement;
use datafusion::sql::sqlparser::ast::Statement as SqlStatement;
use datafusion::sql::sqlparser::dialect::GenericDialect;
use datafusion::sql::sqlparser::tokenizer::{Token, Tokenizer};
use strata_engine::Engine;
use strata_language::{Layer, did_you_mean};
use strata_storage::catalog::{self, PublishedTable};
use strata_storage::delta_publish::DeltaReader;
use strata_storage::{StoreRegistry, Warehouse, storage_schema};
use tonic::Status;

use strata_access::catalog::{Reader, split_version};
use strata_access::{AUDIT_SCHEMA, AUDIT_TABLE, SCHEMAS, Viewer, Visibility, WarehouseCatalog};

use crate::audit::{ADMIN_ROLE, is_admin};
use crate::limits::Admission;
use crate::status::status;
use crate::time_travel;

pub use strata_access::catalog::CATALOG;
/// The schema of unqualified table names.
pub const DEFAULT_SCHEMA: &str = "enriched";
/// Plans queries against the tables a warehouse has published.
pub(crate) struct Planner {
    visibility: Visibility,
    runtime: Arc<RuntimeEnv>,
    engine: Engine,
    admission: Arc<Admission>,
}

/// A planned query and the context that runs it.
pub(crate) struct Planned {
    pub ctx: SessionContext,
    pub plan: LogicalPlan,
}

impl Planned {
    /// The schema of the streamed result: plain strings and microsecond timestamps,
    /// which every Flight SQL driver reads.
    pub(crate) fn schema(&self) -> SchemaRef {
        storage_schema(self.plan.schema().as_arrow())
    }

    /// The types of the `?` parameters, in order; NULL where the query does not fix one.
    pub(crate) fn parameter_schema(&self) -> Result<Schema, Status> {
        let fields = self.plan.get_parameter_fields().map_err(status)?;
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
    pub(crate) fn new(
        warehouse: Warehouse,
        show_quarantine: bool,
        engine: Engine,
        admission: Arc<Admission>,
        snapshot_refresh: Duration,
    ) -> Self {
        // Delta scans that can run where the engine runs them.
        let reader = if engine.is_cluster() {
            DeltaReader::Portable
        } else {
            DeltaReader::Native
        };
        Self {
            visibility: Visibility::new(warehouse, show_quarantine, reader)
                .with_snapshots(snapshot_refresh),
            runtime: StoreRegistry::runtime(),
            engine,
            admission,
        }
    }

    /// Where the planned queries run.
    pub(crate) fn engine(&self) -> &Engine {
        &self.engine
    }

    /// The tables clients may see, sorted by layer and name (this lists the warehouse).
    pub(crate) async fn tables(&self) -> Result<Vec<PublishedTable>, Status> {
        let tables = catalog::published_tables(&self.visibility.warehouse)
            .await
            .map_err(|error| Status::internal(format!("listing the warehouse: {error}")))?;
        Ok(tables
            .into_iter()
            .filter(|table| self.visibility.show_quarantine || !table.is_set_aside())
            .collect())
    }

    /// The schemas `viewer` sees for the tables' current versions (masks can change a
    /// column's type), opened on one session.
    pub(crate) async fn table_schemas(
        &self,
        tables: &[PublishedTable],
        viewer: &Viewer,
    ) -> Result<Vec<SchemaRef>, Status> {
        let ctx = self.context(viewer)?;
        let mut schemas = Vec::with_capacity(tables.len());
        for table in tables {
            let reference =
                TableReference::full(CATALOG, table.name.layer.as_str(), table.name.name.as_str());
            match ctx.table_provider(reference).await {
                Ok(provider) => schemas.push(storage_schema(&provider.schema())),
                // Rows set aside that the viewer may not read (their table has a policy)
                // are listed without columns, rather than failing the whole listing.
                Err(_) if table.is_set_aside() => schemas.push(Arc::new(Schema::empty())),
                Err(error) => return Err(status(error)),
            }
        }
        Ok(schemas)
    }

    /// Plans one read-only statement, binding `parameters` to `?` in order if given.
    ///
    /// Only the tables the statement names are opened, each at the version current
    /// now or the one it asks for; nothing lists the warehouse.
    /// Tables are read through their policies for `viewer`, and an admin may also read
    /// the audit trail, `_strata.audit`.
    pub(crate) async fn plan(
        &self,
        sql: &str,
        parameters: Option<Vec<ScalarValue>>,
        viewer: &Viewer,
    ) -> Result<Planned, Status> {
        let admin = is_admin(viewer.role.as_deref());
        let sql = positional_placeholders(sql)?;
        let ctx = self.context(viewer)?;
        let state = ctx.state();
        let statement = time_travel::parse(&sql)?;
        refuse_write_statements(&statement)?;
        let references = state.resolve_table_references(&statement).map_err(status)?;
        for reference in &references {
            self.check(reference, admin).await?;
        }
        let plan = state.statement_to_plan(statement).await.map_err(status)?;
        refuse_writes(&plan)?;
        if matches!(plan, LogicalPlan::Explain(_) | LogicalPlan::Analyze(_))
            && strata_access::reads_guarded(&plan)
        {
            return Err(Status::permission_denied(
                "EXPLAIN is refused on tables with masks or row filters: the plan would \
                 show what they hide (file names hold partition values)",
            ));
        }
        let plan = match parameters {
            Some(values) => bind(plan, values)?,
            None => plan,
        };
        Ok(Planned { ctx, plan })
    }

    /// A fresh context whose catalog is the warehouse's published tables as `viewer`
    /// sees them, and for an admin its audit trail.
    fn context(&self, viewer: &Viewer) -> Result<SessionContext, Status> {
        let config = self
            .engine
            .config()
            .with_default_catalog_and_schema(CATALOG, DEFAULT_SCHEMA)
            .with_information_schema(false)
            .with_create_default_catalog_and_schema(false);
        // Each query's own memory pool, within the server's; operators spill to disk.
        let runtime = RuntimeEnvBuilder::new()
            .with_object_store_registry(Arc::clone(&self.runtime.object_store_registry))
            .with_memory_pool(self.admission.query_pool())
            .build_arc()
            .map_err(status)?;
        let state = SessionStateBuilder::new()
            .with_config(config)
            .with_runtime_env(runtime)
            .with_default_features()
            .build();
        let ctx = SessionContext::new_with_state(state);
        strata_udfs::register_all(&ctx);
        let catalog = WarehouseCatalog::new(
            self.visibility.clone(),
            ctx.state(),
            Reader::Viewer(viewer.clone()),
            is_admin(viewer.role.as_deref()),
        );
        ctx.register_catalog(CATALOG, Arc::new(catalog));
        Ok(ctx)
    }

    /// Says which catalog, schema or table a reference names that does not exist, or
    /// that the caller may not read.
    async fn check(&self, reference: &TableReference, admin: bool) -> Result<(), Status> {
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
        if schema_name == AUDIT_SCHEMA {
            return match (admin, reference.table()) {
                (false, _) => Err(Status::permission_denied(format!(
                    "{AUDIT_SCHEMA}.{AUDIT_TABLE} is readable by the {ADMIN_ROLE} role only"
                ))),
                (true, AUDIT_TABLE) => Ok(()),
                (true, other) => Err(Status::not_found(format!(
                    "unknown table {AUDIT_SCHEMA}.{other}: {AUDIT_SCHEMA} holds {AUDIT_TABLE} only"
                ))),
            };
        }
        let layer = Layer::parse(schema_name)
            .filter(|layer| SCHEMAS.contains(layer))
            .ok_or_else(|| {
                Status::not_found(format!(
                    "unknown schema {schema_name}: the schemas are raw, enriched and ranked"
                ))
            })?;
        let (name, _) = split_version(reference.table());
        match self.visibility.find(layer, name).await {
            Some(_) => Ok(()),
            None => Err(self.unknown_table(layer, name).await),
        }
    }

    /// A missing table, with the closest published name (this lists the warehouse).
    async fn unknown_table(&self, layer: Layer, name: &str) -> Status {
        let tables = self.tables().await.unwrap_or_default();
        unknown_table(layer, name, &tables)
    }
}

fn unknown_table(layer: Layer, name: &str, tables: &[PublishedTable]) -> Status {
    let names: Vec<String> = tables.iter().map(|table| table.name.to_string()).collect();
    let wanted = format!("{layer}.{name}");
    let hint = did_you_mean(&wanted, names.iter().map(String::as_str))
        .map(|close| format!(" (did you mean {close}?)"))
        .unwrap_or_default();
    Status::not_found(format!("unknown table {wanted}{hint}"))
}

/// Refuses a statement that is not a query before it is planned, so a write that
/// would not even plan still reads as refused rather than as a planning error.
fn refuse_write_statements(statement: &DFStatement) -> Result<(), Status> {
    let allowed = match statement {
        DFStatement::Statement(inner) => match inner.as_ref() {
            SqlStatement::Query(_) => true,
            SqlStatement::Explain { statement, .. } => {
                matches!(statement.as_ref(), SqlStatement::Query(_))
            }
            _ => false,
        },
        DFStatement::Explain(explain) => {
            return refuse_write_statements(&explain.statement);
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

/// Only queries (and EXPLAIN of them) may run: the endpoint never changes state. The
/// plan is what is checked, so a query that writes (`SELECT … INTO`) is refused too.
fn refuse_writes(plan: &LogicalPlan) -> Result<(), Status> {
    let read_only = SQLOptions::new()
        .with_allow_ddl(false)
        .with_allow_dml(false)
        .with_allow_statements(false);
    read_only.verify_plan(plan).map_err(|refusal| {
        Status::permission_denied(format!(
            "the Strata Flight SQL endpoint is read-only: {}; tables change only through \
             pipeline runs",
            refusal
                .strip_backtrace()
                .trim_start_matches("Error during planning: ")
        ))
    })
}

/// Binds positional parameters, cast to the types the query gives them.
fn bind(plan: LogicalPlan, values: Vec<ScalarValue>) -> Result<LogicalPlan, Status> {
    let fields = plan.get_parameter_fields().map_err(status)?;
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
        .map_err(status)
}

/// Numbers `?` placeholders `$1, $2, …` in order, as DataFusion binds them.
fn positional_placeholders(sql: &str) -> Result<String, Status> {
    let tokens = Tokenizer::new(&GenericDialect {}, sql)
        .tokenize()
        .map_err(|error| Status::invalid_argument(error.to_string()))?;
    let mut placeholders = 0;
    Ok(tokens
        .into_iter()
        .map(|token| match token {
            Token::Placeholder(mark) if mark == "?" => {
                placeholders += 1;
                Token::Placeholder(format!("${placeholders}")).to_string()
            }
            other => other.to_string(),
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use datafusion::arrow::array::{Int64Array, RecordBatch};
    use datafusion::arrow::datatypes::{DataType, Field, Schema};
    use strata_language::TableName;
    use strata_storage::delta_publish;
    use tonic::Code;

    use super::*;

    fn reader() -> Viewer {
        Viewer {
            user: "ana".into(),
            role: None,
        }
    }

    fn admin() -> Viewer {
        Viewer {
            user: "root".into(),
            role: Some(ADMIN_ROLE.into()),
        }
    }

    /// A warehouse with one published table, `enriched.scores`.
    async fn warehouse(name: &str) -> Warehouse {
        let root =
            std::env::temp_dir().join(format!("strata-planner-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        let warehouse = Warehouse::local(&root);
        let scores = TableName {
            layer: Layer::Enriched,
            name: "scores".into(),
        };
        let schema = Arc::new(Schema::new(vec![Field::new("id", DataType::Int64, false)]));
        let batch =
            RecordBatch::try_new(schema, vec![Arc::new(Int64Array::from(vec![1, 2, 3]))]).unwrap();
        let table = delta_publish::open(&warehouse.table(&scores))
            .await
            .unwrap();
        let provenance = delta_publish::Provenance::default();
        delta_publish::write(table, vec![batch], true, &[], "enriched.scores", provenance)
            .await
            .unwrap();
        warehouse
    }

    /// An embedded server's planner, reading each table's newest commit.
    fn embedded_planner(warehouse: &Warehouse) -> Planner {
        Planner::new(
            warehouse.clone(),
            false,
            Engine::Embedded,
            Arc::default(),
            Duration::ZERO,
        )
    }

    #[tokio::test]
    async fn a_point_query_opens_its_table_without_listing_the_warehouse() {
        let warehouse = warehouse("point").await;
        let root = warehouse.local_dir().unwrap();
        // Injected failure: a raw table whose commit log cannot be read, which a
        // listing of the warehouse would trip over.
        let log = root.join("raw/broken/_strata_log");
        std::fs::create_dir_all(&log).unwrap();
        std::fs::write(log.join("00000000000000000000.json"), "{").unwrap();
        let planner = embedded_planner(&warehouse);
        let broken = planner
            .plan("SELECT * FROM raw.broken", None, &reader())
            .await
            .err()
            .expect("the broken table is listed, then fails to open");
        assert!(broken.message().contains("raw/broken"), "{broken:?}");

        let planned = planner
            .plan(
                "SELECT count(*) AS n FROM enriched.scores WHERE id > ?",
                Some(vec![ScalarValue::Int64(Some(1))]),
                &reader(),
            )
            .await
            .expect("the query plans without a listing");
        let rows = planned
            .ctx
            .execute_logical_plan(planned.plan)
            .await
            .unwrap()
            .collect()
            .await
            .unwrap();
        assert_eq!(rows[0].num_rows(), 1);

        // The audit trail: admins only, once it holds a query.
        let audit = "SELECT user, status FROM _strata.audit";
        let refused = planner.plan(audit, None, &reader()).await.err().unwrap();
        assert_eq!(refused.code(), tonic::Code::PermissionDenied, "{refused:?}");
        assert!(
            refused
                .message()
                .contains("readable by the admin role only")
        );
        let empty = planner.plan(audit, None, &admin()).await.err().unwrap();
        assert!(
            empty.message().contains("holds no queries yet"),
            "{empty:?}"
        );
        let record = strata_storage::audit::AuditRecord {
            started_us: 0,
            user: "ana".into(),
            role: None,
            client: "flight-sql".into(),
            sql: "SELECT 1".into(),
            tables: Vec::new(),
            columns: Vec::new(),
            rows: 1,
            status: "ok".into(),
            error: None,
            duration_ms: 1,
        };
        strata_storage::audit::append(&warehouse, &[record])
            .await
            .unwrap();
        let read = planner.plan(audit, None, &admin()).await.unwrap();
        let rows = read
            .ctx
            .execute_logical_plan(read.plan)
            .await
            .unwrap()
            .collect()
            .await
            .unwrap();
        assert_eq!(rows.iter().map(|batch| batch.num_rows()).sum::<usize>(), 1);
        std::fs::remove_dir_all(root).unwrap();
    }

    #[tokio::test]
    async fn writes_are_refused_by_their_plan_and_bad_sql_is_the_users() {
        let warehouse = warehouse("refusals").await;
        let planner = embedded_planner(&warehouse);
        for sql in [
            "SELECT 1 INTO enriched.copy",
            "SELECT id INTO enriched.copy FROM enriched.scores",
            "DROP TABLE enriched.scores",
            "CREATE TABLE enriched.x AS SELECT 1",
            "SET datafusion.execution.batch_size = 1",
        ] {
            let refused = planner
                .plan(sql, None, &reader())
                .await
                .err()
                .unwrap_or_else(|| panic!("{sql} ran"));
            assert_eq!(refused.code(), Code::PermissionDenied, "{sql}: {refused:?}");
            assert!(
                refused.message().contains("read-only"),
                "{sql}: {refused:?}"
            );
        }
        let unknown = planner
            .plan("SELECT nope FROM enriched.scores", None, &reader())
            .await
            .err()
            .unwrap();
        assert_eq!(unknown.code(), Code::InvalidArgument, "{unknown:?}");
        let missing = planner
            .plan("SELECT * FROM enriched.score", None, &reader())
            .await
            .err()
            .unwrap();
        assert_eq!(missing.code(), Code::NotFound, "{missing:?}");
        assert!(
            missing.message().contains("did you mean enriched.scores"),
            "{missing:?}"
        );
        std::fs::remove_dir_all(warehouse.local_dir().unwrap()).unwrap();
    }
}

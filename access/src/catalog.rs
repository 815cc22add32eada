//! The warehouse's published tables as a DataFusion catalog: one schema per layer,
//! each opening only the tables a query names, at the version current when the query
//! is planned or at the one it asks for (`VERSION AS OF`), and through its policy.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use datafusion::catalog::{CatalogProvider, SchemaProvider, TableProvider};
use datafusion::error::{DataFusionError, Result};
use datafusion::execution::{FunctionRegistry, SessionState, SessionStateBuilder};
use datafusion::logical_expr::ScalarUDF;
use datafusion::prelude::SessionContext;
use strata_language::{Layer, SetAside, TableName};
use strata_storage::catalog::{self, PublishedTable};
use strata_storage::delta_publish::{self, DeltaReader};
use strata_storage::{DeltaSnapshots, Warehouse};
use tokio::sync::OnceCell;

use crate::guard::Guarded;
use crate::masking::{HashPii, masking_functions};
use crate::policy::{TablePolicy, quoted};
use crate::viewer::Viewer;

/// The catalog clients see.
pub const CATALOG: &str = "strata";

/// The schemas clients see, one per layer that holds built tables.
pub const SCHEMAS: [Layer; 3] = [Layer::Raw, Layer::Enriched, Layer::Ranked];

/// How a table and a version travel through DataFusion's planner, which has no
/// notion of versions: `VERSION AS OF 3` on `jobs` becomes the table name `jobs@3`.
pub fn versioned_name(table: &str, version: u64) -> String {
    format!("{table}@{version}")
}

/// Splits a name made by [`versioned_name`]; a name without a version is the current one.
pub fn split_version(name: &str) -> (&str, Option<u64>) {
    match name.rsplit_once('@') {
        Some((table, version)) => match version.parse() {
            Ok(version) => (table, Some(version)),
            Err(_) => (name, None),
        },
        None => (name, None),
    }
}

/// What a query may see of a warehouse, and how it reads it.
#[derive(Debug, Clone)]
pub struct Visibility {
    pub warehouse: Warehouse,
    pub show_quarantine: bool,
    pub reader: DeltaReader,
    /// Where policies' queries are planned, made once: it depends on no reader. It
    /// holds `hash_pii` once a policy first hashes, keyed by the warehouse's key.
    policy_planner: Arc<OnceCell<PolicyPlanner>>,
    /// Delta snapshots kept between queries, for a server; none reloads each.
    snapshots: Option<Arc<DeltaSnapshots>>,
}

/// A session whose catalog is the warehouse unrestricted, with the masking functions.
#[derive(Clone)]
struct PolicyPlanner(SessionContext);

impl std::fmt::Debug for PolicyPlanner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PolicyPlanner")
    }
}

/// Whose reads a catalog serves.
#[derive(Debug, Clone)]
pub enum Reader {
    /// A user of a server or the console: each table through its policy.
    Viewer(Viewer),
    /// Stored values: a policy's own reads (the tables a row filter looks up), and the
    /// warehouse's owner on the command line.
    Unrestricted,
}

impl Visibility {
    pub fn new(warehouse: Warehouse, show_quarantine: bool, reader: DeltaReader) -> Self {
        Self {
            warehouse,
            show_quarantine,
            reader,
            policy_planner: Arc::default(),
            snapshots: None,
        }
    }

    /// Keeps each Delta table's snapshot between queries, looking at its log again once
    /// `refresh` has passed (every query when zero) instead of loading it whole each time.
    pub fn with_snapshots(mut self, refresh: Duration) -> Self {
        self.snapshots = Some(Arc::new(DeltaSnapshots::new(refresh)));
        self
    }

    /// The published table a client may see under this name, found without listing.
    pub async fn find(&self, layer: Layer, name: &str) -> Option<PublishedTable> {
        let name = TableName {
            layer,
            name: name.to_owned(),
        };
        if name.is_set_aside() && !self.show_quarantine {
            return None;
        }
        catalog::find(&self.warehouse, &name, self.snapshots.as_deref()).await
    }
}

/// A session whose default catalog is the warehouse as `reader` sees it, unqualified
/// names being `default_schema`'s: what the console and `strata query` read with.
pub fn reader_session(
    visibility: Visibility,
    reader: Reader,
    default_schema: &str,
) -> SessionContext {
    let config = datafusion::prelude::SessionConfig::new()
        .with_default_catalog_and_schema(CATALOG, default_schema)
        .with_create_default_catalog_and_schema(false);
    let ctx = SessionContext::new_with_config(config);
    let catalog = WarehouseCatalog::new(visibility, ctx.state(), reader, false);
    ctx.register_catalog(CATALOG, Arc::new(catalog));
    ctx
}

/// The schema of the audit trail, which admins see beside the layers.
pub const AUDIT_SCHEMA: &str = "_strata";
/// The audit trail's table in [`AUDIT_SCHEMA`].
pub const AUDIT_TABLE: &str = "audit";

/// Catalog `strata`: the layers of one warehouse, and for admins its audit trail.
#[derive(Debug)]
pub struct WarehouseCatalog {
    schemas: Vec<(String, Arc<dyn SchemaProvider>)>,
}

impl WarehouseCatalog {
    /// The catalog for `reader`'s queries planned on `session`; with `audit`,
    /// `_strata.audit` too.
    pub fn new(visibility: Visibility, session: SessionState, reader: Reader, audit: bool) -> Self {
        let mut schemas: Vec<(String, Arc<dyn SchemaProvider>)> = SCHEMAS
            .into_iter()
            .map(|layer| {
                let schema: Arc<dyn SchemaProvider> = Arc::new(LayerSchema {
                    layer,
                    visibility: visibility.clone(),
                    session: session.clone(),
                    reader: reader.clone(),
                });
                (layer.as_str().to_owned(), schema)
            })
            .collect();
        if audit {
            schemas.push((
                AUDIT_SCHEMA.to_owned(),
                Arc::new(AuditSchema {
                    visibility,
                    session,
                }),
            ));
        }
        Self { schemas }
    }
}

impl CatalogProvider for WarehouseCatalog {
    fn schema_names(&self) -> Vec<String> {
        self.schemas.iter().map(|(name, _)| name.clone()).collect()
    }

    fn schema(&self, name: &str) -> Option<Arc<dyn SchemaProvider>> {
        self.schemas
            .iter()
            .find(|(schema, _)| schema == name)
            .map(|(_, schema)| Arc::clone(schema))
    }
}

/// `_strata`: the audit trail, a Delta table of the warehouse.
#[derive(Debug)]
struct AuditSchema {
    visibility: Visibility,
    session: SessionState,
}

#[async_trait]
impl SchemaProvider for AuditSchema {
    fn table_names(&self) -> Vec<String> {
        vec![AUDIT_TABLE.to_owned()]
    }

    async fn table(&self, name: &str) -> Result<Option<Arc<dyn TableProvider>>> {
        let (table, version) = split_version(name);
        if table != AUDIT_TABLE {
            return Ok(None);
        }
        let dir = self.visibility.warehouse.audit_table();
        if !delta_publish::has_table(&dir).await {
            return Err(DataFusionError::Plan(format!(
                "{AUDIT_SCHEMA}.{AUDIT_TABLE} holds no queries yet"
            )));
        }
        delta_publish::provider(&dir, version, &self.session, self.visibility.reader)
            .await
            .map(Some)
    }

    fn table_exist(&self, name: &str) -> bool {
        split_version(name).0 == AUDIT_TABLE
    }
}

/// One layer's published tables.
#[derive(Debug)]
struct LayerSchema {
    layer: Layer,
    visibility: Visibility,
    /// The session the providers register their stores on.
    session: SessionState,
    reader: Reader,
}

impl LayerSchema {
    /// The policy a viewer reads `table` through: its own, or for rows it set aside
    /// (quarantine) the table's. Rejected landing lines and deleted keys cannot be
    /// masked column by column, so they are refused whole while their table has one.
    async fn policy(&self, table: &TableName) -> Result<Option<TablePolicy>> {
        let external = |error: crate::AccessError| DataFusionError::External(Box::new(error));
        let (governing, refused) = match table.set_aside_of() {
            Some((base, SetAside::Quarantined)) => (base, false),
            Some((base, SetAside::Rejected | SetAside::DeletedKeys)) => (base, true),
            None => (table.clone(), false),
        };
        let policy = TablePolicy::load(&self.visibility.warehouse, &governing)
            .await
            .map_err(external)?
            .filter(|policy| !policy.is_empty());
        match policy {
            Some(_) if refused => Err(DataFusionError::Plan(format!(
                "{table} is not readable while {governing} has masks or row filters: it holds \
                 what {governing} stored, which they cannot hide column by column"
            ))),
            policy => Ok(policy),
        }
    }

    /// A session to plan policies' queries on, with this session's settings and stores.
    fn policy_planner(&self) -> PolicyPlanner {
        let config = self
            .session
            .config()
            .clone()
            .with_default_catalog_and_schema(CATALOG, self.layer.as_str());
        let state = SessionStateBuilder::new()
            .with_config(config)
            .with_runtime_env(Arc::clone(self.session.runtime_env()))
            .with_default_features()
            .build();
        let ctx = SessionContext::new_with_state(state);
        strata_udfs::register_all(&ctx);
        for function in masking_functions(None) {
            ctx.register_udf(function.as_ref().clone());
        }
        // A visibility of its own: the planner must not hold the cell that holds it.
        let visibility = Visibility {
            policy_planner: Arc::default(),
            ..self.visibility.clone()
        };
        let reads = WarehouseCatalog::new(visibility, ctx.state(), Reader::Unrestricted, false);
        ctx.register_catalog(CATALOG, Arc::new(reads));
        PolicyPlanner(ctx)
    }

    /// `name` (a table, perhaps at a version) as `viewer` sees it through `policy`.
    async fn guarded(
        &self,
        table: &TableName,
        name: &str,
        policy: &TablePolicy,
        viewer: &Viewer,
    ) -> Result<Arc<dyn TableProvider>> {
        let external = |error: crate::AccessError| DataFusionError::External(Box::new(error));
        let planner = self
            .visibility
            .policy_planner
            .get_or_init(|| async { self.policy_planner() })
            .await;
        let ctx = &planner.0;
        if policy.hashes() && ctx.udf(HashPii::NAME).is_err() {
            let hash = HashPii::of_warehouse(&self.visibility.warehouse)
                .await
                .map_err(external)?;
            ctx.register_udf(ScalarUDF::new_from_impl(hash));
        }
        let from = format!(
            "{}.{}.{}",
            quoted(CATALOG),
            quoted(self.layer.as_str()),
            quoted(name)
        );
        let sql = policy
            .query(&table.to_string(), &from, viewer)
            .map_err(external)?;
        let plan = ctx.sql(&sql).await?.into_unoptimized_plan();
        let masked: HashSet<String> = policy.masked_columns().map(str::to_owned).collect();
        Ok(Arc::new(Guarded::new(table.to_string(), plan, masked)))
    }
}

#[async_trait]
impl SchemaProvider for LayerSchema {
    /// Lists the layer's directory: only metadata commands and error hints ask for this.
    fn table_names(&self) -> Vec<String> {
        match block_on(catalog::published_tables(&self.visibility.warehouse)) {
            Ok(tables) => tables
                .into_iter()
                .filter(|table| table.name.layer == self.layer)
                .filter(|table| self.visibility.show_quarantine || !table.is_set_aside())
                .map(|table| table.name.name)
                .collect(),
            Err(error) => {
                tracing::warn!("listing the {} tables: {error}", self.layer);
                Vec::new()
            }
        }
    }

    async fn table(&self, name: &str) -> Result<Option<Arc<dyn TableProvider>>> {
        let (table, version) = split_version(name);
        let Some(found) = self.visibility.find(self.layer, table).await else {
            return Ok(None);
        };
        if let Reader::Viewer(viewer) = &self.reader
            && let Some(policy) = self.policy(&found.name).await?
        {
            return self
                .guarded(&found.name, name, &policy, viewer)
                .await
                .map(Some);
        }
        catalog::open(
            &found,
            version,
            &self.session,
            self.visibility.reader,
            self.visibility.snapshots.as_deref(),
        )
        .await
        .map(Some)
    }

    fn table_exist(&self, name: &str) -> bool {
        block_on(self.visibility.find(self.layer, split_version(name).0)).is_some()
    }

    fn register_table(
        &self,
        name: String,
        _table: Arc<dyn TableProvider>,
    ) -> Result<Option<Arc<dyn TableProvider>>> {
        Err(DataFusionError::Plan(format!(
            "cannot create {}.{name}: tables change only through pipeline runs",
            self.layer
        )))
    }
}

/// Runs store requests for one of DataFusion's synchronous catalog calls. On a
/// multi-threaded runtime the worker hands its other tasks on and blocks in place, so
/// the runtime keeps driving the requests' I/O; elsewhere a helper thread waits for them.
fn block_on<T: Send>(work: impl Future<Output = T> + Send) -> T {
    match tokio::runtime::Handle::try_current() {
        Ok(handle) if handle.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
            tokio::task::block_in_place(|| handle.block_on(work))
        }
        Ok(handle) => std::thread::scope(|scope| {
            scope
                .spawn(move || handle.block_on(work))
                .join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
        }),
        Err(_) => futures::executor::block_on(work),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_travel_in_the_table_name() {
        assert_eq!(split_version(&versioned_name("jobs", 3)), ("jobs", Some(3)));
        assert_eq!(split_version("jobs"), ("jobs", None));
        assert_eq!(split_version("odd@name"), ("odd@name", None));
    }

    #[tokio::test]
    async fn names_cannot_leave_their_layer() {
        let visibility = Visibility::new(
            Warehouse::local(std::env::temp_dir()),
            true,
            DeltaReader::Native,
        );
        for name in ["../enriched/x", "a/b", ".hidden", ""] {
            assert!(visibility.find(Layer::Raw, name).await.is_none(), "{name}");
        }
    }
}

//! The warehouse's published tables as a DataFusion catalog: one schema per layer,
//! each opening only the tables a query names, at the version current when the query
//! is planned or at the one it asks for (`VERSION AS OF`).

use std::sync::Arc;

use async_trait::async_trait;
use datafusion::catalog::{CatalogProvider, SchemaProvider, TableProvider};
use datafusion::error::{DataFusionError, Result};
use datafusion::execution::SessionState;
use strata_language::{Layer, TableName};
use strata_storage::Warehouse;
use strata_storage::catalog::{self, PublishedTable};
use strata_storage::delta_publish::{self, DeltaReader};

/// The schemas clients see, one per layer that holds built tables.
pub(crate) const SCHEMAS: [Layer; 3] = [Layer::Raw, Layer::Enriched, Layer::Ranked];

/// How a table and a version travel through DataFusion's planner, which has no
/// notion of versions: `VERSION AS OF 3` on `jobs` becomes the table name `jobs@3`.
pub(crate) fn versioned_name(table: &str, version: u64) -> String {
    format!("{table}@{version}")
}

/// Splits a name made by [`versioned_name`]; a name without a version is the current one.
pub(crate) fn split_version(name: &str) -> (&str, Option<u64>) {
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
pub(crate) struct Visibility {
    pub warehouse: Warehouse,
    pub show_quarantine: bool,
    pub reader: DeltaReader,
}

impl Visibility {
    /// The published table a client may see under this name, found without listing.
    pub(crate) async fn find(&self, layer: Layer, name: &str) -> Option<PublishedTable> {
        let name = TableName {
            layer,
            name: name.to_owned(),
        };
        if name.is_set_aside() && !self.show_quarantine {
            return None;
        }
        catalog::find(&self.warehouse, &name).await
    }
}

/// The schema of the audit trail, which admins see beside the layers.
pub(crate) const AUDIT_SCHEMA: &str = "_strata";
/// The audit trail's table in [`AUDIT_SCHEMA`].
pub(crate) const AUDIT_TABLE: &str = "audit";

/// Catalog `strata`: the layers of one warehouse, and for admins its audit trail.
#[derive(Debug)]
pub(crate) struct WarehouseCatalog {
    schemas: Vec<(String, Arc<dyn SchemaProvider>)>,
}

impl WarehouseCatalog {
    /// The catalog for queries planned on `session`; with `audit`, `_strata.audit` too.
    pub(crate) fn new(visibility: Visibility, session: SessionState, audit: bool) -> Self {
        let mut schemas: Vec<(String, Arc<dyn SchemaProvider>)> = SCHEMAS
            .into_iter()
            .map(|layer| {
                let schema: Arc<dyn SchemaProvider> = Arc::new(LayerSchema {
                    layer,
                    visibility: visibility.clone(),
                    session: session.clone(),
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
        catalog::open(&found, version, &self.session, self.visibility.reader)
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
        let visibility = Visibility {
            warehouse: Warehouse::local(std::env::temp_dir()),
            show_quarantine: true,
            reader: DeltaReader::Native,
        };
        for name in ["../enriched/x", "a/b", ".hidden", ""] {
            assert!(visibility.find(Layer::Raw, name).await.is_none(), "{name}");
        }
    }
}

//! The audit trail: one row per query a person ran against the warehouse (who, with
//! which role, when, the SQL, the tables and columns it read, the rows it returned and
//! how it ended), appended to the Delta table `_strata/audit` by a background writer,
//! so recording never slows a query down.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use datafusion::arrow::array::{
    ArrayRef, Int64Array, ListBuilder, RecordBatch, StringArray, StringBuilder,
    TimestampMicrosecondArray, UInt64Array,
};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::delta_publish::{self, Provenance};
use crate::error::{Result, StorageError};
use crate::paths::Warehouse;

/// The name commits of the audit table carry.
pub const AUDIT_TABLE: &str = "_strata.audit";
/// How often queued records are committed: one commit per second at most.
const FLUSH_EVERY: Duration = Duration::from_secs(1);

/// One query, as it ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditRecord {
    /// When it started, in microseconds since the epoch (UTC).
    pub started_us: i64,
    pub user: String,
    pub role: Option<String>,
    /// Where it came from: `flight-sql` or `console`.
    pub client: String,
    pub sql: String,
    /// The tables it read, as `layer.table`, sorted.
    pub tables: Vec<String>,
    /// The columns it read, as `layer.table.column`, sorted.
    pub columns: Vec<String>,
    /// Rows sent back to the client.
    pub rows: u64,
    /// `ok`, `error`, `cancelled` or `disconnected`.
    pub status: String,
    /// The error the client was given, for a query that failed.
    pub error: Option<String>,
    pub duration_ms: u64,
}

impl AuditRecord {
    /// A query starting now; it is `disconnected` until it says how it ended.
    pub fn begin(user: &str, role: Option<String>, client: &str, sql: &str) -> Self {
        let started_us = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |since| since.as_micros() as i64);
        Self {
            started_us,
            user: user.to_owned(),
            role,
            client: client.to_owned(),
            sql: sql.to_owned(),
            tables: Vec::new(),
            columns: Vec::new(),
            rows: 0,
            status: "disconnected".to_owned(),
            error: None,
            duration_ms: 0,
        }
    }
}

/// The columns of the audit table.
pub fn schema() -> SchemaRef {
    let list = |name| {
        Field::new(
            name,
            DataType::List(Arc::new(Field::new("item", DataType::Utf8, true))),
            false,
        )
    };
    Arc::new(Schema::new(vec![
        Field::new(
            "started",
            DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
            false,
        ),
        Field::new("user", DataType::Utf8, false),
        Field::new("role", DataType::Utf8, true),
        Field::new("client", DataType::Utf8, false),
        Field::new("sql", DataType::Utf8, false),
        list("tables"),
        list("columns"),
        Field::new("rows", DataType::UInt64, false),
        Field::new("status", DataType::Utf8, false),
        Field::new("error", DataType::Utf8, true),
        Field::new("duration_ms", DataType::Int64, false),
    ]))
}

/// The records as one batch of the audit table.
pub fn batch(records: &[AuditRecord]) -> Result<RecordBatch> {
    let strings = |get: fn(&AuditRecord) -> Option<&str>| -> ArrayRef {
        Arc::new(records.iter().map(get).collect::<StringArray>())
    };
    let lists =
        |get: fn(&AuditRecord) -> &Vec<String>| -> ArrayRef {
            let mut builder = ListBuilder::new(StringBuilder::new())
                .with_field(Arc::new(Field::new("item", DataType::Utf8, true)));
            for record in records {
                for value in get(record) {
                    builder.values().append_value(value);
                }
                builder.append(true);
            }
            Arc::new(builder.finish())
        };
    let columns: Vec<ArrayRef> = vec![
        Arc::new(
            TimestampMicrosecondArray::from(
                records
                    .iter()
                    .map(|record| record.started_us)
                    .collect::<Vec<_>>(),
            )
            .with_timezone("UTC"),
        ),
        strings(|record| Some(&record.user)),
        strings(|record| record.role.as_deref()),
        strings(|record| Some(&record.client)),
        strings(|record| Some(&record.sql)),
        lists(|record| &record.tables),
        lists(|record| &record.columns),
        Arc::new(
            records
                .iter()
                .map(|record| record.rows)
                .collect::<UInt64Array>(),
        ),
        strings(|record| Some(&record.status)),
        strings(|record| record.error.as_deref()),
        Arc::new(
            records
                .iter()
                .map(|record| record.duration_ms as i64)
                .collect::<Int64Array>(),
        ),
    ];
    RecordBatch::try_new(schema(), columns).map_err(|error| StorageError::Store {
        location: AUDIT_TABLE.to_owned(),
        reason: error.to_string(),
    })
}

/// Appends records to the warehouse's audit table as one commit, creating it first.
pub async fn append(warehouse: &Warehouse, records: &[AuditRecord]) -> Result<()> {
    let dir = warehouse.audit_table();
    let table = delta_publish::open(&dir).await?;
    delta_publish::write(
        table,
        vec![batch(records)?],
        false,
        &[],
        AUDIT_TABLE,
        Provenance::default(),
    )
    .await?;
    Ok(())
}

/// Records queries as they end, and commits them in the background.
#[derive(Debug, Clone)]
pub struct AuditLog {
    queue: mpsc::UnboundedSender<AuditRecord>,
}

impl AuditLog {
    /// Starts the writer of `warehouse`'s audit table on the current runtime. Records
    /// a commit fails for are kept and committed with the next ones. The writer ends
    /// when every handle is dropped, after committing what is queued: await it before
    /// the process exits.
    pub fn start(warehouse: Warehouse) -> (Self, JoinHandle<()>) {
        let (queue, mut queued) = mpsc::unbounded_channel::<AuditRecord>();
        let writer = tokio::spawn(async move {
            let mut pending = Vec::new();
            loop {
                let open = tokio::select! {
                    next = queued.recv() => match next {
                        Some(record) => {
                            pending.push(record);
                            true
                        }
                        None => false,
                    },
                    () = tokio::time::sleep(FLUSH_EVERY), if !pending.is_empty() => true,
                };
                while let Ok(record) = queued.try_recv() {
                    pending.push(record);
                }
                if !pending.is_empty() {
                    match append(&warehouse, &pending).await {
                        Ok(()) => pending.clear(),
                        Err(error) => tracing::warn!(
                            records = pending.len(),
                            "could not append to the audit trail, will try again: {error}"
                        ),
                    }
                }
                if !open {
                    break;
                }
                tokio::time::sleep(FLUSH_EVERY).await;
            }
        });
        (Self { queue }, writer)
    }

    /// Queues one ended query.
    pub fn record(&self, record: AuditRecord) {
        if self.queue.send(record).is_err() {
            tracing::warn!("the audit trail's writer has stopped; a query was not recorded");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(user: &str, status: &str) -> AuditRecord {
        AuditRecord {
            started_us: 1_796_000_000_000_000,
            user: user.to_owned(),
            role: Some("data_scientist".to_owned()),
            client: "flight-sql".to_owned(),
            sql: "SELECT name FROM enriched.candidates".to_owned(),
            tables: vec!["enriched.candidates".to_owned()],
            columns: vec!["enriched.candidates.name".to_owned()],
            rows: 3,
            status: status.to_owned(),
            error: None,
            duration_ms: 12,
        }
    }

    #[tokio::test]
    async fn records_append_to_a_delta_table_of_the_warehouse() {
        let root = std::env::temp_dir().join(format!("strata-audit-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        let warehouse = Warehouse::open(root.to_str().unwrap()).unwrap();
        append(&warehouse, &[record("ana", "ok")]).await.unwrap();
        append(&warehouse, &[record("bo", "error"), record("ana", "ok")])
            .await
            .unwrap();
        let table = delta_publish::load(&warehouse.audit_table(), None)
            .await
            .unwrap();
        assert_eq!(table.version(), Some(1));
        assert!(root.join("_strata/audit/_delta_log").is_dir());
        let _ = std::fs::remove_dir_all(&root);
    }
}

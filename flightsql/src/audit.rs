//! Each query a client runs, recorded in the warehouse's audit trail as it ends: who
//! ran it and with which role, the tables and columns its plan reads, the rows sent,
//! and whether it succeeded, failed, was cancelled or lost its client.

use std::collections::BTreeSet;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Instant;

use datafusion::arrow::array::RecordBatch;
use datafusion::common::tree_node::{TreeNode, TreeNodeRecursion};
use datafusion::logical_expr::LogicalPlan;
use futures::stream::BoxStream;
use futures::{Stream, StreamExt};
use strata_storage::audit::{AuditLog, AuditRecord};
use tonic::{Code, Status};

use strata_access::Viewer;
use strata_access::catalog::split_version;

use crate::query::DEFAULT_SCHEMA;

/// The role that may read the audit trail.
pub(crate) const ADMIN_ROLE: &str = "admin";

/// Whether a caller with `role` may read the audit trail.
pub(crate) fn is_admin(role: Option<&str>) -> bool {
    role == Some(ADMIN_ROLE)
}

/// One query under way; recorded when dropped, as it ended.
pub(crate) struct QueryAudit {
    log: AuditLog,
    record: AuditRecord,
    started: Instant,
    ended: bool,
}

impl QueryAudit {
    pub(crate) fn start(log: &AuditLog, viewer: &Viewer, sql: &str) -> Self {
        Self {
            log: log.clone(),
            record: AuditRecord::begin(&viewer.user, viewer.role.clone(), "flight-sql", sql),
            started: Instant::now(),
            ended: false,
        }
    }

    /// Notes the tables and columns the optimized plan scans.
    pub(crate) fn reads(&mut self, plan: &LogicalPlan) {
        let mut tables = BTreeSet::new();
        let mut columns = BTreeSet::new();
        let _ = plan.apply(|node| {
            if let LogicalPlan::TableScan(scan) = node {
                let schema = scan.table_name.schema().unwrap_or(DEFAULT_SCHEMA);
                let table = format!("{schema}.{}", split_version(scan.table_name.table()).0);
                for field in scan.projected_schema.fields() {
                    columns.insert(format!("{table}.{}", field.name()));
                }
                tables.insert(table);
            }
            Ok(TreeNodeRecursion::Continue)
        });
        self.record.tables = tables.into_iter().collect();
        self.record.columns = columns.into_iter().collect();
    }

    /// Ends the query with the error the client is given, and hands it back.
    pub(crate) fn failed(mut self, status: Status) -> Status {
        self.end(&status);
        status
    }

    fn end(&mut self, status: &Status) {
        self.ended = true;
        self.record.status = match status.code() {
            Code::Cancelled => "cancelled",
            _ => "error",
        }
        .to_owned();
        self.record.error = Some(status.message().to_owned());
    }

    /// The result stream, counted and recorded as it ends.
    pub(crate) fn watch(self, batches: BoxStream<'static, Result<RecordBatch, Status>>) -> Audited {
        Audited {
            batches,
            audit: self,
        }
    }
}

impl Drop for QueryAudit {
    fn drop(&mut self) {
        self.record.duration_ms = self.started.elapsed().as_millis() as u64;
        self.log.record(self.record.clone());
    }
}

/// A result stream whose rows and end are recorded.
pub(crate) struct Audited {
    batches: BoxStream<'static, Result<RecordBatch, Status>>,
    audit: QueryAudit,
}

impl Stream for Audited {
    type Item = Result<RecordBatch, Status>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let polled = self.batches.poll_next_unpin(cx);
        let audit = &mut self.audit;
        match &polled {
            Poll::Ready(Some(Ok(batch))) => audit.record.rows += batch.num_rows() as u64,
            Poll::Ready(Some(Err(status))) if !audit.ended => audit.end(status),
            Poll::Ready(None) if !audit.ended => {
                audit.ended = true;
                audit.record.status = "ok".to_owned();
            }
            _ => {}
        }
        polled
    }
}

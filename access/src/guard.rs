//! A table read through its policies. The policy's query runs below a boundary that
//! nothing of the reader's query crosses: no predicate except the few that can neither
//! fail nor tell a masked value (a leakproof comparison of an unmasked column with a
//! constant, which narrows the scan), no limit, no statistic, no ordering trick, and no
//! error message from below, so what a reader learns is what the policy shows them.

use std::collections::HashSet;
use std::fmt;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use async_trait::async_trait;
use datafusion::arrow::datatypes::{DataType, SchemaRef};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::catalog::{Session, TableProvider};
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::common::{Column, DFSchema};
use datafusion::datasource::source_as_provider;
use datafusion::error::{DataFusionError, Result};
use datafusion::execution::{RecordBatchStream, SendableRecordBatchStream, TaskContext};
use datafusion::logical_expr::expr::{Cast, InList};
use datafusion::logical_expr::utils::conjunction;
use datafusion::logical_expr::{
    Between, BinaryExpr, Expr, ExprSchemable, LogicalPlan, LogicalPlanBuilder, Operator,
    TableProviderFilterPushDown, TableType,
};
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_plan::{DisplayAs, DisplayFormatType, ExecutionPlan, PlanProperties};
use futures::{Stream, StreamExt};

/// A table as one reader may see it: the policy's query, planned for that reader.
#[derive(Debug)]
pub(crate) struct Guarded {
    /// The table's name, for the boundary's errors.
    table: String,
    plan: LogicalPlan,
    schema: SchemaRef,
    /// Columns whose stored values the reader never sees.
    masked: HashSet<String>,
}

impl Guarded {
    pub(crate) fn new(table: String, plan: LogicalPlan, masked: HashSet<String>) -> Self {
        let schema = Arc::clone(plan.schema().inner());
        Self {
            table,
            plan,
            schema,
            masked,
        }
    }

    /// Whether a predicate of the reader's query may run below the boundary: it reads
    /// only unmasked columns, and no value can make it fail (no arithmetic, no
    /// function, no cast that can overflow), so it cannot tell anything about the rows
    /// the policy hides by failing on them. Such predicates are what point queries are
    /// made of, and below the boundary they prune files and row groups.
    fn leakproof(&self, expr: &Expr) -> bool {
        match expr {
            Expr::Column(column) => !self.masked.contains(&column.name),
            Expr::Literal(..) => true,
            Expr::BinaryExpr(BinaryExpr { left, op, right }) => {
                matches!(
                    op,
                    Operator::Eq
                        | Operator::NotEq
                        | Operator::Lt
                        | Operator::LtEq
                        | Operator::Gt
                        | Operator::GtEq
                        | Operator::And
                        | Operator::Or
                        | Operator::IsDistinctFrom
                        | Operator::IsNotDistinctFrom
                ) && self.leakproof(left)
                    && self.leakproof(right)
            }
            Expr::Not(inner)
            | Expr::IsNull(inner)
            | Expr::IsNotNull(inner)
            | Expr::IsTrue(inner)
            | Expr::IsFalse(inner)
            | Expr::IsNotTrue(inner)
            | Expr::IsNotFalse(inner)
            | Expr::IsUnknown(inner)
            | Expr::IsNotUnknown(inner) => self.leakproof(inner),
            Expr::Between(Between {
                expr, low, high, ..
            }) => self.leakproof(expr) && self.leakproof(low) && self.leakproof(high),
            Expr::InList(InList { expr, list, .. }) => {
                self.leakproof(expr) && list.iter().all(|item| self.leakproof(item))
            }
            Expr::Cast(Cast { expr, field }) => {
                self.leakproof(expr) && self.widens(expr, field.data_type())
            }
            _ => false,
        }
    }

    /// Whether casting `expr` to `to` succeeds for every value (type coercion adds
    /// such casts to comparisons of an INT column with a BIGINT constant).
    fn widens(&self, expr: &Expr, to: &DataType) -> bool {
        let Ok(schema) = DFSchema::try_from(Arc::clone(&self.schema)) else {
            return false;
        };
        let Ok(from) = expr.get_type(&schema) else {
            return false;
        };
        let text =
            |t: &DataType| matches!(t, DataType::Utf8 | DataType::Utf8View | DataType::LargeUtf8);
        (from.is_integer() && matches!(to, DataType::Int64 | DataType::Float64))
            || (from.is_floating() && *to == DataType::Float64)
            || (text(&from) && text(to))
            || (from.is_integer() && text(to))
            || (from == DataType::Date32
                && matches!(to, DataType::Date64 | DataType::Timestamp(..)))
            || from == *to
    }
}

#[async_trait]
impl TableProvider for Guarded {
    fn schema(&self) -> SchemaRef {
        Arc::clone(&self.schema)
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    fn supports_filters_pushdown(
        &self,
        filters: &[&Expr],
    ) -> Result<Vec<TableProviderFilterPushDown>> {
        Ok(filters
            .iter()
            .map(|filter| {
                if self.leakproof(filter) {
                    TableProviderFilterPushDown::Inexact
                } else {
                    TableProviderFilterPushDown::Unsupported
                }
            })
            .collect())
    }

    /// Plans the policy's query with the reader's leakproof predicates on top (they
    /// sink to the stored table's scan), below a [`PolicyBoundaryExec`]. The limit is
    /// not pushed: it stays above, applied to what the policy lets through.
    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        _limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let mut builder = LogicalPlanBuilder::from(self.plan.clone());
        let pushed = filters
            .iter()
            .filter(|filter| self.leakproof(filter))
            .map(|filter| unqualified(filter.clone()))
            .collect::<Result<Vec<_>>>()?;
        if let Some(predicate) = conjunction(pushed) {
            builder = builder.filter(predicate)?;
        }
        if let Some(projection) = projection {
            let schema = self.plan.schema();
            let columns = projection
                .iter()
                .map(|&index| Expr::Column(Column::from(schema.qualified_field(index))));
            builder = builder.project(columns.collect::<Vec<_>>())?;
        }
        let plan = builder.build()?;
        let physical = state.create_physical_plan(&plan).await?;
        Ok(Arc::new(PolicyBoundaryExec::new(
            physical,
            self.table.clone(),
        )))
    }
}

/// Whether a plan reads a table through its policy; EXPLAIN of one would show what the
/// policy hides (the stored table's file names carry partition values).
pub fn reads_guarded(plan: &LogicalPlan) -> bool {
    let mut found = false;
    let visited = plan.apply_with_subqueries(|node| {
        found = matches!(node, LogicalPlan::TableScan(scan)
        if source_as_provider(&scan.source).is_ok_and(|provider| {
            let provider: &dyn std::any::Any = provider.as_ref();
            provider.is::<Guarded>()
        }));
        Ok(if found {
            TreeNodeRecursion::Stop
        } else {
            TreeNodeRecursion::Continue
        })
    });
    found || visited.is_err()
}

/// The reader's predicate over the policy query's columns, which share their names.
fn unqualified(expr: Expr) -> Result<Expr> {
    use datafusion::common::tree_node::{Transformed, TreeNode};
    expr.transform(|node| match node {
        Expr::Column(column) => Ok(Transformed::yes(Expr::Column(Column::from_name(
            column.name,
        )))),
        other => Ok(Transformed::no(other)),
    })
    .map(|transformed| transformed.data)
}

/// Where a table's policy ends and the reader's query begins. Optimizers push filters,
/// limits, projections and sorts through most nodes; this one takes none, reports no
/// statistics, and turns every error from below into one that names only the table.
#[derive(Debug)]
pub struct PolicyBoundaryExec {
    input: Arc<dyn ExecutionPlan>,
    table: String,
}

impl PolicyBoundaryExec {
    pub fn new(input: Arc<dyn ExecutionPlan>, table: String) -> Self {
        Self { input, table }
    }

    /// The table whose policy this bounds.
    pub fn table(&self) -> &str {
        &self.table
    }
}

impl DisplayAs for PolicyBoundaryExec {
    fn fmt_as(&self, _format: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "PolicyBoundaryExec: table={}", self.table)
    }
}

impl ExecutionPlan for PolicyBoundaryExec {
    fn name(&self) -> &str {
        "PolicyBoundaryExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        self.input.properties()
    }

    fn maintains_input_order(&self) -> Vec<bool> {
        vec![true]
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![&self.input]
    }

    fn apply_expressions(
        &self,
        _f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> Result<TreeNodeRecursion>,
    ) -> Result<TreeNodeRecursion> {
        Ok(TreeNodeRecursion::Continue)
    }

    fn with_new_children(
        self: Arc<Self>,
        mut children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let input = children
            .pop()
            .ok_or_else(|| DataFusionError::Internal("a policy boundary has one child".into()))?;
        Ok(Arc::new(Self::new(input, self.table.clone())))
    }

    fn execute(
        &self,
        partition: usize,
        context: Arc<TaskContext>,
    ) -> Result<SendableRecordBatchStream> {
        Ok(Box::pin(Bounded {
            inner: self.input.execute(partition, context)?,
            table: self.table.clone(),
        }))
    }
}

/// The policy's rows, with errors that say nothing of the values that caused them.
struct Bounded {
    inner: SendableRecordBatchStream,
    table: String,
}

impl Stream for Bounded {
    type Item = Result<RecordBatch>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.inner.poll_next_unpin(cx).map(|item| {
            item.map(|batch| {
                batch.map_err(|error| match error {
                    // Memory limits name no value, and the reader's limits need them.
                    DataFusionError::ResourcesExhausted(_) => error,
                    other => {
                        tracing::warn!(table = self.table, error = %other, "reading a table under its policy failed");
                        DataFusionError::Execution(format!(
                            "reading {} under its policy failed; the server's log says why",
                            self.table
                        ))
                    }
                })
            })
        })
    }
}

impl RecordBatchStream for Bounded {
    fn schema(&self) -> SchemaRef {
        self.inner.schema()
    }
}

#[cfg(test)]
mod tests {
    use datafusion::arrow::datatypes::{Field, Schema};
    use datafusion::datasource::{MemTable, provider_as_source};
    use datafusion::logical_expr::{cast, col, lit};
    use datafusion::prelude::SessionContext;

    use super::*;

    fn guarded() -> Guarded {
        let schema = Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int64, false),
            Field::new("email", DataType::Utf8, true),
            Field::new("city", DataType::Utf8, true),
        ]));
        let table = MemTable::try_new(schema, vec![vec![]]).unwrap();
        let plan = LogicalPlanBuilder::scan("t", provider_as_source(Arc::new(table)), None)
            .unwrap()
            .build()
            .unwrap();
        Guarded::new(
            "enriched.t".into(),
            plan,
            HashSet::from(["email".to_owned()]),
        )
    }

    #[test]
    fn only_comparisons_of_unmasked_columns_with_constants_cross_the_boundary() {
        let guarded = guarded();
        for (expr, crosses) in [
            (col("id").eq(lit(5_i64)), true),
            (col("id").in_list(vec![lit(1_i64), lit(2_i64)], false), true),
            (
                col("city")
                    .is_null()
                    .or(col("id").between(lit(1_i64), lit(3_i64))),
                true,
            ),
            (cast(col("id"), DataType::Float64).gt(lit(1.5)), true),
            (col("email").eq(lit("a@b.c")), false),
            (col("email").is_null(), false),
            ((col("id") / lit(0_i64)).gt(lit(1_i64)), false),
            (cast(col("city"), DataType::Int64).eq(lit(1_i64)), false),
            (col("city").like(lit("M%")), false),
        ] {
            assert_eq!(guarded.leakproof(&expr), crosses, "{expr}");
        }
    }

    #[tokio::test]
    async fn a_scan_ends_at_a_boundary_that_reports_no_statistics() {
        let guarded = guarded();
        let ctx = SessionContext::new();
        let plan = guarded
            .scan(
                &ctx.state(),
                Some(&vec![0]),
                &[col("id").eq(lit(1_i64))],
                Some(1),
            )
            .await
            .unwrap();
        let boundary = plan.downcast_ref::<PolicyBoundaryExec>().unwrap();
        assert_eq!(boundary.table(), "enriched.t");
        assert_eq!(plan.schema().fields().len(), 1);
        let statistics = datafusion::physical_plan::statistics::StatisticsContext::new()
            .compute(
                plan.as_ref(),
                &datafusion::physical_plan::statistics::StatisticsArgs::new(),
            )
            .unwrap();
        assert!(!statistics.num_rows.is_exact().unwrap_or(false));
        assert!(reads_guarded(
            &LogicalPlanBuilder::scan("g", provider_as_source(Arc::new(guarded)), None)
                .unwrap()
                .build()
                .unwrap()
        ));
    }
}

//! Making an embedded query's work stoppable: a deadline, a cancellation or a client
//! that went away must stop it within moments, even inside an operator that loops for
//! minutes without returning (a nested-loop join whose filter never matches emits
//! nothing, so nothing above it ever gets a turn to notice), and even while every core
//! is busy with it.

use std::any::Any;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use datafusion::arrow::datatypes::{FieldRef, Schema, SchemaRef};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::common::tree_node::{Transformed, TreeNode, TreeNodeRecursion};
use datafusion::error::{DataFusionError, Result};
use datafusion::execution::{RecordBatchStream, SendableRecordBatchStream, TaskContext};
use datafusion::logical_expr::ColumnarValue;
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_plan::coop::CooperativeExec;
use datafusion::physical_plan::execute_stream;
use datafusion::physical_plan::joins::NestedLoopJoinExec;
use datafusion::physical_plan::joins::utils::JoinFilter;
use datafusion::physical_plan::stream::RecordBatchReceiverStreamBuilder;
use datafusion::physical_plan::{DisplayAs, DisplayFormatType, ExecutionPlan, PlanProperties};
use futures::{Stream, StreamExt};
use tokio::runtime::Runtime;
use tokio_util::sync::CancellationToken;

/// The message of the error a stopped query's operators end with.
const STOPPED: &str = "the query was stopped";

/// The plan, stoppable by `stop`:
///
/// - every join is wrapped so that its work yields to the runtime between batches (the
///   scans are the only places DataFusion yields by itself), so a dropped stream's
///   tasks end at their next turn;
/// - every node's output fails once `stop` is cancelled, so an operator that takes
///   many batches in one turn (an aggregate over a costly function) stops at the next;
/// - every nested-loop join's filter fails once `stop` is cancelled, which ends the
///   join's loop over its build side at the next row it tries.
pub(crate) fn interruptible(
    plan: Arc<dyn ExecutionPlan>,
    stop: &CancellationToken,
) -> Result<Arc<dyn ExecutionPlan>> {
    plan.transform_up(|node| {
        let node = match node.downcast_ref::<NestedLoopJoinExec>() {
            Some(join) => stoppable_join(join, stop)?.unwrap_or(node),
            None => node,
        };
        let node = if node.children().len() < 2 {
            node
        } else {
            Arc::new(CooperativeExec::new(node))
        };
        Ok(Transformed::yes(Arc::new(StoppableExec {
            input: node,
            stop: stop.clone(),
        }) as Arc<dyn ExecutionPlan>))
    })
    .map(|transformed| transformed.data)
}

/// A node whose output ends with an error once its query is stopped.
#[derive(Debug)]
struct StoppableExec {
    input: Arc<dyn ExecutionPlan>,
    stop: CancellationToken,
}

impl DisplayAs for StoppableExec {
    fn fmt_as(&self, _format: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "StoppableExec")
    }
}

impl ExecutionPlan for StoppableExec {
    fn name(&self) -> &str {
        "StoppableExec"
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
            .ok_or_else(|| DataFusionError::Internal("a stoppable node has one child".into()))?;
        Ok(Arc::new(StoppableExec {
            input,
            stop: self.stop.clone(),
        }))
    }

    fn execute(
        &self,
        partition: usize,
        context: Arc<TaskContext>,
    ) -> Result<SendableRecordBatchStream> {
        Ok(Box::pin(StoppableStream {
            inner: self.input.execute(partition, context)?,
            stop: self.stop.clone(),
            stopped: false,
        }))
    }
}

/// A node's output, ended by the query's stop.
struct StoppableStream {
    inner: SendableRecordBatchStream,
    stop: CancellationToken,
    stopped: bool,
}

impl Stream for StoppableStream {
    type Item = Result<RecordBatch>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.stopped {
            return Poll::Ready(None);
        }
        if self.stop.is_cancelled() {
            self.stopped = true;
            return Poll::Ready(Some(Err(DataFusionError::Execution(STOPPED.to_owned()))));
        }
        self.inner.poll_next_unpin(cx)
    }
}

impl RecordBatchStream for StoppableStream {
    fn schema(&self) -> SchemaRef {
        self.inner.schema()
    }
}

/// The join with its filter checking `stop`; `None` for a join without a filter
/// (a cross join emits a batch per build row, and yields with it).
fn stoppable_join(
    join: &NestedLoopJoinExec,
    stop: &CancellationToken,
) -> Result<Option<Arc<dyn ExecutionPlan>>> {
    let Some(filter) = join.filter() else {
        return Ok(None);
    };
    let checked = JoinFilter::new(
        Arc::new(Stoppable {
            inner: Arc::clone(filter.expression()),
            stop: stop.clone(),
        }),
        filter.column_indices().to_vec(),
        Arc::clone(filter.schema()),
    );
    let projection = join.projection().as_ref().map(|columns| columns.to_vec());
    Ok(Some(Arc::new(NestedLoopJoinExec::try_new(
        Arc::clone(join.left()),
        Arc::clone(join.right()),
        Some(checked),
        join.join_type(),
        projection,
    )?)))
}

/// The threads queries run on, apart from those that serve the server's connections:
/// queries that keep every core busy must not keep the server from reading that a
/// client went away (its socket closed), or nothing would ever tell them to stop.
pub(crate) struct QueryRuntime(Option<Runtime>);

impl QueryRuntime {
    pub(crate) fn new() -> std::io::Result<Self> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .thread_name("strata-query")
            .enable_all()
            .build()?;
        Ok(Self(Some(runtime)))
    }

    /// Runs `plan` on the query threads, its batches read from the stream returned;
    /// dropping the stream stops the plan's tasks.
    pub(crate) fn execute(
        &self,
        plan: Arc<dyn ExecutionPlan>,
        context: Arc<TaskContext>,
    ) -> Result<SendableRecordBatchStream> {
        let runtime = self
            .0
            .as_ref()
            .ok_or_else(|| DataFusionError::Internal("the query runtime is stopped".into()))?;
        let mut builder = RecordBatchReceiverStreamBuilder::new(plan.schema(), 2);
        let sender = builder.tx();
        builder.spawn_on(
            async move {
                let mut batches = execute_stream(plan, context)?;
                while let Some(batch) = batches.next().await {
                    if sender.send(batch).await.is_err() {
                        break;
                    }
                }
                Ok(())
            },
            runtime.handle(),
        );
        Ok(builder.build())
    }
}

impl Drop for QueryRuntime {
    fn drop(&mut self) {
        // Dropped in an async context, a runtime must not wait for its threads.
        if let Some(runtime) = self.0.take() {
            runtime.shutdown_background();
        }
    }
}

/// An expression that fails once its query is stopped, and is `inner` until then.
#[derive(Debug)]
struct Stoppable {
    inner: Arc<dyn PhysicalExpr>,
    stop: CancellationToken,
}

impl PhysicalExpr for Stoppable {
    fn return_field(&self, input_schema: &Schema) -> Result<FieldRef> {
        self.inner.return_field(input_schema)
    }

    fn evaluate(&self, batch: &RecordBatch) -> Result<ColumnarValue> {
        if self.stop.is_cancelled() {
            return Err(DataFusionError::Execution(STOPPED.to_owned()));
        }
        self.inner.evaluate(batch)
    }

    fn children(&self) -> Vec<&Arc<dyn PhysicalExpr>> {
        vec![&self.inner]
    }

    fn with_new_children(
        self: Arc<Self>,
        mut children: Vec<Arc<dyn PhysicalExpr>>,
    ) -> Result<Arc<dyn PhysicalExpr>> {
        let inner = children.pop().ok_or_else(|| {
            DataFusionError::Internal("a stoppable expression has one child".into())
        })?;
        Ok(Arc::new(Stoppable {
            inner,
            stop: self.stop.clone(),
        }))
    }

    fn fmt_sql(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.inner.fmt_sql(f)
    }
}

impl fmt::Display for Stoppable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.inner)
    }
}

impl PartialEq for Stoppable {
    fn eq(&self, other: &Self) -> bool {
        self.inner.as_ref() == other.inner.as_ref()
    }
}

impl Eq for Stoppable {}

impl Hash for Stoppable {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.inner.hash(state);
        self.type_id().hash(state);
    }
}

#[cfg(test)]
mod tests {
    use datafusion::prelude::SessionContext;

    use super::*;

    #[tokio::test]
    async fn a_filtered_nested_loop_join_fails_once_stopped() {
        let ctx = SessionContext::new();
        let stop = CancellationToken::new();
        // A plan runs once (its repartitions hand their channels out): one per run.
        let planned = || async {
            let plan = ctx
                .sql(
                    "SELECT count(*) FROM generate_series(1, 3000) a(x), generate_series(1, 3000) b(y) \
                     WHERE a.x + b.y > 1000000",
                )
                .await
                .unwrap()
                .create_physical_plan()
                .await
                .unwrap();
            interruptible(plan, &stop).unwrap()
        };
        let plan = planned().await;
        let mut joins = 0;
        plan.apply(|node| {
            if let Some(join) = node.downcast_ref::<NestedLoopJoinExec>() {
                joins += 1;
                let filter = join.filter().unwrap().expression();
                let any: &dyn Any = filter.as_ref();
                assert!(any.downcast_ref::<Stoppable>().is_some(), "{filter}");
            }
            Ok(TreeNodeRecursion::Continue)
        })
        .unwrap();
        assert_eq!(joins, 1, "the plan has one nested-loop join");
        let answer = datafusion::physical_plan::collect(plan, ctx.task_ctx())
            .await
            .unwrap();
        assert_eq!(answer[0].num_rows(), 1, "not stopped: it runs to its end");
        stop.cancel();
        let stopped = datafusion::physical_plan::collect(planned().await, ctx.task_ctx())
            .await
            .unwrap_err();
        assert!(stopped.to_string().contains(STOPPED), "{stopped}");
    }
}

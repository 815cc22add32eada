//! The errors Strata's retries and Flight SQL's status codes tell apart, provoked on a
//! real scheduler and executor: Ballista states several of them only as text, and
//! `strata_engine::task_error` reads that text, so a Ballista upgrade that rewords one
//! fails here instead of silently turning a retry off.

use std::sync::Arc;
use std::time::Duration;

use datafusion::physical_plan::ExecutionPlan;
use datafusion::prelude::SessionContext;
use futures::TryStreamExt;
use strata_engine::Engine;
use strata_engine::scheduler_client::Credentials;
use strata_engine::task_error::{self, ClusterFault};

use crate::cluster::Cluster;

async fn plan(ctx: &SessionContext, sql: &str) -> Arc<dyn ExecutionPlan> {
    ctx.sql(sql)
        .await
        .unwrap()
        .create_physical_plan()
        .await
        .unwrap()
}

#[test]
fn a_result_lost_with_its_executor_reads_as_lost_and_unavailable() {
    let mut cluster = Cluster::start("texts-lost", 1);
    let engine = Engine::cluster(&cluster.address, &Credentials::default());
    let ctx = engine.session();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    // The stream is handed over once the job has succeeded; its answer is on the executor.
    let stream = runtime.block_on(async {
        let plan = plan(
            &ctx,
            "SELECT x FROM generate_series(1, 100000) t(x) WHERE x % 3 = 0",
        )
        .await;
        engine.stream(plan, &ctx, "test:lost").await.unwrap()
    });
    cluster.kill_executor(0);
    let error = runtime
        .block_on(stream.try_collect::<Vec<_>>())
        .expect_err("the answer went with its executor");
    assert!(task_error::is_lost_result(&error), "{error:?}");
    assert_eq!(
        task_error::cluster_fault(&error),
        Some(ClusterFault::Unavailable),
        "{error:?}"
    );
}

#[test]
fn a_job_cancelled_after_its_executor_was_lost_reads_as_cancelled_and_unavailable() {
    let mut cluster = Cluster::start("texts-cancelled", 1);
    let engine = Engine::cluster(&cluster.address, &Credentials::default());
    let ctx = engine.session();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let running = runtime.spawn(async move {
        let plan = plan(
            &ctx,
            "SELECT count(*) FROM generate_series(1, 100000000000) t(x) WHERE x % 7 = 3",
        )
        .await;
        engine
            .stream(plan, &ctx, "test:cancelled")
            .await
            .map(|_| ())
    });
    std::thread::sleep(Duration::from_secs(3));
    assert!(
        !running.is_finished(),
        "the job ended before its executor was lost"
    );
    cluster.kill_executor(0);
    let error = runtime
        .block_on(running)
        .unwrap()
        .expect_err("the job cannot end without its executor");
    assert!(task_error::is_cancelled_job(&error), "{error:?}");
    assert_eq!(
        task_error::cluster_fault(&error),
        Some(ClusterFault::Unavailable),
        "{error:?}"
    );
}

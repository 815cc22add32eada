//! Building a raw table from a Kafka topic, exactly once: each build reads every
//! partition from the position the table's last commit recorded up to a bounded end, and
//! its commit records the ends with the files, so a build killed before its commit reads
//! the same messages again and one that committed never reads them twice. The consumer
//! group's offsets are committed to Kafka afterwards, for lag monitors only.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use datafusion::error::DataFusionError;
use strata_kafka::{KafkaClient, Plan, plan};
use strata_language::{SourceTable, TableDef};
use strata_storage::landing::Verdict;
use strata_storage::{Commit, CommitLog, StorageError, StreamPosition, cleanup, paths};

use super::Build;
use super::raw::{COMMIT_RETRIES, Ingest};
use super::report::{LandingFileReport, PartitionLag, TableReport, TableStatus, TopicRead};
use crate::compile::PlannedTable;
use crate::error::{BuildStep, EngineError, Result};
use crate::landing::{KafkaRead, LandingSource};
use crate::write::WriteSummary;

/// Reads what arrived in the topic since the last commit; see the module documentation.
pub(super) async fn build(
    build: &Build<'_>,
    ingest: &TopicIngest<'_>,
    on_rows: &(dyn Fn(u64) + Sync),
) -> Result<TableReport> {
    let TopicIngest {
        table,
        source,
        landing,
        kafka,
        ..
    } = *ingest;
    let mut report = TableReport::new(
        table.name.to_string(),
        table.name.layer.to_string(),
        TableStatus::UpToDate,
    );
    if build.full_refresh {
        report.strategy = Some(format!(
            "kept: {} reads a Kafka topic, whose messages are in this table only once read",
            source.name
        ));
    }
    let dir = build.warehouse.table(&table.name);
    let log = CommitLog::new(&dir);
    let state = log.state().await?;
    let committed = positions_of(&state.positions, &kafka.location.topic);
    let (planned, unread_since) = plan_build(kafka, committed.clone()).await?;
    report.topic = Some(topic_read(kafka, &planned, &unread_since));
    if planned.is_empty(&committed) {
        return Ok(report);
    }
    let written = match read_ranges(build, ingest, &planned, on_rows).await {
        Ok(written) => written,
        Err(error) => {
            cleanup::remove_with_prefix(&dir, &paths::run_file_prefix(build.run_id)).await;
            return Err(EngineError::at(BuildStep::RunningTheQuery, error));
        }
    };
    for scanned in &written.scanned {
        // A share of bad messages over the limit fails the build: a range is never
        // skipped, so that nothing is lost; the next build reads it again.
        if let Verdict::RejectFile(_) = landing
            .policy
            .verdict(scanned.rows_rejected, scanned.rows_read)
        {
            cleanup::remove_with_prefix(&dir, &paths::run_file_prefix(build.run_id)).await;
            return Err(EngineError::BadRows {
                file: scanned.path.clone(),
                why: format!(
                    "{} of {} rows are bad, over the limit of {} ('bad_rows.limit'); the next build reads them again",
                    scanned.rows_rejected, scanned.rows_read, landing.policy.limit
                ),
            });
        }
        report.add_landing_file(LandingFileReport::read(
            &scanned.path,
            scanned.rows_read,
            scanned.rows_rejected,
        ));
    }
    written.check_distinct()?;
    report.rows_written = written.rows_written();
    report.rows_dropped = written.rows_dropped;
    report.files = written.data.len() as u64;
    report.bytes = written.bytes_written();
    report.writers = written.writers.clone();
    #[cfg(feature = "faults")]
    crate::faults::before_commit(&table.name).await;
    let positions: Vec<StreamPosition> = planned
        .positions
        .iter()
        .map(|&(partition, next)| StreamPosition {
            topic: kafka.location.topic.clone(),
            partition,
            next,
        })
        .collect();
    let mut version = state.next_version;
    let mut retries = 0;
    loop {
        let commit = Commit {
            files: written.avro_files(),
            rejects: written.rejects.clone(),
            positions: positions.clone(),
            messages_lost: planned.messages_lost() as u64,
            ..Commit::new(version, build.run_id)
        };
        match log.commit(commit).await {
            Ok(_) => break,
            Err(StorageError::CommitConflict { .. }) if retries < COMMIT_RETRIES => {
                retries += 1;
                let now = log.state().await?;
                if positions_of(&now.positions, &kafka.location.topic) != committed {
                    // Another run read (some of) these messages and committed first.
                    tracing::info!(
                        "{}: a concurrent run read {} first; dropping this run's copy",
                        table.name,
                        kafka.location
                    );
                    cleanup::remove_with_prefix(&dir, &paths::run_file_prefix(build.run_id)).await;
                    let mut raced = TableReport::new(
                        table.name.to_string(),
                        table.name.layer.to_string(),
                        TableStatus::UpToDate,
                    );
                    raced.strategy = Some(format!(
                        "raced: a concurrent run committed {} first",
                        kafka.location
                    ));
                    return Ok(raced);
                }
                version = now.next_version;
            }
            Err(error) => {
                cleanup::remove_with_prefix(&dir, &paths::run_file_prefix(build.run_id)).await;
                return Err(error.into());
            }
        }
    }
    commit_group(kafka, planned.positions).await;
    report.status = TableStatus::Built;
    Ok(report)
}

/// Runs the table's query over each partition's range as a job of its own, all at once:
/// Ballista gives a task only its own partitions of the scans it knows, so one job over
/// every range would have each of its tasks read them all.
async fn read_ranges(
    build: &Build<'_>,
    ingest: &TopicIngest<'_>,
    planned: &Plan,
    on_rows: &(dyn Fn(u64) + Sync),
) -> datafusion::error::Result<WriteSummary> {
    let read: Vec<AtomicU64> = planned.ranges.iter().map(|_| AtomicU64::new(0)).collect();
    let jobs = planned.ranges.iter().enumerate().map(|(index, range)| {
        let read = &read;
        async move {
            let prefix = paths::landing_file_prefix(build.run_id, index);
            let job = Ingest {
                build,
                table: ingest.table,
                source: ingest.source,
                planned_source: ingest.planned_source,
                landing: ingest.landing,
                prefix: &prefix,
                index,
            };
            let provider = ingest.landing.kafka_table(
                std::slice::from_ref(range),
                Arc::clone(&ingest.planned_source.schema),
                Some(job.rejects_target()),
            )?;
            let on_job_rows = |rows: u64| {
                read[index].store(rows, Ordering::Relaxed);
                on_rows(read.iter().map(|rows| rows.load(Ordering::Relaxed)).sum());
            };
            job.write(provider, &on_job_rows).await
        }
    });
    let mut written = WriteSummary::default();
    for summary in futures::future::try_join_all(jobs).await? {
        written.absorb(summary);
    }
    Ok(written)
}

/// What a Kafka raw build reads from.
#[derive(Clone, Copy)]
pub(super) struct TopicIngest<'a> {
    pub(super) table: &'a TableDef,
    pub(super) source: &'a SourceTable,
    pub(super) planned_source: &'a PlannedTable,
    pub(super) landing: &'a LandingSource,
    pub(super) kafka: &'a KafkaRead,
}

/// The committed position of each partition of `topic`.
fn positions_of(positions: &[StreamPosition], topic: &str) -> BTreeMap<i32, i64> {
    positions
        .iter()
        .filter(|position| position.topic == topic)
        .map(|position| (position.partition, position.next))
        .collect()
}

/// Asks the brokers for the partitions' watermarks and plans the build's ranges; with
/// the plan, the timestamp of the first message it leaves in each partition behind.
async fn plan_build(
    kafka: &KafkaRead,
    committed: BTreeMap<i32, i64>,
) -> Result<(Plan, BTreeMap<i32, i64>)> {
    let kafka = kafka.clone();
    tokio::task::spawn_blocking(move || {
        let client = KafkaClient::new(&kafka.location, &kafka.options)?;
        let marks = client.watermarks()?;
        let planned = plan(&kafka.location.topic, &committed, &marks, &kafka.options)?;
        let left: Vec<(i32, i64)> = planned
            .behind
            .iter()
            .map(|behind| (behind.partition, behind.next))
            .collect();
        // The lag's age is for monitors: a broker slow to say leaves it out.
        let unread_since = if left.is_empty() {
            BTreeMap::new()
        } else {
            client.timestamps(&left).unwrap_or_else(|error| {
                tracing::warn!(
                    "{}: the age of the messages left unread: {error}",
                    kafka.location
                );
                BTreeMap::new()
            })
        };
        Ok((planned, unread_since))
    })
    .await
    .map_err(|error| EngineError::DataFusion(DataFusionError::External(Box::new(error))))?
    .map_err(EngineError::Kafka)
}

/// What the build reads of the topic and what it leaves, each partition's lag aged by
/// the timestamp of its first message left unread.
fn topic_read(kafka: &KafkaRead, planned: &Plan, unread_since: &BTreeMap<i32, i64>) -> TopicRead {
    let now_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| since.as_millis() as i64);
    let behind: Vec<PartitionLag> = planned
        .behind
        .iter()
        .map(|behind| PartitionLag {
            partition: behind.partition,
            messages: behind.messages,
            lag_ms: unread_since
                .get(&behind.partition)
                .map(|since| now_ms.saturating_sub(*since).max(0) as u64),
        })
        .collect();
    TopicRead {
        topic: kafka.location.topic.clone(),
        partitions: planned
            .ranges
            .iter()
            .map(|range| (range.partition, range.start, range.end))
            .collect(),
        lag_messages: planned.lag(),
        lag_ms: behind.iter().filter_map(|partition| partition.lag_ms).max(),
        behind,
        messages_lost: planned.messages_lost() as u64,
    }
}

/// Commits the positions to the source's consumer group; a failure only delays what lag
/// monitors see, so it is logged.
async fn commit_group(kafka: &KafkaRead, positions: Vec<(i32, i64)>) {
    let kafka = kafka.clone();
    let committed = tokio::task::spawn_blocking(move || {
        KafkaClient::new(&kafka.location, &kafka.options)?.commit_group(&positions)
    })
    .await;
    match committed {
        Ok(Ok(())) => {}
        Ok(Err(error)) => tracing::warn!("committing the consumer group's offsets: {error}"),
        Err(error) => tracing::warn!("committing the consumer group's offsets: {error}"),
    }
}

//! The loop that starts scheduled runs: every tick it reads the warehouse's schedules,
//! fires those whose cron time came or whose landing locations got files, runs each
//! schedule's pipeline one run at a time, retries failures with backoff, and tells the
//! webhook when a schedule fails and when it recovers.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use chrono::{DateTime, Utc};
use strata_engine::run::{RunOptions, RunReport, new_run_id, run_pipeline};
use strata_engine::{Engine, compile, landing_sources};
use strata_storage::Warehouse;
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::error::{Error, Result};
use crate::lease::{self, Lease, Standing};
use crate::schedule::{Cause, Firing, Outcome, Schedule, Schedules};
use crate::webhook::{Event, Notice};

/// How often schedules are read again and landing locations listed.
pub const DEFAULT_TICK: Duration = Duration::from_secs(2);

/// Starts the runs of every schedule in one warehouse, on one engine.
pub struct Orchestrator {
    schedules: Schedules,
    engine: Engine,
    tick: Duration,
    /// Each cron schedule's next fire time, for the expression it was computed from.
    next_fire: HashMap<String, (String, DateTime<Utc>)>,
    /// Schedules with a run (or a retry's wait) under way.
    busy: Arc<Mutex<HashSet<String>>>,
    /// Only the holder of the warehouse's lease fires schedules; others stand by.
    lease: Lease,
}

/// The name of the orchestrators' lease in a warehouse.
const LEASE: &str = "orchestrator";

impl Orchestrator {
    pub fn new(warehouse: Warehouse, engine: Engine) -> Self {
        Orchestrator {
            lease: Lease::new(
                warehouse.clone(),
                LEASE,
                strata_engine::write::process_identity().to_owned(),
                lease::DEFAULT_TTL,
            ),
            schedules: Schedules::new(warehouse),
            engine,
            tick: DEFAULT_TICK,
            next_fire: HashMap::new(),
            busy: Arc::default(),
        }
    }

    /// Whether this orchestrator may fire schedules now: it holds the warehouse's lease.
    /// A standby forgets its cron times, so on taking over it fires at the next ones
    /// rather than again at those the last holder fired.
    async fn leads(&mut self, standby_said: &mut bool) -> bool {
        let standing = match self.lease.hold().await {
            Ok(standing) => standing,
            Err(error) => {
                tracing::warn!("cannot renew the orchestrator lease: {error}");
                return self.lease.holds();
            }
        };
        match standing {
            Standing::Held => {
                if std::mem::take(standby_said) {
                    tracing::info!("took over the schedules of {}", self.schedules.warehouse());
                }
                true
            }
            Standing::Standby { holder } => {
                if !*standby_said {
                    tracing::info!(
                        "standing by: {holder} runs the schedules of {}; taking over if it stops",
                        self.schedules.warehouse()
                    );
                    *standby_said = true;
                }
                self.next_fire.clear();
                false
            }
        }
    }

    /// Fires schedules until `stop` resolves, then lets the runs under way end (a retry
    /// that is waiting is not started).
    pub async fn run(mut self, stop: impl Future<Output = ()>) {
        let (stopping, stopped) = watch::channel(false);
        let mut runs = JoinSet::new();
        tokio::pin!(stop);
        tracing::info!(
            "running the schedules of {} every {:?}",
            self.schedules.warehouse(),
            self.tick
        );
        let mut standby_said = false;
        loop {
            tokio::select! {
                _ = &mut stop => break,
                _ = tokio::time::sleep(self.tick) => {}
            }
            while runs.try_join_next().is_some() {}
            if !self.leads(&mut standby_said).await {
                continue;
            }
            let schedules = match self.schedules.list().await {
                Ok(schedules) => schedules,
                Err(error) => {
                    tracing::warn!("cannot read the schedules: {error}");
                    continue;
                }
            };
            let names: HashSet<&str> = schedules.iter().map(|s| s.name.as_str()).collect();
            self.next_fire
                .retain(|name, _| names.contains(name.as_str()));
            for schedule in schedules {
                if schedule.paused {
                    self.next_fire.remove(&schedule.name);
                    continue;
                }
                let Some((cause, seen_files)) = self.due(&schedule).await else {
                    continue;
                };
                if !self
                    .busy
                    .lock()
                    .expect("busy lock")
                    .insert(schedule.name.clone())
                {
                    tracing::info!(
                        "schedule {} is due, but its last run has not ended: skipped",
                        schedule.name
                    );
                    continue;
                }
                let firing = Fire {
                    schedules: self.schedules.clone(),
                    engine: self.engine.clone(),
                    schedule,
                    cause,
                    seen_files,
                    stopped: stopped.clone(),
                    busy: Arc::clone(&self.busy),
                };
                runs.spawn(firing.run());
            }
        }
        let _ = stopping.send(true);
        while runs.join_next().await.is_some() {}
        self.lease.release().await;
    }

    /// Why the schedule fires now, with the landing files there are, if it does.
    async fn due(&mut self, schedule: &Schedule) -> Option<(Cause, Option<Vec<String>>)> {
        let now = Utc::now();
        let cron_due = match schedule.cron() {
            Ok(Some(cron)) => {
                let text = cron.to_string();
                let entry = self.next_fire.entry(schedule.name.clone());
                let (known, at) = entry.or_insert_with(|| {
                    (
                        text.clone(),
                        cron.next_after(now).unwrap_or(DateTime::<Utc>::MAX_UTC),
                    )
                });
                if *known != text {
                    *known = text;
                    *at = cron.next_after(now).unwrap_or(DateTime::<Utc>::MAX_UTC);
                }
                let due = *at <= now;
                if due {
                    *at = cron.next_after(now).unwrap_or(DateTime::<Utc>::MAX_UTC);
                }
                due
            }
            Ok(None) => false,
            Err(error) => {
                tracing::warn!("schedule {}: {error}", schedule.name);
                false
            }
        };
        if !schedule.triggers.on_new_files {
            return cron_due.then_some((Cause::Cron, None));
        }
        let files = match self.landing_files(schedule).await {
            Ok(files) => files,
            Err(error) => {
                tracing::warn!(
                    "schedule {}: cannot list its landing files: {error}",
                    schedule.name
                );
                return cron_due.then_some((Cause::Cron, None));
            }
        };
        if cron_due {
            return Some((Cause::Cron, Some(files)));
        }
        let state = match self.schedules.state(&schedule.name).await {
            Ok(state) => state,
            Err(error) => {
                tracing::warn!("schedule {}: {error}", schedule.name);
                return None;
            }
        };
        let seen: HashSet<&String> = state.seen_files.iter().collect();
        let new = files.iter().any(|file| !seen.contains(file));
        new.then_some((Cause::NewFiles, Some(files)))
    }

    /// What arrived at the pipeline's landing sources (files, and Kafka partitions' newest
    /// offsets), as [`strata_engine::landing::LandingSource::arrivals`] gives it.
    async fn landing_files(&self, schedule: &Schedule) -> Result<Vec<String>> {
        let warehouse = self.schedules.warehouse();
        let sources = landing_sources(&schedule.sources(), warehouse, &self.engine)
            .await
            .map_err(|source| Error::Run {
                schedule: schedule.name.clone(),
                source,
            })?;
        let mut files = Vec::new();
        for source in sources {
            let arrived = source.arrivals().await.map_err(|source| Error::Run {
                schedule: schedule.name.clone(),
                source,
            })?;
            files.extend(arrived);
        }
        files.sort();
        Ok(files)
    }
}

/// One firing of a schedule: its run and retries.
struct Fire {
    schedules: Schedules,
    engine: Engine,
    schedule: Schedule,
    cause: Cause,
    seen_files: Option<Vec<String>>,
    stopped: watch::Receiver<bool>,
    busy: Arc<Mutex<HashSet<String>>>,
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |age| age.as_millis() as u64)
}

impl Fire {
    async fn run(mut self) {
        let name = self.schedule.name.clone();
        if let Err(error) = self.attempts().await {
            tracing::warn!("schedule {name}: {error}");
        }
        self.busy.lock().expect("busy lock").remove(&name);
    }

    /// Runs and retries the firing. While it does, only it writes the schedule's state
    /// (the schedule is busy), so the state is read once and saved at each change.
    async fn attempts(&mut self) -> Result<()> {
        let name = self.schedule.name.clone();
        let mut state = self.schedules.state(&name).await?;
        if let Some(files) = self.seen_files.take() {
            state.seen_files = files;
        }
        let mut attempt = 1;
        let mut cause = self.cause;
        loop {
            let run_id = format!("{}-{name}", new_run_id());
            let started_at_ms = now_ms();
            tracing::info!("schedule {name}: starting run {run_id} ({cause:?}, attempt {attempt})");
            let mut firing = Firing {
                run_id: run_id.clone(),
                cause,
                attempt,
                started_at_ms,
                duration_ms: 0,
                outcome: Outcome::Running,
                error: None,
            };
            state.record(firing.clone());
            self.schedules.save_state(&name, &state).await?;
            let (errors, retried) = match self.run_once(&run_id).await {
                Ok(report) => (report.failures(), true),
                Err(error @ Error::Pipeline { .. }) => (vec![error.to_string()], false),
                Err(error) => (vec![error.to_string()], true),
            };
            firing.duration_ms = now_ms().saturating_sub(started_at_ms);
            firing.outcome = if errors.is_empty() {
                Outcome::Succeeded
            } else {
                Outcome::Failed
            };
            firing.error = (!errors.is_empty()).then(|| errors.join("; "));
            state.record(firing);
            if errors.is_empty() {
                tracing::info!("schedule {name}: run {run_id} succeeded");
                let recovered = std::mem::replace(&mut state.failing, false);
                self.schedules.save_state(&name, &state).await?;
                if recovered {
                    self.notify(Event::Recovered, &run_id, attempt, Vec::new())
                        .await;
                }
                return Ok(());
            }
            tracing::warn!(
                "schedule {name}: run {run_id} failed: {}",
                errors.join("; ")
            );
            let last = !retried || attempt > self.schedule.retry.attempts;
            state.failing |= last;
            self.schedules.save_state(&name, &state).await?;
            if last {
                self.notify(Event::Failed, &run_id, attempt, errors).await;
                return Ok(());
            }
            let wait = self.schedule.retry.backoff(attempt);
            tracing::info!("schedule {name}: retrying in {wait:?}");
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = self.stopped.wait_for(|stopped| *stopped) => return Ok(()),
            }
            attempt += 1;
            cause = Cause::Retry;
        }
    }

    /// Compiles and runs the pipeline once; its report, or why it could not run: a
    /// [`Error::Pipeline`] when the pipeline itself is wrong.
    async fn run_once(&self, run_id: &str) -> Result<RunReport> {
        let warehouse = self.schedules.warehouse();
        let schedule = self.schedule.name.clone();
        let compiled = compile(&self.schedule.sources(), warehouse, &self.engine)
            .await
            .map_err(|source| {
                if source.is_in_the_pipeline() {
                    Error::Pipeline {
                        schedule: schedule.clone(),
                        source,
                    }
                } else {
                    Error::Run {
                        schedule: schedule.clone(),
                        source,
                    }
                }
            })?;
        let options = RunOptions {
            run_id: Some(run_id.to_owned()),
            ..RunOptions::default()
        };
        run_pipeline(&compiled, warehouse, &self.engine, &options, &|_| {})
            .await
            .map_err(|source| Error::Run { schedule, source })
    }

    async fn notify(&self, event: Event, run_id: &str, attempts: u32, errors: Vec<String>) {
        let Some(url) = &self.schedule.webhook else {
            return;
        };
        let warehouse = self.schedules.warehouse();
        let notice = Notice {
            event,
            schedule: self.schedule.name.clone(),
            run_id: run_id.to_owned(),
            attempts,
            warehouse: warehouse.to_string(),
            errors,
            report: warehouse.display_path(&warehouse.run_report(run_id)),
            at: Utc::now().to_rfc3339(),
        };
        match notice.send(url).await {
            Ok(()) => tracing::info!("schedule {}: told {url} ({event:?})", self.schedule.name),
            Err(error) => tracing::warn!(
                "schedule {}: the webhook was not told ({event:?}): {error}",
                self.schedule.name
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schedule::{Cause, PipelineFile, Retry, Triggers};

    #[tokio::test]
    async fn a_pipeline_that_is_wrong_fails_its_firing_without_retries() {
        let warehouse = Warehouse::open("memory://orchestrator-wrong/wh").unwrap();
        let schedules = Schedules::new(warehouse.clone());
        schedules
            .put(&Schedule {
                name: "wrong".to_owned(),
                files: vec![PipelineFile {
                    path: "p.sql".to_owned(),
                    text: "CREATE TABLE raw.t AS SELECT x FROM landing.nowhere;".to_owned(),
                }],
                triggers: Triggers {
                    cron: Some("* * * * * *".to_owned()),
                    on_new_files: false,
                },
                retry: Retry {
                    attempts: 2,
                    backoff_seconds: 1,
                },
                webhook: None,
                paused: false,
                declared_in: None,
            })
            .await
            .unwrap();
        let orchestrator = Orchestrator::new(warehouse, Engine::Embedded);
        orchestrator
            .run(tokio::time::sleep(Duration::from_secs(7)))
            .await;
        let firings = schedules.state("wrong").await.unwrap().firings;
        assert!(!firings.is_empty(), "the schedule never fired");
        for firing in &firings {
            assert_eq!(
                (firing.attempt, firing.cause),
                (1, Cause::Cron),
                "{firings:?}"
            );
            let error = firing.error.as_deref().unwrap_or_default();
            assert!(error.contains("the pipeline is wrong"), "{error}");
        }
    }
}

//! A schedule (what starts runs of a pipeline, and how failures are retried and told),
//! and where schedules and what they fired are kept: in the warehouse, so they outlive
//! the scheduler and any machine.

use std::time::Duration;

use futures::TryStreamExt;
use object_store::ObjectStoreExt;
use object_store::path::Path as StorePath;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use strata_language::Sources;
use strata_storage::{StorageError, Warehouse};

use crate::cron::Cron;
use crate::error::{Error, Result};

/// One file of a pipeline, kept with the schedule so the scheduler needs no access to
/// the machine it was registered from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PipelineFile {
    pub path: String,
    pub text: String,
}

impl PipelineFile {
    /// The files of a pipeline as loaded.
    pub fn all_of(sources: &Sources) -> Vec<PipelineFile> {
        sources
            .iter()
            .map(|(_, file)| PipelineFile {
                path: file.path.display().to_string(),
                text: file.text.clone(),
            })
            .collect()
    }
}

/// What starts a run; at least one is set.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Triggers {
    /// A cron expression (see [`Cron`]), in UTC.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cron: Option<String>,
    /// A run starts when the pipeline's landing locations get files they did not have
    /// when the last run started.
    #[serde(default)]
    pub on_new_files: bool,
}

/// How a failed run is tried again: up to `attempts` more times, waiting
/// `backoff_seconds`, then twice that, and so on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Retry {
    pub attempts: u32,
    pub backoff_seconds: u64,
}

impl Default for Retry {
    fn default() -> Self {
        Retry {
            attempts: 2,
            backoff_seconds: 30,
        }
    }
}

impl Retry {
    /// The wait before retry number `retry` (1 for the first).
    pub fn backoff(&self, retry: u32) -> Duration {
        let factor = 2u64.saturating_pow(retry.saturating_sub(1));
        Duration::from_secs(self.backoff_seconds.saturating_mul(factor))
    }
}

/// A pipeline registered to run by itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Schedule {
    pub name: String,
    pub files: Vec<PipelineFile>,
    pub triggers: Triggers,
    #[serde(default)]
    pub retry: Retry,
    /// Told, with a JSON body, when the schedule fails and when it recovers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webhook: Option<String>,
    #[serde(default)]
    pub paused: bool,
    /// The declarative file that registered the schedule, which owns it from then on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub declared_in: Option<String>,
}

impl Schedule {
    /// Whether the schedule can work: a name usable as a file name, a pipeline, a
    /// trigger, a cron expression that parses and fires, an HTTP webhook.
    pub fn validate(&self) -> Result<()> {
        let invalid = |why: &str| Error::Invalid {
            name: self.name.clone(),
            why: why.to_owned(),
        };
        let name_ok = !self.name.is_empty()
            && self.name.len() <= 100
            && self
                .name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
        if !name_ok {
            return Err(invalid(
                "a name is 1 to 100 letters, digits, '-' or '_' (it names a file in the warehouse)",
            ));
        }
        if self.files.is_empty() {
            return Err(invalid("no pipeline files"));
        }
        if self.triggers.cron.is_none() && !self.triggers.on_new_files {
            return Err(invalid(
                "nothing starts it: give it a cron expression, new files, or both",
            ));
        }
        if let Some(cron) = self.cron()?
            && cron.next_after(chrono::Utc::now()).is_none()
        {
            return Err(invalid(&format!("the cron expression {cron} never fires")));
        }
        if let Some(url) = &self.webhook
            && !(url.starts_with("http://") || url.starts_with("https://"))
        {
            return Err(invalid(&format!(
                "the webhook {url:?} is not an http(s) URL"
            )));
        }
        Ok(())
    }

    /// The parsed cron expression, if the schedule has one.
    pub fn cron(&self) -> Result<Option<Cron>> {
        self.triggers.cron.as_deref().map(str::parse).transpose()
    }

    /// The pipeline, as the compiler reads it.
    pub fn sources(&self) -> Sources {
        let mut sources = Sources::default();
        for file in &self.files {
            sources.add(&file.path, file.text.as_str());
        }
        sources
    }

    /// The triggers in words, for listings.
    pub fn describe_triggers(&self) -> String {
        let mut said = Vec::new();
        if let Some(cron) = &self.triggers.cron {
            said.push(format!("cron {cron}"));
        }
        if self.triggers.on_new_files {
            said.push("new files".to_owned());
        }
        said.join(" + ")
    }
}

/// What started a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Cause {
    Cron,
    NewFiles,
    Retry,
}

/// How a run a schedule started ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Running,
    Succeeded,
    Failed,
}

/// One run a schedule started.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Firing {
    pub run_id: String,
    pub cause: Cause,
    /// 1 for the first try, 2 for the first retry.
    pub attempt: u32,
    pub started_at_ms: u64,
    pub duration_ms: u64,
    pub outcome: Outcome,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// The most firings a schedule's state keeps; the run reports keep the rest.
const FIRINGS_KEPT: usize = 100;

/// What a schedule has fired and seen, kept beside it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScheduleState {
    /// The landing files there were when the last run started, as `path size modified`.
    #[serde(default)]
    pub seen_files: Vec<String>,
    /// Whether the last run (after its retries) failed: the next success is a recovery.
    #[serde(default)]
    pub failing: bool,
    /// Oldest first.
    #[serde(default)]
    pub firings: Vec<Firing>,
}

impl ScheduleState {
    /// Records a firing, or its end when its run is already recorded.
    pub fn record(&mut self, firing: Firing) {
        match self
            .firings
            .iter_mut()
            .find(|known| known.run_id == firing.run_id)
        {
            Some(known) => *known = firing,
            None => self.firings.push(firing),
        }
        let extra = self.firings.len().saturating_sub(FIRINGS_KEPT);
        self.firings.drain(..extra);
    }

    pub fn last(&self) -> Option<&Firing> {
        self.firings.last()
    }
}

/// The schedules registered in one warehouse.
#[derive(Debug, Clone)]
pub struct Schedules {
    warehouse: Warehouse,
}

impl Schedules {
    pub fn new(warehouse: Warehouse) -> Self {
        Schedules { warehouse }
    }

    pub fn warehouse(&self) -> &Warehouse {
        &self.warehouse
    }

    /// Every schedule, by name.
    pub async fn list(&self) -> Result<Vec<Schedule>> {
        let dir = self.warehouse.schedules_dir();
        let listed: Vec<_> = self
            .warehouse
            .store()
            .list(Some(&dir))
            .try_collect()
            .await
            .map_err(|error| StorageError::store(&self.warehouse.display_path(&dir), &error))?;
        let mut schedules = Vec::new();
        for object in listed {
            if object.location.extension() != Some("json") {
                continue;
            }
            if let Some(schedule) = self.read::<Schedule>(&object.location).await? {
                schedules.push(schedule);
            }
        }
        schedules.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(schedules)
    }

    /// The schedule called `name`.
    pub async fn get(&self, name: &str) -> Result<Schedule> {
        self.read(&self.warehouse.schedule(name))
            .await?
            .ok_or_else(|| self.unknown(name))
    }

    /// Registers a schedule, or replaces the one of its name.
    pub async fn put(&self, schedule: &Schedule) -> Result<()> {
        schedule.validate()?;
        self.write(&self.warehouse.schedule(&schedule.name), schedule)
            .await
    }

    /// Removes a schedule and what it fired.
    pub async fn remove(&self, name: &str) -> Result<()> {
        self.get(name).await?;
        for path in [
            self.warehouse.schedule(name),
            self.warehouse.schedule_state(name),
        ] {
            match self.warehouse.store().delete(&path).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                Err(error) => {
                    return Err(
                        StorageError::store(&self.warehouse.display_path(&path), &error).into(),
                    );
                }
            }
        }
        Ok(())
    }

    /// Pauses or resumes a schedule; returns it.
    pub async fn set_paused(&self, name: &str, paused: bool) -> Result<Schedule> {
        let mut schedule = self.get(name).await?;
        schedule.paused = paused;
        self.put(&schedule).await?;
        Ok(schedule)
    }

    /// What the schedule has fired and seen (nothing yet for a new one).
    pub async fn state(&self, name: &str) -> Result<ScheduleState> {
        Ok(self
            .read(&self.warehouse.schedule_state(name))
            .await?
            .unwrap_or_default())
    }

    pub async fn save_state(&self, name: &str, state: &ScheduleState) -> Result<()> {
        self.write(&self.warehouse.schedule_state(name), state)
            .await
    }

    fn unknown(&self, name: &str) -> Error {
        Error::Unknown {
            name: name.to_owned(),
            warehouse: self.warehouse.to_string(),
        }
    }

    async fn read<T: DeserializeOwned>(&self, path: &StorePath) -> Result<Option<T>> {
        let location = self.warehouse.display_path(path);
        let bytes = match self.warehouse.store().get(path).await {
            Ok(got) => got
                .bytes()
                .await
                .map_err(|error| StorageError::store(&location, &error))?,
            Err(object_store::Error::NotFound { .. }) => return Ok(None),
            Err(error) => return Err(StorageError::store(&location, &error).into()),
        };
        serde_json::from_slice(&bytes).map(Some).map_err(|error| {
            StorageError::Corrupt {
                location,
                reason: error.to_string(),
            }
            .into()
        })
    }

    async fn write<T: Serialize>(&self, path: &StorePath, value: &T) -> Result<()> {
        let location = self.warehouse.display_path(path);
        let text = serde_json::to_vec_pretty(value).map_err(|error| StorageError::Corrupt {
            location: location.clone(),
            reason: error.to_string(),
        })?;
        self.warehouse
            .store()
            .put(path, text.into())
            .await
            .map_err(|error| StorageError::store(&location, &error))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schedule(name: &str) -> Schedule {
        Schedule {
            name: name.to_owned(),
            files: vec![PipelineFile {
                path: "p.sql".to_owned(),
                text: "CREATE TABLE raw.t AS SELECT 1 AS x;".to_owned(),
            }],
            triggers: Triggers {
                cron: Some("*/15 * * * *".to_owned()),
                on_new_files: false,
            },
            retry: Retry::default(),
            webhook: None,
            paused: false,
            declared_in: None,
        }
    }

    #[test]
    fn a_schedule_needs_a_trigger_a_file_name_and_an_http_webhook() {
        schedule("hourly_ranking-2").validate().unwrap();
        let mut none = schedule("a");
        none.triggers = Triggers::default();
        assert!(
            none.validate()
                .unwrap_err()
                .to_string()
                .contains("nothing starts it")
        );
        assert!(
            schedule("../etc")
                .validate()
                .unwrap_err()
                .to_string()
                .contains("a name is")
        );
        let mut hook = schedule("a");
        hook.webhook = Some("ftp://x".to_owned());
        assert!(
            hook.validate()
                .unwrap_err()
                .to_string()
                .contains("not an http(s) URL")
        );
        let mut never = schedule("a");
        never.triggers.cron = Some("0 0 31 2 *".to_owned());
        assert!(
            never
                .validate()
                .unwrap_err()
                .to_string()
                .contains("never fires")
        );
    }

    #[test]
    fn backoff_doubles() {
        let retry = Retry {
            attempts: 3,
            backoff_seconds: 5,
        };
        assert_eq!(retry.backoff(1), Duration::from_secs(5));
        assert_eq!(retry.backoff(3), Duration::from_secs(20));
    }

    #[tokio::test]
    async fn schedules_and_their_state_live_in_the_warehouse() {
        let dir = std::env::temp_dir().join(format!("strata-schedules-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let schedules = Schedules::new(Warehouse::local(&dir));
        assert!(schedules.list().await.unwrap().is_empty());
        schedules.put(&schedule("b")).await.unwrap();
        schedules.put(&schedule("a")).await.unwrap();
        let names: Vec<_> = schedules
            .list()
            .await
            .unwrap()
            .into_iter()
            .map(|s| s.name)
            .collect();
        assert_eq!(names, ["a", "b"]);
        assert!(schedules.set_paused("a", true).await.unwrap().paused);
        assert!(schedules.get("a").await.unwrap().paused);
        let state = ScheduleState {
            failing: true,
            ..ScheduleState::default()
        };
        schedules.save_state("a", &state).await.unwrap();
        assert_eq!(schedules.state("a").await.unwrap(), state);
        schedules.remove("a").await.unwrap();
        assert!(matches!(
            schedules.get("a").await,
            Err(Error::Unknown { .. })
        ));
        assert_eq!(
            schedules.state("a").await.unwrap(),
            ScheduleState::default()
        );
        assert!(matches!(
            schedules.remove("a").await,
            Err(Error::Unknown { .. })
        ));
        std::fs::write(dir.join("_strata/schedules/b.json"), "{").unwrap();
        assert!(matches!(
            schedules.list().await,
            Err(Error::Storage(StorageError::Corrupt { .. }))
        ));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

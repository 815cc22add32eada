//! Schedules declared in a TOML file (what a Kubernetes ConfigMap mounts): applying the
//! file registers each of its schedules and removes those it registered before and no
//! longer lists, leaving schedules added by hand alone.
//!
//! ```toml
//! [[schedule]]
//! name = "ranking"
//! pipeline = ["recruitment"]      # files or directories, relative to this file
//! cron = "*/15 * * * *"
//! on_new_files = true
//! retries = 2
//! retry_backoff = "30s"
//! webhook = "http://alerts.internal/strata"
//! ```

use std::path::{Path, PathBuf};

use serde::Deserialize;
use strata_language::Sources;

use crate::error::{Error, Result};
use crate::schedule::{PipelineFile, Retry, Schedule, Schedules, Triggers};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    #[serde(default)]
    schedule: Vec<Entry>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Entry {
    name: String,
    pipeline: Vec<PathBuf>,
    cron: Option<String>,
    #[serde(default)]
    on_new_files: bool,
    retries: Option<u32>,
    retry_backoff: Option<String>,
    webhook: Option<String>,
    #[serde(default)]
    paused: bool,
}

/// What applying a file changed.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Applied {
    pub registered: Vec<String>,
    pub removed: Vec<String>,
}

/// Reads the schedules a file declares, with their pipelines' text.
pub fn read(file: &Path) -> Result<Vec<Schedule>> {
    let shown = file.display().to_string();
    let bad = |why: String| Error::File {
        file: shown.clone(),
        why,
    };
    let text = std::fs::read_to_string(file).map_err(|error| bad(error.to_string()))?;
    let parsed: File = toml::from_str(&text).map_err(|error| bad(error.to_string()))?;
    let base = file.parent().unwrap_or(Path::new("."));
    let mut schedules = Vec::new();
    for entry in parsed.schedule {
        if schedules.iter().any(|s: &Schedule| s.name == entry.name) {
            return Err(bad(format!(
                "the schedule {:?} is declared twice",
                entry.name
            )));
        }
        let paths: Vec<PathBuf> = entry.pipeline.iter().map(|path| base.join(path)).collect();
        let sources = Sources::load(&paths)
            .map_err(|error| bad(format!("schedule {:?}: {error}", entry.name)))?;
        let defaults = Retry::default();
        let backoff_seconds = match &entry.retry_backoff {
            Some(text) => humantime::parse_duration(text)
                .map_err(|error| {
                    bad(format!(
                        "schedule {:?}: retry_backoff {text:?}: {error}",
                        entry.name
                    ))
                })?
                .as_secs(),
            None => defaults.backoff_seconds,
        };
        let schedule = Schedule {
            name: entry.name,
            files: PipelineFile::all_of(&sources),
            triggers: Triggers {
                cron: entry.cron,
                on_new_files: entry.on_new_files,
            },
            retry: Retry {
                attempts: entry.retries.unwrap_or(defaults.attempts),
                backoff_seconds,
            },
            webhook: entry.webhook,
            paused: entry.paused,
            declared_in: Some(shown.clone()),
        };
        schedule.validate()?;
        schedules.push(schedule);
    }
    Ok(schedules)
}

/// Registers the file's schedules and removes the ones it declared before and no longer
/// does. A schedule paused by hand stays paused when its declaration does not change.
pub async fn apply(file: &Path, schedules: &Schedules) -> Result<Applied> {
    let declared = read(file)?;
    let shown = file.display().to_string();
    let mut applied = Applied::default();
    let existing = schedules.list().await?;
    for mut schedule in declared {
        if let Some(known) = existing.iter().find(|known| known.name == schedule.name) {
            let mut same = known.clone();
            same.paused = schedule.paused;
            if same == schedule {
                schedule.paused = known.paused;
            }
        }
        schedules.put(&schedule).await?;
        applied.registered.push(schedule.name);
    }
    for known in existing {
        let ours = known.declared_in.as_deref() == Some(shown.as_str());
        if ours && !applied.registered.contains(&known.name) {
            schedules.remove(&known.name).await?;
            applied.removed.push(known.name);
        }
    }
    Ok(applied)
}

#[cfg(test)]
mod tests {
    use super::*;
    use strata_storage::Warehouse;

    fn scratch(name: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("strata-declared-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("pipeline")).unwrap();
        std::fs::write(
            dir.join("pipeline/10.sql"),
            "CREATE TABLE raw.t AS SELECT 1 AS x;",
        )
        .unwrap();
        dir
    }

    #[tokio::test]
    async fn applying_a_file_registers_and_later_removes_only_its_own_schedules() {
        let dir = scratch("apply");
        let file = dir.join("schedules.toml");
        std::fs::write(
            &file,
            r#"
[[schedule]]
name = "a"
pipeline = ["pipeline"]
cron = "*/15 * * * *"
retries = 1
retry_backoff = "5s"

[[schedule]]
name = "b"
pipeline = ["pipeline/10.sql"]
on_new_files = true
"#,
        )
        .unwrap();
        let schedules = Schedules::new(Warehouse::local(dir.join("warehouse")));
        let mut by_hand = schedules_read_one(&file, "b");
        by_hand.name = "by_hand".to_owned();
        by_hand.declared_in = None;
        schedules.put(&by_hand).await.unwrap();
        let applied = apply(&file, &schedules).await.unwrap();
        assert_eq!(applied.registered, ["a", "b"]);
        let a = schedules.get("a").await.unwrap();
        assert_eq!(
            a.retry,
            Retry {
                attempts: 1,
                backoff_seconds: 5
            }
        );
        assert!(a.files[0].text.contains("CREATE TABLE raw.t"));
        schedules.set_paused("a", true).await.unwrap();
        std::fs::write(
            &file,
            "[[schedule]]\nname = \"a\"\npipeline = [\"pipeline\"]\ncron = \"*/15 * * * *\"\nretries = 1\nretry_backoff = \"5s\"\n",
        )
        .unwrap();
        let applied = apply(&file, &schedules).await.unwrap();
        assert_eq!(applied.removed, ["b"]);
        assert!(schedules.get("a").await.unwrap().paused, "paused by hand");
        let names: Vec<_> = schedules
            .list()
            .await
            .unwrap()
            .into_iter()
            .map(|s| s.name)
            .collect();
        assert_eq!(names, ["a", "by_hand"]);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    fn schedules_read_one(file: &Path, name: &str) -> Schedule {
        read(file)
            .unwrap()
            .into_iter()
            .find(|schedule| schedule.name == name)
            .unwrap()
    }

    #[test]
    fn a_bad_file_says_what_is_wrong() {
        let dir = scratch("bad");
        let file = dir.join("schedules.toml");
        for (text, says) in [
            (
                "[[schedule]]\nname = \"a\"\npipeline = [\"pipeline\"]\n",
                "nothing starts it",
            ),
            (
                "[[schedule]]\nname = \"a\"\npipeline = [\"missing\"]\ncron = \"* * * * *\"\n",
                "missing",
            ),
            (
                "[[schedule]]\nname = \"a\"\npipeline = [\"pipeline\"]\ncron = \"* * *\"\n",
                "3 fields",
            ),
            (
                "[[schedule]]\nname = \"a\"\npipeline = [\"pipeline\"]\ncorn = \"* * * * *\"\n",
                "unknown field `corn`",
            ),
            (
                "[[schedule]]\nname = \"a\"\npipeline = [\"pipeline\"]\non_new_files = true\nretry_backoff = \"soon\"\n",
                "retry_backoff",
            ),
        ] {
            std::fs::write(&file, text).unwrap();
            let error = read(&file).unwrap_err().to_string();
            assert!(error.contains(says), "{text}: {error}");
        }
        assert!(
            read(&dir.join("none.toml"))
                .unwrap_err()
                .to_string()
                .contains("none.toml")
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

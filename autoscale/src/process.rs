//! The `process` backend: real `strata executor` processes on this machine, for
//! development and tests.

use std::net::TcpListener;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use rustix::process::{Pid, Signal, kill_process};
use tokio::process::{Child, Command};

use crate::backend::{Backend, ExecutorAddress};
use crate::error::{Error, Result};

/// How long a stopped executor may take to exit before it is killed.
const STOP_TIMEOUT: Duration = Duration::from_secs(60);

/// How to start executors as child processes.
#[derive(Debug, Clone)]
pub struct ProcessSettings {
    /// The `strata` binary.
    pub program: PathBuf,
    /// The scheduler they join, `host:port`.
    pub scheduler: String,
    /// The address they listen on and advertise.
    pub host: String,
    /// Tasks each runs at once.
    pub concurrent_tasks: usize,
    /// Seconds between their heartbeats.
    pub heartbeat_interval_seconds: u64,
    /// The token they present to the scheduler, when it asks for one.
    pub token: Option<String>,
    /// The CA they trust when the scheduler's port serves TLS.
    pub tls_ca: Option<PathBuf>,
    /// The cluster's identity directory, when the executors' ports speak mutual TLS.
    pub cluster_tls: Option<PathBuf>,
}

/// One executor process this backend started.
struct Spawned {
    child: Child,
    flight_port: u16,
}

/// Starts executors as child processes and stops them with SIGTERM.
pub struct ProcessBackend {
    settings: ProcessSettings,
    children: Mutex<Vec<Spawned>>,
}

impl ProcessBackend {
    pub fn new(settings: ProcessSettings) -> Self {
        Self {
            settings,
            children: Mutex::new(Vec::new()),
        }
    }

    fn children(&self) -> std::sync::MutexGuard<'_, Vec<Spawned>> {
        self.children
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn spawn(&self) -> Result<Spawned> {
        let settings = &self.settings;
        let flight_port = TcpListener::bind((settings.host.as_str(), 0))
            .and_then(|listener| listener.local_addr())
            .map(|address| address.port())
            .map_err(|source| Error::Port {
                host: settings.host.clone(),
                source,
            })?;
        let mut command = Command::new(&settings.program);
        if let Some(token) = &settings.token {
            // The environment, not an argument: arguments show in every process listing.
            command.env("STRATA_TOKEN", token);
        }
        if let Some(ca) = &settings.tls_ca {
            command.env("STRATA_TLS_CA", ca);
        }
        if let Some(dir) = &settings.cluster_tls {
            command.env("STRATA_CLUSTER_TLS", dir);
        }
        let child = command
            .args(["executor", "--scheduler", &settings.scheduler])
            .args(["--host", &settings.host])
            .args(["--flight-port", &flight_port.to_string()])
            .args(["--concurrent-tasks", &settings.concurrent_tasks.to_string()])
            .args([
                "--heartbeat-interval",
                &settings.heartbeat_interval_seconds.to_string(),
            ])
            .stdin(std::process::Stdio::null())
            .spawn()
            .map_err(|source| Error::Spawn {
                program: settings.program.display().to_string(),
                source,
            })?;
        Ok(Spawned { child, flight_port })
    }
}

#[async_trait]
impl Backend for ProcessBackend {
    fn name(&self) -> &'static str {
        "process"
    }

    fn slots_per_executor(&self) -> usize {
        self.settings.concurrent_tasks.max(1)
    }

    async fn add(&self, count: usize) -> Result<()> {
        let mut children = self.children();
        // Forget executors that exited on their own, so their ports are not matched later.
        children.retain_mut(|spawned| matches!(spawned.child.try_wait(), Ok(None)));
        for _ in 0..count {
            let spawned = self.spawn()?;
            tracing::info!(
                "started executor process {} on {}:{}",
                spawned.child.id().unwrap_or_default(),
                self.settings.host,
                spawned.flight_port
            );
            children.push(spawned);
        }
        Ok(())
    }

    async fn remove(&self, executor: &ExecutorAddress) -> Result<()> {
        let spawned = {
            let mut children = self.children();
            let index = children
                .iter()
                .position(|spawned| {
                    executor.host == self.settings.host && spawned.flight_port == executor.port
                })
                .ok_or_else(|| Error::UnknownProcess {
                    address: executor.to_string(),
                })?;
            children.remove(index)
        };
        let mut child = spawned.child;
        if let Some(pid) = child.id() {
            let target = Pid::from_raw(pid as i32).ok_or_else(|| Error::Signal {
                pid,
                source: std::io::Error::other("not a process id"),
            })?;
            kill_process(target, Signal::TERM).map_err(|source| Error::Signal {
                pid,
                source: source.into(),
            })?;
        }
        tokio::spawn(async move {
            if tokio::time::timeout(STOP_TIMEOUT, child.wait())
                .await
                .is_err()
            {
                tracing::warn!(
                    "executor {} did not stop in time; killing it",
                    child.id().unwrap_or_default()
                );
                let _ = child.kill().await;
            }
        });
        Ok(())
    }
}

impl Drop for ProcessBackend {
    /// Stops the executors cleanly when the scheduler stops, so their work directories go too.
    fn drop(&mut self) {
        for spawned in self.children().iter() {
            if let Some(pid) = spawned.child.id().and_then(|pid| Pid::from_raw(pid as i32)) {
                let _ = kill_process(pid, Signal::TERM);
            }
        }
    }
}

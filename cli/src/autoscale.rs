//! `strata scheduler --autoscale …`: the autoscaler's settings and backend from flags.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use clap::{Args, ValueEnum};
use strata_autoscale::Backend;
use strata_autoscale::kubernetes::{KubernetesBackend, KubernetesSettings};
use strata_autoscale::policy::Settings;
use strata_autoscale::process::{ProcessBackend, ProcessSettings};
use strata_scheduler::Autoscale;

use crate::error::CliError;

/// Where executors come from.
#[derive(Clone, Copy, Debug, ValueEnum)]
pub(crate) enum BackendKind {
    /// `strata executor` processes on this machine, for development and tests.
    Process,
    /// The executor Deployment of this namespace, through the Kubernetes API.
    Kubernetes,
}

/// Flags of the autoscaler.
#[derive(Args)]
pub(crate) struct AutoscaleArgs {
    /// Add executors when tasks queue and drain idle ones, with this backend.
    #[arg(long, value_enum, env = "STRATA_AUTOSCALE")]
    pub autoscale: Option<BackendKind>,
    /// Fewest executors to keep (with --autoscale).
    #[arg(long, env = "STRATA_MIN_EXECUTORS", default_value_t = 1)]
    pub min_executors: usize,
    /// Most executors to run (with --autoscale).
    #[arg(long, env = "STRATA_MAX_EXECUTORS", default_value_t = 8)]
    pub max_executors: usize,
    /// Task slots of each executor: what the process backend starts, and what the
    /// executor pods' --concurrent-tasks say on Kubernetes.
    #[arg(long, env = "STRATA_EXECUTOR_SLOTS", default_value_t = 2)]
    pub executor_slots: usize,
    /// Tasks per slot, running or waiting, that the executors should carry.
    #[arg(long, env = "STRATA_TASKS_PER_SLOT", default_value_t = 1.0)]
    pub tasks_per_slot: f64,
    /// Seconds a backlog must last before executors are added.
    #[arg(
        long,
        env = "STRATA_SCALE_UP_AFTER",
        default_value_t = 2.0,
        value_name = "SECONDS"
    )]
    pub scale_up_after: f64,
    /// Seconds an executor must run nothing before it is drained, one at a time.
    #[arg(
        long,
        env = "STRATA_IDLE_TIMEOUT",
        default_value_t = 60.0,
        value_name = "SECONDS"
    )]
    pub idle_timeout: f64,
    /// Seconds after adding executors before the next change, and between drains.
    #[arg(
        long,
        env = "STRATA_COOLDOWN",
        default_value_t = 10.0,
        value_name = "SECONDS"
    )]
    pub cooldown: f64,
    /// The executor Deployment to scale (kubernetes backend).
    #[arg(
        long,
        env = "STRATA_EXECUTOR_DEPLOYMENT",
        default_value = "strata-executor"
    )]
    pub executor_deployment: String,
    /// Label selector of the executor pods (kubernetes backend).
    #[arg(
        long,
        env = "STRATA_EXECUTOR_SELECTOR",
        default_value = "app.kubernetes.io/name=strata,app.kubernetes.io/component=executor"
    )]
    pub executor_selector: String,
    /// Namespace of the executors [default: the pod's own].
    #[arg(long, env = "STRATA_NAMESPACE")]
    pub namespace: Option<String>,
}

fn seconds(flag: &str, value: f64) -> Result<Duration, CliError> {
    Duration::try_from_secs_f64(value).map_err(|_| {
        CliError::Cluster(format!("--{flag} must be a number of seconds, not {value}"))
    })
}

impl AutoscaleArgs {
    /// The autoscaler, if asked for; `scheduler` is where started executors connect
    /// and `executor_timeout` sets how often they send heartbeats.
    pub(crate) async fn build(
        &self,
        scheduler: SocketAddr,
        executor_timeout: u64,
        token: Option<String>,
        tls_ca: Option<std::path::PathBuf>,
        cluster_tls: Option<std::path::PathBuf>,
    ) -> Result<Option<Autoscale>, CliError> {
        let Some(kind) = self.autoscale else {
            return Ok(None);
        };
        let settings = Settings {
            min: self.min_executors,
            max: self.max_executors,
            tasks_per_slot: self.tasks_per_slot,
            scale_up_after: seconds("scale-up-after", self.scale_up_after)?,
            idle_timeout: seconds("idle-timeout", self.idle_timeout)?,
            cooldown: seconds("cooldown", self.cooldown)?,
        };
        settings
            .validate()
            .map_err(|problem| CliError::Cluster(format!("--autoscale: {problem}")))?;
        if self.executor_slots == 0 {
            return Err(CliError::Cluster(
                "--executor-slots must be at least 1".into(),
            ));
        }
        let backend: Arc<dyn Backend> = match kind {
            BackendKind::Process => Arc::new(ProcessBackend::new(ProcessSettings {
                program: std::env::current_exe()?,
                host: scheduler.ip().to_string(),
                scheduler: scheduler.to_string(),
                concurrent_tasks: self.executor_slots,
                // A heartbeat several times per timeout, so a busy machine loses none.
                heartbeat_interval_seconds: (executor_timeout / 6).clamp(1, 5),
                token,
                tls_ca,
                cluster_tls,
            })),
            BackendKind::Kubernetes => {
                let client = kube::Client::try_default().await.map_err(|error| {
                    CliError::Cluster(format!(
                        "--autoscale kubernetes: cannot reach the Kubernetes API: {error}"
                    ))
                })?;
                let namespace = self
                    .namespace
                    .clone()
                    .unwrap_or_else(|| client.default_namespace().to_owned());
                Arc::new(KubernetesBackend::new(
                    client,
                    KubernetesSettings {
                        namespace,
                        deployment: self.executor_deployment.clone(),
                        pod_selector: self.executor_selector.clone(),
                        slots_per_executor: self.executor_slots,
                    },
                ))
            }
        };
        Ok(Some(Autoscale { settings, backend }))
    }
}

//! `strata scheduler`, `strata executor` and `strata cluster`: the processes of a
//! Ballista cluster with Strata inside, by hand or all at once for development.

use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;

use clap::Args;
use strata_engine::Engine;
use strata_executor::ExecutorOptions;
use strata_orchestrate::{Schedules, declared};
use strata_scheduler::{Access, ConsoleSettings, Scheduler, SchedulerOptions, ServerTls, Tokens};

use crate::autoscale::AutoscaleArgs;
use crate::credentials::CredentialsArgs;
use crate::error::CliError;
use crate::serve::{self, FlightArgs, shutdown_signal};

/// Arguments of `strata scheduler`.
#[derive(Args)]
pub(crate) struct SchedulerArgs {
    /// Address for executors, clients and pipeline submissions.
    #[arg(long, default_value = "127.0.0.1:50050")]
    pub listen: SocketAddr,
    /// Seconds without a heartbeat before an executor is lost and its tasks run elsewhere.
    #[arg(long, default_value_t = 30, value_name = "SECONDS")]
    pub executor_timeout: u64,
    /// Also serve Flight SQL on this port (of the --listen host), running queries on the cluster.
    #[arg(long, requires = "warehouse", value_name = "PORT")]
    pub flight_sql_port: Option<u16>,
    /// Warehouse whose schedules the scheduler runs (see `strata schedule`) and, with
    /// --flight-sql-port, whose published tables Flight SQL serves: a directory or a
    /// store URL. Stores take their endpoint and credentials from the standard AWS_*,
    /// AZURE_* and GOOGLE_* environment variables.
    #[arg(long, env = "STRATA_WAREHOUSE", value_name = "PATH_OR_URL")]
    pub warehouse: Option<String>,
    /// A TOML file of schedules to register in the warehouse at start (a mounted
    /// ConfigMap, say; see docs/schedules.md).
    #[arg(
        long,
        env = "STRATA_SCHEDULES",
        requires = "warehouse",
        value_name = "FILE"
    )]
    pub schedules: Option<PathBuf>,
    #[command(flatten)]
    pub flight: FlightArgs,
    /// Host executors reach this scheduler by [default: the --listen address, or this
    /// machine's hostname when that is a wildcard such as 0.0.0.0].
    #[arg(long, env = "STRATA_ADVERTISE_HOST")]
    pub advertise_host: Option<String>,
    /// Serve Prometheus `/metrics`, `/healthz` and `/readyz` on this port (of the --listen host).
    #[arg(long, value_name = "PORT")]
    pub metrics_port: Option<u16>,
    /// Serve the web console on this port (of the --listen host): the warehouse's runs
    /// with live progress, the schedules' pipelines, tables, lineage and this cluster,
    /// behind the Flight SQL users.
    #[arg(long, requires = "warehouse", value_name = "PORT")]
    pub console_port: Option<u16>,
    #[command(flatten)]
    pub autoscale: AutoscaleArgs,
    /// Tokens callers must present, one a line: `full <token>` or `read-only <token>`
    /// (a Kubernetes Secret mounted as a file, say).
    #[arg(long, env = "STRATA_TOKEN_FILE", value_name = "PATH")]
    pub token_file: Option<PathBuf>,
    /// One more full token (from STRATA_TOKEN, as every Strata process reads it).
    #[command(flatten)]
    pub credentials: CredentialsArgs,
}

/// The tokens the scheduler accepts: its token file's and `STRATA_TOKEN`.
fn tokens(args: &SchedulerArgs) -> Result<Tokens, CliError> {
    let mut tokens = match &args.token_file {
        Some(path) => {
            Tokens::from_file(path).map_err(|error| CliError::Cluster(error.to_string()))?
        }
        None => Tokens::default(),
    };
    if let Some(token) = args.credentials.token.as_deref() {
        tokens
            .add(token, Access::Full)
            .map_err(|why| CliError::Cluster(format!("STRATA_TOKEN: {why}")))?;
    }
    Ok(tokens)
}

/// The certificate and key the scheduler's port serves TLS with: the same `--tls-cert`
/// and `--tls-key` as its Flight SQL port.
fn server_tls(args: &SchedulerArgs) -> Result<Option<ServerTls>, CliError> {
    let (Some(cert), Some(key)) = (&args.flight.tls_cert, &args.flight.tls_key) else {
        return Ok(None);
    };
    let read = |path: &PathBuf| {
        std::fs::read(path)
            .map_err(|error| CliError::Cluster(format!("cannot read {}: {error}", path.display())))
    };
    Ok(Some(ServerTls {
        cert: read(cert)?,
        key: read(key)?,
        ca: args.credentials.credentials()?.tls_ca,
    }))
}

/// Runs a scheduler until Ctrl-C or SIGTERM.
pub(crate) async fn scheduler(args: SchedulerArgs, out: &mut impl Write) -> Result<(), CliError> {
    let schedules = match &args.warehouse {
        Some(warehouse) => {
            let warehouse = crate::warehouse::open(warehouse).await?;
            crate::warehouse::refuse_unshared(&warehouse)?;
            if let Some(file) = &args.schedules {
                let registered = Schedules::new(warehouse.clone());
                let applied = declared::apply(file, &registered).await?;
                tracing::info!(
                    "{}: registered {:?}, removed {:?}",
                    file.display(),
                    applied.registered,
                    applied.removed
                );
            }
            Some(warehouse)
        }
        None => None,
    };
    let mut scheduler = Scheduler::bind(SchedulerOptions {
        listen: args.listen,
        executor_timeout_seconds: args.executor_timeout,
        metrics_listen: args
            .metrics_port
            .map(|port| SocketAddr::new(args.listen.ip(), port)),
        advertise_host: args.advertise_host.clone(),
        tokens: tokens(&args)?,
        tls: server_tls(&args)?,
        cluster_tls: args.credentials.credentials()?.cluster,
        console: match args.console_port {
            Some(port) => Some(ConsoleSettings {
                listen: SocketAddr::new(args.listen.ip(), port),
                users: args.flight.login.config()?.users,
                insecure: args.flight.login.insecure,
            }),
            None => None,
        },
        warehouse: schedules,
    })
    .await
    .map_err(|error| CliError::Cluster(error.to_string()))?;
    let address = scheduler
        .local_addr()
        .map_err(|error| CliError::Cluster(error.to_string()))?;
    let own = scheduler
        .client_address()
        .map_err(|error| CliError::Cluster(error.to_string()))?;
    writeln!(
        out,
        "Strata scheduler {} listening on {address}",
        strata_scheduler::VERSION
    )?;
    if let Some(metrics) = scheduler.metrics_addr() {
        writeln!(out, "serving metrics on http://{metrics}/metrics")?;
    }
    if let Some(console) = scheduler.console_addr() {
        writeln!(out, "serving the console on http://{console}/")?;
    }
    // Executors it spawns trust what its own clients trust.
    let trusted = args
        .credentials
        .tls_ca
        .clone()
        .or_else(|| args.flight.tls_cert.clone());
    let own_token = scheduler.own_credentials().token.clone();
    if let Some(autoscale) = args
        .autoscale
        .build(
            own,
            args.executor_timeout,
            own_token,
            trusted,
            args.credentials.cluster_tls.clone(),
        )
        .await?
    {
        let settings = &autoscale.settings;
        writeln!(
            out,
            "autoscaling {} executors between {} and {} ({} slot(s) each)",
            autoscale.backend.name(),
            settings.min,
            settings.max,
            autoscale.backend.slots_per_executor()
        )?;
        scheduler.autoscale(autoscale);
    }
    out.flush()?;
    let flight = match (args.flight_sql_port, &args.warehouse) {
        (Some(port), Some(warehouse)) => {
            let listen = SocketAddr::new(args.listen.ip(), port);
            let engine = Engine::cluster(&own.to_string(), scheduler.own_credentials())
                .with_job_canceller(Arc::new(scheduler.job_canceller()));
            Some(serve::bind(warehouse, listen, args.flight, engine, out).await?)
        }
        _ => None,
    };
    let scheduling = async {
        scheduler
            .serve(shutdown_signal())
            .await
            .map_err(|error| CliError::Cluster(error.to_string()))
    };
    match flight {
        Some(flight) => {
            let querying = async {
                flight
                    .serve(shutdown_signal())
                    .await
                    .map_err(CliError::from)
            };
            tokio::try_join!(scheduling, querying).map(|_| ())
        }
        None => scheduling.await,
    }
}

/// Arguments of `strata executor`.
#[derive(Args)]
pub(crate) struct ExecutorArgs {
    /// The scheduler to join, `host:port`.
    #[arg(long, env = "STRATA_SCHEDULER")]
    pub scheduler: String,
    /// Address to listen on and to advertise to the scheduler and other executors.
    #[arg(long, default_value = "127.0.0.1", env = "STRATA_EXECUTOR_HOST")]
    pub host: String,
    /// Arrow Flight port for shuffle data and results (0 picks a free port).
    #[arg(long, default_value_t = 0)]
    pub flight_port: u16,
    /// gRPC port for tasks the scheduler pushes (0 picks a free port).
    #[arg(long, default_value_t = 0)]
    pub grpc_port: u16,
    /// Serve `/healthz` and `/readyz` on this port.
    #[arg(long)]
    pub health_port: Option<u16>,
    /// Directory for shuffle files and spills [default: a fresh one under the temp directory].
    #[arg(long)]
    pub work_dir: Option<PathBuf>,
    /// Tasks to run at once [default: one per core].
    #[arg(long, default_value_t = 0)]
    pub concurrent_tasks: usize,
    /// Seconds between heartbeats; keep it well under the scheduler's --executor-timeout.
    #[arg(long, default_value_t = 5, value_name = "SECONDS")]
    pub heartbeat_interval: u64,
    #[command(flatten)]
    pub credentials: CredentialsArgs,
}

/// Runs an executor until it is stopped.
pub(crate) async fn executor(args: ExecutorArgs) -> Result<(), CliError> {
    let work_dir = args.work_dir.unwrap_or_else(|| {
        std::env::temp_dir().join(format!("strata-executor-{}", std::process::id()))
    });
    eprintln!(
        "Strata executor {} joining {} (work dir {})",
        strata_engine::scheduler_client::VERSION,
        args.scheduler,
        work_dir.display()
    );
    strata_executor::run(ExecutorOptions {
        scheduler: args.scheduler,
        host: args.host,
        flight_port: args.flight_port,
        grpc_port: args.grpc_port,
        health_port: args.health_port,
        work_dir,
        concurrent_tasks: args.concurrent_tasks,
        heartbeat_interval_seconds: args.heartbeat_interval,
        credentials: args.credentials.credentials()?,
    })
    .await
    .map_err(|error| CliError::Cluster(error.to_string()))
}

/// Arguments of `strata cluster`.
#[derive(Args)]
pub(crate) struct ClusterArgs {
    /// Executor processes to start.
    #[arg(long, default_value_t = 2)]
    pub executors: usize,
    /// The scheduler's address.
    #[arg(long, default_value = "127.0.0.1:50050")]
    pub listen: SocketAddr,
    /// Tasks each executor runs at once.
    #[arg(long, default_value_t = 2)]
    pub concurrent_tasks: usize,
}

/// Child processes that are killed when this value is dropped.
struct Processes(Vec<Child>);

impl Drop for Processes {
    fn drop(&mut self) {
        for child in &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Starts a scheduler and executors as real processes on this machine, until Ctrl-C.
pub(crate) async fn cluster(args: ClusterArgs, out: &mut impl Write) -> Result<(), CliError> {
    if args.executors == 0 {
        return Err(CliError::Cluster("--executors must be at least 1".into()));
    }
    let exe = std::env::current_exe()?;
    let mut processes = Processes(Vec::new());
    let mut scheduler = Command::new(&exe)
        .args(["scheduler", "--listen", &args.listen.to_string()])
        .stdout(Stdio::piped())
        .spawn()?;
    let stdout = scheduler.stdout.take();
    processes.0.push(scheduler);
    let mut line = String::new();
    if let Some(stdout) = stdout {
        BufReader::new(stdout).read_line(&mut line)?;
    }
    let address = line
        .trim()
        .rsplit(' ')
        .next()
        .filter(|_| line.contains("listening on"))
        .ok_or_else(|| CliError::Cluster(format!("the scheduler did not start: {}", line.trim())))?
        .to_owned();
    for _ in 0..args.executors {
        let executor = Command::new(&exe)
            .args([
                "executor",
                "--scheduler",
                &address,
                "--concurrent-tasks",
                &args.concurrent_tasks.to_string(),
            ])
            .spawn()?;
        processes.0.push(executor);
    }
    writeln!(
        out,
        "cluster up: scheduler on {address}, {} executor(s); submit with \
         `strata submit PIPELINE --scheduler {address} --warehouse DIR`; Ctrl-C stops it",
        args.executors
    )?;
    out.flush()?;
    tokio::select! {
        _ = shutdown_signal() => {}
        exited = wait_any(&mut processes) => {
            return Err(CliError::Cluster(format!("a cluster process exited: {exited}")));
        }
    }
    drop(processes);
    writeln!(out, "cluster stopped")?;
    Ok(())
}

/// Completes when any child exits, saying which and how.
async fn wait_any(processes: &mut Processes) -> String {
    loop {
        for child in &mut processes.0 {
            if let Ok(Some(status)) = child.try_wait() {
                return format!("process {} ({status})", child.id());
            }
        }
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    }
}

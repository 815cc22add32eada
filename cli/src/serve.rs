//! `strata serve`: the warehouse's published tables over Arrow Flight SQL.

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;

use clap::Args;
use strata_engine::Engine;
use strata_flightsql::{FlightSqlServer, ServerConfig, TlsFiles};
use strata_storage::Warehouse;
use strata_storage::catalog::published_tables;

use crate::error::CliError;

/// Arguments of `strata serve`.
#[derive(Args)]
pub(crate) struct ServeArgs {
    /// Warehouse whose published tables are served: a directory or a store URL
    /// (`s3://bucket/prefix`, `gs://…`, `az://…`).
    #[arg(long, env = "STRATA_WAREHOUSE", value_name = "PATH_OR_URL")]
    pub warehouse: String,
    /// Address to listen on; port 0 picks a free port and prints it.
    #[arg(long, default_value = "127.0.0.1:50051", env = "STRATA_FLIGHT_LISTEN")]
    pub listen: SocketAddr,
    #[command(flatten)]
    pub flight: FlightArgs,
}

/// Who may log in: shared by Flight SQL (`strata serve`, `strata scheduler`) and the
/// web console.
#[derive(Args)]
pub(crate) struct LoginArgs {
    /// Flight SQL settings: a TOML file with `[[users]]`, `token_ttl_seconds`,
    /// `show_quarantine` and `[tls]`.
    #[arg(long, value_name = "PATH", env = "STRATA_FLIGHT_CONFIG")]
    pub config: Option<PathBuf>,
    /// Users as `name:password,…`; added to those of the config file.
    #[arg(
        long,
        env = "STRATA_FLIGHT_USERS",
        hide_env_values = true,
        value_name = "USERS"
    )]
    pub users: Option<String>,
    /// Serve a non-loopback address without credentials.
    #[arg(long)]
    pub insecure: bool,
}

impl LoginArgs {
    /// The config file's settings, with `--users` added.
    pub(crate) fn config(&self) -> Result<ServerConfig, CliError> {
        let mut config = match &self.config {
            Some(path) => ServerConfig::from_file(path)?,
            None => ServerConfig::default(),
        };
        if let Some(users) = &self.users {
            config = config.with_users(users)?;
        }
        config.insecure = self.insecure;
        Ok(config)
    }
}

/// Who may query and how: shared by `strata serve` and `strata scheduler --flight-sql-port`.
#[derive(Args)]
pub(crate) struct FlightArgs {
    #[command(flatten)]
    pub login: LoginArgs,
    /// PEM certificate for TLS (with --tls-key); on `strata scheduler`, for its gRPC
    /// port too.
    #[arg(long, requires = "tls_key", value_name = "PATH")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key for TLS (with --tls-cert).
    #[arg(long, requires = "tls_cert", value_name = "PATH")]
    pub tls_key: Option<PathBuf>,
    /// Also show `<table>__quarantine` and `raw.<table>__rejects` tables.
    #[arg(long)]
    pub show_quarantine: bool,
    /// Stop a query that runs longer than this many seconds [default: 900].
    #[arg(long, value_name = "SECONDS")]
    pub query_timeout: Option<u64>,
    /// Memory one query may hold, in MiB, before it spills or fails [default: no limit].
    #[arg(long, value_name = "MIB")]
    pub query_memory: Option<usize>,
    /// Memory all queries together may hold, in MiB [default: no limit].
    #[arg(long, value_name = "MIB")]
    pub memory: Option<usize>,
    /// Queries one user may run at once; more wait in a short queue [default: 8].
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub concurrent_queries: Option<u32>,
}

/// Binds, says where, and serves until Ctrl-C or SIGTERM.
pub(crate) async fn run(args: ServeArgs, out: &mut impl Write) -> Result<(), CliError> {
    let server = bind(
        &args.warehouse,
        args.listen,
        args.flight,
        Engine::Embedded,
        out,
    )
    .await?;
    server.serve(shutdown_signal()).await?;
    writeln!(out, "stopped")?;
    Ok(())
}

/// Binds a Flight SQL server whose queries run on `engine`, and says where on `out`.
pub(crate) async fn bind(
    warehouse: &str,
    listen: SocketAddr,
    args: FlightArgs,
    engine: Engine,
    out: &mut impl Write,
) -> Result<FlightSqlServer, CliError> {
    let mut config = args.login.config()?;
    if let (Some(cert), Some(key)) = (args.tls_cert, args.tls_key) {
        config.tls = Some(TlsFiles { cert, key });
    }
    config.show_quarantine |= args.show_quarantine;
    if let Some(seconds) = args.query_timeout {
        config.limits.query_timeout = std::time::Duration::from_secs(seconds);
    }
    if let Some(mib) = args.query_memory {
        config.limits.query_memory = Some(mib << 20);
    }
    if let Some(mib) = args.memory {
        config.limits.server_memory = Some(mib << 20);
    }
    if let Some(count) = args.concurrent_queries {
        config.limits.concurrent_per_user = count as usize;
    }
    let users = config.users.len();
    let show_quarantine = config.show_quarantine;

    let warehouse = Warehouse::open(warehouse)?;
    let location = warehouse.to_string();
    let tables = match warehouse.local_dir() {
        // A missing directory is the server's own clear error, just below.
        Some(dir) if !dir.is_dir() => Vec::new(),
        _ => published_tables(&warehouse).await?,
    };
    let runs_on = if engine.is_cluster() {
        "queries run on the cluster"
    } else {
        "queries run here"
    };
    let server = FlightSqlServer::bind(warehouse, listen, config, engine).await?;
    let visible = tables
        .iter()
        .filter(|table| show_quarantine || !table.is_set_aside())
        .count();
    let scheme = if server.uses_tls() {
        "grpc+tls"
    } else {
        "grpc"
    };
    writeln!(
        out,
        "serving Flight SQL on {scheme}://{} ({} published tables in {}; {}; {runs_on})",
        server.local_addr(),
        visible,
        location,
        match users {
            0 => "no credentials needed".to_owned(),
            n => format!("{n} user(s)"),
        }
    )?;
    out.flush()?;
    Ok(server)
}

/// Completes on Ctrl-C or SIGTERM, so a service manager can stop the server cleanly.
/// The handlers are installed when this is called, not when it is first awaited, so a
/// signal that comes before then is not lost.
pub(crate) fn shutdown_signal() -> impl Future<Output = ()> {
    #[cfg(unix)]
    let handlers = {
        use tokio::signal::unix::{SignalKind, signal};
        signal(SignalKind::interrupt()).and_then(|interrupt| {
            signal(SignalKind::terminate()).map(|terminate| (interrupt, terminate))
        })
    };
    async move {
        #[cfg(unix)]
        if let Ok((mut interrupt, mut terminate)) = handlers {
            tokio::select! {
                _ = interrupt.recv() => {}
                _ = terminate.recv() => {}
            }
            return;
        }
        tokio::signal::ctrl_c().await.unwrap_or(());
    }
}

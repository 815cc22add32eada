//! What a command presents to a scheduler: its token, and the CA to trust when the
//! scheduler's port serves TLS; and to executors, the cluster's identity.

use std::path::PathBuf;

use clap::Args;
use strata_engine::cluster_tls::{CLUSTER_TLS_ENV, ClusterTls};
use strata_engine::scheduler_client::{self, Credentials, SchedulerClient, TLS_CA_ENV, TOKEN_ENV};

use crate::error::CliError;

/// `--token` and `--tls-ca`, or `STRATA_TOKEN` and `STRATA_TLS_CA` from the environment
/// (a Kubernetes Secret, say).
#[derive(Args, Clone, Default)]
pub(crate) struct CredentialsArgs {
    /// The token to present to a scheduler that asks for one.
    #[arg(long = "token", env = TOKEN_ENV, hide_env_values = true, value_name = "TOKEN")]
    pub token: Option<String>,
    /// PEM file of the CA the scheduler's certificate chains to (or the self-signed
    /// certificate itself); with it, connections to the scheduler use TLS.
    #[arg(long = "tls-ca", env = TLS_CA_ENV, value_name = "PATH")]
    pub tls_ca: Option<PathBuf>,
    /// Directory of the cluster's identity (`ca.crt`, `tls.crt`, `tls.key`, as a
    /// Kubernetes TLS Secret mounts); with it the executors' ports speak mutual TLS, and
    /// this process presents it there.
    #[arg(long = "cluster-tls", env = CLUSTER_TLS_ENV, value_name = "DIR")]
    pub cluster_tls: Option<PathBuf>,
}

impl CredentialsArgs {
    pub(crate) fn credentials(&self) -> Result<Credentials, CliError> {
        let tls_ca = self
            .tls_ca
            .as_ref()
            .map(|path| {
                std::fs::read(path).map_err(|error| {
                    CliError::Cluster(format!("cannot read --tls-ca {}: {error}", path.display()))
                })
            })
            .transpose()?;
        let cluster = self
            .cluster_tls
            .as_deref()
            .map(ClusterTls::from_dir)
            .transpose()?;
        Ok(Credentials {
            token: self.token.clone(),
            tls_ca,
            tls_domain: None,
            cluster,
        })
    }

    /// Connects to the scheduler's pipeline service as the client command `name`.
    pub(crate) async fn connect(
        &self,
        scheduler: &str,
        name: &str,
    ) -> Result<SchedulerClient, CliError> {
        Ok(scheduler_client::connect(scheduler, "client", name, &self.credentials()?).await?)
    }
}

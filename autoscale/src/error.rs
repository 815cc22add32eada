//! The error type of `strata-autoscale`.

/// Result with the autoscaler's error.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Why a backend could not carry out a decision.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot start executor {program}: {source}")]
    Spawn {
        program: String,
        source: std::io::Error,
    },
    #[error("cannot find a free port on {host}: {source}")]
    Port {
        host: String,
        source: std::io::Error,
    },
    #[error("no executor process of this scheduler listens on {address}")]
    UnknownProcess { address: String },
    #[error("cannot signal executor process {pid}: {source}")]
    Signal { pid: u32, source: std::io::Error },
    #[error("Kubernetes API: {action}: {source}")]
    Kubernetes {
        action: String,
        source: Box<kube::Error>,
    },
    #[error(
        "Kubernetes API: {action}: the object kept changing under us ({attempts} conflicts in a row)"
    )]
    Conflicts { action: String, attempts: usize },
    #[error("no pod matching {selector} in namespace {namespace} has IP {ip}")]
    PodNotFound {
        selector: String,
        namespace: String,
        ip: String,
    },
}

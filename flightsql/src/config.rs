//! The server's settings: users, visibility of quarantine tables, TLS. Secrets come
//! from a file or the environment and are never printed.

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use strata_access::Viewer;

use crate::error::{Error, Result};
use crate::limits::{Limits, UserLimits};
use crate::password;

/// How long a bearer token from the handshake stays valid, unless configured.
const DEFAULT_TOKEN_TTL: Duration = Duration::from_secs(12 * 60 * 60);

/// One user who may connect with a username and password.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct User {
    pub name: String,
    pub password: String,
    /// This user's query time limit, instead of the server's.
    #[serde(default)]
    pub query_timeout_seconds: Option<u64>,
    /// Queries this user may run at once, instead of the server's number.
    #[serde(default)]
    pub concurrent_queries: Option<usize>,
    /// The user's role: recorded with each query, and `admin` may read the audit
    /// trail (`_strata.audit`).
    #[serde(default)]
    pub role: Option<String>,
}

/// How a configured user reads: their name, and their role if any, or none when the
/// configuration has no such user.
pub fn viewer_of(users: &[User], name: &str) -> Option<Viewer> {
    users
        .iter()
        .find(|user| user.name == name)
        .map(|user| Viewer {
            user: user.name.clone(),
            role: user.role.clone(),
        })
}

impl User {
    /// A user with the server's limits.
    pub fn new(name: &str, password: &str) -> Self {
        Self {
            name: name.to_owned(),
            password: password.to_owned(),
            query_timeout_seconds: None,
            concurrent_queries: None,
            role: None,
        }
    }

    pub fn limits(&self) -> UserLimits {
        UserLimits {
            query_timeout: self.query_timeout_seconds.map(Duration::from_secs),
            concurrent: self.concurrent_queries,
        }
    }
}

impl fmt::Debug for User {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("User")
            .field("name", &self.name)
            .field("password", &"<redacted>")
            .field("query_timeout_seconds", &self.query_timeout_seconds)
            .field("concurrent_queries", &self.concurrent_queries)
            .field("role", &self.role)
            .finish()
    }
}

/// The `[limits]` table of the config file; each key overrides one default of [`Limits`].
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct LimitsFile {
    query_timeout_seconds: Option<u64>,
    query_memory_mb: Option<usize>,
    server_memory_mb: Option<usize>,
    concurrent_queries_per_user: Option<usize>,
    queued_queries_per_user: Option<usize>,
    queue_timeout_seconds: Option<u64>,
}

impl LimitsFile {
    fn apply(self, limits: &mut Limits) {
        if let Some(seconds) = self.query_timeout_seconds {
            limits.query_timeout = Duration::from_secs(seconds);
        }
        if let Some(mb) = self.query_memory_mb {
            limits.query_memory = Some(mb << 20);
        }
        if let Some(mb) = self.server_memory_mb {
            limits.server_memory = Some(mb << 20);
        }
        if let Some(count) = self.concurrent_queries_per_user {
            limits.concurrent_per_user = count;
        }
        if let Some(count) = self.queued_queries_per_user {
            limits.queued_per_user = count;
        }
        if let Some(seconds) = self.queue_timeout_seconds {
            limits.queue_timeout = Duration::from_secs(seconds);
        }
    }
}

/// A certificate and key, both PEM, for serving over TLS.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// Everything `serve` needs besides the warehouse and the address.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Who may connect; nobody needs credentials when empty.
    pub users: Vec<User>,
    pub token_ttl: Duration,
    /// Show `<table>__quarantine` and `raw.<table>__rejects` tables too.
    pub show_quarantine: bool,
    pub tls: Option<TlsFiles>,
    /// Serve addresses other than loopback without credentials.
    pub insecure: bool,
    /// What each query and each user may use.
    pub limits: Limits,
    /// How long a table's Delta snapshot is served before its log is looked at again
    /// (zero: at every query, which then always reads the newest commit).
    pub snapshot_refresh: Duration,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            users: Vec::new(),
            token_ttl: DEFAULT_TOKEN_TTL,
            show_quarantine: false,
            tls: None,
            insecure: false,
            limits: Limits::default(),
            snapshot_refresh: Duration::ZERO,
        }
    }
}

/// The TOML file `strata serve --config` reads.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ConfigFile {
    #[serde(default)]
    users: Vec<User>,
    token_ttl_seconds: Option<u64>,
    #[serde(default)]
    show_quarantine: bool,
    tls: Option<TlsFiles>,
    #[serde(default)]
    limits: LimitsFile,
    snapshot_refresh_ms: Option<u64>,
}

impl ServerConfig {
    /// Reads a TOML config file; relative TLS paths are relative to the file.
    pub fn from_file(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|source| Error::Io {
            path: path.to_owned(),
            source,
        })?;
        let file: ConfigFile = toml::from_str(&text).map_err(|error| Error::Config {
            path: path.to_owned(),
            reason: error.message().to_owned(),
        })?;
        let base = path.parent().unwrap_or(Path::new("."));
        if let Some(user) = file.users.iter().find(|user| user.password.is_empty()) {
            return Err(Error::Config {
                path: path.to_owned(),
                reason: format!("user {} has an empty password", user.name),
            });
        }
        for user in &file.users {
            if let Some(problem) = password::problem(&user.password) {
                return Err(Error::Config {
                    path: path.to_owned(),
                    reason: format!("the password of user {}: {problem}", user.name),
                });
            }
            warn_if_plain(user, &path.display().to_string());
        }
        Ok(Self {
            users: file.users,
            token_ttl: file
                .token_ttl_seconds
                .map_or(DEFAULT_TOKEN_TTL, Duration::from_secs),
            show_quarantine: file.show_quarantine,
            tls: file.tls.map(|tls| TlsFiles {
                cert: base.join(tls.cert),
                key: base.join(tls.key),
            }),
            insecure: false,
            snapshot_refresh: Duration::from_millis(file.snapshot_refresh_ms.unwrap_or(0)),
            limits: {
                let mut limits = Limits::default();
                file.limits.apply(&mut limits);
                if limits.concurrent_per_user == 0 {
                    return Err(Error::Config {
                        path: path.to_owned(),
                        reason: "limits.concurrent_queries_per_user must be at least 1".to_owned(),
                    });
                }
                limits
            },
        })
    }

    /// Adds users written `name:password,name:password` (`--users`, `STRATA_FLIGHT_USERS`).
    pub fn with_users(mut self, value: &str) -> Result<Self> {
        for entry in value.split(',').map(str::trim).filter(|e| !e.is_empty()) {
            let (name, password) = entry
                .split_once(':')
                .filter(|(name, password)| !name.is_empty() && !password.is_empty())
                .ok_or_else(|| {
                    Error::Users("expected name:password pairs separated by commas".to_owned())
                })?;
            let user = User::new(name, password);
            warn_if_plain(&user, "--users or STRATA_FLIGHT_USERS");
            self.users.push(user);
        }
        Ok(self)
    }
}

/// Plain-text passwords still work, but whoever reads the settings can log in with them.
fn warn_if_plain(user: &User, source: &str) {
    if !password::is_hash(&user.password) {
        tracing::warn!(
            "the password of user {} in {source} is plain text; store its hash instead, from `strata hash-password`",
            user.name
        );
    }
}

//! The server's settings: users, visibility of quarantine tables, TLS. Secrets come
//! from a file or the environment and are never printed.

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::error::{Error, Result};
use crate::password;

/// How long a bearer token from the handshake stays valid, unless configured.
const DEFAULT_TOKEN_TTL: Duration = Duration::from_secs(12 * 60 * 60);

/// One user who may connect with a username and password.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct User {
    pub name: String,
    pub password: String,
}

impl fmt::Debug for User {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("User")
            .field("name", &self.name)
            .field("password", &"<redacted>")
            .finish()
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
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            users: Vec::new(),
            token_ttl: DEFAULT_TOKEN_TTL,
            show_quarantine: false,
            tls: None,
            insecure: false,
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
            let user = User {
                name: name.to_owned(),
                password: password.to_owned(),
            };
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

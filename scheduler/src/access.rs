//! Who may call the scheduler's port: holders of a token, each token full or read-only.
//! Every call is checked, on both the pipeline service and Ballista's scheduler service
//! (which executors and query clients call), so a pipeline cannot be run, and a plan
//! cannot reach the executors' files, without a full token.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use strata_engine::scheduler_client::presented_token;
use subtle::ConstantTimeEq;
use tonic::service::Interceptor;
use tonic::{Request, Status};

/// What a token allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Access {
    /// Watch runs and list them.
    ReadOnly,
    /// Also submit and cancel runs, drain executors, and run work (executors and query
    /// clients need this).
    Full,
}

impl Access {
    fn parse(word: &str) -> Option<Self> {
        match word {
            "full" => Some(Self::Full),
            "read-only" => Some(Self::ReadOnly),
            _ => None,
        }
    }
}

/// Why the tokens could not be read.
#[derive(Debug, thiserror::Error)]
pub enum TokensError {
    #[error("cannot read the token file {}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}:{line}: {why}", path.display())]
    Line {
        path: PathBuf,
        line: usize,
        why: String,
    },
}

/// The tokens this scheduler accepts; none means anyone who reaches the port may call it.
#[derive(Clone, Default)]
pub struct Tokens {
    tokens: Vec<(String, Access)>,
}

impl std::fmt::Debug for Tokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Tokens({} token(s), redacted)", self.tokens.len())
    }
}

/// Tokens shorter than this are refused: they could be guessed.
const SHORTEST: usize = 16;

impl Tokens {
    /// Reads a token file: one token per line as `full <token>` or `read-only <token>`;
    /// blank lines and `#` comments are skipped (a Kubernetes Secret mounts as such a file).
    pub fn from_file(path: &Path) -> Result<Self, TokensError> {
        let text = std::fs::read_to_string(path).map_err(|source| TokensError::Read {
            path: path.to_owned(),
            source,
        })?;
        let mut tokens = Self::default();
        for (index, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let problem = |why: &str| TokensError::Line {
                path: path.to_owned(),
                line: index + 1,
                why: why.to_owned(),
            };
            let (access, token) = line
                .split_once(char::is_whitespace)
                .ok_or_else(|| problem("expected `full <token>` or `read-only <token>`"))?;
            let access = Access::parse(access).ok_or_else(|| {
                problem("the access must be `full` or `read-only` (the token is not shown)")
            })?;
            tokens
                .add(token.trim(), access)
                .map_err(|why| problem(&why))?;
        }
        Ok(tokens)
    }

    /// Adds one token; a short one is refused.
    pub fn add(&mut self, token: &str, access: Access) -> Result<(), String> {
        if token.len() < SHORTEST {
            return Err(format!(
                "a token needs at least {SHORTEST} characters (use `openssl rand -hex 32`)"
            ));
        }
        self.tokens.push((token.to_owned(), access));
        Ok(())
    }

    pub fn is_empty(&self) -> bool {
        self.tokens.is_empty()
    }

    /// What a presented token allows; every token is compared in constant time.
    fn access(&self, presented: &str) -> Option<Access> {
        let mut found = None;
        for (token, access) in &self.tokens {
            if bool::from(token.as_bytes().ct_eq(presented.as_bytes())) {
                found = found.max(Some(*access));
            }
        }
        found
    }
}

/// The check on every call of one service, which needs at least `needs`.
#[derive(Clone)]
pub(crate) struct Gate {
    tokens: Arc<Tokens>,
    needs: Access,
}

impl Gate {
    pub(crate) fn new(tokens: Arc<Tokens>, needs: Access) -> Self {
        Self { tokens, needs }
    }
}

impl Interceptor for Gate {
    fn call(&mut self, mut request: Request<()>) -> Result<Request<()>, Status> {
        let access = if self.tokens.is_empty() {
            Access::Full
        } else {
            let presented = presented_token(request.metadata()).ok_or_else(|| {
                Status::unauthenticated(
                    "this scheduler needs a token: set STRATA_TOKEN or pass --token",
                )
            })?;
            self.tokens.access(presented).ok_or_else(|| {
                Status::unauthenticated("the token is not one this scheduler accepts")
            })?
        };
        if access < self.needs {
            return Err(Status::permission_denied(
                "a read-only token cannot run work on this scheduler",
            ));
        }
        request.extensions_mut().insert(access);
        Ok(request)
    }
}

/// Refuses a call whose token does not allow `what`.
pub(crate) fn require<T>(request: &Request<T>, needs: Access, what: &str) -> Result<(), Status> {
    match request.extensions().get::<Access>() {
        Some(access) if *access >= needs => Ok(()),
        _ => Err(Status::permission_denied(format!(
            "a read-only token cannot {what}"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FULL: &str = "full-token-0123456789";
    const READ: &str = "read-token-0123456789";

    fn tokens() -> Arc<Tokens> {
        let mut tokens = Tokens::default();
        tokens.add(FULL, Access::Full).unwrap();
        tokens.add(READ, Access::ReadOnly).unwrap();
        Arc::new(tokens)
    }

    fn call(gate: &mut Gate, token: Option<&str>) -> Result<Access, Status> {
        let mut request = Request::new(());
        if let Some(token) = token {
            request
                .metadata_mut()
                .insert("authorization", format!("Bearer {token}").parse().unwrap());
        }
        gate.call(request)
            .map(|request| *request.extensions().get::<Access>().unwrap())
    }

    #[test]
    fn each_call_needs_a_token_that_allows_it() {
        let mut pipelines = Gate::new(tokens(), Access::ReadOnly);
        assert_eq!(call(&mut pipelines, Some(FULL)).unwrap(), Access::Full);
        assert_eq!(call(&mut pipelines, Some(READ)).unwrap(), Access::ReadOnly);
        let missing = call(&mut pipelines, None).unwrap_err();
        assert_eq!(missing.code(), tonic::Code::Unauthenticated);
        assert!(missing.message().contains("STRATA_TOKEN"));
        let wrong = call(&mut pipelines, Some("not-a-token-0123456789")).unwrap_err();
        assert_eq!(wrong.code(), tonic::Code::Unauthenticated);

        let mut ballista = Gate::new(tokens(), Access::Full);
        let read_only = call(&mut ballista, Some(READ)).unwrap_err();
        assert_eq!(read_only.code(), tonic::Code::PermissionDenied);

        let mut open = Gate::new(Arc::default(), Access::Full);
        assert_eq!(call(&mut open, None).unwrap(), Access::Full);
    }

    #[test]
    fn a_token_file_has_one_token_a_line_and_short_or_unknown_ones_are_refused() {
        let dir = std::env::temp_dir().join(format!("strata-tokens-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("tokens");
        std::fs::write(&path, format!("# ops\nfull {FULL}\n\nread-only {READ}\n")).unwrap();
        let tokens = Tokens::from_file(&path).unwrap();
        assert_eq!(tokens.access(FULL), Some(Access::Full));
        assert_eq!(tokens.access(READ), Some(Access::ReadOnly));

        std::fs::write(&path, "full short\n").unwrap();
        let short = Tokens::from_file(&path).unwrap_err().to_string();
        assert!(short.contains(":1: a token needs at least 16"), "{short}");
        std::fs::write(&path, format!("admin {FULL}\n")).unwrap();
        let unknown = Tokens::from_file(&path).unwrap_err().to_string();
        assert!(!unknown.contains(FULL), "the token leaked: {unknown}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

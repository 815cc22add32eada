//! Basic credentials in, bearer tokens out, and a token check on every call.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::{STANDARD_NO_PAD, URL_SAFE_NO_PAD};
use tonic::Status;
use tonic::metadata::MetadataMap;

use strata_access::Viewer;

use crate::config::{User, viewer_of};
use crate::password;

/// The header both the handshake and every later call carry credentials in.
pub(crate) const AUTHORIZATION: &str = "authorization";

/// Who is calling: a user, or anyone when the server has no users.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Caller {
    User(String),
    Anonymous,
}

impl std::fmt::Display for Caller {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Caller::User(name) => f.write_str(name),
            Caller::Anonymous => f.write_str("anonymous"),
        }
    }
}

/// Checks passwords and issues and checks bearer tokens.
pub(crate) struct Authenticator {
    users: Vec<User>,
    /// What an unknown user's password is checked against: a hash when users have
    /// hashes, so the time a refusal takes does not tell whether the user exists.
    decoy: String,
    ttl: Duration,
    tokens: Mutex<HashMap<String, (String, Instant)>>,
}

impl Authenticator {
    pub(crate) fn new(users: Vec<User>, ttl: Duration) -> crate::error::Result<Self> {
        let decoy = password::decoy(users.iter().map(|user| user.password.as_str()))?;
        Ok(Self {
            users,
            decoy,
            ttl,
            tokens: Mutex::new(HashMap::new()),
        })
    }

    /// How a caller reads: as the configured user with their role, or anonymously.
    pub(crate) fn viewer(&self, caller: &Caller) -> Viewer {
        let configured = match caller {
            Caller::User(name) => viewer_of(&self.users, name),
            Caller::Anonymous => None,
        };
        configured.unwrap_or_else(|| Viewer {
            user: caller.to_string(),
            role: None,
        })
    }

    /// Whether calls need credentials at all.
    pub(crate) fn required(&self) -> bool {
        !self.users.is_empty()
    }

    /// Checks `authorization: Basic …` and returns a new bearer token for the user.
    pub(crate) fn handshake(
        &self,
        metadata: &MetadataMap,
    ) -> Result<(Caller, Option<String>), Status> {
        if !self.required() {
            return Ok((Caller::Anonymous, None));
        }
        let header = header(metadata)?;
        let encoded = header
            .strip_prefix("Basic ")
            .ok_or_else(|| Status::unauthenticated("the handshake needs Basic credentials"))?;
        // Some drivers leave out the base64 padding.
        let decoded = STANDARD_NO_PAD
            .decode(encoded.trim().trim_end_matches('='))
            .ok()
            .and_then(|bytes| String::from_utf8(bytes).ok())
            .ok_or_else(|| Status::unauthenticated("malformed Basic credentials"))?;
        let (name, password) = decoded
            .split_once(':')
            .ok_or_else(|| Status::unauthenticated("malformed Basic credentials"))?;
        let known = self.users.iter().find(|user| user.name == name);
        // Check against something even for unknown users, so timing does not tell them apart.
        let expected = known.map_or(self.decoy.as_str(), |user| user.password.as_str());
        let matches = password::matches(expected, password);
        if known.is_none() || !matches {
            tracing::warn!(
                user = name,
                "refused a handshake: wrong username or password"
            );
            return Err(Status::unauthenticated("wrong username or password"));
        }
        let token = new_token()?;
        let mut tokens = self
            .tokens
            .lock()
            .map_err(|_| Status::internal("token store"))?;
        let now = Instant::now();
        tokens.retain(|_, (_, expires)| *expires > now);
        tokens.insert(token.clone(), (name.to_owned(), now + self.ttl));
        Ok((Caller::User(name.to_owned()), Some(token)))
    }

    /// Checks the bearer token of a call.
    pub(crate) fn check(&self, metadata: &MetadataMap) -> Result<Caller, Status> {
        if !self.required() {
            return Ok(Caller::Anonymous);
        }
        let header = header(metadata)?;
        let token = header
            .strip_prefix("Bearer ")
            .ok_or_else(|| Status::unauthenticated("expected a bearer token from the handshake"))?;
        let tokens = self
            .tokens
            .lock()
            .map_err(|_| Status::internal("token store"))?;
        match tokens.get(token.trim()) {
            Some((user, expires)) if *expires > Instant::now() => Ok(Caller::User(user.clone())),
            Some(_) => Err(Status::unauthenticated(
                "the token has expired; connect again",
            )),
            None => Err(Status::unauthenticated("unknown token; connect again")),
        }
    }
}

fn header(metadata: &MetadataMap) -> Result<&str, Status> {
    metadata
        .get(AUTHORIZATION)
        .ok_or_else(|| Status::unauthenticated("no authorization header"))?
        .to_str()
        .map_err(|_| Status::unauthenticated("the authorization header is not text"))
}

/// 32 random bytes from the operating system, URL-safe.
fn new_token() -> Result<String, Status> {
    let mut bytes = [0_u8; 32];
    getrandom::fill(&mut bytes).map_err(|_| Status::internal("no randomness for a token"))?;
    Ok(URL_SAFE_NO_PAD.encode(bytes))
}

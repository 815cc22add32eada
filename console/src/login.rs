//! The console's login: the users and passwords of the Flight SQL server (argon2 hashes
//! or, with a warning at start, plain text), and a session cookie after it.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use base64::Engine as _;
use strata_access::Viewer;
use strata_flightsql::password;
use strata_flightsql::{User, viewer_of};

/// The cookie that carries a session.
pub(crate) const COOKIE: &str = "strata_session";

/// Who may log in, and who has.
pub(crate) struct Login {
    users: Vec<User>,
    /// Checked for names that are no user's, so a wrong name takes as long as a wrong password.
    decoy: String,
    ttl: Duration,
    sessions: Mutex<HashMap<String, (String, Instant)>>,
}

impl Login {
    pub(crate) fn new(users: Vec<User>, ttl: Duration) -> strata_flightsql::Result<Self> {
        let decoy = password::decoy(users.iter().map(|user| user.password.as_str()))?;
        Ok(Login {
            users,
            decoy,
            ttl,
            sessions: Mutex::default(),
        })
    }

    /// Whether anyone may look without logging in: no users are configured.
    pub(crate) fn is_open(&self) -> bool {
        self.users.is_empty()
    }

    /// A new session's token for `name`, if the password is theirs.
    pub(crate) fn log_in(&self, name: &str, given: &str) -> Option<String> {
        let user = self.users.iter().find(|user| user.name == name);
        let stored = user.map_or(self.decoy.as_str(), |user| user.password.as_str());
        if !password::matches(stored, given) || user.is_none() {
            return None;
        }
        let mut bytes = [0_u8; 32];
        getrandom::fill(&mut bytes).ok()?;
        let token = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
        let mut sessions = self.sessions.lock().expect("sessions lock");
        let now = Instant::now();
        sessions.retain(|_, (_, expires)| *expires > now);
        sessions.insert(token.clone(), (name.to_owned(), now + self.ttl));
        Some(token)
    }

    /// How a logged-in user reads: with the role the configuration gives them.
    pub(crate) fn viewer(&self, name: &str) -> Viewer {
        viewer_of(&self.users, name).unwrap_or_else(|| Viewer {
            user: name.to_owned(),
            role: None,
        })
    }

    /// The user a session token belongs to, while it lasts.
    pub(crate) fn user(&self, token: &str) -> Option<String> {
        let sessions = self.sessions.lock().expect("sessions lock");
        sessions
            .get(token)
            .filter(|(_, expires)| *expires > Instant::now())
            .map(|(name, _)| name.clone())
    }

    pub(crate) fn log_out(&self, token: &str) {
        self.sessions.lock().expect("sessions lock").remove(token);
    }
}

/// The session token in a `Cookie` header, if any.
pub(crate) fn token(cookie_header: &str) -> Option<&str> {
    cookie_header
        .split(';')
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE)
        .map(|(_, value)| value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_session_follows_a_right_password_only() {
        let hashed = password::hash("s3cret").unwrap();
        let login = Login::new(
            vec![User::new("ana", &hashed), User::new("bo", "plain")],
            Duration::from_secs(60),
        )
        .unwrap();
        assert!(!login.is_open());
        assert_eq!(login.log_in("ana", "wrong"), None);
        assert_eq!(login.log_in("nobody", "s3cret"), None);
        let token = login.log_in("ana", "s3cret").unwrap();
        assert_eq!(login.user(&token).as_deref(), Some("ana"));
        assert!(login.log_in("bo", "plain").is_some());
        login.log_out(&token);
        assert_eq!(login.user(&token), None);
        assert_eq!(token_of("a=1; strata_session=xyz; b=2"), Some("xyz"));
        assert_eq!(token_of("a=1"), None);
    }

    fn token_of(header: &str) -> Option<&str> {
        token(header)
    }
}

//! Stored passwords: argon2id hashes in PHC form (`$argon2id$v=19$…`), as
//! `strata hash-password` writes them, or plain text, accepted with a warning.

use argon2::password_hash::SaltString;
use argon2::{Argon2, PasswordHash, PasswordHasher, PasswordVerifier};
use subtle::ConstantTimeEq;

use crate::error::{Error, Result};

/// How every hash this module writes or reads begins.
const HASH_PREFIX: &str = "$argon2";

/// Hashes a password with argon2id and a random salt, in PHC form.
pub fn hash(password: &str) -> Result<String> {
    let mut salt = [0_u8; 16];
    getrandom::fill(&mut salt).map_err(|error| Error::Password(error.to_string()))?;
    let salt = SaltString::encode_b64(&salt).map_err(|error| Error::Password(error.to_string()))?;
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|hash| hash.to_string())
        .map_err(|error| Error::Password(error.to_string()))
}

/// What an unknown user's password is checked against, so that a refusal takes as
/// long whether or not the user exists: a hash of a random secret when any of the
/// `stored` passwords is a hash, a random text when all are plain.
pub fn decoy<'a>(stored: impl IntoIterator<Item = &'a str>) -> Result<String> {
    let mut secret = [0_u8; 24];
    getrandom::fill(&mut secret).map_err(|error| Error::Password(error.to_string()))?;
    let secret: String = secret.iter().map(|byte| format!("{byte:02x}")).collect();
    if stored.into_iter().any(is_hash) {
        hash(&secret)
    } else {
        Ok(secret)
    }
}

/// Whether a stored password is a hash rather than plain text.
pub fn is_hash(stored: &str) -> bool {
    stored.starts_with(HASH_PREFIX)
}

/// Why a stored hash cannot be checked against, if it cannot.
pub fn problem(stored: &str) -> Option<String> {
    if !is_hash(stored) {
        return None;
    }
    let why = match PasswordHash::new(stored) {
        Ok(hash) if hash.hash.is_some() && hash.salt.is_some() => return None,
        Ok(_) => "it has no salt or no hash".to_owned(),
        Err(error) => error.to_string(),
    };
    Some(format!(
        "not an argon2 hash as `strata hash-password` writes them ({why})"
    ))
}

/// Whether `given` is the password `stored` holds, as a hash or, in constant time, as text.
pub fn matches(stored: &str, given: &str) -> bool {
    if is_hash(stored) {
        return PasswordHash::new(stored).is_ok_and(|hash| {
            Argon2::default()
                .verify_password(given.as_bytes(), &hash)
                .is_ok()
        });
    }
    stored.as_bytes().ct_eq(given.as_bytes()).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hash_matches_its_password_only_and_salts_differ() {
        let first = hash("change-me").unwrap();
        let second = hash("change-me").unwrap();
        assert!(first.starts_with("$argon2id$"), "{first}");
        assert_ne!(first, second, "each hash has its own salt");
        assert!(matches(&first, "change-me"));
        assert!(!matches(&first, "change-you"));
        assert!(!matches(&first, ""));
        assert_eq!(problem(&first), None);
    }

    #[test]
    fn the_decoy_costs_what_the_users_passwords_cost_and_matches_nothing() {
        let hashed = hash("change-me").unwrap();
        let decoy = super::decoy(["plain", hashed.as_str()]).unwrap();
        assert!(is_hash(&decoy) && problem(&decoy).is_none(), "{decoy}");
        assert!(!matches(&decoy, ""));
        let plain = super::decoy(["plain", "text"]).unwrap();
        assert!(
            !is_hash(&plain),
            "plain users are checked in constant time, not argon2"
        );
        assert!(!matches(&plain, ""));
        assert_ne!(
            plain,
            super::decoy(["plain"]).unwrap(),
            "each decoy is random"
        );
    }

    #[test]
    fn plain_text_still_matches_and_a_broken_hash_is_a_problem() {
        assert!(matches("tls-secret", "tls-secret"));
        assert!(!matches("tls-secret", "tls-secre"));
        assert_eq!(problem("tls-secret"), None);
        let broken = problem("$argon2id$v=19$m=19456,t=2,p=1$not-base64!").unwrap();
        assert!(broken.starts_with("not an argon2 hash"), "{broken}");
        assert!(!matches("$argon2id$v=19$broken", "anything"));
        let no_hash = problem("$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHQ").unwrap();
        assert!(no_hash.contains("no salt or no hash"), "{no_hash}");
    }
}

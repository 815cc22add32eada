//! A source's `decrypt.*` options: where its keys are (a file, as a Kubernetes Secret
//! mounts one, or an environment variable), never the keys themselves, so a plan that
//! carries them to executors, a run report or a log shows only names.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::error::{DecryptError, Result};

const KEY_FILE: &str = "decrypt.key_file";
const KEY_ENV: &str = "decrypt.key_env";
const PASSPHRASE_FILE: &str = "decrypt.passphrase_file";
const PASSPHRASE_ENV: &str = "decrypt.passphrase_env";

/// The options a source may set to have its files decrypted.
pub const OPTION_NAMES: [&str; 4] = [KEY_FILE, KEY_ENV, PASSPHRASE_FILE, PASSPHRASE_ENV];

/// Where a secret is read from when a file is opened.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Secret {
    File(PathBuf),
    Env(String),
}

impl Secret {
    /// The secret's bytes; `what` ("key", "passphrase") names its option in the error.
    pub(crate) fn read(&self, what: &str) -> Result<Vec<u8>> {
        let error = |reason: String| DecryptError::Key {
            option: self.option(what),
            reason,
        };
        match self {
            Secret::File(path) => std::fs::read(path)
                .map_err(|cause| error(format!("cannot read the {what} file: {cause}"))),
            Secret::Env(name) => std::env::var_os(name)
                .map(std::ffi::OsString::into_encoded_bytes)
                .ok_or_else(|| {
                    error(format!(
                        "the environment variable holding the {what} is not set"
                    ))
                }),
        }
    }

    /// The option as written, with where it points: never the secret.
    pub(crate) fn option(&self, what: &str) -> String {
        match self {
            Secret::File(path) => format!("'decrypt.{what}_file' {}", path.display()),
            Secret::Env(name) => format!("'decrypt.{what}_env' {name}"),
        }
    }
}

/// How a source's encrypted files are decrypted: with OpenPGP secret keys or age
/// identities (`key`), a passphrase (`passphrase`: for files encrypted to one, and to
/// unlock a protected OpenPGP key), or both.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Decryption {
    pub key: Option<Secret>,
    pub passphrase: Option<Secret>,
}

impl Decryption {
    /// Reads the `decrypt.*` options among `options` (others are ignored); `None` when
    /// the source sets none, so its files are read as they are.
    pub fn from_options<'a>(
        options: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> Result<Option<Self>> {
        let mut key = None;
        let mut passphrase = None;
        for (name, value) in options {
            let name = name.to_ascii_lowercase();
            let (slot, secret) = match name.as_str() {
                KEY_FILE => (&mut key, Secret::File(PathBuf::from(value))),
                KEY_ENV => (&mut key, Secret::Env(value.to_owned())),
                PASSPHRASE_FILE => (&mut passphrase, Secret::File(PathBuf::from(value))),
                PASSPHRASE_ENV => (&mut passphrase, Secret::Env(value.to_owned())),
                _ => continue,
            };
            if value.trim().is_empty() {
                return Err(DecryptError::InvalidOption(format!(
                    "option '{name}' is empty; it names a file or an environment variable"
                )));
            }
            if slot.is_some() {
                return Err(DecryptError::InvalidOption(format!(
                    "option '{name}': a source takes one of '{KEY_FILE}' and '{KEY_ENV}', and one of '{PASSPHRASE_FILE}' and '{PASSPHRASE_ENV}'"
                )));
            }
            *slot = Some(secret);
        }
        Ok((key.is_some() || passphrase.is_some()).then_some(Self { key, passphrase }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_name_where_keys_are_and_show_nothing_else() {
        let decryption = Decryption::from_options([
            ("DECRYPT.KEY_FILE", "/etc/strata/keys/landing.asc"),
            ("decrypt.passphrase_env", "LANDING_PASSPHRASE"),
            ("format.has_header", "true"),
        ])
        .unwrap()
        .unwrap();
        assert_eq!(
            decryption.key,
            Some(Secret::File("/etc/strata/keys/landing.asc".into()))
        );
        assert_eq!(
            decryption.passphrase,
            Some(Secret::Env("LANDING_PASSPHRASE".into()))
        );
        assert!(
            Decryption::from_options([("format.has_header", "true")])
                .unwrap()
                .is_none()
        );
    }

    #[test]
    fn two_places_for_one_secret_or_an_empty_one_are_refused() {
        let both = Decryption::from_options([("decrypt.key_file", "/a"), ("decrypt.key_env", "B")]);
        assert!(
            matches!(both, Err(DecryptError::InvalidOption(ref why)) if why.contains("one of 'decrypt.key_file' and 'decrypt.key_env'")),
            "{both:?}"
        );
        let empty = Decryption::from_options([("decrypt.passphrase_file", " ")]);
        assert!(
            matches!(empty, Err(DecryptError::InvalidOption(_))),
            "{empty:?}"
        );
    }

    #[test]
    fn a_missing_key_file_or_variable_is_named_with_its_option() {
        let missing = Secret::File("/nowhere/landing.asc".into()).read("key");
        let Err(DecryptError::Key { option, reason }) = missing else {
            panic!("{missing:?}")
        };
        assert_eq!(option, "'decrypt.key_file' /nowhere/landing.asc");
        assert!(reason.contains("cannot read the key file"), "{reason}");
        let unset = Secret::Env("STRATA_TEST_DECRYPT_KEY_THAT_IS_NOT_SET".into()).read("key");
        assert!(matches!(unset, Err(DecryptError::Key { .. })), "{unset:?}");
    }
}

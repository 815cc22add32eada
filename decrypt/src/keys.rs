//! A source's keys, read from where its options say when a file is opened: OpenPGP
//! secret keys or age identities, and a passphrase; and a file opened with them into
//! a reader of its plaintext, decrypted as it is read.

use std::fmt;
use std::io::{BufReader, Read};

use age::secrecy::{ExposeSecret, SecretString};
use pgp::composed::{DecryptionOptions, Deserializable, Message, SignedSecretKey, TheRing};
use pgp::types::{Password, Seipdv1ReadMode};

use crate::cipher::Cipher;
use crate::error::{DecryptError, Result};
use crate::integrity::Authenticated;
use crate::options::Decryption;

/// The work factor (log2 of scrypt's N) an age passphrase file may ask for: the age
/// tool writes 18; each step doubles the time, so 22 is about 16 s here.
const MAX_SCRYPT_WORK: u8 = 22;

/// The key material of one source, read for the files of one scan.
pub struct Keys {
    pgp: Vec<SignedSecretKey>,
    age: Vec<Box<dyn age::Identity>>,
    passphrase: Option<SecretString>,
}

/// Names what the keys are, never what they hold.
impl fmt::Debug for Keys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Keys")
            .field("openpgp_keys", &self.pgp.len())
            .field("age_identities", &self.age.len())
            .field("passphrase", &self.passphrase.is_some())
            .finish()
    }
}

impl Decryption {
    /// Reads the keys and passphrase the options name; an error says which option and
    /// why, and is the source's, not a file's.
    pub fn keys(&self) -> Result<Keys> {
        let mut keys = Keys {
            pgp: Vec::new(),
            age: Vec::new(),
            passphrase: None,
        };
        if let Some(secret) = &self.passphrase {
            let bytes = secret.read("passphrase")?;
            let text = String::from_utf8(bytes).map_err(|_| DecryptError::Key {
                option: secret.option("passphrase"),
                reason: "the passphrase is not UTF-8 text".to_owned(),
            })?;
            keys.passphrase = Some(SecretString::from(
                text.trim_end_matches(['\n', '\r']).to_owned(),
            ));
        }
        if let Some(secret) = &self.key {
            let bytes = secret.read("key")?;
            let invalid = |reason: String| DecryptError::Key {
                option: secret.option("key"),
                reason,
            };
            match KeyKind::of(&bytes) {
                KeyKind::OpenPgp => keys.pgp = openpgp_keys(&bytes).map_err(invalid)?,
                KeyKind::Age => keys.age = age_identities(&bytes).map_err(invalid)?,
                KeyKind::PublicOnly => {
                    return Err(invalid(
                        "it holds an OpenPGP public key; decrypting needs the secret key (gpg --export-secret-keys --armor)".to_owned(),
                    ));
                }
                KeyKind::Unknown => {
                    return Err(invalid(
                        "it holds neither an OpenPGP secret key (armored or binary) nor age identities (AGE-SECRET-KEY-1…)".to_owned(),
                    ));
                }
            }
        }
        Ok(keys)
    }
}

/// What a key file holds, told from its first bytes.
enum KeyKind {
    OpenPgp,
    PublicOnly,
    Age,
    Unknown,
}

impl KeyKind {
    fn of(bytes: &[u8]) -> Self {
        let text = String::from_utf8_lossy(bytes);
        if text.contains("-----BEGIN PGP PRIVATE KEY BLOCK-----") {
            KeyKind::OpenPgp
        } else if text.contains("-----BEGIN PGP PUBLIC KEY BLOCK-----") {
            KeyKind::PublicOnly
        } else if text.contains("AGE-SECRET-KEY-") {
            KeyKind::Age
        } else if bytes.first().is_some_and(|first| first & 0x80 != 0) {
            // A binary OpenPGP packet starts with its tag's high bit set.
            KeyKind::OpenPgp
        } else {
            KeyKind::Unknown
        }
    }
}

/// Every secret key of an armored file (one block or several, as `gpg --export-secret-keys`
/// of several keys writes them) or of a binary one.
fn openpgp_keys(bytes: &[u8]) -> std::result::Result<Vec<SignedSecretKey>, String> {
    const BEGIN: &str = "-----BEGIN PGP PRIVATE KEY BLOCK-----";
    let text = String::from_utf8_lossy(bytes);
    let blocks: Vec<&[u8]> = if text.contains(BEGIN) {
        text.match_indices(BEGIN)
            .map(|(start, _)| &bytes[start..])
            .collect()
    } else {
        vec![bytes]
    };
    let mut keys = Vec::new();
    for block in blocks {
        let (parsed, _) = SignedSecretKey::from_reader_many(block)
            .map_err(|error| format!("not a readable OpenPGP secret key: {error}"))?;
        for key in parsed {
            keys.push(key.map_err(|error| format!("not a readable OpenPGP secret key: {error}"))?);
        }
    }
    if keys.is_empty() {
        return Err("it holds no OpenPGP secret key".to_owned());
    }
    Ok(keys)
}

/// The identities of an age identity file (`age-keygen` writes one per line).
fn age_identities(bytes: &[u8]) -> std::result::Result<Vec<Box<dyn age::Identity>>, String> {
    age::IdentityFile::from_buffer(bytes)
        .map_err(|error| format!("not an age identity file: {error}"))?
        .into_identities()
        .map_err(|error| format!("not an age identity file: {error}"))
}

/// An encrypted file's bytes, for rPGP's reader, which wants to show its source.
struct Ciphertext(Box<dyn Read + Send>);

impl fmt::Debug for Ciphertext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Ciphertext")
    }
}

impl Read for Ciphertext {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.0.read(buf)
    }
}

impl Keys {
    /// `input`'s plaintext, decrypted as it is read. A file no key opens fails here;
    /// one altered or cut short fails the read that reaches the damage, at the latest
    /// the last: whoever reads it keeps nothing of it until the read that returns 0.
    pub fn open(
        &self,
        cipher: Cipher,
        input: Box<dyn Read + Send>,
    ) -> Result<Box<dyn Read + Send>> {
        let plaintext = match cipher {
            Cipher::OpenPgp => self.open_openpgp(input)?,
            Cipher::Age => self.open_age(input)?,
        };
        Ok(Box::new(Authenticated::new(plaintext)))
    }

    fn open_openpgp(&self, input: Box<dyn Read + Send>) -> Result<Box<dyn Read + Send>> {
        let undecryptable = |error: pgp::errors::Error| {
            DecryptError::Undecryptable(match error {
                pgp::errors::Error::MissingKey => match (self.pgp.is_empty(), &self.passphrase) {
                    (true, None) => "it is encrypted to an OpenPGP key, and the source names none ('decrypt.key_file' or 'decrypt.key_env')".to_owned(),
                    _ => "none of the source's OpenPGP keys or passphrase opens it (encrypted to another key, or the passphrase is wrong)".to_owned(),
                },
                other => format!("OpenPGP: {other}"),
            })
        };
        let (message, _) =
            Message::from_reader(BufReader::new(Ciphertext(input))).map_err(|error| {
                DecryptError::Undecryptable(format!("not an OpenPGP message: {error}"))
            })?;
        if !message.is_encrypted() {
            return Err(DecryptError::Undecryptable(
                "an OpenPGP message that is not encrypted".to_owned(),
            ));
        }
        let passphrase = self
            .passphrase
            .as_ref()
            .map(|passphrase| Password::from(passphrase.expose_secret()));
        let unlocked = Password::empty();
        let key_passwords = passphrase.iter().chain([&unlocked]).collect();
        let ring = TheRing {
            secret_keys: self.pgp.iter().collect(),
            key_passwords,
            message_password: passphrase.iter().collect(),
            session_keys: Vec::new(),
            // The plaintext streams: the integrity check (MDC or AEAD tag) fails the
            // last read, and the reader keeps nothing of a file until then.
            decrypt_options: DecryptionOptions::new()
                .set_seipdv1_read_mode(Seipdv1ReadMode::Streaming)
                .enable_gnupg_aead(),
        };
        let (mut message, _) = message
            .decrypt_the_ring(ring, true)
            .map_err(undecryptable)?;
        // gpg compresses before it encrypts (ZIP by default).
        while message.is_compressed() {
            message = message.decompress().map_err(undecryptable)?;
        }
        Ok(Box::new(message))
    }

    fn open_age(&self, input: Box<dyn Read + Send>) -> Result<Box<dyn Read + Send>> {
        let undecryptable = |error: age::DecryptError| {
            DecryptError::Undecryptable(match error {
                age::DecryptError::NoMatchingKeys => "none of the source's age identities or passphrase opens it (encrypted to another recipient, or to a passphrase the source does not give)".to_owned(),
                age::DecryptError::DecryptionFailed => "the passphrase is wrong, or the file was altered".to_owned(),
                other => format!("age: {other}"),
            })
        };
        let decryptor =
            age::Decryptor::new(age::armor::ArmoredReader::new(input)).map_err(undecryptable)?;
        let reader = if decryptor.is_scrypt() {
            let Some(passphrase) = &self.passphrase else {
                return Err(DecryptError::Undecryptable(
                    "it is encrypted to a passphrase, and the source names none ('decrypt.passphrase_file' or 'decrypt.passphrase_env')".to_owned(),
                ));
            };
            let mut identity = age::scrypt::Identity::new(passphrase.clone());
            identity.set_max_work_factor(MAX_SCRYPT_WORK);
            decryptor
                .decrypt(std::iter::once(&identity as &dyn age::Identity))
                .map_err(undecryptable)?
        } else {
            decryptor
                .decrypt(
                    self.age
                        .iter()
                        .map(|identity| identity.as_ref() as &dyn age::Identity),
                )
                .map_err(undecryptable)?
        };
        Ok(Box::new(reader))
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;
    use crate::options::Secret;

    /// Files made by the real gpg and age tools (`testdata/make.sh`).
    fn testdata(name: &str) -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("testdata")
            .join(name)
    }

    fn with_key(key: &str, passphrase: Option<&str>) -> Decryption {
        let passphrase = passphrase.map(|text| {
            let path = std::env::temp_dir().join(format!(
                "strata-decrypt-passphrase-{}-{}",
                std::process::id(),
                text.len()
            ));
            std::fs::write(&path, format!("{text}\n")).unwrap();
            Secret::File(path)
        });
        Decryption {
            key: Some(Secret::File(testdata(key))),
            passphrase,
        }
    }

    /// The plaintext, or what stopped it: at opening, or at a read.
    fn decrypt(
        decryption: &Decryption,
        file: &[u8],
        cipher: Cipher,
    ) -> std::result::Result<Vec<u8>, String> {
        let keys = decryption.keys().map_err(|error| error.to_string())?;
        let mut reader = keys
            .open(cipher, Box::new(std::io::Cursor::new(file.to_vec())))
            .map_err(|error| error.to_string())?;
        let mut plaintext = Vec::new();
        reader
            .read_to_end(&mut plaintext)
            .map_err(|error| error.to_string())?;
        Ok(plaintext)
    }

    fn file(name: &str) -> Vec<u8> {
        std::fs::read(testdata(name)).unwrap()
    }

    #[test]
    fn files_gpg_and_age_encrypted_read_as_their_plaintext() {
        let plaintext = file("rows.csv");
        let passphrase = Decryption {
            key: None,
            passphrase: with_key("age.key", Some("delivery passphrase")).passphrase,
        };
        for (name, decryption, cipher) in [
            (
                "rows.csv.gpg",
                with_key("rsa.key.asc", None),
                Cipher::OpenPgp,
            ),
            // An armored file, to a key that is itself protected by a passphrase.
            (
                "rows-armored.csv.gpg",
                with_key("cv25519.key.asc", Some("key passphrase")),
                Cipher::OpenPgp,
            ),
            (
                "rows-symmetric.csv.gpg",
                passphrase.clone(),
                Cipher::OpenPgp,
            ),
            ("rows.csv.age", with_key("age.key", None), Cipher::Age),
            (
                "rows-armored.csv.age",
                with_key("age.key", None),
                Cipher::Age,
            ),
            ("rows-passphrase.csv.age", passphrase.clone(), Cipher::Age),
        ] {
            assert_eq!(
                decrypt(&decryption, &file(name), cipher).as_deref(),
                Ok(plaintext.as_slice()),
                "{name}"
            );
        }
    }

    #[test]
    fn another_recipient_s_key_or_a_wrong_passphrase_opens_nothing() {
        for (name, decryption, cipher, expected) in [
            (
                "rows.csv.gpg",
                with_key("cv25519.key.asc", Some("key passphrase")),
                Cipher::OpenPgp,
                "none of the source's OpenPGP keys",
            ),
            (
                "rows-armored.csv.gpg",
                with_key("cv25519.key.asc", Some("not the key passphrase")),
                Cipher::OpenPgp,
                "none of the source's OpenPGP keys",
            ),
            (
                "rows.csv.gpg",
                with_key("age.key", None),
                Cipher::OpenPgp,
                "encrypted to an OpenPGP key, and the source names none",
            ),
            (
                "rows-passphrase.csv.age",
                with_key("age.key", None),
                Cipher::Age,
                "encrypted to a passphrase, and the source names none",
            ),
            (
                "rows-passphrase.csv.age",
                with_key("age.key", Some("wrong")),
                Cipher::Age,
                "the passphrase is wrong",
            ),
            (
                "rows.csv.age",
                with_key("rsa.key.asc", None),
                Cipher::Age,
                "none of the source's age identities",
            ),
            // A file named for one encryption that holds the other, or none.
            (
                "rows.csv.age",
                with_key("rsa.key.asc", None),
                Cipher::OpenPgp,
                "not an OpenPGP message",
            ),
            (
                "rows.csv",
                with_key("age.key", None),
                Cipher::Age,
                "cannot be decrypted: age",
            ),
        ] {
            let outcome = decrypt(&decryption, &file(name), cipher);
            assert!(
                outcome.as_ref().is_err_and(
                    |why| why.starts_with("cannot be decrypted") && why.contains(expected)
                ),
                "{name}: {outcome:?}"
            );
        }
    }

    #[test]
    fn a_tampered_or_truncated_file_fails_before_its_last_read_ends() {
        for (name, decryption, cipher) in [
            (
                "rows.csv.gpg",
                with_key("rsa.key.asc", None),
                Cipher::OpenPgp,
            ),
            (
                "rows-symmetric.csv.gpg",
                Decryption {
                    key: None,
                    passphrase: with_key("age.key", Some("delivery passphrase")).passphrase,
                },
                Cipher::OpenPgp,
            ),
            ("rows.csv.age", with_key("age.key", None), Cipher::Age),
        ] {
            let whole = file(name);
            let mut tampered = whole.clone();
            let last = tampered.len() - 3;
            tampered[last] ^= 0x01;
            let truncated = &whole[..whole.len() - 5];
            for (damage, bytes) in [("tampered", tampered.as_slice()), ("truncated", truncated)] {
                let outcome = decrypt(&decryption, bytes, cipher);
                assert!(
                    outcome
                        .as_ref()
                        .is_err_and(|why| why.starts_with("cannot be decrypted")),
                    "{name} {damage}: {outcome:?}"
                );
            }
        }
    }

    #[test]
    fn a_key_file_that_is_no_secret_key_is_the_source_s_error() {
        for (key, expected) in [
            ("rsa.pub.asc", "holds an OpenPGP public key"),
            ("rows.csv", "neither an OpenPGP secret key"),
            ("missing.key", "cannot read the key file"),
        ] {
            let keys = with_key(key, None).keys();
            assert!(
                matches!(&keys, Err(DecryptError::Key { option, reason }) if option.starts_with("'decrypt.key_file' ") && reason.contains(expected)),
                "{key}: {keys:?}"
            );
        }
        let secret = std::fs::read_to_string(testdata("age.key")).unwrap();
        let identity = secret
            .lines()
            .find(|line| line.starts_with("AGE-SECRET-KEY-"))
            .unwrap();
        let shown = format!("{:?}", with_key("age.key", None).keys().unwrap());
        assert!(
            !shown.contains(identity) && shown.contains("age_identities: 1"),
            "{shown}"
        );
    }
}

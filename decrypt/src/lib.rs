//! Encrypted landing files, decrypted as they are read and never written in clear:
//! OpenPGP (as `gpg` writes it) and age, with keys a source names by file or
//! environment variable (`'decrypt.key_file'`, `'decrypt.passphrase_env'`…).

mod cipher;
mod error;
mod integrity;
mod keys;
mod options;

pub use cipher::Cipher;
pub use error::{DecryptError, Result};
pub use keys::Keys;
pub use options::{Decryption, OPTION_NAMES, Secret};

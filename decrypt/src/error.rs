//! The error type of `strata-decrypt`: what is wrong with a source's decryption
//! options, its keys, or one file, in words that never carry key material.

/// Result with the decryption error.
pub type Result<T, E = DecryptError> = std::result::Result<T, E>;

/// Why an encrypted source could not be defined, or one of its files not decrypted.
#[derive(Debug, thiserror::Error)]
pub enum DecryptError {
    /// A `decrypt.*` option is unknown, repeated or missing its partner.
    #[error("{0}")]
    InvalidOption(String),
    /// The key or passphrase an option names cannot be read or is not a key: the
    /// source's configuration is wrong, not the file.
    #[error("{option}: {reason}")]
    Key { option: String, reason: String },
    /// The file cannot be decrypted with the keys given (another recipient's, a wrong
    /// passphrase, not an encrypted file): it is rejected whole.
    #[error("cannot be decrypted: {0}")]
    Undecryptable(String),
}

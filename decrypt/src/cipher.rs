//! Which encryption a landing file carries, told by the suffix it is delivered with
//! after its format's and compression's (`events.csv.gz.gpg`).

/// An encryption Strata decrypts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cipher {
    /// OpenPGP, as `gpg --encrypt` or `gpg --symmetric` writes it, armored or not.
    OpenPgp,
    /// age, as `age -r` or `age -p` writes it, armored or not.
    Age,
}

impl Cipher {
    /// The suffixes encrypted files end with, after the plain file's name.
    pub const SUFFIXES: [&str; 3] = [".gpg", ".pgp", ".age"];

    /// The encryption a file's name says it carries; `None` for a file in clear.
    pub fn of(path: &str) -> Option<Self> {
        let lower = path.to_ascii_lowercase();
        if lower.ends_with(".gpg") || lower.ends_with(".pgp") {
            Some(Cipher::OpenPgp)
        } else if lower.ends_with(".age") {
            Some(Cipher::Age)
        } else {
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_last_suffix_tells_the_encryption() {
        assert_eq!(Cipher::of("landing/e.csv.gz.gpg"), Some(Cipher::OpenPgp));
        assert_eq!(Cipher::of("landing/E.CSV.PGP"), Some(Cipher::OpenPgp));
        assert_eq!(Cipher::of("landing/e.ndjson.age"), Some(Cipher::Age));
        assert_eq!(Cipher::of("landing/e.csv.gz"), None);
        assert_eq!(Cipher::of("landing/age.csv"), None);
    }
}

//! The plaintext of an encrypted file as its reader sees it: an integrity failure is
//! said as one, and is final, so no reader can go on past damage.

use std::io::{self, Read};

/// Reads a decrypting reader; after its first error, every read fails.
pub(crate) struct Authenticated {
    inner: Box<dyn Read + Send>,
    failed: Option<(io::ErrorKind, String)>,
}

impl Authenticated {
    pub(crate) fn new(inner: Box<dyn Read + Send>) -> Self {
        Self {
            inner,
            failed: None,
        }
    }
}

impl Read for Authenticated {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if let Some((kind, why)) = &self.failed {
            return Err(io::Error::new(*kind, why.clone()));
        }
        self.inner.read(buf).map_err(|error| {
            let why = format!(
                "cannot be decrypted: the integrity check failed, so the file was altered or cut short, and none of it is used ({error})"
            );
            self.failed = Some((error.kind(), why.clone()));
            io::Error::new(error.kind(), why)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Reads one byte, then fails once, then would read again.
    struct Flaky(u8);

    impl Read for Flaky {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            self.0 += 1;
            match self.0 {
                2 => Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "decryption error",
                )),
                _ => {
                    buf[0] = b'x';
                    Ok(1)
                }
            }
        }
    }

    #[test]
    fn after_one_failed_read_every_read_fails() {
        let mut reader = Authenticated::new(Box::new(Flaky(0)));
        let mut buf = [0; 4];
        assert_eq!(reader.read(&mut buf).unwrap(), 1);
        for _ in 0..2 {
            let error = reader.read(&mut buf).unwrap_err();
            assert_eq!(error.kind(), io::ErrorKind::InvalidData);
            assert!(
                error.to_string().contains("integrity check failed"),
                "{error}"
            );
            assert!(error.to_string().contains("decryption error"), "{error}");
        }
    }
}

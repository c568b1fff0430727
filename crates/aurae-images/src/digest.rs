//! Content digests: only `sha256:<64 lowercase hex>` is accepted, because a
//! digest names files in the store and must never carry a path.

use std::fmt;

use sha2::{Digest as _, Sha256};

/// A validated `sha256:<hex>` digest.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Digest {
    hex: String,
}

/// Why a digest string was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("digest {digest:?} is not of the form sha256:<64 lowercase hex digits>")]
pub struct BadDigest {
    pub digest: String,
}

impl Digest {
    pub fn parse(s: &str) -> Result<Self, BadDigest> {
        let bad = || BadDigest {
            digest: s.chars().take(100).collect(),
        };
        let hex = s.strip_prefix("sha256:").ok_or_else(bad)?;
        if hex.len() != 64 || !hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
            return Err(bad());
        }
        Ok(Self {
            hex: hex.to_string(),
        })
    }

    /// The digest of `bytes`.
    pub fn of(bytes: &[u8]) -> Self {
        Self {
            hex: hex::encode(Sha256::digest(bytes)),
        }
    }

    /// The digest from a finished SHA-256 hash.
    pub fn from_sha256(hash: &[u8]) -> Self {
        Self {
            hex: hex::encode(hash),
        }
    }

    /// The 64 hex digits, used as a file name in the store.
    pub fn hex(&self) -> &str {
        &self.hex
    }

    /// A short form for logs and progress bars (`sha256:0123456789ab`).
    pub fn short(&self) -> String {
        format!("sha256:{}", &self.hex[..12])
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "sha256:{}", self.hex)
    }
}

/// Hashes bytes as they stream by and checks them against an expected digest
/// and size.
pub struct Verifier {
    expected: Digest,
    expected_size: Option<u64>,
    hasher: Sha256,
    seen: u64,
}

/// How streamed content failed verification.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    #[error("expected {expected} bytes, got more")]
    TooLong { expected: u64 },
    #[error("expected {expected} bytes, got {actual}")]
    WrongSize { expected: u64, actual: u64 },
    #[error("expected digest {expected}, got {actual}")]
    WrongDigest { expected: Digest, actual: Digest },
}

impl Verifier {
    /// `expected_size` is the descriptor's size; `None` (or a descriptor
    /// without a size) checks the digest only.
    pub fn new(expected: Digest, expected_size: Option<u64>) -> Self {
        Self {
            expected,
            expected_size,
            hasher: Sha256::new(),
            seen: 0,
        }
    }

    /// Feeds a chunk; fails as soon as more bytes than announced arrive.
    pub fn update(&mut self, chunk: &[u8]) -> Result<(), VerifyError> {
        self.seen += chunk.len() as u64;
        if let Some(expected) = self.expected_size {
            if self.seen > expected {
                return Err(VerifyError::TooLong { expected });
            }
        }
        self.hasher.update(chunk);
        Ok(())
    }

    pub fn seen(&self) -> u64 {
        self.seen
    }

    pub fn finish(self) -> Result<(), VerifyError> {
        if let Some(expected) = self.expected_size {
            if self.seen != expected {
                return Err(VerifyError::WrongSize {
                    expected,
                    actual: self.seen,
                });
            }
        }
        let actual = Digest {
            hex: hex::encode(self.hasher.finalize()),
        };
        if actual != self.expected {
            return Err(VerifyError::WrongDigest {
                expected: self.expected,
                actual,
            });
        }
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    const EMPTY: &str = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    #[test]
    fn parses_only_sha256_hex() {
        assert_eq!(
            Digest::parse(EMPTY).map(|d| d.to_string()),
            Ok(EMPTY.to_string())
        );
        for bad in [
            "sha256:../../etc/passwd",
            "sha512:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
            "sha256:E3B0C44298FC1C149AFBF4C8996FB92427AE41E4649B934CA495991B7852B855",
            "sha256:e3b0",
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
        ] {
            assert!(Digest::parse(bad).is_err(), "{bad} was accepted");
        }
    }

    #[test]
    fn verifier_accepts_the_right_content() {
        let content = b"hello layer";
        let mut v = Verifier::new(Digest::of(content), Some(content.len() as u64));
        v.update(&content[..5]).unwrap();
        v.update(&content[5..]).unwrap();
        v.finish().unwrap();
    }

    #[test]
    fn verifier_refuses_a_digest_mismatch() {
        let mut v = Verifier::new(Digest::of(b"what the manifest promised"), Some(8));
        v.update(b"tampered").unwrap();
        match v.finish() {
            Err(VerifyError::WrongDigest { expected, actual }) => {
                assert_eq!(expected, Digest::of(b"what the manifest promised"));
                assert_eq!(actual, Digest::of(b"tampered"));
            }
            other => panic!("expected a digest mismatch, got {other:?}"),
        }
    }

    #[test]
    fn verifier_refuses_wrong_sizes() {
        let mut v = Verifier::new(Digest::of(b"abc"), Some(3));
        assert_eq!(v.update(b"abcd"), Err(VerifyError::TooLong { expected: 3 }));
        let mut v = Verifier::new(Digest::of(b"abc"), Some(3));
        v.update(b"ab").unwrap();
        assert_eq!(
            v.finish(),
            Err(VerifyError::WrongSize {
                expected: 3,
                actual: 2
            })
        );
    }
}

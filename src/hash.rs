//! The short hashes that name specs, data, stored rounds and trained weights.

use sha2::{Digest, Sha256};

/// `bytes` as lowercase hex.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The first 8 bytes of a finished SHA-256, as 16 hex digits.
pub fn short(digest: Sha256) -> String {
    hex(&digest.finalize()[..8])
}

/// [`short`] of the SHA-256 of `data`.
pub fn short_of(data: &[u8]) -> String {
    short(Sha256::new_with_prefix(data))
}

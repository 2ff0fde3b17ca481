//! `Repr-Digest` (RFC 9530): the sha-256 a client sends with an upload, and
//! the one the server answers with.
//!
//! The field is a structured-field dictionary (RFC 8941) of algorithm keys
//! and byte sequences (`:base64:`). Only `sha-256` is acted on; other
//! algorithms are ignored, as RFC 9530 allows.

use base64::Engine as _;

/// Why a `Repr-Digest` value is refused (400).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum DigestError {
    /// Not a dictionary of `key=:base64:` members.
    Malformed,
    /// A `sha-256` member that does not decode to 32 bytes.
    BadSha256,
}

/// The `sha-256` digest in a `Repr-Digest` value: `Ok(None)` when the
/// value names only other algorithms.
///
/// # Errors
/// [`DigestError`] for a value that is not a dictionary of byte sequences,
/// or a `sha-256` member of the wrong length.
///
/// # Examples
///
/// ```
/// use cport_proto::http::{parse_repr_digest, repr_digest};
///
/// let sum = [7u8; 32];
/// let field = repr_digest(&sum);
/// assert_eq!(parse_repr_digest(&format!("sha-512=:AAAA:, {field}")), Ok(Some(sum)));
/// ```
pub fn parse_repr_digest(value: &str) -> Result<Option<[u8; 32]>, DigestError> {
    let mut found = None;
    for member in value.split(',') {
        let member = member.trim_matches([' ', '\t']);
        let (key, rest) = member.split_once('=').ok_or(DigestError::Malformed)?;
        // Parameters after the byte sequence (`;p=1`) are allowed and ignored.
        let bytes = rest.split(';').next().unwrap_or_default();
        let b64 = bytes
            .strip_prefix(':')
            .and_then(|b| b.strip_suffix(':'))
            .ok_or(DigestError::Malformed)?;
        if key.is_empty()
            || !key
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"-_.*".contains(&b))
        {
            return Err(DigestError::Malformed);
        }
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(b64)
            .map_err(|_| DigestError::Malformed)?;
        if key == "sha-256" {
            found = Some(decoded.try_into().map_err(|_| DigestError::BadSha256)?);
        }
    }
    Ok(found)
}

/// The `Repr-Digest` field value for a sha-256 sum: `sha-256=:…:`.
#[must_use]
pub fn repr_digest(sha256: &[u8; 32]) -> String {
    format!("sha-256=:{}:", base64::engine::general_purpose::STANDARD.encode(sha256))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sha256_is_found_among_others_and_bad_values_are_refused() {
        // sha-256 of the empty string.
        let empty = "sha-256=:47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=:";
        let sum = parse_repr_digest(empty).unwrap().unwrap();
        assert_eq!(repr_digest(&sum), empty);
        assert_eq!(parse_repr_digest("sha-512=:AAAA:"), Ok(None));
        assert_eq!(parse_repr_digest(&format!("{empty};p=1")), Ok(Some(sum)));
        assert_eq!(parse_repr_digest("sha-256=:AAAA:"), Err(DigestError::BadSha256));
        for bad in ["", "sha-256", "sha-256=abc", "sha-256=:not base64:", "SHA-256=:AAAA:"] {
            assert_eq!(parse_repr_digest(bad), Err(DigestError::Malformed), "{bad:?}");
        }
    }
}

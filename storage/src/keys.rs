//! Key encoding. Every key begins with the 2-byte big-endian Raft group id so
//! that range scans stay within one group and multi-raft needs no new format.
//! Integers are big-endian so that byte order is numeric order.

/// The only group today.
pub const GROUP: u16 = 0;

/// `group ++ parts...`
pub fn key(parts: &[&[u8]]) -> Vec<u8> {
    let len = 2 + parts.iter().map(|p| p.len()).sum::<usize>();
    let mut k = Vec::with_capacity(len);
    k.extend_from_slice(&GROUP.to_be_bytes());
    for p in parts {
        k.extend_from_slice(p);
    }
    k
}

/// Key for a log index.
pub fn index_key(index: u64) -> [u8; 10] {
    let mut k = [0u8; 10];
    k[..2].copy_from_slice(&GROUP.to_be_bytes());
    k[2..].copy_from_slice(&index.to_be_bytes());
    k
}

/// Inverse of [`index_key`].
pub fn index_of(key: &[u8]) -> Option<u64> {
    let b: [u8; 8] = key.get(2..10)?.try_into().ok()?;
    Some(u64::from_be_bytes(b))
}

/// A length-prefixed string component, so that `("ab","c")` and `("a","bc")`
/// never collide and a prefix scan by the first component is exact.
pub fn str_part(s: &str) -> Vec<u8> {
    let mut v = Vec::with_capacity(2 + s.len());
    v.extend_from_slice(&(s.len() as u16).to_be_bytes());
    v.extend_from_slice(s.as_bytes());
    v
}

/// Splits a length-prefixed string component off the front of `b`.
pub fn take_str(b: &[u8]) -> Option<(&str, &[u8])> {
    let n = u16::from_be_bytes(b.get(..2)?.try_into().ok()?) as usize;
    let s = std::str::from_utf8(b.get(2..2 + n)?).ok()?;
    Some((s, &b[2 + n..]))
}

//! Admin API keys: new random keys, the SHA-256 digest that is stored in
//! their place, the key a request carries (HTTP basic auth with the key as
//! the user name, as VerneMQ's API takes it, or a bearer token), and the
//! cluster-internal key that members derive from the cluster cookie for
//! their calls to each other.

use sha2::{Digest, Sha256};

/// A new key: 32 random bytes as 64 hex digits.
pub fn generate() -> String {
    hex(&rand::random::<[u8; 32]>())
}

/// The stored form of `key`: its SHA-256 as hex.
pub fn digest(key: &str) -> String {
    hex(&Sha256::digest(key.trim().as_bytes()))
}

/// The key every member accepts from another (and from an operator who
/// holds the cookie): derived from the cluster cookie, never stored.
pub fn internal_key(cookie: &str) -> String {
    let mut h = Sha256::new();
    h.update(b"raftmq internal admin API key\0");
    h.update(cookie.as_bytes());
    hex(&h.finalize())
}

/// A key must be printable ASCII without `:` or spaces (it travels as a
/// basic-auth user name) and at least 16 characters long.
pub fn check_format(key: &str) -> Result<(), &'static str> {
    if key.len() < 16 {
        return Err("an API key has at least 16 characters");
    }
    if !key.bytes().all(|b| b.is_ascii_graphic() && b != b':') {
        return Err("an API key is printable ASCII without spaces or `:`");
    }
    Ok(())
}

/// The key of an `Authorization` header value: `Basic base64(KEY:)` (any
/// password) or `Bearer KEY`.
pub fn from_header(value: &str) -> Option<String> {
    let (scheme, rest) = value.trim().split_once(' ')?;
    if scheme.eq_ignore_ascii_case("bearer") {
        return Some(rest.trim().to_string());
    }
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64_decode(rest.trim())?;
    let text = String::from_utf8(decoded).ok()?;
    let user = text.split_once(':').map_or(text.as_str(), |(u, _)| u);
    Some(user.to_string())
}

/// The `Authorization` header value that carries `key`.
pub fn header(key: &str) -> String {
    format!("Basic {}", base64_encode(format!("{key}:").as_bytes()))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

fn base64_encode(input: &[u8]) -> String {
    let mut out = String::with_capacity(input.len().div_ceil(3) * 4);
    for chunk in input.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (b[0] as u32) << 16 | (b[1] as u32) << 8 | b[2] as u32;
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(B64[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

fn base64_decode(input: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(input.len() / 4 * 3);
    let (mut acc, mut bits) = (0u32, 0u32);
    for c in input.bytes().take_while(|&c| c != b'=') {
        let v = B64.iter().position(|&x| x == c)? as u32;
        acc = acc << 6 | v;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_basic_auth_header_carries_the_key_as_its_user_name() {
        let k = generate();
        assert_eq!(k.len(), 64);
        assert_eq!(from_header(&header(&k)).as_deref(), Some(k.as_str()));
        // As curl -u KEY: sends it, and with a password.
        assert_eq!(
            from_header("Basic YWJjOg==").as_deref(),
            Some("abc"),
            "abc:"
        );
        assert_eq!(from_header("Basic YWJjOnh5eg==").as_deref(), Some("abc"));
        assert_eq!(from_header("Bearer abc").as_deref(), Some("abc"));
        assert_eq!(from_header("Digest abc"), None);
    }

    #[test]
    fn base64_round_trips_every_length() {
        for n in 0..10 {
            let b: Vec<u8> = (0..n).map(|i| i * 37).collect();
            assert_eq!(base64_decode(&base64_encode(&b)).unwrap(), b);
        }
        assert_eq!(
            base64_encode(b"any carnal pleas"),
            "YW55IGNhcm5hbCBwbGVhcw=="
        );
    }

    #[test]
    fn digests_differ_from_keys_and_the_internal_key_depends_on_the_cookie() {
        let k = generate();
        assert_ne!(digest(&k), k);
        assert_eq!(digest(&k), digest(&k));
        assert_ne!(internal_key("a"), internal_key("b"));
        assert!(check_format(&k).is_ok());
        assert!(check_format("short").is_err());
        assert!(check_format("has a space in it, long").is_err());
    }
}

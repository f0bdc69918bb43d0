//! Key encoding: the byte layout of every key raftmq writes, and its inverse.
//!
//! Every key begins with the 2-byte big-endian Raft group id so that range
//! scans stay within one group and multi-raft needs no new format. Integers
//! are big-endian so that byte order is numeric order. A client id that is
//! followed by more key parts is length-prefixed, so that the rows of client
//! `a` and client `a/b` never share a prefix.
//!
//! These formats are on disk: changing a byte here makes existing data
//! directories unreadable.

/// The only group today.
pub const GROUP: u16 = 0;

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

/// `Sessions`: `group ++ client id`.
pub fn session_key(client: &str) -> Vec<u8> {
    key(&[client.as_bytes()])
}

/// Inverse of [`session_key`]; `None` if the client id is not UTF-8.
pub fn session_of(key: &[u8]) -> Option<&str> {
    std::str::from_utf8(without_group(key)).ok()
}

/// The prefix shared by all of one client's rows in `Subscriptions`,
/// `Queues` and `Qos2In`, and by no other client's.
pub fn client_prefix(client: &str) -> Vec<u8> {
    key(&[&str_part(client)])
}

/// `Subscriptions`: `group ++ client ++ filter`.
pub fn subscription_key(client: &str, filter: &str) -> Vec<u8> {
    key(&[&str_part(client), filter.as_bytes()])
}

/// Inverse of [`subscription_key`]: the client id and the filter's bytes.
pub fn subscription_of(key: &[u8]) -> Option<(&str, &[u8])> {
    take_str(without_group(key))
}

/// `Queues`: `group ++ client ++ seq`, so one client's queue is contiguous
/// and in sequence order.
pub fn queue_key(client: &str, seq: u64) -> Vec<u8> {
    key(&[&str_part(client), &seq.to_be_bytes()])
}

/// Inverse of [`queue_key`].
pub fn queue_of(key: &[u8]) -> Option<(&str, u64)> {
    let (client, rest) = take_str(without_group(key))?;
    let seq = <[u8; 8]>::try_from(rest).ok()?;
    Some((client, u64::from_be_bytes(seq)))
}

/// `Qos2In`: `group ++ client ++ packet id`.
pub fn qos2_key(client: &str, packet_id: u16) -> Vec<u8> {
    key(&[&str_part(client), &packet_id.to_be_bytes()])
}

/// Inverse of [`qos2_key`].
pub fn qos2_of(key: &[u8]) -> Option<(&str, u16)> {
    let (client, rest) = take_str(without_group(key))?;
    let pid = <[u8; 2]>::try_from(rest).ok()?;
    Some((client, u16::from_be_bytes(pid)))
}

/// `Messages`: `group ++ message id`.
pub fn message_key(id: u64) -> Vec<u8> {
    key(&[&id.to_be_bytes()])
}

/// Inverse of [`message_key`].
pub fn message_of(key: &[u8]) -> Option<u64> {
    let id = <[u8; 8]>::try_from(without_group(key)).ok()?;
    Some(u64::from_be_bytes(id))
}

/// `Retained`: `group ++ topic`.
pub fn retained_key(topic: &str) -> Vec<u8> {
    key(&[topic.as_bytes()])
}

/// Inverse of [`retained_key`]: the topic's bytes.
pub fn retained_of(key: &[u8]) -> &[u8] {
    without_group(key)
}

/// `Meta`: `group ++ name`.
pub fn meta_key(name: &str) -> Vec<u8> {
    key(&[name.as_bytes()])
}

/// `group ++ parts...`
fn key(parts: &[&[u8]]) -> Vec<u8> {
    let len = 2 + parts.iter().map(|p| p.len()).sum::<usize>();
    let mut k = Vec::with_capacity(len);
    k.extend_from_slice(&GROUP.to_be_bytes());
    for p in parts {
        k.extend_from_slice(p);
    }
    k
}

/// The key after its group id (empty if the key is shorter than one).
fn without_group(key: &[u8]) -> &[u8] {
    key.get(2..).unwrap_or(&[])
}

/// A length-prefixed string component, so that `("ab","c")` and `("a","bc")`
/// never collide and a prefix scan by the first component is exact.
fn str_part(s: &str) -> Vec<u8> {
    let mut v = Vec::with_capacity(2 + s.len());
    v.extend_from_slice(&(s.len() as u16).to_be_bytes());
    v.extend_from_slice(s.as_bytes());
    v
}

/// Splits a length-prefixed string component off the front of `b`.
fn take_str(b: &[u8]) -> Option<(&str, &[u8])> {
    let n = u16::from_be_bytes(b.get(..2)?.try_into().ok()?) as usize;
    let s = std::str::from_utf8(b.get(2..2 + n)?).ok()?;
    Some((s, &b[2 + n..]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_are_the_ones_on_disk() {
        assert_eq!(session_key("c"), b"\0\0c");
        assert_eq!(meta_key("last_applied"), b"\0\0last_applied");
        assert_eq!(retained_key("a/b"), b"\0\0a/b");
        assert_eq!(message_key(0x0102), b"\0\0\0\0\0\0\0\0\x01\x02");
        assert_eq!(subscription_key("c", "t/#"), b"\0\0\0\x01ct/#");
        assert_eq!(queue_key("c", 5), b"\0\0\0\x01c\0\0\0\0\0\0\0\x05");
        assert_eq!(qos2_key("c", 0x0102), b"\0\0\0\x01c\x01\x02");
        assert_eq!(index_key(7), *b"\0\0\0\0\0\0\0\0\0\x07");
    }

    #[test]
    fn every_key_decodes_to_what_built_it() {
        assert_eq!(session_of(&session_key("c/1")), Some("c/1"));
        assert_eq!(
            subscription_of(&subscription_key("c", "$share/g/t")),
            Some(("c", &b"$share/g/t"[..]))
        );
        assert_eq!(queue_of(&queue_key("c", u64::MAX)), Some(("c", u64::MAX)));
        assert_eq!(qos2_of(&qos2_key("c", 9)), Some(("c", 9)));
        assert_eq!(message_of(&message_key(42)), Some(42));
        assert_eq!(retained_of(&retained_key("t")), b"t");
        assert_eq!(index_of(&index_key(3)), Some(3));
    }

    #[test]
    fn malformed_keys_decode_to_none() {
        assert_eq!(queue_of(&qos2_key("c", 1)), None);
        assert_eq!(qos2_of(&queue_key("c", 1)), None);
        assert_eq!(message_of(b"\0\0\x01"), None);
        assert_eq!(subscription_of(b"\0\0\0\x09ab"), None);
        assert_eq!(session_of(b"\0\0\xff"), None);
        assert_eq!(retained_of(b"\0"), b"");
    }

    #[test]
    fn one_clients_queue_sorts_in_seq_order() {
        let seqs = [0u64, 1, 255, 256, 65_536, u64::MAX - 1];
        let mut keys: Vec<Vec<u8>> = seqs.iter().rev().map(|s| queue_key("c", *s)).collect();
        keys.sort();
        let back: Vec<u64> = keys
            .iter()
            .filter_map(|k| queue_of(k))
            .map(|(_, s)| s)
            .collect();
        assert_eq!(back, seqs);
    }

    #[test]
    fn client_prefixes_do_not_collide() {
        for (a, b) in [("a", "a/b"), ("a", "ab"), ("ab", "a"), ("", "a")] {
            let pa = client_prefix(a);
            for k in [
                queue_key(b, 0),
                subscription_key(b, "x"),
                qos2_key(b, 1),
                queue_key(b, u64::MAX),
            ] {
                assert!(!k.starts_with(&pa), "{b:?}'s key under {a:?}'s prefix");
            }
            assert!(queue_key(a, 3).starts_with(&pa));
            assert!(subscription_key(a, "x").starts_with(&pa));
            assert!(qos2_key(a, 3).starts_with(&pa));
        }
        // Without the length prefix, ("a", "b/c") and ("a/b", "c") would be
        // the same subscription key.
        assert_ne!(subscription_key("a", "/b/c"), subscription_key("a/b", "/c"));
    }
}

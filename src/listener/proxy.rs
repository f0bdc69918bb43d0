//! The PROXY protocol header (HAProxy's, versions 1 and 2) that a load
//! balancer sends before the client's bytes on a `proxy_protocol` listener:
//! the client's real address. Exactly the header is read, nothing past it,
//! so the stream goes on with the client's first byte (TLS, WebSocket or
//! MQTT).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use tokio::io::{AsyncRead, AsyncReadExt};

/// How version 2 headers start.
const V2_SIGNATURE: [u8; 12] = *b"\r\n\r\n\0\r\nQUIT\n";
/// A version 1 line is at most this long, CRLF included.
const V1_MAX: usize = 107;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ProxyError {
    #[error("no PROXY protocol header")]
    Missing,
    #[error("malformed PROXY protocol header: {0}")]
    Malformed(&'static str),
    #[error("connection closed in the PROXY protocol header")]
    Closed,
}

/// Reads the header from `s`. `Ok(None)`: a header without a client
/// address (v1 `UNKNOWN`, v2 `LOCAL` or a non-IP family): the socket's own
/// peer stands.
pub async fn read_header<S: AsyncRead + Unpin>(
    s: &mut S,
) -> Result<Option<SocketAddr>, ProxyError> {
    // Every header is at least 15 bytes long (`PROXY UNKNOWN\r\n`, or v2's
    // 16): 12 can be read without reading past it.
    let mut head = [0u8; 12];
    s.read_exact(&mut head)
        .await
        .map_err(|_| ProxyError::Closed)?;
    if head == V2_SIGNATURE {
        let mut fixed = [0u8; 4];
        s.read_exact(&mut fixed)
            .await
            .map_err(|_| ProxyError::Closed)?;
        let len = u16::from_be_bytes([fixed[2], fixed[3]]) as usize;
        let mut body = vec![0u8; len];
        s.read_exact(&mut body)
            .await
            .map_err(|_| ProxyError::Closed)?;
        return parse_v2(fixed[0], fixed[1], &body);
    }
    if !head.starts_with(b"PROXY ") {
        return Err(ProxyError::Missing);
    }
    let mut line = head.to_vec();
    while !line.ends_with(b"\r\n") {
        if line.len() >= V1_MAX {
            return Err(ProxyError::Malformed("v1 line too long"));
        }
        let b = s.read_u8().await.map_err(|_| ProxyError::Closed)?;
        line.push(b);
    }
    parse_v1(&line)
}

/// `PROXY TCP4 SRC DST SPORT DPORT\r\n` (or `TCP6`, or `UNKNOWN …`).
pub fn parse_v1(line: &[u8]) -> Result<Option<SocketAddr>, ProxyError> {
    let line = std::str::from_utf8(line).map_err(|_| ProxyError::Malformed("v1 not text"))?;
    let line = line
        .strip_suffix("\r\n")
        .ok_or(ProxyError::Malformed("v1 line without CRLF"))?;
    let mut parts = line.split(' ');
    if parts.next() != Some("PROXY") {
        return Err(ProxyError::Missing);
    }
    let family = parts.next().ok_or(ProxyError::Malformed("v1 family"))?;
    if family == "UNKNOWN" {
        return Ok(None);
    }
    let fields: Vec<&str> = parts.collect();
    let [src, _dst, sport, _dport] = fields[..] else {
        return Err(ProxyError::Malformed("v1 needs 4 address fields"));
    };
    let ip: IpAddr = src
        .parse()
        .map_err(|_| ProxyError::Malformed("v1 source address"))?;
    let port: u16 = sport
        .parse()
        .map_err(|_| ProxyError::Malformed("v1 source port"))?;
    match (family, ip) {
        ("TCP4", IpAddr::V4(_)) | ("TCP6", IpAddr::V6(_)) => Ok(Some(SocketAddr::new(ip, port))),
        _ => Err(ProxyError::Malformed(
            "v1 family does not match the address",
        )),
    }
}

/// A v2 header after its signature: version/command, family/transport and
/// the address block.
pub fn parse_v2(ver_cmd: u8, family: u8, body: &[u8]) -> Result<Option<SocketAddr>, ProxyError> {
    if ver_cmd >> 4 != 2 {
        return Err(ProxyError::Malformed("v2 version"));
    }
    match ver_cmd & 0x0f {
        0 => return Ok(None), // LOCAL: the proxy's own connection (health checks)
        1 => {}
        _ => return Err(ProxyError::Malformed("v2 command")),
    }
    let port = |at: usize| u16::from_be_bytes([body[at], body[at + 1]]);
    match family >> 4 {
        1 if body.len() >= 12 => {
            let ip = Ipv4Addr::new(body[0], body[1], body[2], body[3]);
            Ok(Some(SocketAddr::new(ip.into(), port(8))))
        }
        2 if body.len() >= 36 => {
            let mut b = [0u8; 16];
            b.copy_from_slice(&body[..16]);
            Ok(Some(SocketAddr::new(Ipv6Addr::from(b).into(), port(32))))
        }
        1 | 2 => Err(ProxyError::Malformed("v2 address block too short")),
        // UNSPEC, UNIX: no IP address to show.
        _ => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(bytes: &[u8]) -> (Result<Option<SocketAddr>, ProxyError>, Vec<u8>) {
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime");
        rt.block_on(async {
            let mut s = bytes;
            let r = read_header(&mut s).await;
            (r, s.to_vec())
        })
    }

    #[test]
    fn a_v1_header_gives_the_source_and_leaves_the_rest_unread() {
        let (r, rest) = read(b"PROXY TCP4 203.0.113.7 10.0.0.1 51234 1883\r\n\x10\x00");
        assert_eq!(r, Ok(Some("203.0.113.7:51234".parse().unwrap())));
        assert_eq!(rest, b"\x10\x00");
        let (r, _) = read(b"PROXY TCP6 2001:db8::1 ::1 4000 1883\r\n");
        assert_eq!(r, Ok(Some("[2001:db8::1]:4000".parse().unwrap())));
        assert_eq!(read(b"PROXY UNKNOWN\r\n").0, Ok(None));
    }

    #[test]
    fn a_v2_header_gives_the_source_and_leaves_the_rest_unread() {
        let mut h = V2_SIGNATURE.to_vec();
        h.extend([0x21, 0x11, 0, 12]);
        h.extend([198, 51, 100, 9, 127, 0, 0, 1]);
        h.extend(40000u16.to_be_bytes());
        h.extend(1883u16.to_be_bytes());
        h.push(0x10);
        let (r, rest) = read(&h);
        assert_eq!(r, Ok(Some("198.51.100.9:40000".parse().unwrap())));
        assert_eq!(rest, [0x10]);
        let mut local = V2_SIGNATURE.to_vec();
        local.extend([0x20, 0x00, 0, 0]);
        assert_eq!(read(&local).0, Ok(None));
    }

    #[test]
    fn mqtt_without_a_header_and_bad_headers_are_refused() {
        assert_eq!(
            read(b"\x10\x0c\x00\x04MQTT\x04\x02\x00\x3c").0,
            Err(ProxyError::Missing)
        );
        assert!(read(b"PROXY TCP4 1.2.3.4 5.6.7.8 x 1\r\n").0.is_err());
        assert!(read(b"PROXY TCP4 ::1 ::1 1 1\r\n").0.is_err());
        let long = [b"PROXY TCP4 ".as_slice(), &[b'1'; 200]].concat();
        assert_eq!(
            read(&long).0,
            Err(ProxyError::Malformed("v1 line too long"))
        );
    }
}

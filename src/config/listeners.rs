//! The MQTT listener keys, VerneMQ's names: `listener.KIND.NAME = "ADDR"`
//! (KIND is `tcp`, `ssl`, `ws` or `wss`) and `listener.KIND.NAME.OPTION`
//! for that listener's options. In TOML a listener with options is a table
//! (`[listener.ssl.default]` with `address = "…"`, `certfile = "…"`), or
//! its keys are quoted whole (`"listener.ssl.default.certfile" = "…"`).
//!
//! `listener.tcp.default` is the `--mqtt` listener and always exists.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;

use super::values::{addr, boolean, string, uint};

/// A listener's transport.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ListenerKind {
    Tcp,
    Ssl,
    Ws,
    Wss,
}

impl ListenerKind {
    pub fn parse(s: &str) -> Option<ListenerKind> {
        Some(match s {
            "tcp" => ListenerKind::Tcp,
            "ssl" => ListenerKind::Ssl,
            "ws" => ListenerKind::Ws,
            "wss" => ListenerKind::Wss,
            _ => return None,
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            ListenerKind::Tcp => "tcp",
            ListenerKind::Ssl => "ssl",
            ListenerKind::Ws => "ws",
            ListenerKind::Wss => "wss",
        }
    }

    /// Whether the transport is TLS (needs `certfile` and `keyfile`).
    pub fn tls(self) -> bool {
        matches!(self, ListenerKind::Ssl | ListenerKind::Wss)
    }

    /// Whether MQTT runs inside WebSocket frames.
    pub fn websocket(self) -> bool {
        matches!(self, ListenerKind::Ws | ListenerKind::Wss)
    }
}

/// Every option a listener takes, by its key name.
pub const LISTENER_OPTIONS: [&str; 11] = [
    "address",
    "certfile",
    "keyfile",
    "cafile",
    "require_certificate",
    "use_identity_as_username",
    "proxy_protocol",
    "max_connections",
    "allowed_protocol_versions",
    "max_connection_rate",
    "enabled",
];

/// One listener as the config file (or `--mqtt`) gives it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListenerConfig {
    pub kind: ListenerKind,
    pub name: String,
    pub addr: Option<SocketAddr>,
    /// PEM certificate chain and private key (TLS kinds).
    pub certfile: Option<PathBuf>,
    pub keyfile: Option<PathBuf>,
    /// PEM CA certificates a client certificate must chain to.
    pub cafile: Option<PathBuf>,
    /// Refuse a TLS client without a certificate the `cafile` trusts.
    pub require_certificate: bool,
    /// The client certificate's subject CN is the MQTT user name.
    pub use_identity_as_username: bool,
    /// Every connection starts with a PROXY protocol header (v1 or v2).
    pub proxy_protocol: bool,
    /// Connections open at once; 0 = no limit.
    pub max_connections: usize,
    /// MQTT protocol levels accepted (3 = 3.1, 4 = 3.1.1, 5).
    pub allowed_protocol_versions: Vec<u8>,
    /// New connections per second; 0 = no limit.
    pub max_connection_rate: u32,
    /// Whether the listener accepts at start (`listener start` opens a
    /// disabled one).
    pub enabled: bool,
}

impl ListenerConfig {
    pub fn new(kind: ListenerKind, name: &str) -> ListenerConfig {
        ListenerConfig {
            kind,
            name: name.to_string(),
            addr: None,
            certfile: None,
            keyfile: None,
            cafile: None,
            require_certificate: false,
            use_identity_as_username: false,
            proxy_protocol: false,
            max_connections: 0,
            allowed_protocol_versions: vec![3, 4, 5],
            max_connection_rate: 0,
            enabled: true,
        }
    }

    /// `KIND.NAME`, as `listener show` names it.
    pub fn id(&self) -> String {
        format!("{}.{}", self.kind.name(), self.name)
    }

    /// Sets one option from its value in the file.
    fn set(&mut self, option: &str, v: &toml::Value) -> Result<(), String> {
        match option {
            "address" => self.addr = Some(addr(v)?),
            "certfile" => self.certfile = Some(PathBuf::from(string(v)?)),
            "keyfile" => self.keyfile = Some(PathBuf::from(string(v)?)),
            "cafile" => self.cafile = Some(PathBuf::from(string(v)?)),
            "require_certificate" => self.require_certificate = boolean(v)?,
            "use_identity_as_username" => self.use_identity_as_username = boolean(v)?,
            "proxy_protocol" => self.proxy_protocol = boolean(v)?,
            "max_connections" => self.max_connections = uint(v, 0, 10_000_000)? as usize,
            "allowed_protocol_versions" => self.allowed_protocol_versions = versions(v)?,
            "max_connection_rate" => self.max_connection_rate = uint(v, 0, 1_000_000)? as u32,
            "enabled" => self.enabled = boolean(v)?,
            _ => {
                return Err(format!(
                    "unknown listener option; expected one of {}",
                    LISTENER_OPTIONS.join(", ")
                ))
            }
        }
        Ok(())
    }

    /// What the listener's options lack or contradict.
    pub fn check(&self) -> Result<(), String> {
        if self.addr.is_none() {
            return Err("the listener has no address".into());
        }
        if self.kind.tls() && (self.certfile.is_none() || self.keyfile.is_none()) {
            return Err("a TLS listener needs certfile and keyfile".into());
        }
        if !self.kind.tls()
            && (self.certfile.is_some() || self.cafile.is_some() || self.require_certificate)
        {
            return Err(
                "certfile, cafile and require_certificate need an ssl or wss listener".into(),
            );
        }
        if self.require_certificate && self.cafile.is_none() {
            return Err("require_certificate needs a cafile to check client certificates".into());
        }
        if self.use_identity_as_username && !self.require_certificate {
            return Err("use_identity_as_username needs require_certificate = true".into());
        }
        Ok(())
    }

    /// The options as `listener show` prints them (those not at their
    /// default).
    pub fn options(&self) -> BTreeMap<&'static str, String> {
        let mut o = BTreeMap::new();
        let path = |p: &Option<PathBuf>| p.as_ref().map(|p| p.display().to_string());
        if let Some(p) = path(&self.certfile) {
            o.insert("certfile", p);
        }
        if let Some(p) = path(&self.keyfile) {
            o.insert("keyfile", p);
        }
        if let Some(p) = path(&self.cafile) {
            o.insert("cafile", p);
        }
        if self.require_certificate {
            o.insert("require_certificate", "true".into());
        }
        if self.use_identity_as_username {
            o.insert("use_identity_as_username", "true".into());
        }
        if self.proxy_protocol {
            o.insert("proxy_protocol", "true".into());
        }
        if self.max_connections > 0 {
            o.insert("max_connections", self.max_connections.to_string());
        }
        if self.max_connection_rate > 0 {
            o.insert("max_connection_rate", self.max_connection_rate.to_string());
        }
        if self.allowed_protocol_versions != [3, 4, 5] {
            let v: Vec<String> = self
                .allowed_protocol_versions
                .iter()
                .map(u8::to_string)
                .collect();
            o.insert("allowed_protocol_versions", v.join(","));
        }
        o
    }
}

/// `"3,4,5"` (or an array of integers): the protocol levels allowed.
fn versions(v: &toml::Value) -> Result<Vec<u8>, String> {
    let parts: Vec<String> = match v {
        toml::Value::String(s) => s.split(',').map(|p| p.trim().to_string()).collect(),
        toml::Value::Integer(i) => vec![i.to_string()],
        toml::Value::Array(a) => a.iter().map(|x| x.to_string()).collect(),
        other => return Err(format!("expected a list such as \"3,4,5\", got {other}")),
    };
    let mut out = Vec::new();
    for p in parts {
        match p.as_str() {
            "3" | "4" | "5" => out.push(p.as_bytes()[0] - b'0'),
            _ => return Err(format!("`{p}` is not a protocol level (3, 4 or 5)")),
        }
    }
    if out.is_empty() {
        return Err("at least one protocol level is needed".into());
    }
    out.sort_unstable();
    out.dedup();
    Ok(out)
}

/// A parsed listener key: which listener, and which option (`None`: its
/// address).
pub fn split_key(key: &str) -> Option<(ListenerKind, &str, Option<&str>)> {
    let rest = key.strip_prefix("listener.")?;
    let (kind, rest) = rest.split_once('.')?;
    let kind = ListenerKind::parse(kind)?;
    match rest.split_once('.') {
        None => Some((kind, rest, None)),
        Some((name, option)) => Some((kind, name, Some(option))),
    }
}

/// Whether `key` is an MQTT listener key (address or option).
pub fn is_listener_key(key: &str) -> bool {
    split_key(key).is_some_and(|(_, name, _)| !name.is_empty())
}

/// Sets a listener key in `listeners` (keyed by `KIND.NAME`).
pub fn set(
    listeners: &mut BTreeMap<String, ListenerConfig>,
    key: &str,
    v: &toml::Value,
) -> Result<(), String> {
    let Some((kind, name, option)) = split_key(key) else {
        return Err("unknown setting".into());
    };
    if name.is_empty() {
        return Err("a listener needs a name: listener.KIND.NAME".into());
    }
    let l = listeners
        .entry(format!("{}.{name}", kind.name()))
        .or_insert_with(|| ListenerConfig::new(kind, name));
    l.set(option.unwrap_or("address"), v)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &str) -> toml::Value {
        toml::Value::String(v.into())
    }

    #[test]
    fn an_address_and_its_options_make_one_listener() {
        let mut ls = BTreeMap::new();
        set(&mut ls, "listener.ssl.default", &s("127.0.0.1:8883")).unwrap();
        set(&mut ls, "listener.ssl.default.certfile", &s("/c.pem")).unwrap();
        set(&mut ls, "listener.ssl.default.keyfile", &s("/k.pem")).unwrap();
        set(
            &mut ls,
            "listener.ssl.default.allowed_protocol_versions",
            &s("5, 4"),
        )
        .unwrap();
        let l = &ls["ssl.default"];
        assert_eq!(l.kind, ListenerKind::Ssl);
        assert_eq!(l.addr, Some("127.0.0.1:8883".parse().unwrap()));
        assert_eq!(l.allowed_protocol_versions, vec![4, 5]);
        assert_eq!(l.check(), Ok(()));
    }

    #[test]
    fn a_tls_listener_without_a_key_file_is_an_error() {
        let mut ls = BTreeMap::new();
        set(&mut ls, "listener.wss.x.address", &s("127.0.0.1:1")).unwrap();
        set(&mut ls, "listener.wss.x.certfile", &s("/c.pem")).unwrap();
        assert!(ls["wss.x"].check().unwrap_err().contains("keyfile"));
    }

    #[test]
    fn a_config_file_gives_listeners_as_tables_or_quoted_flat_keys() {
        let mut st = crate::config::Settings::default();
        let text = r#"
"listener.ssl.flat.certfile" = "/c.pem"
"listener.ssl.flat.keyfile" = "/k.pem"
listener.ssl.flat = "127.0.0.1:8883"

[listener.ws.web]
address = "127.0.0.1:8080"
max_connections = 5

[listener.tcp.default]
proxy_protocol = true
"#;
        st.apply_toml(text, "t.toml").unwrap();
        let all = st.mqtt_listeners().unwrap();
        let ids: Vec<String> = all.iter().map(ListenerConfig::id).collect();
        assert_eq!(ids, ["tcp.default", "ssl.flat", "ws.web"]);
        assert_eq!(all[0].addr, Some(st.mqtt_addr));
        assert!(all[0].proxy_protocol);
        assert_eq!(all[1].certfile, Some(PathBuf::from("/c.pem")));
        assert_eq!(all[2].max_connections, 5);
    }

    #[test]
    fn a_listener_without_an_address_stops_the_start_naming_it() {
        let mut st = crate::config::Settings::default();
        st.apply_toml(
            "[listener.ws.web]
max_connections = 5
",
            "t.toml",
        )
        .unwrap();
        assert_eq!(
            st.mqtt_listeners().unwrap_err(),
            "listener.ws.web: the listener has no address"
        );
    }

    #[test]
    fn unknown_options_kinds_and_levels_are_errors() {
        let mut ls = BTreeMap::new();
        assert!(set(&mut ls, "listener.tcp.a.colour", &s("red")).is_err());
        assert!(set(&mut ls, "listener.udp.a", &s("127.0.0.1:1")).is_err());
        let e = set(
            &mut ls,
            "listener.tcp.a.allowed_protocol_versions",
            &s("4,6"),
        );
        assert!(e.unwrap_err().contains("`6`"));
    }
}

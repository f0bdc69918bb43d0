//! What the connection's listener decides about a CONNECT before admission
//! (pure, no I/O): the MQTT protocol levels it allows
//! (`allowed_protocol_versions`) and, with `use_identity_as_username`, the
//! verified client certificate's CN as the user name.

use super::connect::Refusal;
use crate::codec::{reason, Connect, Protocol};
use crate::listener::TransportInfo;

/// Refuses a CONNECT the listener does not allow, or rewrites its user
/// name from the certificate identity.
pub fn apply(info: &TransportInfo, c: &mut Connect) -> Result<(), Refusal> {
    let l = &info.listener;
    let level = c.protocol.unwrap_or(Protocol::V311).level();
    if !l.allowed_protocol_versions.contains(&level) {
        // CONNACK 0x84 (MQTT 5), 0x01 unacceptable protocol version (3.x).
        return Err(Refusal {
            code: reason::UNSUPPORTED_PROTOCOL_VERSION,
            why: "protocol version not allowed on this listener",
        });
    }
    if l.use_identity_as_username {
        match &info.identity {
            Some(cn) => c.username = Some(cn.clone()),
            None => {
                return Err(Refusal {
                    code: reason::BAD_USER_NAME_OR_PASSWORD,
                    why: "the client certificate has no common name",
                })
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::config::listeners::{ListenerConfig, ListenerKind};

    fn info(versions: &[u8], identity_as_user: bool, identity: Option<&str>) -> TransportInfo {
        let mut l = ListenerConfig::new(ListenerKind::Ssl, "t");
        l.allowed_protocol_versions = versions.to_vec();
        l.use_identity_as_username = identity_as_user;
        TransportInfo {
            listener: Arc::new(l),
            peer: None,
            identity: identity.map(str::to_string),
        }
    }

    fn connect(p: Protocol, user: Option<&str>) -> Connect {
        Connect {
            protocol: Some(p),
            username: user.map(str::to_string),
            ..Default::default()
        }
    }

    #[test]
    fn a_level_the_listener_does_not_allow_is_refused_as_unsupported() {
        let mut c = connect(Protocol::V311, None);
        let r = apply(&info(&[5], false, None), &mut c).unwrap_err();
        assert_eq!(r.code, reason::UNSUPPORTED_PROTOCOL_VERSION);
        assert!(apply(&info(&[4, 5], false, None), &mut c).is_ok());
    }

    #[test]
    fn the_certificate_cn_replaces_the_user_name() {
        let mut c = connect(Protocol::V5, Some("claimed"));
        apply(&info(&[3, 4, 5], true, Some("device-7")), &mut c).unwrap();
        assert_eq!(c.username.as_deref(), Some("device-7"));
        let mut c = connect(Protocol::V5, Some("claimed"));
        assert!(apply(&info(&[3, 4, 5], true, None), &mut c).is_err());
        let mut c = connect(Protocol::V5, Some("claimed"));
        apply(&info(&[3, 4, 5], false, Some("device-7")), &mut c).unwrap();
        assert_eq!(c.username.as_deref(), Some("claimed"));
    }
}

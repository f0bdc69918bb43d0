//! [`MqttError`]: how an operation ended when it did not succeed, and which
//! of those endings are definite.

use super::codec::CodecError;

/// How an operation ended when it did not succeed.
#[derive(thiserror::Error, Debug)]
pub enum MqttError {
    /// The broker answered with a failure reason code (CONNACK != 0, SUBACK
    /// 0x80+, v5 PUBACK/PUBREC/PUBCOMP/UNSUBACK 0x80+). The operation
    /// definitely did not take effect (per protocol).
    #[error("refused by the broker: reason code {0:#04x}")]
    Refused(u8),
    /// No answer within the deadline; outcome unknown.
    #[error("no answer before the deadline")]
    Timeout,
    /// The connection closed or failed before the answer; outcome unknown.
    /// Carries the v5 DISCONNECT reason code if the broker sent one (a
    /// DISCONNECT is not tied to one operation, so it never makes an
    /// outcome definite).
    #[error("connection closed{}", disconnect_reason(.0))]
    Closed(Option<u8>),
    /// QoS 2 publish interrupted after PUBREC arrived (broker has the
    /// message): resume with [`Client::release`](super::Client::release).
    #[error("QoS 2 publish interrupted after PUBREC")]
    AfterPubrec,
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
    /// The broker broke the protocol, or the request could not be encoded;
    /// outcome unknown.
    #[error("protocol: {0}")]
    Protocol(String),
}

fn disconnect_reason(code: &Option<u8>) -> String {
    match code {
        Some(c) => format!(" by the broker: DISCONNECT reason {c:#04x}"),
        None => String::new(),
    }
}

impl MqttError {
    /// True only for [`MqttError::Refused`]: the operation definitely did not
    /// take effect. Everything else leaves the outcome unknown.
    pub fn is_definite(&self) -> bool {
        matches!(self, MqttError::Refused(_))
    }
}

impl From<CodecError> for MqttError {
    fn from(e: CodecError) -> Self {
        MqttError::Protocol(e.to_string())
    }
}

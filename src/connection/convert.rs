//! The one conversion point between the wire (codec packets) and the log
//! (raft values): a client's PUBLISH or will becomes a [`Message`], its
//! subscription options become [`SubOpts`]. Nothing else in the connection
//! builds these values by hand.

use std::sync::Arc;

use raftmq_raft::{Message, MsgProps, SubOpts, Will};

use crate::codec::{LastWill, Publish, PublishProperties, SubOptions, WillProperties};

/// The message a client's PUBLISH carries, accepted at `now_ms`, on `topic`
/// (the PUBLISH's own topic, or the one its topic alias stands for).
pub fn message(p: Publish, topic: String, publisher: &Arc<str>, now_ms: u64) -> Message {
    let PublishProperties {
        payload_format_indicator,
        message_expiry_interval,
        content_type,
        response_topic,
        correlation_data,
        user_properties,
        ..
    } = p.properties;
    Message {
        topic,
        payload: p.payload,
        qos: p.qos as u8,
        retain: p.retain,
        publisher: publisher.clone(),
        props: MsgProps {
            payload_format_indicator,
            content_type,
            response_topic,
            correlation_data,
            user_properties,
        },
        created_ms: now_ms,
        expires_ms: message_expiry_interval.map(|e| now_ms + e as u64 * 1000),
    }
}

/// A CONNECT's will, registered at `now_ms` for `client_id`. Its expiry
/// interval counts from when it is published, so it stays relative here.
pub fn will(w: &LastWill, client_id: &str, now_ms: u64) -> Will {
    let WillProperties {
        delay_interval,
        payload_format_indicator,
        message_expiry_interval,
        content_type,
        response_topic,
        correlation_data,
        user_properties,
    } = w.properties.clone();
    Will {
        msg: Message {
            topic: w.topic.clone(),
            payload: w.payload.clone(),
            qos: w.qos as u8,
            retain: w.retain,
            publisher: client_id.into(),
            props: MsgProps {
                payload_format_indicator,
                content_type,
                response_topic,
                correlation_data,
                user_properties,
            },
            created_ms: now_ms,
            expires_ms: None,
        },
        expiry_s: message_expiry_interval,
        delay_s: delay_interval.unwrap_or(0),
    }
}

/// A SUBSCRIBE filter's options, with the packet's subscription identifier.
pub fn sub_opts(o: SubOptions, sub_id: Option<u32>) -> SubOpts {
    SubOpts {
        qos: o.qos as u8,
        no_local: o.no_local,
        retain_as_published: o.retain_as_published,
        retain_handling: o.retain_handling,
        sub_id,
    }
}

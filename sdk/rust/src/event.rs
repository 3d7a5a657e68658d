//! Delivered events (the ABI's Event encoding: CloudEvents 1.0 attributes).

use crate::codec::{self, Dec};

/// A delivered event, borrowed from the call's input. Valid for the
/// handler's call.
#[derive(Clone, Debug)]
pub struct Event<'a> {
    id: &'a str,
    source: &'a str,
    event_type: &'a str,
    time: &'a str,
    data_content_type: &'a str,
    traceparent: &'a str,
    attempt: u32,
    data: &'a [u8],
}

impl<'a> Event<'a> {
    /// Decodes an encoded event.
    pub fn decode(b: &'a [u8]) -> Result<Event<'a>, &'static str> {
        let mut d = Dec::new(b);
        Ok(Event {
            id: d.str()?,
            source: d.str()?,
            event_type: d.str()?,
            time: d.str()?,
            data_content_type: d.str()?,
            traceparent: d.str()?,
            attempt: d.u32()?,
            data: d.bytes()?,
        })
    }

    /// Unique per event, the same on every redelivery: the key that makes
    /// a handler idempotent.
    pub fn id(&self) -> &'a str {
        self.id
    }
    /// The publishing service.
    pub fn source(&self) -> &'a str {
        self.source
    }
    /// "ORDER_PAID".
    pub fn event_type(&self) -> &'a str {
        self.event_type
    }
    /// RFC 3339 with nanoseconds, UTC.
    pub fn time(&self) -> &'a str {
        self.time
    }
    /// "application/json".
    pub fn data_content_type(&self) -> &'a str {
        self.data_content_type
    }
    /// W3C trace context, may be empty.
    pub fn traceparent(&self) -> &'a str {
        self.traceparent
    }
    /// 1 on first delivery, 2 on the first redelivery, ...
    pub fn attempt(&self) -> u32 {
        self.attempt
    }
    /// The payload (JSON).
    pub fn data(&self) -> &'a [u8] {
        self.data
    }
}

/// The fields of an event to encode (the fake host's deliveries).
#[derive(Clone, Debug, Default)]
pub struct EventFields<'a> {
    pub id: &'a str,
    pub source: &'a str,
    pub event_type: &'a str,
    pub time: &'a str,
    pub traceparent: &'a str,
    pub attempt: u32,
    pub data: &'a [u8],
}

impl<'a> EventFields<'a> {
    /// Appends the event's encoding to dst.
    pub fn encode(&self, dst: &mut Vec<u8>) {
        codec::put_bytes(dst, self.id.as_bytes());
        codec::put_bytes(dst, self.source.as_bytes());
        codec::put_bytes(dst, self.event_type.as_bytes());
        codec::put_bytes(dst, self.time.as_bytes());
        codec::put_bytes(dst, b"application/json");
        codec::put_bytes(dst, self.traceparent.as_bytes());
        codec::put_u32(dst, self.attempt);
        codec::put_bytes(dst, self.data);
    }
}

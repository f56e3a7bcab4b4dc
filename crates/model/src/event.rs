//! The flat full event (`FullEventV2`) and its exact JSON encoding (spec §3).

use crate::EventType;
use crate::envelope::{ContextValue, FULL_EVENT_KEYS, is_always, with_context_fields};
use chrono::{DateTime, FixedOffset, SecondsFormat, Utc};
use serde::Serialize;
use serde::ser::SerializeStruct;
use serde_json::value::RawValue;
use std::fmt;

/// An event's time. Kept with the producer's offset and encoded the way Go
/// writes a `time.Time`: RFC 3339, nanoseconds with trailing zeros dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(pub DateTime<FixedOffset>);

impl Timestamp {
    pub fn now() -> Self {
        Timestamp(Utc::now().fixed_offset())
    }

    /// Parses any RFC 3339 timestamp (offset or `Z`, with or without fraction).
    pub fn parse(s: &str) -> Result<Self, chrono::ParseError> {
        DateTime::parse_from_rfc3339(s).map(Timestamp)
    }

    /// Go's zero `time.Time` (`0001-01-01T00:00:00Z`), which CDS writes for "unset".
    pub fn is_go_zero(&self) -> bool {
        self.0.timestamp() == -62_135_596_800 && self.0.timestamp_subsec_nanos() == 0
    }

    /// Nanoseconds since the Unix epoch, saturated to the `i64` range (years
    /// 1678–2262); used as the sortable index value.
    pub fn unix_nanos(&self) -> i64 {
        match self.0.timestamp_nanos_opt() {
            Some(n) => n,
            None if self.0.timestamp() < 0 => i64::MIN,
            None => i64::MAX,
        }
    }

    /// The UTC instant for `unix_nanos`.
    pub fn from_unix_nanos(n: i64) -> Self {
        Timestamp(DateTime::<Utc>::from_timestamp_nanos(n).fixed_offset())
    }

    /// Go's `time.RFC3339Nano` rendering. Written by hand: it runs for every
    /// event encoded, and chrono's general formatter is several times slower.
    pub fn to_go_string(&self) -> String {
        use chrono::{Datelike, Timelike};
        use std::fmt::Write;
        let dt = self.0;
        let mut out = String::with_capacity(36);
        // Writing to a String cannot fail.
        let _ = write!(
            out,
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}",
            dt.year(),
            dt.month(),
            dt.day(),
            dt.hour(),
            dt.minute(),
            dt.second()
        );
        // chrono represents a leap second as nanos >= 1e9; Go has no such thing.
        let nanos = dt.nanosecond().min(999_999_999);
        if nanos != 0 {
            let mut digits = 9;
            let mut n = nanos;
            while n.is_multiple_of(10) {
                n /= 10;
                digits -= 1;
            }
            let _ = write!(out, ".{n:0digits$}");
        }
        let offset = dt.offset().local_minus_utc();
        if offset == 0 {
            out.push('Z');
        } else {
            let sign = if offset < 0 { '-' } else { '+' };
            let abs = offset.unsigned_abs();
            let _ = write!(out, "{sign}{:02}:{:02}", abs / 3600, (abs % 3600) / 60);
        }
        out
    }

    /// RFC 3339 in UTC with nanoseconds, for logs and CLI output.
    pub fn to_utc_string(&self) -> String {
        self.0
            .with_timezone(&Utc)
            .to_rfc3339_opts(SecondsFormat::AutoSi, true)
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_go_string())
    }
}

impl Serialize for Timestamp {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_go_string())
    }
}

macro_rules! full_event {
    ($($field:ident : $ty:ty $(= $always:ident)?),* $(,)?) => {
        /// The flat full event every consumer receives. Field order is the
        /// wire order of CDS's `FullEventV2` (declared once in
        /// [`crate::envelope`]); `Serialize` writes exactly spec §3: empty
        /// strings and zero counters omitted, except `user_mail` and
        /// `concurrency`, which are always present, and `payload`, which is
        /// `null` when the producer sent none.
        ///
        /// The sequence number is deliberately not a field: it travels beside
        /// the event, never inside it.
        #[derive(Debug, Clone, PartialEq)]
        pub struct FullEvent {
            pub id: String,
            pub event_type: EventType,
            /// Stored and returned byte for byte.
            pub payload: Payload,
            $(pub $field: $ty,)*
            pub timestamp: Timestamp,
        }

        impl Serialize for FullEvent {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                let mut st = s.serialize_struct("FullEvent", FULL_EVENT_KEYS.len())?;
                st.serialize_field("id", &self.id)?;
                st.serialize_field("type", &self.event_type)?;
                st.serialize_field("payload", &self.payload)?;
                $(
                    if is_always!($($always)?) || !self.$field.is_empty_value() {
                        st.serialize_field(stringify!($field), &self.$field)?;
                    } else {
                        st.skip_field(stringify!($field))?;
                    }
                )*
                st.serialize_field("timestamp", &self.timestamp)?;
                st.end()
            }
        }

        impl FullEvent {
            /// An event of `event_type` with a fresh UUID v7, a `null`
            /// payload, the current time and every context field empty.
            pub fn new(event_type: EventType) -> Self {
                FullEvent {
                    id: uuid::Uuid::now_v7().to_string(),
                    event_type,
                    payload: Payload::null(),
                    $($field: <$ty>::default(),)*
                    timestamp: Timestamp::now(),
                }
            }
        }
    };
}
with_context_fields!(full_event);

/// An event's payload: any JSON value, kept as the exact text the producer sent.
#[derive(Debug, Clone, Serialize)]
#[serde(transparent)]
pub struct Payload(pub Box<RawValue>);

impl Payload {
    /// The JSON literal `null`, the payload of an event whose producer sent none.
    pub fn null() -> Self {
        Payload(RawValue::from_string("null".to_owned()).expect("null is valid JSON"))
    }

    /// Wraps JSON text, checking that it is one valid JSON value.
    pub fn from_json(text: impl Into<String>) -> Result<Self, serde_json::Error> {
        RawValue::from_string(text.into()).map(Payload)
    }

    /// Serializes any value as the payload.
    pub fn from_value<T: Serialize>(value: &T) -> Result<Self, serde_json::Error> {
        serde_json::value::to_raw_value(value).map(Payload)
    }

    /// The payload's JSON text, byte for byte.
    pub fn get(&self) -> &str {
        self.0.get()
    }
}

impl Default for Payload {
    fn default() -> Self {
        Payload::null()
    }
}

impl PartialEq for Payload {
    fn eq(&self, other: &Self) -> bool {
        self.get() == other.get()
    }
}

impl FullEvent {
    /// The exact wire JSON of spec §3.
    pub fn to_json(&self) -> String {
        // Sized for the payload and a full envelope, so that the buffer is
        // not grown (and copied) several times on the way.
        let mut out = Vec::with_capacity(self.payload.get().len() + 512);
        serde_json::to_writer(&mut out, self).expect("a full event always serializes");
        String::from_utf8(out).expect("serde_json writes UTF-8 only")
    }

    pub fn family(&self) -> crate::Family {
        self.event_type.family()
    }
}

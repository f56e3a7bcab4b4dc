//! Decoding and validation of incoming events.
//!
//! Accepts the family (producer) shape or the full event: both are one flat
//! object whose keys are a subset of the full event's. Unknown keys are
//! ignored (forward compatibility). Everything that could hurt the log —
//! duplicate keys, absurd nesting, huge strings, wrong JSON types — is refused
//! with an error naming the field; nothing here panics on any input.

use crate::envelope::with_context_fields;
use crate::{EventType, FullEvent, Scope, Timestamp};
use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use std::borrow::Cow;
use std::fmt;

/// Bounds on what one event may contain.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Limits {
    /// Deepest nesting of objects/arrays, the event object itself being depth 1.
    pub max_depth: usize,
    /// Longest string (value or key), in bytes, anywhere in the event.
    pub max_string_bytes: usize,
    /// Longest event id, in bytes.
    pub max_id_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_depth: 64,
            max_string_bytes: 1024 * 1024,
            max_id_bytes: 128,
        }
    }
}

/// What went wrong, as a stable machine-readable code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    InvalidJson,
    InvalidUtf8,
    NotAnObject,
    DuplicateKey,
    TooDeep,
    StringTooLong,
    WrongType,
    MissingField,
    UnexpectedField,
    UnknownType,
    WrongFamily,
    InvalidTimestamp,
    InvalidId,
}

/// One event's validation failure.
#[derive(Debug, Clone, PartialEq, Serialize, thiserror::Error)]
#[error("{message}")]
pub struct DecodeError {
    pub code: ErrorCode,
    /// The JSON path of the offending field (`run_number`, `payload.steps[2]`), when known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    pub message: String,
    /// For unknown types: the nearest valid ones.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub suggestions: Vec<&'static str>,
}

impl DecodeError {
    pub fn new(code: ErrorCode, field: Option<&str>, message: impl Into<String>) -> Self {
        DecodeError {
            code,
            field: field.map(str::to_owned),
            message: message.into(),
            suggestions: Vec::new(),
        }
    }
}

/// Decodes one event from its JSON text, with validation and defaults
/// (id, timestamp) applied.
pub fn decode_event(text: &str, limits: &Limits) -> Result<FullEvent, DecodeError> {
    check_structure(text, limits)?;
    if !text.trim_start().starts_with('{') {
        return Err(DecodeError::new(
            ErrorCode::NotAnObject,
            None,
            "an event must be a JSON object",
        ));
    }
    // Fast path: plain serde. Only a failing event pays for path tracking,
    // which is decoded a second time to name the field.
    let mut de = serde_json::Deserializer::from_str(text);
    if let Ok(wire) = WireEvent::deserialize(&mut de)
        && de.end().is_ok()
    {
        return wire.into_event(limits);
    }
    let mut de = serde_json::Deserializer::from_str(text);
    let wire: WireEvent<'_> = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        let field = if path == "." {
            None
        } else {
            Some(path.as_str())
        };
        let code = match inner.classify() {
            serde_json::error::Category::Data if field.is_some() => ErrorCode::WrongType,
            serde_json::error::Category::Data => ErrorCode::NotAnObject,
            _ => ErrorCode::InvalidJson,
        };
        let message = match field {
            Some(f) => format!("field {f}: {}", strip_position(&inner.to_string())),
            None => strip_position(&inner.to_string()),
        };
        DecodeError::new(code, field, message)
    })?;
    de.end()
        .map_err(|e| DecodeError::new(ErrorCode::InvalidJson, None, e.to_string()))?;
    wire.into_event(limits)
}

/// Decodes an event this system encoded itself (read back from the log):
/// the structural checks were done at ingest and are skipped.
pub fn decode_stored(text: &str) -> Result<FullEvent, DecodeError> {
    let mut de = serde_json::Deserializer::from_str(text);
    let wire = WireEvent::deserialize(&mut de)
        .map_err(|e| DecodeError::new(ErrorCode::InvalidJson, None, e.to_string()))?;
    wire.into_event(&Limits::default())
}

/// What routing needs of a stored event (one this system encoded): its id,
/// type and project, and the envelope fields a webhook may be ordered by,
/// read without building the rest. The payload and the other fields are
/// skipped, not decoded. A field the event lacks is empty.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredHead<'a> {
    pub id: Cow<'a, str>,
    pub event_type: EventType,
    pub project_key: Cow<'a, str>,
    pub workflow_run_id: Cow<'a, str>,
    pub workflow: Cow<'a, str>,
    pub repository: Cow<'a, str>,
}

/// Reads a stored event's [`StoredHead`].
pub fn peek_stored(text: &str) -> Result<StoredHead<'_>, DecodeError> {
    #[derive(Deserialize)]
    struct Head<'a> {
        #[serde(borrow, default)]
        id: Option<Cow<'a, str>>,
        #[serde(rename = "type", borrow, default)]
        event_type: Option<Cow<'a, str>>,
        #[serde(borrow, default)]
        project_key: Option<Cow<'a, str>>,
        #[serde(borrow, default)]
        workflow_run_id: Option<Cow<'a, str>>,
        #[serde(borrow, default)]
        workflow: Option<Cow<'a, str>>,
        #[serde(borrow, default)]
        repository: Option<Cow<'a, str>>,
    }
    let head: Head<'_> = serde_json::from_str(text)
        .map_err(|e| DecodeError::new(ErrorCode::InvalidJson, None, e.to_string()))?;
    let event_type = event_type_of(head.event_type.as_deref())?;
    Ok(StoredHead {
        id: head.id.unwrap_or_default(),
        event_type,
        project_key: head.project_key.unwrap_or_default(),
        workflow_run_id: head.workflow_run_id.unwrap_or_default(),
        workflow: head.workflow.unwrap_or_default(),
        repository: head.repository.unwrap_or_default(),
    })
}

/// An event object's non-empty `id`, if it has one (nothing else is read).
pub(crate) fn peek_id(text: &str) -> Option<String> {
    #[derive(Deserialize)]
    struct Id<'a> {
        #[serde(borrow, default)]
        id: Option<Cow<'a, str>>,
    }
    let head: Id<'_> = serde_json::from_str(text).ok()?;
    head.id.filter(|id| !id.is_empty()).map(Cow::into_owned)
}

/// Decodes a body that is one event object or a JSON array of them. Each
/// element's error carries its index.
pub fn decode_json_body(text: &str, limits: &Limits) -> Result<Vec<FullEvent>, BatchError> {
    let trimmed = text.trim_start();
    if trimmed.starts_with('[') {
        let items: Vec<&RawValue> = serde_json::from_str(text).map_err(|e| {
            BatchError::Body(DecodeError::new(
                ErrorCode::InvalidJson,
                None,
                e.to_string(),
            ))
        })?;
        decode_all(items.iter().map(|r| r.get()), limits)
    } else {
        decode_event(text, limits)
            .map(|e| vec![e])
            .map_err(|e| BatchError::Items(vec![(0, e)]))
    }
}

/// Decodes NDJSON: one event per non-blank line. Errors carry the 0-based
/// index of the event and its 1-based line number.
pub fn decode_ndjson_body(text: &str, limits: &Limits) -> Result<Vec<FullEvent>, BatchError> {
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    decode_all(lines.into_iter(), limits)
}

/// The line number (1-based) of the `index`th non-blank line of an NDJSON body.
pub fn ndjson_line_of(text: &str, index: usize) -> Option<usize> {
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .nth(index)
        .map(|(n, _)| n + 1)
}

fn decode_all<'a>(
    items: impl Iterator<Item = &'a str>,
    limits: &Limits,
) -> Result<Vec<FullEvent>, BatchError> {
    let mut ok = Vec::new();
    let mut errors = Vec::new();
    for (i, text) in items.enumerate() {
        match decode_event(text, limits) {
            Ok(ev) => ok.push(ev),
            Err(e) => errors.push((i, e)),
        }
    }
    if errors.is_empty() {
        Ok(ok)
    } else {
        Err(BatchError::Items(errors))
    }
}

/// Why a batch was refused.
#[derive(Debug, Clone, PartialEq)]
pub enum BatchError {
    /// The body as a whole is not a JSON value or array.
    Body(DecodeError),
    /// These elements (0-based index) are invalid; the batch is refused whole.
    Items(Vec<(usize, DecodeError)>),
}

/// serde_json appends " at line 1 column 42"; the field path is more useful to a
/// producer than a column, and both together read badly.
fn strip_position(msg: &str) -> String {
    match msg.rfind(" at line ") {
        Some(i) => msg[..i].to_owned(),
        None => msg.to_owned(),
    }
}

/// Walks the whole document once, refusing duplicate keys, excessive depth and
/// oversized strings, with the path of the offender.
fn check_structure(text: &str, limits: &Limits) -> Result<(), DecodeError> {
    // serde_json's own recursion guard (128) is a backstop; ours is tighter.
    // Fast path without path tracking; a failure is walked again to name it.
    let mut de = serde_json::Deserializer::from_str(text);
    if (Checker { depth: 1, limits })
        .deserialize(&mut de)
        .and_then(|()| de.end())
        .is_ok()
    {
        return Ok(());
    }
    let mut de = serde_json::Deserializer::from_str(text);
    let seed = Checker { depth: 1, limits };
    let mut track = serde_path_to_error::Track::new();
    let r = seed
        .deserialize(serde_path_to_error::Deserializer::new(&mut de, &mut track))
        .and_then(|()| de.end());
    match r.map_err(|e| serde_path_to_error::Error::new(track.path(), e)) {
        Ok(()) => Ok(()),
        Err(e) => {
            let path = e.path().to_string();
            let inner = e.into_inner();
            let raw = strip_position(&inner.to_string());
            let (code, message) = match raw.split_once('\u{1}') {
                Some((code, msg)) => (code_from_tag(code), msg.to_owned()),
                None => (ErrorCode::InvalidJson, raw),
            };
            let field = if path == "." || path.is_empty() {
                None
            } else {
                Some(path)
            };
            let message = match (&field, code) {
                (Some(f), c) if c != ErrorCode::InvalidJson => format!("{message} at {f}"),
                _ => message,
            };
            Err(DecodeError {
                code,
                field,
                message,
                suggestions: Vec::new(),
            })
        }
    }
}

fn code_from_tag(tag: &str) -> ErrorCode {
    match tag {
        "dup" => ErrorCode::DuplicateKey,
        "deep" => ErrorCode::TooDeep,
        "long" => ErrorCode::StringTooLong,
        _ => ErrorCode::InvalidJson,
    }
}

struct Checker<'l> {
    depth: usize,
    limits: &'l Limits,
}

impl<'de> DeserializeSeed<'de> for Checker<'_> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Checker<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E>(self, _: bool) -> Result<(), E> {
        Ok(())
    }
    fn visit_i64<E>(self, _: i64) -> Result<(), E> {
        Ok(())
    }
    fn visit_u64<E>(self, _: u64) -> Result<(), E> {
        Ok(())
    }
    fn visit_f64<E>(self, _: f64) -> Result<(), E> {
        Ok(())
    }
    fn visit_unit<E>(self) -> Result<(), E> {
        Ok(())
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<(), E> {
        self.check_len(v.len())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let inner = self.enter()?;
        while seq
            .next_element_seed(Checker {
                depth: inner,
                limits: self.limits,
            })?
            .is_some()
        {}
        Ok(())
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let inner = self.enter()?;
        let mut seen: Vec<Cow<'de, str>> = Vec::new();
        let mut seen_set: Option<std::collections::HashSet<Cow<'de, str>>> = None;
        while let Some(key) = map.next_key::<Cow<'de, str>>()? {
            self.check_len(key.len())?;
            let dup = match &mut seen_set {
                Some(set) => !set.insert(key.clone()),
                None => {
                    let dup = seen.contains(&key);
                    seen.push(key.clone());
                    if seen.len() > 32 {
                        seen_set = Some(seen.drain(..).collect());
                    }
                    dup
                }
            };
            if dup {
                return Err(de::Error::custom(format_args!(
                    "dup\u{1}duplicate key {key:?}"
                )));
            }
            map.next_value_seed(Checker {
                depth: inner,
                limits: self.limits,
            })?;
        }
        Ok(())
    }
}

impl Checker<'_> {
    fn enter<E: de::Error>(&self) -> Result<usize, E> {
        if self.depth > self.limits.max_depth {
            return Err(E::custom(format_args!(
                "deep\u{1}nesting deeper than {} levels",
                self.limits.max_depth
            )));
        }
        Ok(self.depth + 1)
    }

    fn check_len<E: de::Error>(&self, len: usize) -> Result<(), E> {
        if len > self.limits.max_string_bytes {
            return Err(E::custom(format_args!(
                "long\u{1}string of {len} bytes exceeds the limit of {} bytes",
                self.limits.max_string_bytes
            )));
        }
        Ok(())
    }
}

/// Reads `null` as the field's empty value, as Go does.
fn null_as_default<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de> + Default,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

macro_rules! wire_event {
    ($($field:ident : $ty:ty $(= $always:ident)?),* $(,)?) => {
        /// Every key of the full event; absent keys take their empty value,
        /// `null` is read as empty (as Go does), unknown keys are ignored.
        #[derive(Deserialize)]
        struct WireEvent<'a> {
            #[serde(default, deserialize_with = "null_as_default")]
            id: String,
            #[serde(rename = "type", borrow, default)]
            event_type: Option<Cow<'a, str>>,
            #[serde(default)]
            payload: Option<Box<RawValue>>,
            #[serde(default, borrow)]
            timestamp: Option<Cow<'a, str>>,
            $(
                #[serde(default, deserialize_with = "null_as_default")]
                $field: $ty,
            )*
        }

        impl WireEvent<'_> {
            /// The full event, with its type and timestamp already checked.
            fn assemble(self, event_type: EventType, timestamp: Timestamp) -> FullEvent {
                FullEvent {
                    id: self.id,
                    event_type,
                    payload: self.payload.map(crate::event::Payload).unwrap_or_default(),
                    $($field: self.$field,)*
                    timestamp,
                }
            }
        }
    };
}
with_context_fields!(wire_event);

/// The `type` field read as a catalogue type: missing, or unknown with the
/// nearest names suggested.
fn event_type_of(t: Option<&str>) -> Result<EventType, DecodeError> {
    let type_str = match t {
        Some(t) if !t.is_empty() => t,
        _ => {
            return Err(DecodeError::new(
                ErrorCode::MissingField,
                Some("type"),
                "missing field type",
            ));
        }
    };
    EventType::parse(type_str).ok_or_else(|| {
        let suggestions: Vec<&'static str> = EventType::suggest(type_str, 3)
            .into_iter()
            .map(EventType::as_str)
            .collect();
        DecodeError {
            code: ErrorCode::UnknownType,
            field: Some("type".to_owned()),
            message: format!(
                "unknown event type {type_str:?}; did you mean {}?",
                suggestions.join(", ")
            ),
            suggestions,
        }
    })
}

impl WireEvent<'_> {
    fn into_event(self, limits: &Limits) -> Result<FullEvent, DecodeError> {
        let event_type = event_type_of(self.event_type.as_deref())?;
        let timestamp = match self.timestamp.as_deref() {
            None | Some("") => Timestamp::now(),
            Some(s) => {
                let ts = Timestamp::parse(s).map_err(|e| {
                    DecodeError::new(
                        ErrorCode::InvalidTimestamp,
                        Some("timestamp"),
                        format!("timestamp {s:?} is not RFC 3339: {e}"),
                    )
                })?;
                if ts.is_go_zero() {
                    Timestamp::now()
                } else {
                    ts
                }
            }
        };
        let ev = self.assemble(event_type, timestamp);
        finish(ev, limits)
    }
}

/// The checks shared by every way an event comes in (wire or typed producer):
/// the scope's mandatory `project_key`, the id's shape, a default id.
pub(crate) fn finish(mut ev: FullEvent, limits: &Limits) -> Result<FullEvent, DecodeError> {
    if ev.event_type.scope() == Scope::Project && ev.project_key.is_empty() {
        return Err(DecodeError::new(
            ErrorCode::MissingField,
            Some("project_key"),
            format!(
                "type {} is project-scoped and needs a non-empty project_key",
                ev.event_type
            ),
        ));
    }
    if ev.event_type.scope() == Scope::Global && !ev.project_key.is_empty() {
        // Access to a global event is decided by its scope; a project key on
        // it would make it readable by that project's readers too.
        return Err(DecodeError::new(
            ErrorCode::UnexpectedField,
            Some("project_key"),
            format!(
                "type {} is global and cannot carry a project_key",
                ev.event_type
            ),
        ));
    }
    if ev.id.is_empty() {
        ev.id = uuid::Uuid::now_v7().to_string();
    } else if ev.id.len() > limits.max_id_bytes || ev.id.chars().any(char::is_control) {
        return Err(DecodeError::new(
            ErrorCode::InvalidId,
            Some("id"),
            format!(
                "id must be at most {} bytes without control characters",
                limits.max_id_bytes
            ),
        ));
    }
    Ok(ev)
}

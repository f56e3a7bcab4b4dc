//! Decoding and validation of incoming events.
//!
//! Accepts the family (producer) shape or the full event: both are one flat
//! object whose keys are a subset of the full event's. Unknown keys are
//! ignored (forward compatibility). Everything that could hurt the log —
//! duplicate keys, absurd nesting, huge strings, wrong JSON types — is refused
//! with an error naming the field; nothing here panics on any input.

mod check;

use crate::envelope::with_context_fields;
use crate::{EventType, FullEvent, Scope, Timestamp};
use check::check_structure;
use serde::de::Deserializer;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use std::borrow::Cow;

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
    if text.trim_start().starts_with('[')
        && let Some(events) = decode_array(text, limits)
    {
        return Ok(events);
    }
    decode_one_or_array(text, |t| decode_event(t, limits))
}

/// A body that is one object or a JSON array of them, each decoded by
/// `decode` (an event, a CloudEvent); each element's error carries its index.
pub(crate) fn decode_one_or_array(
    text: &str,
    decode: impl Fn(&str) -> Result<FullEvent, DecodeError>,
) -> Result<Vec<FullEvent>, BatchError> {
    if text.trim_start().starts_with('[') {
        let items: Vec<&RawValue> = serde_json::from_str(text).map_err(|e| {
            BatchError::Body(DecodeError::new(
                ErrorCode::InvalidJson,
                None,
                e.to_string(),
            ))
        })?;
        decode_all(items.iter().map(|r| r.get()), decode)
    } else {
        decode(text)
            .map(|e| vec![e])
            .map_err(|e| BatchError::Items(vec![(0, e)]))
    }
}

/// The fast path for an array of valid events: one walk of the whole body
/// checks every element's structure, a second decodes them all, instead of
/// cutting the body into elements first and walking each twice. `None` when
/// anything is wrong: the caller then decodes element by element, which
/// names each bad element and field.
fn decode_array(text: &str, limits: &Limits) -> Option<Vec<FullEvent>> {
    if !check::every_element_passes(text, limits) {
        return None;
    }
    // Every element is an object (checked above), so none is read as a
    // struct written as a sequence.
    let mut de = serde_json::Deserializer::from_str(text);
    let wires = Vec::<WireEvent<'_>>::deserialize(&mut de).ok()?;
    de.end().ok()?;
    wires
        .into_iter()
        .map(|w| w.into_event(limits).ok())
        .collect()
}

/// Decodes NDJSON: one event per non-blank line. Errors carry the 0-based
/// index of the event and its 1-based line number.
pub fn decode_ndjson_body(text: &str, limits: &Limits) -> Result<Vec<FullEvent>, BatchError> {
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    decode_all(lines.into_iter(), |t| decode_event(t, limits))
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
    decode: impl Fn(&str) -> Result<FullEvent, DecodeError>,
) -> Result<Vec<FullEvent>, BatchError> {
    // Sized up front: an event is large, and growing by doubling would move
    // each one about twice more.
    let mut ok = Vec::with_capacity(items.size_hint().0);
    let mut errors = Vec::new();
    for (i, text) in items.enumerate() {
        match decode(text) {
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

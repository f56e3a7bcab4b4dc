//! CloudEvents in: a structured CloudEvent (or a batch of them) whose `data`
//! is a CDS event becomes that CDS event, its id kept.
//!
//! The envelope must be CloudEvents 1.0 with the required attributes, `data`
//! must be a CDS event (JSON, not `data_base64`), and what the envelope says
//! must agree with the event: `type` is the event's mapped type
//! ([`super::ce_type`]) and `id`, when the event has its own, is the same. A
//! `data` without an id takes the CloudEvent's. Every refusal names the field
//! (`specversion`, `type`, `data.run_number`…). Extension attributes are
//! ignored.

use super::{DATA_CONTENT_TYPE, SPECVERSION, ce_type};
use crate::decode::{finish, peek_id};
use crate::{BatchError, DecodeError, ErrorCode, FullEvent, Limits, decode_event};
use serde::Deserialize;
use serde::de::IgnoredAny;
use serde_json::value::RawValue;

/// Decodes a body that is one structured CloudEvent or a JSON array of them
/// (batched mode). Each element's error carries its index.
pub fn decode_cloudevents_body(text: &str, limits: &Limits) -> Result<Vec<FullEvent>, BatchError> {
    if text.trim_start().starts_with('[') {
        let items: Vec<&RawValue> = serde_json::from_str(text).map_err(|e| {
            BatchError::Body(DecodeError::new(
                ErrorCode::InvalidJson,
                None,
                e.to_string(),
            ))
        })?;
        let mut ok = Vec::with_capacity(items.len());
        let mut errors = Vec::new();
        for (i, item) in items.iter().enumerate() {
            match decode_cloudevent(item.get(), limits) {
                Ok(ev) => ok.push(ev),
                Err(e) => errors.push((i, e)),
            }
        }
        if errors.is_empty() {
            Ok(ok)
        } else {
            Err(BatchError::Items(errors))
        }
    } else {
        decode_cloudevent(text, limits)
            .map(|e| vec![e])
            .map_err(|e| BatchError::Items(vec![(0, e)]))
    }
}

#[derive(Deserialize)]
struct Envelope<'a> {
    specversion: Option<String>,
    id: Option<String>,
    source: Option<String>,
    #[serde(rename = "type")]
    ce_type: Option<String>,
    datacontenttype: Option<String>,
    #[serde(borrow)]
    data: Option<&'a RawValue>,
    data_base64: Option<IgnoredAny>,
}

fn refuse(code: ErrorCode, field: &str, message: impl Into<String>) -> DecodeError {
    DecodeError::new(code, Some(field), message)
}

fn required<'s>(value: &'s Option<String>, field: &str) -> Result<&'s str, DecodeError> {
    match value.as_deref() {
        Some(v) if !v.is_empty() => Ok(v),
        _ => Err(refuse(
            ErrorCode::MissingField,
            field,
            format!("a CloudEvent needs a non-empty {field}"),
        )),
    }
}

/// Decodes one structured CloudEvent into the CDS event it carries.
pub fn decode_cloudevent(text: &str, limits: &Limits) -> Result<FullEvent, DecodeError> {
    if !text.trim_start().starts_with('{') {
        return Err(DecodeError::new(
            ErrorCode::NotAnObject,
            None,
            "a CloudEvent must be a JSON object",
        ));
    }
    let env: Envelope<'_> = serde_json::from_str(text).map_err(|e| {
        DecodeError::new(
            ErrorCode::InvalidJson,
            None,
            format!("not a structured CloudEvent: {e}"),
        )
    })?;
    let version = required(&env.specversion, "specversion")?;
    if version != SPECVERSION {
        return Err(refuse(
            ErrorCode::WrongType,
            "specversion",
            format!("specversion {version:?} is not {SPECVERSION:?}"),
        ));
    }
    let id = required(&env.id, "id")?;
    required(&env.source, "source")?;
    let declared_type = required(&env.ce_type, "type")?;
    if let Some(ct) = env.datacontenttype.as_deref() {
        let media = ct.split(';').next().unwrap_or("").trim();
        if !media.eq_ignore_ascii_case(DATA_CONTENT_TYPE) && !media.ends_with("+json") {
            return Err(refuse(
                ErrorCode::WrongType,
                "datacontenttype",
                format!("datacontenttype {ct:?} is not JSON; data must be a CDS event"),
            ));
        }
    }
    let Some(data) = env.data else {
        let why = if env.data_base64.is_some() {
            "data must be a CDS event as JSON, not data_base64"
        } else {
            "a CloudEvent carrying a CDS event needs data"
        };
        return Err(refuse(ErrorCode::MissingField, "data", why));
    };
    let data_id = peek_id(data.get());
    let mut ev = decode_event(data.get(), limits).map_err(under_data)?;
    let expected = ce_type(ev.event_type);
    if declared_type != expected {
        return Err(refuse(
            ErrorCode::WrongType,
            "type",
            format!(
                "type {declared_type:?} does not match data, a {}: expected {expected:?}",
                ev.event_type
            ),
        ));
    }
    match data_id {
        Some(own) if own != id => {
            return Err(refuse(
                ErrorCode::InvalidId,
                "id",
                format!("id {id:?} differs from data.id {own:?}"),
            ));
        }
        Some(_) => {}
        None => {
            ev.id = id.to_owned();
            ev = finish(ev, limits)?;
        }
    }
    Ok(ev)
}

/// An error inside `data`, with its field path under `data`.
fn under_data(mut e: DecodeError) -> DecodeError {
    e.field = Some(match e.field.take() {
        Some(f) if f.starts_with('[') => format!("data{f}"),
        Some(f) => format!("data.{f}"),
        None => "data".to_owned(),
    });
    e.message = format!("data is not a CDS event: {}", e.message);
    e
}

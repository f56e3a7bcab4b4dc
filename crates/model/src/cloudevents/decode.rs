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
//!
//! The same holds in the HTTP binding's binary content mode
//! ([`decode_binary_cloudevent`]): the attributes come from `ce-*` headers,
//! `datacontenttype` from `Content-Type`, the data is the body, and a
//! refusal names the header.

use super::{DATA_CONTENT_TYPE, SPECVERSION, ce_type};
use crate::decode::{decode_one_or_array, finish, peek_id};
use crate::{BatchError, DecodeError, ErrorCode, FullEvent, Limits, decode_event};
use serde::Deserialize;
use serde::de::IgnoredAny;
use serde_json::value::RawValue;

/// Decodes a body that is one structured CloudEvent or a JSON array of them
/// (batched mode). Each element's error carries its index.
pub fn decode_cloudevents_body(text: &str, limits: &Limits) -> Result<Vec<FullEvent>, BatchError> {
    decode_one_or_array(text, |t| decode_cloudevent(t, limits))
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
    let attrs = Attributes {
        specversion: env.specversion,
        id: env.id,
        source: env.source,
        ce_type: env.ce_type,
        datacontenttype: env.datacontenttype,
    };
    if env.data.is_none() && env.data_base64.is_some() {
        return Err(refuse(
            ErrorCode::MissingField,
            "data",
            "data must be a CDS event as JSON, not data_base64",
        ));
    }
    carried_event(attrs, &STRUCTURED, env.data.map(RawValue::get), limits)
}

/// Decodes one CloudEvent in the HTTP binding's binary content mode: its
/// context attributes are the `ce-*` headers (percent-decoded, HTTP binding
/// §3.1.3.2), `datacontenttype` is the `Content-Type` header, and `body` is
/// the data, a CDS event. `headers` are (lowercase name, raw value) pairs;
/// extension headers are ignored. Refusals name the header (`ce-type`,
/// `content-type`), or `data` and the field inside it.
pub fn decode_binary_cloudevent<'h>(
    headers: impl IntoIterator<Item = (&'h str, &'h [u8])>,
    body: &str,
    limits: &Limits,
) -> Result<FullEvent, DecodeError> {
    let mut attrs = Attributes::default();
    for (name, value) in headers {
        let slot = match name {
            "ce-specversion" => &mut attrs.specversion,
            "ce-id" => &mut attrs.id,
            "ce-source" => &mut attrs.source,
            "ce-type" => &mut attrs.ce_type,
            "content-type" => {
                attrs.datacontenttype = Some(text_header(name, value)?.to_owned());
                continue;
            }
            _ => continue,
        };
        if slot.is_some() {
            return Err(refuse(
                ErrorCode::DuplicateKey,
                name,
                format!("{name} is given more than once"),
            ));
        }
        *slot = Some(attribute_of_header(name, value)?);
    }
    let data = (!body.trim().is_empty()).then_some(body);
    carried_event(attrs, &BINARY, data, limits)
}

/// The header names that say a request is a binary-mode CloudEvent: any of
/// the required attributes (so that one missing is refused by name rather
/// than the body being taken for a plain CDS event).
pub const BINARY_MODE_HEADERS: [&str; 4] = ["ce-specversion", "ce-id", "ce-source", "ce-type"];

/// An attribute's value from its header: percent-decoded, UTF-8.
fn attribute_of_header(name: &str, value: &[u8]) -> Result<String, DecodeError> {
    percent_encoding::percent_decode(value)
        .decode_utf8()
        .map(|v| v.into_owned())
        .map_err(|_| {
            refuse(
                ErrorCode::InvalidUtf8,
                name,
                format!("{name} is not UTF-8 once percent-decoded"),
            )
        })
}

fn text_header<'v>(name: &str, value: &'v [u8]) -> Result<&'v str, DecodeError> {
    std::str::from_utf8(value)
        .map_err(|_| refuse(ErrorCode::InvalidUtf8, name, format!("{name} is not text")))
}

/// The context attributes the decoder checks, however they came.
#[derive(Default)]
struct Attributes {
    specversion: Option<String>,
    id: Option<String>,
    source: Option<String>,
    ce_type: Option<String>,
    datacontenttype: Option<String>,
}

/// What each attribute is called in a content mode, for refusals.
struct Names {
    specversion: &'static str,
    id: &'static str,
    source: &'static str,
    ce_type: &'static str,
    datacontenttype: &'static str,
}

const STRUCTURED: Names = Names {
    specversion: "specversion",
    id: "id",
    source: "source",
    ce_type: "type",
    datacontenttype: "datacontenttype",
};

const BINARY: Names = Names {
    specversion: "ce-specversion",
    id: "ce-id",
    source: "ce-source",
    ce_type: "ce-type",
    datacontenttype: "content-type",
};

/// The CDS event `data` carries, once the attributes agree with it.
fn carried_event(
    attrs: Attributes,
    names: &Names,
    data: Option<&str>,
    limits: &Limits,
) -> Result<FullEvent, DecodeError> {
    let version = required(&attrs.specversion, names.specversion)?;
    if version != SPECVERSION {
        return Err(refuse(
            ErrorCode::WrongType,
            names.specversion,
            format!("specversion {version:?} is not {SPECVERSION:?}"),
        ));
    }
    let id = required(&attrs.id, names.id)?;
    required(&attrs.source, names.source)?;
    let declared_type = required(&attrs.ce_type, names.ce_type)?;
    if let Some(ct) = attrs.datacontenttype.as_deref() {
        let media = ct.split(';').next().unwrap_or("").trim();
        if !media.eq_ignore_ascii_case(DATA_CONTENT_TYPE) && !media.ends_with("+json") {
            return Err(refuse(
                ErrorCode::WrongType,
                names.datacontenttype,
                format!(
                    "{} {ct:?} is not JSON; data must be a CDS event",
                    names.datacontenttype
                ),
            ));
        }
    }
    let Some(data) = data else {
        return Err(refuse(
            ErrorCode::MissingField,
            "data",
            "a CloudEvent carrying a CDS event needs data",
        ));
    };
    let data_id = peek_id(data);
    let mut ev = decode_event(data, limits).map_err(under_data)?;
    let expected = ce_type(ev.event_type);
    if declared_type != expected {
        return Err(refuse(
            ErrorCode::WrongType,
            names.ce_type,
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
                names.id,
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

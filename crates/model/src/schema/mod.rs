//! JSON Schema (draft 2020-12) of each event type, as ingest accepts it.
//!
//! A schema is built, never written: from the catalogue ([`crate::Family`]:
//! scope, context fields), the envelope table ([`crate::ENVELOPE`]: every key
//! and what it holds) and the decoder's [`Limits`]. It describes exactly what
//! [`crate::decode_event`] accepts for one type: the full event and the
//! family shape are the same flat object (the family shape only has fewer
//! keys), so one schema covers both. What the decoder checks and JSON Schema
//! cannot say exactly is written in the schema's `$comment`.
//!
//! This module must never accept less or more than the decoder: the property
//! test `model/tests/schema` generates events from these schemas and breaks
//! them, and the decoder must agree with the schema both ways.

use crate::{ENVELOPE, EventType, Family, FieldKind, Limits, Scope};
use serde_json::{Map, Value, json};

#[cfg(test)]
mod tests;

/// The dialect every schema declares.
pub const DRAFT: &str = "https://json-schema.org/draft/2020-12/schema";

/// The media type a schema is served with.
pub const CONTENT_TYPE: &str = "application/schema+json";

/// An RFC 3339 date-time exactly as the decoder's parser (chrono's
/// `DateTime::parse_from_rfc3339`) takes it: a real calendar day (leap
/// years included), `T`, `t` or a space between date and time, a second
/// of 60 (a leap second), any number of fraction digits, `Z`, `z` or an
/// offset within ±23:59 whose sign may be U+2212. The empty string (the
/// receive time is used) matches too. Digits are spelled `[0-9]`: `\d`
/// means more than ASCII digits in some regex dialects.
pub const TIMESTAMP_PATTERN: &str = concat!(
    "^(?:",
    "(?:[0-9]{4}-(?:(?:0[13578]|1[02])-(?:0[1-9]|[12][0-9]|3[01])",
    "|(?:0[469]|11)-(?:0[1-9]|[12][0-9]|30)",
    "|02-(?:0[1-9]|1[0-9]|2[0-8]))",
    "|(?:[0-9]{2}(?:0[48]|[2468][048]|[13579][26])|(?:[02468][048]|[13579][26])00)-02-29)",
    "[Tt ](?:[01][0-9]|2[0-3]):[0-5][0-9]:(?:[0-5][0-9]|60)(?:\\.[0-9]+)?",
    "(?:[Zz]|[-+\u{2212}](?:[01][0-9]|2[0-3]):[0-5][0-9])",
    ")?$"
);

/// No control character (Unicode category Cc, as `char::is_control`).
pub const ID_PATTERN: &str = "^[^\\u0000-\\u001f\\u007f-\\u009f]*$";

/// The URL of `event_type`'s schema under `base` (the server's public
/// address, no trailing `/`; empty for a path alone).
pub fn schema_url(base: &str, event_type: EventType) -> String {
    format!(
        "{}/v2/events/types/{}/schema",
        base.trim_end_matches('/'),
        event_type
    )
}

/// The JSON Schema of the events of `event_type` that ingest accepts under
/// `limits`, its `$id` under `base` (see [`schema_url`]).
pub fn event_schema(event_type: EventType, base: &str, limits: &Limits) -> Value {
    let family = event_type.family();
    let scope = family.scope();
    let mut properties = Map::new();
    for field in ENVELOPE {
        let schema = match field.kind {
            FieldKind::Id => id_schema(limits),
            FieldKind::Type => json!({
                "description": "the event type",
                "const": event_type.as_str(),
            }),
            FieldKind::Payload => json!({
                "description": "the resource after the action: any JSON value, kept byte for byte; null when absent",
            }),
            FieldKind::Timestamp => json!({
                "description": "when the action happened, RFC 3339 (offset or Z, any fraction); the receive time when absent, null, empty or Go's zero time",
                "type": ["string", "null"],
                "pattern": TIMESTAMP_PATTERN,
            }),
            FieldKind::Text if field.name == "project_key" => project_key_schema(scope),
            FieldKind::Text => context_schema(family, field.name, json!(["string", "null"])),
            FieldKind::Count => {
                let mut s = context_schema(family, field.name, json!(["integer", "null"]));
                s["minimum"] = json!(i64::MIN);
                s["maximum"] = json!(i64::MAX);
                s
            }
        };
        properties.insert(field.name.to_owned(), schema);
    }
    let mut required = vec!["type"];
    if scope == Scope::Project {
        required.push("project_key");
    }
    json!({
        "$schema": DRAFT,
        "$id": schema_url(base, event_type),
        "title": event_type.as_str(),
        "description": format!(
            "A CDS v2 event of type {event_type} (family {family}, {} scope) as POST /v2/events accepts it: \
             the full event or the family's shape (the same keys, fewer of them). \
             Context fields of the family: {}.",
            scope.as_str(),
            context_list(family),
        ),
        "$comment": limits_comment(limits),
        "type": "object",
        "required": required,
        "properties": properties,
        // The decoder ignores unknown keys (forward compatibility, spec §3).
        "additionalProperties": true,
    })
}

/// The family's context fields, `?` marking those CDS may leave empty.
fn context_list(family: Family) -> String {
    family
        .fields()
        .iter()
        .map(|f| {
            if f.optional {
                format!("{}?", f.name)
            } else {
                f.name.to_owned()
            }
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// What the decoder refuses that JSON Schema cannot state exactly.
fn limits_comment(limits: &Limits) -> String {
    format!(
        "Ingest also refuses: duplicate keys; nesting deeper than {} levels; any string, key or value \
         (in the payload too), longer than {} bytes; an id longer than {} bytes (maxLength counts \
         characters, the same for ASCII); an integer written with a fraction or an exponent (1.0, 1e2), \
         which JSON Schema counts as an integer. Unknown keys are ignored and not kept.",
        limits.max_depth, limits.max_string_bytes, limits.max_id_bytes
    )
}

fn id_schema(limits: &Limits) -> Value {
    json!({
        "description": "the producer's id; a UUID v7 is assigned when absent, null or empty",
        "type": ["string", "null"],
        "maxLength": limits.max_id_bytes,
        "pattern": ID_PATTERN,
    })
}

fn project_key_schema(scope: Scope) -> Value {
    match scope {
        Scope::Project => json!({
            "description": "the project the event belongs to",
            "type": "string",
            "minLength": 1,
        }),
        // A project key would open a global event to that project's readers.
        Scope::Global => json!({
            "description": "a global event carries no project",
            "enum": ["", null],
        }),
    }
}

/// A context field: `null` reads as empty, as Go reads it.
fn context_schema(family: Family, name: &str, types: Value) -> Value {
    let description = match family.fields().iter().find(|f| f.name == name) {
        Some(f) if f.optional => {
            format!("context of the {family} family; CDS may leave it empty")
        }
        Some(_) => format!("context of the {family} family"),
        None => format!("not a context field of the {family} family; accepted and kept as sent"),
    };
    json!({ "description": description, "type": types })
}

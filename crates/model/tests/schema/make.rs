//! Events made from a JSON Schema, and broken against it.
//!
//! [`instances`] walks a schema document (the keywords our schemas use:
//! `type`, `const`, `enum`, `properties`, `required`,
//! `additionalProperties`, `minLength`, `maxLength`, `pattern`, `minimum`,
//! `maximum`) and builds a proptest strategy for the values it allows.
//! [`violations`] lists, for one object schema, edits that each break one
//! of its keywords. Neither knows the catalogue or the decoder: all they
//! know comes from the schema.

use proptest::prelude::*;
use proptest::strategy::Union;
use serde_json::{Map, Value, json};

/// Any JSON value, a few levels deep (a payload, an unknown key's value).
pub fn any_json() -> BoxedStrategy<Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        (-1e9f64..1e9).prop_map(Value::from),
        "\\PC{0,8}".prop_map(Value::String),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map("[a-z_]{1,6}", inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
    .boxed()
}

/// The values `schema` allows.
pub fn instances(schema: &Value) -> BoxedStrategy<Value> {
    if let Some(c) = schema.get("const") {
        return Just(c.clone()).boxed();
    }
    if let Some(Value::Array(values)) = schema.get("enum") {
        return proptest::sample::select(values.clone()).boxed();
    }
    let types: Vec<&str> = match schema.get("type") {
        Some(Value::String(t)) => vec![t.as_str()],
        Some(Value::Array(ts)) => ts.iter().filter_map(Value::as_str).collect(),
        _ => return any_json(),
    };
    Union::new(types.into_iter().map(|t| of_type(schema, t))).boxed()
}

fn of_type(schema: &Value, t: &str) -> BoxedStrategy<Value> {
    match t {
        "null" => Just(Value::Null).boxed(),
        "boolean" => any::<bool>().prop_map(Value::Bool).boxed(),
        "integer" => {
            let min = schema["minimum"].as_i64().unwrap_or(i64::MIN);
            let max = schema["maximum"].as_i64().unwrap_or(i64::MAX);
            prop_oneof![Just(min), Just(max), 0i64..100, min..=max]
                .prop_map(Value::from)
                .boxed()
        }
        "string" => strings(schema).prop_map(Value::String).boxed(),
        "object" => objects(schema),
        other => panic!("the generator does not know type {other:?}"),
    }
}

fn strings(schema: &Value) -> BoxedStrategy<String> {
    let min = schema["minLength"].as_u64().unwrap_or(0) as usize;
    let max = schema["maxLength"].as_u64().map(|m| m as usize);
    let base = match schema["pattern"].as_str() {
        // JSON Schema searches; ours anchor both ends, proptest cannot generate anchors.
        Some(p) => {
            let inner = p
                .strip_prefix('^')
                .and_then(|p| p.strip_suffix('$'))
                .unwrap_or_else(|| panic!("pattern {p:?} is not anchored at both ends"));
            proptest::string::string_regex(inner)
                .unwrap_or_else(|e| panic!("pattern {p:?}: {e}"))
                .boxed()
        }
        None => "(?s:.){0,16}".boxed(),
    };
    base.prop_filter("length bounds", move |s| {
        let n = s.chars().count();
        n >= min && max.is_none_or(|m| n <= m)
    })
    .boxed()
}

fn objects(schema: &Value) -> BoxedStrategy<Value> {
    let empty = Map::new();
    let props = schema["properties"].as_object().unwrap_or(&empty);
    let required: Vec<&str> = schema["required"]
        .as_array()
        .map(|r| r.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let fields: Vec<BoxedStrategy<Option<(String, Value)>>> = props
        .iter()
        .map(|(k, s)| {
            let key = k.clone();
            let values = instances(s).prop_map(move |v| (key.clone(), v));
            if required.contains(&k.as_str()) {
                values.prop_map(Some).boxed()
            } else {
                proptest::option::of(values).boxed()
            }
        })
        .collect();
    let extra = match schema.get("additionalProperties") {
        Some(Value::Bool(false)) => Just(Vec::new()).boxed(),
        _ => {
            let known: Vec<String> = props.keys().cloned().collect();
            prop::collection::vec(("x_[a-z]{1,8}", any_json()), 0..3)
                .prop_map(move |kv| {
                    kv.into_iter()
                        .filter(|(k, _)| !known.contains(k))
                        .collect::<Vec<_>>()
                })
                .boxed()
        }
    };
    (fields, extra)
        .prop_map(|(fields, extra)| {
            let mut obj: Map<String, Value> = fields.into_iter().flatten().collect();
            obj.extend(extra);
            Value::Object(obj)
        })
        .boxed()
}

/// One edit of an instance: set `key` to a value, or remove it (`None`).
#[derive(Debug, Clone)]
pub struct Violation {
    pub key: String,
    pub value: Option<Value>,
    /// Which keyword it breaks, for messages.
    pub breaks: String,
}

impl Violation {
    pub fn apply(&self, instance: &Value) -> Value {
        let mut out = instance.clone();
        let obj = out.as_object_mut().expect("an object");
        match &self.value {
            Some(v) => obj.insert(self.key.clone(), v.clone()),
            None => obj.remove(&self.key),
        };
        out
    }
}

/// A value of each JSON type, numbers twice (an integer and a fraction).
fn samples() -> [(&'static str, Value); 7] {
    [
        ("null", Value::Null),
        ("string", json!("x")),
        ("integer", json!(7)),
        ("number", json!(0.5)),
        ("boolean", json!(true)),
        ("array", json!([])),
        ("object", json!({})),
    ]
}

/// Strings that break most patterns and bounds: to be kept only where they do.
fn odd_strings() -> Vec<String> {
    vec![
        "x".into(),
        "\u{1}".into(),
        "id\u{85}".into(),
        "2023-02-29T00:00:00Z".into(),
        "2024-01-01T00:00:00".into(),
    ]
}

/// Every edit that breaks one keyword of object schema `schema`: a required
/// key removed; a property set to a value of a type it does not allow, or
/// off its `const`, its `enum`, its length bounds or its pattern.
pub fn violations(schema: &Value) -> Vec<Violation> {
    let mut out = Vec::new();
    for key in schema["required"].as_array().into_iter().flatten() {
        let key = key.as_str().expect("a key").to_owned();
        out.push(Violation {
            breaks: format!("required {key}"),
            key,
            value: None,
        });
    }
    let empty = Map::new();
    for (key, s) in schema["properties"].as_object().unwrap_or(&empty) {
        let mut set = |breaks: String, value: Value| {
            out.push(Violation {
                key: key.clone(),
                value: Some(value),
                breaks,
            })
        };
        let allowed: Vec<&str> = match &s["type"] {
            Value::String(t) => vec![t.as_str()],
            Value::Array(ts) => ts.iter().filter_map(Value::as_str).collect(),
            _ => Vec::new(),
        };
        if !allowed.is_empty() {
            for (t, v) in samples() {
                // An integer is a number too.
                let ok = allowed.contains(&t) || (t == "integer" && allowed.contains(&"number"));
                if !ok {
                    set(format!("type of {key}"), v);
                }
            }
        }
        if let Some(Value::String(c)) = s.get("const") {
            set(format!("const of {key}"), json!(format!("{c}x")));
        }
        if let Some(Value::Array(vals)) = s.get("enum") {
            for v in ["P", "x"] {
                if !vals.contains(&json!(v)) {
                    set(format!("enum of {key}"), json!(v));
                }
            }
        }
        if let Some(min @ 1..) = s["minLength"].as_u64() {
            set(
                format!("minLength of {key}"),
                json!("a".repeat(min as usize - 1)),
            );
        }
        if let Some(max) = s["maxLength"].as_u64() {
            set(
                format!("maxLength of {key}"),
                json!("a".repeat(max as usize + 1)),
            );
        }
        if let Some(p) = s["pattern"].as_str() {
            let re = regex::Regex::new(p).expect("pattern");
            for odd in odd_strings().into_iter().filter(|o| !re.is_match(o)) {
                set(format!("pattern of {key}"), json!(odd));
            }
        }
    }
    out
}

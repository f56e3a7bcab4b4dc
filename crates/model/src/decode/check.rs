//! The structural walk every event gets before it is decoded: duplicate
//! keys, nesting depth and string sizes, anywhere in the event (its payload
//! included, which decoding keeps verbatim and does not look into).

use super::{DecodeError, ErrorCode, Limits, strip_position};
use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use std::borrow::Cow;
use std::fmt;

/// Walks the whole document once, refusing duplicate keys, excessive depth and
/// oversized strings, with the path of the offender.
pub(super) fn check_structure(text: &str, limits: &Limits) -> Result<(), DecodeError> {
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
        // serde_json gives no size hint: room for an event's envelope.
        let mut seen: Vec<Cow<'de, str>> = Vec::with_capacity(16);
        let mut seen_set: Option<std::collections::HashSet<Cow<'de, str>>> = None;
        while let Some(key) = map.next_key_seed(Key)? {
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

/// A map key, borrowed from the document when it holds no escape (serde's
/// own `Cow` always copies).
struct Key;

impl<'de> DeserializeSeed<'de> for Key {
    type Value = Cow<'de, str>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Cow<'de, str>, D::Error> {
        d.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for Key {
    type Value = Cow<'de, str>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a string key")
    }
    fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Cow<'de, str>, E> {
        Ok(Cow::Borrowed(v))
    }
    fn visit_str<E>(self, v: &str) -> Result<Cow<'de, str>, E> {
        Ok(Cow::Owned(v.to_owned()))
    }
    fn visit_string<E>(self, v: String) -> Result<Cow<'de, str>, E> {
        Ok(Cow::Owned(v))
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

/// Walks a JSON array whose every element must pass [`check_structure`] as
/// an object, in one pass over the whole body. Answers only whether all of
/// them do: a batch that fails is checked again element by element, which
/// names the element and the field.
pub(super) fn every_element_passes(text: &str, limits: &Limits) -> bool {
    let mut de = serde_json::Deserializer::from_str(text);
    de.deserialize_seq(Elements { limits }).is_ok() && de.end().is_ok()
}

struct Elements<'l> {
    limits: &'l Limits,
}

impl<'de> Visitor<'de> for Elements<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an array of event objects")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while seq
            .next_element_seed(Element {
                limits: self.limits,
            })?
            .is_some()
        {}
        Ok(())
    }
}

/// One element: an object, checked as a whole event is (depth 1).
struct Element<'l> {
    limits: &'l Limits,
}

impl<'de> DeserializeSeed<'de> for Element<'_> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_map(Checker {
            depth: 1,
            limits: self.limits,
        })
    }
}

//! Which run results are artifacts, and their ids: a purl
//! (<https://github.com/package-url/purl-spec>) where the result's detail
//! names a package, as CDEvents recommends for an artifact's subject id.
//!
//! CDS's run result (the payload of RunJobRunResultAdded/Updated) is
//! `{"type": …, "detail": {"data": {…}}, …}`; its `type` is CDS's result
//! type or an artifact manager's repository type.

use crate::FullEvent;
use serde_json::Value;
use std::fmt::Write;

/// Result types that are no artifact: reports, variables, releases and
/// deployments.
const NOT_ARTIFACTS: &[&str] = &["coverage", "tests", "variable", "release", "deployment"];

pub(super) struct Artifact {
    pub id: String,
}

impl Artifact {
    /// The artifact a run-result event is about, or `None` when the result
    /// is no artifact (or its type is unknown: CDS always sets it).
    pub(super) fn of(e: &FullEvent) -> Option<Artifact> {
        let v: Value = serde_json::from_str(e.payload.get()).ok()?;
        let kind = v.get("type")?.as_str()?;
        if kind.is_empty() || NOT_ARTIFACTS.contains(&kind) {
            return None;
        }
        let detail = v.pointer("/detail/data").unwrap_or(&Value::Null);
        let text = |k: &str| {
            detail
                .get(k)
                .and_then(Value::as_str)
                .filter(|s| !s.is_empty())
        };
        let id = purl(kind, text).or_else(|| {
            // No package named: the result's own id, or the name CDS gave it.
            v.get("id")
                .and_then(Value::as_str)
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .or_else(|| (!e.run_result.is_empty()).then(|| e.run_result.clone()))
        })?;
        Some(Artifact { id })
    }
}

/// The purl of a result of type `kind` whose detail field `k` is `text(k)`.
pub(super) fn purl<'a>(kind: &str, text: impl Fn(&str) -> Option<&'a str>) -> Option<String> {
    let name = text("name")?;
    let mut out = String::from("pkg:");
    match kind {
        "python" => {
            // PyPI names are case-insensitive and `_` is `-` (purl-spec).
            out.push_str("pypi/");
            percent_encode(&mut out, &name.to_ascii_lowercase().replace('_', "-"));
            version(&mut out, text("version"));
        }
        "docker" => {
            // `registry/path/image:tag`: the tag is after the last `:` of
            // the last segment.
            let (image, tag) = match name.rsplit_once(':') {
                Some((i, t)) if !t.contains('/') => (i, Some(t)),
                _ => (name, None),
            };
            out.push_str("docker/");
            for (i, seg) in image.split('/').enumerate() {
                if i > 0 {
                    out.push('/');
                }
                percent_encode(&mut out, seg);
            }
            version(&mut out, tag);
        }
        _ => {
            out.push_str("generic/");
            percent_encode(&mut out, name);
            version(&mut out, text("version").or_else(|| text("chartVersion")));
            if let Some(sha) = text("sha256") {
                out.push_str("?checksum=sha256:");
                percent_encode(&mut out, sha);
            }
        }
    }
    Some(out)
}

fn version(out: &mut String, v: Option<&str>) {
    if let Some(v) = v {
        out.push('@');
        percent_encode(out, v);
    }
}

/// Everything but unreserved characters percent-encoded (a purl component,
/// a URI path segment).
pub(super) fn percent_encode(out: &mut String, s: &str) {
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
}

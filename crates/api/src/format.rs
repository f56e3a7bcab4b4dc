//! Which shape events leave in: CDS's own full event, CloudEvents 1.0 (the
//! mapping is the model's `cloudevents` module) or CDEvents (the model's
//! `cdevents`, carried as CloudEvents), and for a webhook, the CloudEvents
//! content mode.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;
use utoipa::ToSchema;

/// The shape of each event sent: `cds` (the full event, the default),
/// `cloudevents` (a CloudEvents 1.0 event whose `data` is the full event) or
/// `cdevents` (a CDEvent, itself a CloudEvent; events without a CDEvents
/// counterpart are not sent in it).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum EventFormat {
    #[default]
    Cds,
    #[serde(rename = "cloudevents")]
    CloudEvents,
    #[serde(rename = "cdevents")]
    CdEvents,
}

/// How a webhook carries a CloudEvent: `structured` (the default: the body
/// is the event, `Content-Type: application/cloudevents+json`) or `binary`
/// (`ce-*` headers, the body is the full CDS event).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ContentMode {
    #[default]
    Structured,
    Binary,
}

/// How a webhook's requests are signed: `symmetric` (the default: Standard
/// Webhooks `v1,` HMAC-SHA256 with a shared `whsec_` secret) or `ed25519`
/// (Standard Webhooks `v1a,`: the receiver verifies with a public key and
/// holds nothing that could sign).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum SignatureScheme {
    #[default]
    Symmetric,
    Ed25519,
}

/// The envelope field whose value orders a webhook's deliveries (its
/// `ordered_by`): deliveries of one value go one at a time in event order,
/// different values in parallel. Events where the field is empty share one
/// key of their own (the empty value).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum OrderedBy {
    /// Ordered within a workflow run, parallel across runs.
    WorkflowRunId,
    /// Ordered within a workflow (its name), parallel across workflows.
    Workflow,
    /// Ordered within a repository, parallel across repositories.
    Repository,
}

/// A format or mode name that is not one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownFormat {
    pub given: String,
    pub expected: &'static str,
}

impl fmt::Display for UnknownFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?} is not one of {}", self.given, self.expected)
    }
}

impl std::error::Error for UnknownFormat {}

macro_rules! names {
    ($ty:ident { $($variant:ident = $name:literal),+ }) => {
        impl $ty {
            pub fn as_str(self) -> &'static str {
                match self { $($ty::$variant => $name),+ }
            }
        }
        impl FromStr for $ty {
            type Err = UnknownFormat;
            fn from_str(s: &str) -> Result<Self, UnknownFormat> {
                match s.trim() {
                    $($name => Ok($ty::$variant),)+
                    _ => Err(UnknownFormat {
                        given: s.to_owned(),
                        expected: concat!($($name, " "),+),
                    }),
                }
            }
        }
        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}
names!(EventFormat { Cds = "cds", CloudEvents = "cloudevents", CdEvents = "cdevents" });
names!(ContentMode { Structured = "structured", Binary = "binary" });
names!(SignatureScheme { Symmetric = "symmetric", Ed25519 = "ed25519" });
names!(OrderedBy { WorkflowRunId = "workflow_run_id", Workflow = "workflow", Repository = "repository" });

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_parse_print_and_serialize_alike() {
        for f in [
            EventFormat::Cds,
            EventFormat::CloudEvents,
            EventFormat::CdEvents,
        ] {
            assert_eq!(f.as_str().parse::<EventFormat>(), Ok(f));
            assert_eq!(
                serde_json::to_value(f).ok(),
                Some(serde_json::json!(f.as_str()))
            );
        }
        for m in [ContentMode::Structured, ContentMode::Binary] {
            assert_eq!(m.as_str().parse::<ContentMode>(), Ok(m));
            assert_eq!(
                serde_json::to_value(m).ok(),
                Some(serde_json::json!(m.as_str()))
            );
        }
        for o in [
            OrderedBy::WorkflowRunId,
            OrderedBy::Workflow,
            OrderedBy::Repository,
        ] {
            assert_eq!(o.as_str().parse::<OrderedBy>(), Ok(o));
            assert_eq!(
                serde_json::to_value(o).ok(),
                Some(serde_json::json!(o.as_str()))
            );
        }
        for s in [SignatureScheme::Symmetric, SignatureScheme::Ed25519] {
            assert_eq!(s.as_str().parse::<SignatureScheme>(), Ok(s));
            assert_eq!(
                serde_json::to_value(s).ok(),
                Some(serde_json::json!(s.as_str()))
            );
        }
        assert!("CloudEvents".parse::<EventFormat>().is_err());
    }
}

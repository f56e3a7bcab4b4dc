//! The webhooks configuration: one struct with defaults, each field
//! documented. The server's loader fills it from file and environment (it maps
//! `CDS_EVENTS_WEBHOOK_ALLOW_PRIVATE=1` to [`WebhooksConfig::allow_private`]).

use serde::{Deserialize, Serialize};
use std::fmt;
use std::time::Duration;

/// How notifications are delivered.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WebhooksConfig {
    /// Longest one attempt may take, from connecting to the end of the
    /// response excerpt.
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
    /// The delay before each attempt: entry `n` is waited before attempt
    /// `n + 1`, so the length is the number of attempts. The first entry is
    /// normally `0s` (deliver at once).
    #[serde(with = "durations")]
    pub retry_schedule: Vec<Duration>,
    /// Random spread applied to non-zero retry delays, as a fraction
    /// (`0.1` = ±10 %), so that retries of many deliveries do not arrive in
    /// lockstep.
    pub jitter: f64,
    /// A notification whose deliveries have kept failing (no success at all)
    /// for this long is disabled at its next failure.
    #[serde(with = "humantime_serde")]
    pub disable_after: Duration,
    /// How long the previous signing secret stays valid (and is signed with,
    /// beside the new one) after a secret rotation.
    #[serde(with = "humantime_serde")]
    pub secret_overlap: Duration,
    /// Allow webhook URLs that resolve to loopback, private, link-local,
    /// CGNAT, multicast or cloud-metadata addresses. Off by default: a project
    /// member must not be able to make the server call into its own network.
    pub allow_private: bool,
    /// Finished deliveries (succeeded, failed, cancelled) and their
    /// attempts are deleted this long after their creation. Failed ones can
    /// be redelivered until then.
    #[serde(with = "humantime_serde")]
    pub keep_deliveries: Duration,
    /// Most notifications one project may have: each has a worker and its
    /// own connections, and every event of the project is matched against
    /// all of them.
    pub max_per_project: usize,
    /// Most attempts in flight at once towards one notification's endpoint
    /// (from every instance sharing a PostgreSQL store together).
    pub max_in_flight_per_endpoint: usize,
    /// How long a delivery claimed by an instance stays reserved to it
    /// without news from it. The instance renews its claims every third of
    /// this while their attempts run; one that dies holding claims has
    /// their deliveries sent by another instance (same `webhook-id`) once
    /// this much has passed.
    #[serde(with = "humantime_serde")]
    pub lease: Duration,
    /// Most bytes of a response body kept with an attempt (read at most that
    /// much).
    pub max_response_excerpt: usize,
    /// Ingest first: while events are being ingested and the machine's CPU
    /// is saturated, deliveries slow down (they are durable and catch up
    /// later) rather than take the CPU from ingest.
    pub yield_to_ingest: bool,
    /// The busy fraction (0 to 1) of the machine's CPU (`/proc/stat`), or of
    /// the process's cgroup v2 CPU quota if that is busier, at which
    /// deliveries yield to ingest.
    pub yield_cpu: f64,
    /// While yielding: the slowest pace, in events read and attempts started
    /// per second.
    pub yield_rate: u64,
    /// The master key (base64 of 32 bytes) that encrypts headers and signing
    /// secrets at rest. When absent, a key is generated in
    /// `<data-dir>/webhooks.key` (mode 0600) and managed there.
    #[serde(skip_serializing)]
    pub key: Option<String>,
    /// Former master keys (base64), used only to read values written under
    /// them; every such value is re-encrypted with the current key at start.
    #[serde(skip_serializing)]
    pub previous_keys: Vec<String>,
    /// The base of CloudEvents `source` attributes: not a setting of its
    /// own, the server sets it from `cloudevents.source`.
    #[serde(skip)]
    pub cloudevents_source: cds_events_model::cloudevents::Source,
}

impl Default for WebhooksConfig {
    fn default() -> Self {
        const MIN: u64 = 60;
        const HOUR: u64 = 3600;
        WebhooksConfig {
            timeout: Duration::from_secs(10),
            retry_schedule: [
                0,
                5,
                5 * MIN,
                30 * MIN,
                2 * HOUR,
                5 * HOUR,
                10 * HOUR,
                10 * HOUR,
            ]
            .into_iter()
            .map(Duration::from_secs)
            .collect(),
            jitter: 0.1,
            disable_after: Duration::from_secs(5 * 24 * HOUR),
            secret_overlap: Duration::from_secs(24 * HOUR),
            allow_private: false,
            keep_deliveries: Duration::from_secs(14 * 24 * HOUR),
            max_per_project: 100,
            max_in_flight_per_endpoint: 16,
            lease: Duration::from_secs(30),
            max_response_excerpt: 1024,
            yield_to_ingest: true,
            yield_cpu: 0.9,
            yield_rate: 500,
            key: None,
            previous_keys: Vec::new(),
            cloudevents_source: Default::default(),
        }
    }
}

/// Never prints the keys.
impl fmt::Debug for WebhooksConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WebhooksConfig")
            .field("timeout", &self.timeout)
            .field("retry_schedule", &self.retry_schedule)
            .field("jitter", &self.jitter)
            .field("disable_after", &self.disable_after)
            .field("secret_overlap", &self.secret_overlap)
            .field("allow_private", &self.allow_private)
            .field("keep_deliveries", &self.keep_deliveries)
            .field("max_per_project", &self.max_per_project)
            .field(
                "max_in_flight_per_endpoint",
                &self.max_in_flight_per_endpoint,
            )
            .field("lease", &self.lease)
            .field("max_response_excerpt", &self.max_response_excerpt)
            .field("yield_to_ingest", &self.yield_to_ingest)
            .field("yield_cpu", &self.yield_cpu)
            .field("yield_rate", &self.yield_rate)
            .field("key", &self.key.as_ref().map(|_| "***"))
            .field("previous_keys", &self.previous_keys.len())
            .finish()
    }
}

/// `Vec<Duration>` as a list of humantime strings (`["0s", "5s", "5m"]`).
mod durations {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};
    use std::time::Duration;

    pub fn serialize<S: Serializer>(v: &[Duration], s: S) -> Result<S::Ok, S::Error> {
        v.iter()
            .map(|d| humantime_serde::Serde::from(*d))
            .collect::<Vec<_>>()
            .serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Duration>, D::Error> {
        let v: Vec<humantime_serde::Serde<Duration>> = Vec::deserialize(d)?;
        Ok(v.into_iter().map(|d| d.into_inner()).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_round_trip_through_json() {
        let c = WebhooksConfig::default();
        assert_eq!(c.retry_schedule.len(), 8);
        let text = serde_json::to_string(&c).expect("serialize");
        assert!(text.contains(r#""retry_schedule":["0s","5s","5m","30m","2h","5h","10h","10h"]"#));
        let back: WebhooksConfig = serde_json::from_str(&text).expect("deserialize");
        assert_eq!(back.retry_schedule, c.retry_schedule);
        assert_eq!(back.disable_after, Duration::from_secs(5 * 24 * 3600));
    }

    #[test]
    fn debug_hides_the_key() {
        let c = WebhooksConfig {
            key: Some("c2VjcmV0".into()),
            ..Default::default()
        };
        assert!(!format!("{c:?}").contains("c2VjcmV0"));
    }
}

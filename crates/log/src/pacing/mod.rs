//! Ingest first: while events are being ingested and the machine's CPU is
//! saturated, a downstream consumer slows down so that ingest keeps the CPU.
//!
//! What consumers do is durable (the log holds the events, the consumer its
//! position and its work), so work done later loses nothing; an ingest
//! request that waits holds up the CDS process that sends it. On a machine
//! that cannot do both at full speed, ingest therefore goes first.
//!
//! A controller ([`control`]) samples the CPU, the log's head and the
//! attempts started every [`SAMPLE`]. The CPU's busy fraction is the
//! machine's (`/proc/stat`) or, in a container limited by a cgroup v2
//! `cpu.max`, the quota's if that is busier: the machine may be idle while
//! the container is throttled. Whenever events are being ingested (appended
//! within the last [`QUIET`]) and a sample finds the CPU busy at least
//! [`Policy::cpu`] of the time, the consumer's reads and attempts are paced
//! at [`Policy::floor`] per second — unless ingest is only a trickle beside
//! the attempts (fewer events per second than half the attempts): its share
//! of the CPU is then small, and a backlog being drained would be slowed for
//! nothing. After a sample with a little room (less than [`BAND`] below the
//! threshold) the pace is kept: on two cores ingest alone may leave that
//! much idle, and deliveries growing into it slowed ingest by a quarter.
//! After a sample with more room, it doubles — so the consumer takes what
//! ingest leaves. Full speed again when ingest stops, or when the CPU has
//! room and the pace no longer holds the consumer back (its reads and its
//! attempts each took fewer than half the permits handed out: a sink's
//! attempt is a batch, so its reads are what the pace binds). Where neither
//! can be read (not Linux), it never yields.
//!
//! Split along its seams: `cpu` measures, `policy` decides, `pacer`
//! hands out the turns ([`Pacing`]), `control` ties them together. Nothing
//! here knows what a consumer does with its turns, and nothing here ever
//! slows ingest itself.

mod control;
mod cpu;
mod pacer;
mod policy;

pub use control::control;
pub use pacer::Pacing;
pub use policy::Policy;

use std::time::Duration;

/// How often the CPU and the log's head are sampled.
pub const SAMPLE: Duration = Duration::from_millis(250);

/// Below the CPU threshold by less than this, the pace is kept; further
/// below, it doubles.
pub const BAND: f64 = 0.15;

/// Ingest counts as stopped after this long without an append.
pub const QUIET: Duration = Duration::from_secs(1);

/// How often a paced rate hands out its permits.
pub const REFILL: Duration = Duration::from_millis(10);

//! The conformance suite every [`NotificationStore`] backend must pass.
//!
//! Each check is a plain async function over a [`Harness`]; a backend runs
//! them all with [`conformance_tests!`](crate::conformance_tests) in one
//! line of its own test file. A harness opens the backend on storage of its
//! own, and can open the same storage again (the restart of a process). The
//! checks use the trait alone: nothing here knows a database, so the next
//! backend runs them unchanged.

use super::{
    AttemptResult, Claim, Delivery, DeliveryId, Due, Edit, Mirror, NewDelivery, NotificationId,
    NotificationRecord, NotificationStore, StoreOptions,
};
use crate::error::WebhooksError;
use crate::model::{Actor, DeliveryStatus};
use crate::signing::SigningSecret;
use crate::time::now_ms;
use async_trait::async_trait;
use cds_events_log::Seq;
use cds_events_model::ProjectKey;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// A project key of the suite's.
fn key(project: &str) -> ProjectKey {
    ProjectKey::new(project).expect("a project key")
}

mod claims;
mod deliveries;
mod health;
mod lifecycle;
mod notifications;
pub use claims::*;
pub use deliveries::*;
pub use health::*;
pub use lifecycle::*;
pub use notifications::*;

/// Opens a backend over one private storage.
#[async_trait]
pub trait Harness: Send + Sync {
    /// Opens the store (again, after a `close`, to check persistence),
    /// telling `mirror` of its notifications.
    async fn open(
        &self,
        mirror: Arc<dyn Mirror>,
        options: StoreOptions,
    ) -> Arc<dyn NotificationStore>;
}

/// What the mirror heard, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Heard {
    Put(NotificationId),
    Removed(NotificationId),
    Failing(NotificationId, Option<i64>),
}

/// A mirror that keeps the notifications it is told of, what it heard, and
/// (apart: a shared store may also tell it late, or again) which
/// notifications it was told have deliveries due.
#[derive(Debug, Default)]
struct Recorder {
    state: Mutex<(BTreeMap<NotificationId, NotificationRecord>, Vec<Heard>)>,
    due: Mutex<Vec<NotificationId>>,
}

impl Recorder {
    fn get(&self, id: NotificationId) -> Option<NotificationRecord> {
        self.lock().0.get(&id).cloned()
    }

    fn len(&self) -> usize {
        self.lock().0.len()
    }

    fn heard(&self) -> Vec<Heard> {
        self.lock().1.clone()
    }

    fn told_due(&self) -> Vec<NotificationId> {
        self.due.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn lock(
        &self,
    ) -> std::sync::MutexGuard<'_, (BTreeMap<NotificationId, NotificationRecord>, Vec<Heard>)> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Mirror for Recorder {
    fn put(&self, n: NotificationRecord) -> Result<(), WebhooksError> {
        let mut st = self.lock();
        st.1.push(Heard::Put(n.id));
        st.0.insert(n.id, n);
        Ok(())
    }

    fn remove(&self, id: NotificationId) {
        let mut st = self.lock();
        st.1.push(Heard::Removed(id));
        st.0.remove(&id);
    }

    fn failing_since(&self, id: NotificationId, since: Option<i64>) {
        let mut st = self.lock();
        st.1.push(Heard::Failing(id, since));
        if let Some(n) = st.0.get_mut(&id) {
            n.failing_since = since;
        }
    }

    fn due(&self, notifications: &[NotificationId]) {
        self.due
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .extend_from_slice(notifications);
    }
}

/// A store opened by the suite, with the mirror it tells.
struct Opened {
    store: Arc<dyn NotificationStore>,
    mirror: Arc<Recorder>,
}

/// Long enough that no check disables a notification unless it means to.
const NEVER: Duration = Duration::from_secs(5 * 24 * 3600);

async fn open(h: &dyn Harness) -> Opened {
    open_with(h, NEVER).await
}

async fn open_with(h: &dyn Harness, disable_after: Duration) -> Opened {
    let mirror = Arc::new(Recorder::default());
    let store = h.open(mirror.clone(), StoreOptions { disable_after }).await;
    Opened { store, mirror }
}

/// A store with one notification: `slack` of project `P`.
async fn open_with_one(h: &dyn Harness) -> (Opened, NotificationRecord) {
    let o = open(h).await;
    let n = create(o.store.as_ref(), "P", "slack").await;
    (o, n)
}

fn actor() -> Actor {
    Actor {
        user_id: "u1".into(),
        username: "alice".into(),
    }
}

/// A notification to create: `name` in `project`, one header, a new secret.
fn notification(project: &str, name: &str) -> NotificationRecord {
    NotificationRecord {
        id: NotificationId(0),
        uid: format!("uid-{project}-{name}-{}", now_ms()),
        project: key(project),
        name: name.into(),
        url: format!("https://example.com/{name}"),
        filters: BTreeMap::new(),
        headers: [("Authorization".to_owned(), "Bearer t".to_owned())].into(),
        secret: SigningSecret::generate(),
        previous: None,
        enabled: true,
        ordered: false,
        ordered_by: None,
        format: Default::default(),
        content_mode: Default::default(),
        disabled_reason: None,
        failing_since: None,
        last_modified: now_ms(),
    }
}

/// An edit that cannot fail.
fn set(f: impl FnOnce(&mut NotificationRecord) + Send + 'static) -> Edit {
    Box::new(move |n| {
        f(n);
        Ok(())
    })
}

async fn create(s: &dyn NotificationStore, project: &str, name: &str) -> NotificationRecord {
    s.create_notification(notification(project, name), 100, &actor())
        .await
        .expect("create")
}

/// The claimant the checks record results as, unless they name another.
const SUITE: &str = "suite";

/// How long the checks' claims last.
const LEASE: i64 = 30_000;

/// A claim by `claimant` of up to `want` of `n`'s deliveries at `now`
/// (unordered, at most 100 leased), for [`LEASE`].
fn claim(n: &NotificationRecord, claimant: &str, now: i64, want: usize) -> Claim {
    Claim {
        notification: n.id,
        claimant: claimant.into(),
        ordered: false,
        per_key: false,
        want,
        max_leased: 100,
        now,
        until: now + LEASE,
    }
}

/// Moves the dispatcher's position to `seq` (no delivery), under a lead.
async fn move_position(s: &dyn NotificationStore, seq: Seq) {
    let lead = s.lead(SUITE).await.expect("lead");
    s.create_deliveries(&lead, Vec::new(), seq)
        .await
        .expect("position");
}

/// Creates one delivery per sequence number for `n`, with the position at
/// the last; returns their ids, oldest first.
async fn deliver(
    s: &dyn NotificationStore,
    n: &NotificationRecord,
    seqs: impl IntoIterator<Item = u64>,
) -> Vec<DeliveryId> {
    deliver_keyed(s, n, seqs.into_iter().map(|seq| (seq, ""))).await
}

/// [`deliver`] with each delivery's order key.
async fn deliver_keyed<'k>(
    s: &dyn NotificationStore,
    n: &NotificationRecord,
    keyed: impl IntoIterator<Item = (u64, &'k str)>,
) -> Vec<DeliveryId> {
    let batch: Vec<NewDelivery> = keyed
        .into_iter()
        .map(|(seq, k)| NewDelivery {
            notification: n.id,
            seq: Seq(seq),
            event_id: format!("event-{seq}"),
            order_key: k.to_owned(),
        })
        .collect();
    let last = batch.last().map_or(Seq(0), |d| d.seq);
    let count = batch.len();
    let lead = s.lead(SUITE).await.expect("lead");
    s.create_deliveries(&lead, batch, last)
        .await
        .expect("deliveries");
    drop(lead);
    let mut ids: Vec<DeliveryId> = listed(s, n, &DeliveryStatus::ALL)
        .await
        .into_iter()
        .map(|d| d.id)
        .collect();
    ids.sort();
    ids.split_off(ids.len() - count)
}

/// Every delivery of `n` of these statuses, newest first.
async fn listed(
    s: &dyn NotificationStore,
    n: &NotificationRecord,
    statuses: &[DeliveryStatus],
) -> Vec<Delivery> {
    s.list_deliveries(n.id, statuses.to_vec(), None, 100_000)
        .await
        .expect("list")
}

/// The pending delivery `id` of `n`, as an attempt of it starts (its
/// attempts, its round), due or not.
async fn due_one(s: &dyn NotificationStore, n: &NotificationRecord, id: DeliveryId) -> Due {
    let d = state(s, n, id).await;
    assert_eq!(d.status, DeliveryStatus::Pending, "{d:?}");
    Due {
        id: d.id,
        seq: d.event_seq,
        event_id: d.event_id,
        attempts: d.attempts,
        tries: d.tries,
        next_attempt_at: d.next_attempt_at.unwrap_or(0),
    }
}

/// The state of delivery `id` of `n`.
async fn state(s: &dyn NotificationStore, n: &NotificationRecord, id: DeliveryId) -> Delivery {
    s.delivery(n.id, id).await.expect("read").expect("found").0
}

/// The result of the next attempt of `d`, ending it as `status`.
fn result(n: &NotificationRecord, d: &Due, status: DeliveryStatus, at: i64) -> AttemptResult {
    let ok = status == DeliveryStatus::Succeeded;
    AttemptResult {
        delivery: d.id,
        notification: n.id,
        claimant: SUITE.into(),
        attempts: d.attempts + 1,
        tries: d.tries + 1,
        status,
        next_attempt_at: (status == DeliveryStatus::Pending).then_some(at + 60_000),
        at,
        status_code: Some(if ok { 200 } else { 500 }),
        latency_ms: 12,
        error: (!ok).then(|| "HTTP 500".to_owned()),
        response: Some(if ok { "ok" } else { "down" }.to_owned()),
        endpoint_failed: Some(!ok),
        gone: false,
    }
}

/// Records the next attempt of delivery `id`, ending it as `status`.
async fn attempt(
    s: &dyn NotificationStore,
    n: &NotificationRecord,
    id: DeliveryId,
    status: DeliveryStatus,
) -> super::RecordAck {
    let d = due_one(s, n, id).await;
    s.record(result(n, &d, status, now_ms()))
        .await
        .expect("record")
}

/// The types of the events in the outbox, oldest first.
async fn outbox_types(s: &dyn NotificationStore) -> Vec<String> {
    s.outbox(1000)
        .await
        .expect("outbox")
        .iter()
        .map(|e| {
            cds_events_model::decode_stored(&e.event)
                .expect("an outbox event decodes")
                .event_type
                .as_str()
                .to_owned()
        })
        .collect()
}

/// Runs every check of the suite as a test, each on a harness made by
/// `$make`.
#[macro_export]
macro_rules! conformance_tests {
    ($make:expr) => {
        $crate::conformance_tests!(@each $make;
            a_created_notification_reads_back_after_a_reopen,
            names_are_unique_per_project,
            the_per_project_cap_is_enforced,
            the_per_project_cap_holds_under_concurrent_creations,
            an_update_applies_the_edit_to_the_notification_as_stored,
            a_failed_edit_changes_nothing,
            changing_a_missing_notification_is_not_found,
            every_change_puts_its_event_in_the_outbox,
            the_outbox_keeps_an_event_until_removed,
            the_mirror_hears_every_committed_change_in_order,
            a_key_rotation_keeps_every_value_readable,
            an_ed25519_signing_key_is_stored_sealed_and_read_back,
            the_body_format_is_stored_changed_and_read_back,
            deliveries_and_position_are_written_together,
            the_start_position_is_stored_once,
            deliveries_of_a_deleted_notification_are_not_created,
            due_deliveries_are_claimed_by_due_time,
            one_lead_at_a_time_each_with_a_later_term,
            the_mirror_hears_which_notifications_have_new_deliveries,
            a_claimed_delivery_is_leased_to_its_claimant_until_the_lease_ends,
            a_result_or_a_release_ends_the_claimants_lease,
            a_renewal_extends_only_the_claimants_own_leases,
            claims_never_lease_more_than_max_leased_across_claimants,
            an_ordered_notification_hands_out_its_oldest_pending_delivery_only,
            ordered_per_key_a_pending_delivery_holds_back_its_key_only,
            ordered_per_key_a_dead_letter_no_longer_holds_its_key,
            ordering_per_key_is_stored_changed_and_read_back,
            a_recorded_success_ends_the_delivery,
            a_recorded_failure_reschedules_the_delivery,
            a_result_for_a_redelivered_delivery_is_superseded,
            a_result_for_a_deleted_notification_is_superseded,
            a_first_failure_marks_the_notification_failing_and_a_success_clears_it,
            a_failure_past_disable_after_disables_the_notification_with_its_event,
            a_410_gone_disables_the_notification_at_once_with_its_event,
            listings_are_newest_first_per_status_and_page_below_a_delivery,
            listing_every_status_reads_one_snapshot,
            a_delivery_lists_its_attempts_in_order,
            redeliver_resets_the_attempt_budget_and_keeps_the_id,
            redeliver_failed_since_takes_failed_deliveries_created_since,
            pending_counts_what_waits_to_be_sent,
            a_deleted_notifications_purge_spares_one_made_after_it,
            health_counts_the_attempts_since_a_time_and_the_deliveries_pending_and_failed,
            a_deleted_notifications_rows_are_purged_in_chunks,
            finished_deliveries_are_purged_once_old,
            delivery_ids_are_never_reused,
            retention_hold_is_the_oldest_pending_delivery_of_an_enabled_notification,
            the_epoch_is_fixed_at_creation,
        );
    };
    (@each $make:expr; $($name:ident),+ $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                let harness = $make;
                $crate::store::conformance::$name(&harness).await;
            }
        )+
    };
}

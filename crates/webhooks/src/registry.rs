//! The notifications in memory: their decrypted, compiled form, the matching
//! index the dispatcher reads, and the channels to their workers.
//!
//! Only the store changes the registry, as its [`Mirror`], right after the
//! transaction that changed the database, so memory and disk never disagree
//! in order. Everything else reads snapshots (`Arc`s).

use crate::error::{CompileError, WebhooksError};
use crate::model::{ContentMode, EventFormat, NotificationFilter, NotificationOut, OrderedBy};
use crate::signing::SigningSecret;
use crate::store::{Mirror, NotificationId, NotificationRecord};
use cds_events_model::{EventType, ProjectKey};
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use tokio::sync::{Notify, watch};

/// One notification, decrypted and compiled.
#[derive(Clone)]
pub(crate) struct Notification {
    pub id: NotificationId,
    pub uid: String,
    pub project: ProjectKey,
    pub name: String,
    pub url: url::Url,
    pub filters: BTreeMap<String, NotificationFilter>,
    /// Plain values; never printed.
    pub headers: BTreeMap<String, String>,
    pub header_map: HeaderMap,
    pub secret: SigningSecret,
    /// The secret before the last rotation and until when (unix ms) it is
    /// still signed with.
    pub previous: Option<(SigningSecret, i64)>,
    pub enabled: bool,
    pub ordered: bool,
    pub ordered_by: Option<OrderedBy>,
    pub format: EventFormat,
    pub content_mode: ContentMode,
    pub disabled_reason: Option<String>,
    /// Unix ms of the first failure since the last success, `NOT_FAILING`
    /// when none. Shared by the clones of a notification and changed in
    /// place by the writer: it moves with delivery results, far more often
    /// than the rest.
    failing_since: Arc<AtomicI64>,
    pub last_modified: i64,
    /// Per event type (indexed by `EventType as usize`), whether the filters
    /// match it; `None` when there are no filters (every type). Computed once
    /// from the compiled expressions, so matching an event is one lookup.
    pub types: Option<Arc<[bool]>>,
}

impl fmt::Debug for Notification {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Notification")
            .field("id", &self.uid)
            .field("project", &self.project)
            .field("name", &self.name)
            .field("url", &self.url.as_str())
            .field("headers", &self.headers.keys().collect::<Vec<_>>())
            .field("enabled", &self.enabled)
            .field("ordered", &self.ordered)
            .field("ordered_by", &self.ordered_by)
            .field("format", &self.format)
            .finish_non_exhaustive()
    }
}

const NOT_FAILING: i64 = i64::MIN;

impl Notification {
    /// Compiles a stored notification. Values were validated when written;
    /// a value that no longer compiles (a stored row edited by hand) is an
    /// error.
    pub(crate) fn build(f: NotificationRecord) -> Result<Notification, WebhooksError> {
        let uid = f.uid.clone();
        Notification::compile(f).map_err(|problem| WebhooksError::Compile { uid, problem })
    }

    fn compile(f: NotificationRecord) -> Result<Notification, CompileError> {
        let url = url::Url::parse(&f.url)?;
        let mut header_map = HeaderMap::with_capacity(f.headers.len());
        for (k, v) in &f.headers {
            let name = HeaderName::from_bytes(k.as_bytes())?;
            let mut value = HeaderValue::from_str(v)?;
            value.set_sensitive(true);
            header_map.insert(name, value);
        }
        let exprs: Vec<&str> = f
            .filters
            .values()
            .flat_map(|x| x.event.iter().map(String::as_str))
            .collect();
        let types = if exprs.is_empty() {
            None
        } else {
            let set = regex::RegexSetBuilder::new(&exprs)
                .size_limit(crate::model::REGEX_SIZE_LIMIT * exprs.len().max(1))
                .build()?;
            let mut table = vec![false; EventType::ALL.len()];
            for t in EventType::ALL {
                table[*t as usize] = set.is_match(t.as_str());
            }
            Some(Arc::from(table))
        };
        Ok(Notification {
            id: f.id,
            uid: f.uid,
            project: f.project,
            name: f.name,
            url,
            filters: f.filters,
            headers: f.headers,
            header_map,
            secret: f.secret,
            previous: f.previous,
            enabled: f.enabled,
            ordered: f.ordered,
            ordered_by: f.ordered_by,
            format: f.format,
            content_mode: f.content_mode,
            disabled_reason: f.disabled_reason,
            failing_since: Arc::new(AtomicI64::new(f.failing_since.unwrap_or(NOT_FAILING))),
            last_modified: f.last_modified,
            types,
        })
    }

    /// Whether the filters take events of type `t` (as the dispatcher's
    /// [`Target`] does).
    pub(crate) fn matches(&self, t: EventType) -> bool {
        self.types.as_ref().is_none_or(|m| m[t as usize])
    }

    /// The notification as stored.
    pub(crate) fn record(&self) -> NotificationRecord {
        NotificationRecord {
            id: self.id,
            uid: self.uid.clone(),
            project: self.project.clone(),
            name: self.name.clone(),
            url: self.url.to_string(),
            filters: self.filters.clone(),
            headers: self.headers.clone(),
            secret: self.secret.clone(),
            previous: self.previous.clone(),
            enabled: self.enabled,
            ordered: self.ordered,
            ordered_by: self.ordered_by,
            format: self.format,
            content_mode: self.content_mode,
            disabled_reason: self.disabled_reason.clone(),
            failing_since: self.failing_since(),
            last_modified: self.last_modified,
        }
    }

    pub(crate) fn failing_since(&self) -> Option<i64> {
        let v = self.failing_since.load(Ordering::Relaxed);
        (v != NOT_FAILING).then_some(v)
    }

    pub(crate) fn set_failing_since(&self, v: Option<i64>) {
        self.failing_since
            .store(v.unwrap_or(NOT_FAILING), Ordering::Relaxed);
    }

    /// As the API shows it.
    pub(crate) fn out(&self) -> NotificationOut {
        self.record().out()
    }

    /// The secrets to sign with at `now_ms`: the current one, and the
    /// previous one during its overlap.
    pub(crate) fn signing_secrets(&self, now_ms: i64) -> impl Iterator<Item = &SigningSecret> {
        std::iter::once(&self.secret).chain(
            self.previous
                .as_ref()
                .filter(|(_, until)| *until > now_ms)
                .map(|(s, _)| s),
        )
    }
}

/// What the dispatcher needs to route one event to one notification.
#[derive(Debug)]
pub(crate) struct Target {
    pub id: NotificationId,
    pub types: Option<Arc<[bool]>>,
    /// `format: cdevents`: a type without a CDEvents counterpart is not
    /// delivered to it.
    pub cdevents: bool,
    /// Ordered per key: the envelope field that makes each delivery's key.
    pub ordered_by: Option<OrderedBy>,
}

impl Target {
    pub(crate) fn matches(&self, t: EventType) -> bool {
        self.types.as_ref().is_none_or(|m| m[t as usize])
    }
}

/// Enabled notifications by project.
#[derive(Debug, Default)]
pub(crate) struct MatchIndex {
    pub by_project: HashMap<ProjectKey, Arc<[Target]>>,
}

pub(crate) struct Slot {
    pub current: watch::Sender<Arc<Notification>>,
    pub wake: Arc<Notify>,
    pub worker_started: bool,
}

#[derive(Default)]
struct State {
    by_id: HashMap<NotificationId, Slot>,
    by_name: HashMap<(ProjectKey, String), NotificationId>,
}

/// Handed to a new worker.
pub(crate) struct WorkerHandle {
    pub current: watch::Receiver<Arc<Notification>>,
    pub wake: Arc<Notify>,
}

#[derive(Default)]
pub(crate) struct Registry {
    state: Mutex<State>,
    index: RwLock<Arc<MatchIndex>>,
    /// Notified when a notification is added (here or, through the store,
    /// by another instance): the engine starts its worker.
    added: Notify,
}

impl fmt::Debug for Registry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.state.lock().map(|s| s.by_id.len()).unwrap_or(0);
        f.debug_struct("Registry")
            .field("notifications", &n)
            .finish()
    }
}

impl Registry {
    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic while holding the lock leaves plain data behind; carry on.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn index(&self) -> Arc<MatchIndex> {
        Arc::clone(&self.index.read().unwrap_or_else(|p| p.into_inner()))
    }

    /// No notification in any project.
    pub(crate) fn is_empty(&self) -> bool {
        self.index().by_project.is_empty()
    }

    pub(crate) fn get(&self, id: NotificationId) -> Option<Arc<Notification>> {
        self.state()
            .by_id
            .get(&id)
            .map(|s| Arc::clone(&s.current.borrow()))
    }

    pub(crate) fn by_name(&self, project: &ProjectKey, name: &str) -> Option<Arc<Notification>> {
        let st = self.state();
        let id = st.by_name.get(&(project.clone(), name.to_owned()))?;
        st.by_id.get(id).map(|s| Arc::clone(&s.current.borrow()))
    }

    /// A project's notifications, by name.
    pub(crate) fn list(&self, project: &ProjectKey) -> Vec<Arc<Notification>> {
        let st = self.state();
        let mut v: Vec<_> = st
            .by_id
            .values()
            .map(|s| Arc::clone(&s.current.borrow()))
            .filter(|n| n.project == *project)
            .collect();
        v.sort_by(|a, b| a.name.cmp(&b.name));
        v
    }

    /// Adds or replaces a notification (waking its worker).
    fn insert(&self, n: Notification) {
        let n = Arc::new(n);
        let mut st = self.state();
        let mut projects = vec![n.project.clone()];
        match st.by_id.get_mut(&n.id) {
            Some(slot) => {
                let old = slot.current.send_replace(Arc::clone(&n));
                if old.project != n.project {
                    projects.push(old.project.clone());
                }
                st.by_name.remove(&(old.project.clone(), old.name.clone()));
            }
            None => {
                let (tx, _) = watch::channel(Arc::clone(&n));
                st.by_id.insert(
                    n.id,
                    Slot {
                        current: tx,
                        wake: Arc::new(Notify::new()),
                        worker_started: false,
                    },
                );
                self.added.notify_one();
            }
        }
        st.by_name.insert((n.project.clone(), n.name.clone()), n.id);
        self.reindex(&st, &projects);
    }

    /// Resolves after a notification was added (at once if one was added
    /// since the last call).
    pub(crate) async fn added(&self) {
        self.added.notified().await
    }

    /// Removes a notification; its worker sees its channel close and stops.
    fn delete(&self, id: NotificationId) {
        let mut st = self.state();
        if let Some(slot) = st.by_id.remove(&id) {
            let n = Arc::clone(&slot.current.borrow());
            st.by_name.remove(&(n.project.clone(), n.name.clone()));
            self.reindex(&st, std::slice::from_ref(&n.project));
        }
    }

    /// The notifications whose worker is not running yet, marked as running.
    pub(crate) fn take_unstarted(&self) -> Vec<WorkerHandle> {
        let mut st = self.state();
        st.by_id
            .values_mut()
            .filter(|s| !s.worker_started)
            .map(|s| {
                s.worker_started = true;
                WorkerHandle {
                    current: s.current.subscribe(),
                    wake: Arc::clone(&s.wake),
                }
            })
            .collect()
    }

    /// Marks every worker as stopped (after a shutdown), so a later run
    /// starts them again.
    pub(crate) fn reset_workers(&self) {
        for s in self.state().by_id.values_mut() {
            s.worker_started = false;
        }
    }

    pub(crate) fn wake(&self, id: NotificationId) {
        if let Some(s) = self.state().by_id.get(&id) {
            s.wake.notify_one();
        }
    }

    /// Rebuilds the index entries of `projects` only.
    fn reindex(&self, st: &State, projects: &[ProjectKey]) {
        let mut index = self.index.write().unwrap_or_else(|p| p.into_inner());
        let mut by_project = index.by_project.clone();
        for p in projects {
            let targets: Vec<Target> = st
                .by_id
                .values()
                .filter_map(|s| {
                    let n = s.current.borrow();
                    (n.project == *p && n.enabled).then(|| Target {
                        id: n.id,
                        types: n.types.clone(),
                        cdevents: n.format == EventFormat::CdEvents,
                        ordered_by: n.ordered_by,
                    })
                })
                .collect();
            if targets.is_empty() {
                by_project.remove(p);
            } else {
                by_project.insert(p.clone(), Arc::from(targets));
            }
        }
        *index = Arc::new(MatchIndex { by_project });
    }
}

/// The store tells the registry of every committed change.
impl Mirror for Registry {
    fn put(&self, n: NotificationRecord) -> Result<(), WebhooksError> {
        self.insert(Notification::build(n)?);
        Ok(())
    }

    fn remove(&self, id: NotificationId) {
        self.delete(id);
    }

    fn failing_since(&self, id: NotificationId, since: Option<i64>) {
        if let Some(n) = self.get(id) {
            n.set_failing_since(since);
        }
    }

    fn due(&self, notifications: &[NotificationId]) {
        let st = self.state();
        for id in notifications {
            if let Some(s) = st.by_id.get(id) {
                s.wake.notify_one();
            }
        }
    }
}

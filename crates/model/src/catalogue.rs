//! The CDS v2 event catalogue, declared once.
//!
//! Every family, its scope, its context fields and its types live in the single
//! `catalogue!` invocation at the bottom of this file. Parsing, validation, the
//! `/v2/events/types` endpoint, the typed producer structs and the tests are all
//! derived from it: adding a type is one word in that table.

use serde::Serialize;
use std::fmt;
use std::str::FromStr;

/// Whether a family's events belong to a project (and need `project_key`) or to
/// the whole installation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    Project,
    Global,
}

impl Scope {
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Project => "project",
            Scope::Global => "global",
        }
    }
}

/// One context field of a family, as the catalogue declares it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct FieldSpec {
    /// The JSON key.
    pub name: &'static str,
    /// `true` when CDS may leave the field empty (the `?` of the spec), or
    /// when it is a counter that may be zero.
    pub optional: bool,
}

macro_rules! catalogue {
    ($(
        $(#[$fdoc:meta])*
        $family:ident $label:literal $scope:ident subject ( $( $subj:ident ),+ )
            struct $strukt:ident { $( $field:ident : $fty:ident = $req:ident ),* $(,)? }
            types [ $( $ty:ident ),+ $(,)? ];
    )+) => {
        /// A family of event types: which context fields its events carry.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum Family { $( $(#[$fdoc])* $family ),+ }

        /// Every event type of the catalogue. The wire string is the variant name.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum EventType { $( $( $ty ),+ ),+ }

        impl Family {
            /// All families, in catalogue order.
            pub const ALL: &'static [Family] = &[ $( Family::$family ),+ ];

            /// The family's name as used in filters and in `/v2/events/types`.
            pub fn as_str(self) -> &'static str {
                match self { $( Family::$family => $label ),+ }
            }

            pub fn scope(self) -> Scope {
                match self { $( Family::$family => Scope::$scope ),+ }
            }

            /// The family's context fields (besides id, type, payload, timestamp).
            pub fn fields(self) -> &'static [FieldSpec] {
                match self { $( Family::$family => &[ $( FieldSpec {
                    name: stringify!($field),
                    optional: catalogue!(@optional $req),
                } ),* ] ),+ }
            }

            /// The event types of the family.
            pub fn types(self) -> &'static [EventType] {
                match self { $( Family::$family => &[ $( EventType::$ty ),+ ] ),+ }
            }

            /// The context fields naming what an event of the family is
            /// about (the CloudEvents `subject`), joined with `/`.
            pub fn subject_fields(self) -> &'static [&'static str] {
                match self { $( Family::$family => &[ $( stringify!($subj) ),+ ] ),+ }
            }
        }

        impl crate::FullEvent {
            /// What the event is about, in its family's terms
            /// ([`Family::subject_fields`], the non-empty ones joined with
            /// `/`): a run id, a job id, an entity… `None` when all are empty.
            pub fn subject(&self) -> Option<String> {
                let parts: &[&str] = match self.family() {
                    $( Family::$family => &[ $( self.$subj.as_str() ),+ ] ),+
                };
                let joined = parts.iter().filter(|p| !p.is_empty()).copied().collect::<Vec<_>>().join("/");
                (!joined.is_empty()).then_some(joined)
            }
        }

        impl EventType {
            /// All types, in catalogue order.
            pub const ALL: &'static [EventType] = &[ $( $( EventType::$ty ),+ ),+ ];

            /// The type string on the wire (case-sensitive).
            pub fn as_str(self) -> &'static str {
                match self { $( $( EventType::$ty => stringify!($ty) ),+ ),+ }
            }

            pub fn family(self) -> Family {
                match self { $( $( EventType::$ty => Family::$family ),+ ),+ }
            }

            /// Looks a type up by its exact wire string.
            pub fn parse(s: &str) -> Option<EventType> {
                match s { $( $( stringify!($ty) => Some(EventType::$ty), )+ )+ _ => None }
            }
        }

        impl FromStr for Family {
            type Err = UnknownName;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                match s { $( $label => Ok(Family::$family), )+ _ => Err(UnknownName(s.to_owned())) }
            }
        }

        $(
            #[doc = concat!("Producer shape of the `", $label, "` family: its context fields and the common part.")]
            ///
            /// Build one with struct-update syntax from `Default`, then turn it into a
            /// [`crate::FullEvent`] with `into_event`, which checks that the type belongs
            /// to this family.
            #[derive(Debug, Clone, Default, PartialEq)]
            pub struct $strukt {
                /// Producer id; a UUID v7 is assigned when `None`.
                pub id: Option<String>,
                /// The resource after the action, as JSON; `null` when `None`.
                pub payload: Option<crate::event::Payload>,
                /// When the action happened; the receive time when `None`.
                pub timestamp: Option<crate::Timestamp>,
                $( pub $field: $fty, )*
            }

            impl $strukt {
                /// The family this producer shape belongs to.
                pub const FAMILY: Family = Family::$family;

                /// Builds the full event of type `event_type`, which must be one of
                /// this family's types.
                pub fn into_event(self, event_type: EventType) -> Result<crate::FullEvent, crate::DecodeError> {
                    if event_type.family() != Family::$family {
                        return Err(crate::DecodeError::new(
                            crate::ErrorCode::WrongFamily,
                            Some("type"),
                            format!("type {} belongs to family {}, not {}", event_type, event_type.family(), $label),
                        ));
                    }
                    let mut ev = crate::FullEvent::new(event_type);
                    if let Some(id) = self.id { ev.id = id; }
                    if let Some(p) = self.payload { ev.payload = p; }
                    if let Some(ts) = self.timestamp { ev.timestamp = ts; }
                    $( ev.$field = self.$field; )*
                    crate::decode::finish(ev, &crate::Limits::default())
                }
            }
        )+
    };
    (@optional req) => { false };
    (@optional opt) => { true };
}

/// An unknown family or type name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown name {0:?}")]
pub struct UnknownName(pub String);

impl FromStr for EventType {
    type Err = UnknownName;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        EventType::parse(s).ok_or_else(|| UnknownName(s.to_owned()))
    }
}

impl fmt::Display for EventType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Display for Family {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for EventType {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl Serialize for Family {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl EventType {
    /// Up to `n` catalogue types nearest to `given`, best first, for "did you
    /// mean" hints. Case differences count as nearly nothing.
    pub fn suggest(given: &str, n: usize) -> Vec<EventType> {
        let lower = given.to_ascii_lowercase();
        let mut scored: Vec<(f64, EventType)> = EventType::ALL
            .iter()
            .map(|t| {
                let name = t.as_str().to_ascii_lowercase();
                let mut score = strsim::jaro_winkler(&lower, &name);
                if !lower.is_empty() && (name.starts_with(&lower) || name.contains(&lower)) {
                    score += 0.2;
                }
                (score, *t)
            })
            .collect();
        scored.sort_by(|a, b| b.0.total_cmp(&a.0));
        scored.into_iter().take(n).map(|(_, t)| t).collect()
    }

    /// The types whose wire string starts with `prefix` (for `RunJob*` filters).
    pub fn with_prefix(prefix: &str) -> Vec<EventType> {
        EventType::ALL
            .iter()
            .copied()
            .filter(|t| t.as_str().starts_with(prefix))
            .collect()
    }

    pub fn scope(self) -> Scope {
        self.family().scope()
    }
}

catalogue! {
    /// Repository analyses.
    Analysis "Analysis" Project subject(vcs_name, repository)
        struct AnalysisEvent { project_key: String = req, vcs_name: String = req, repository: String = req,
            status: String = req, user_id: String = opt, username: String = opt }
        types [AnalysisStart, AnalysisDone];
    /// As-code entities (workflows, worker models, actions…).
    Entity "Entity" Project subject(entity)
        struct EntityEvent { project_key: String = req, vcs_name: String = req, repository: String = req,
            entity: String = req, user_id: String = opt, username: String = opt }
        types [EntityCreated, EntityUpdated, EntityDeleted];
    Hatchery "Hatchery" Global subject(hatchery)
        struct HatcheryEvent { hatchery: String = req, user_id: String = opt, username: String = opt }
        types [HatcheryCreated, HatcheryUpdated, HatcheryDeleted, HatcheryTokenRegen];
    IntegrationModel "IntegrationModel" Global subject(integration_model)
        struct IntegrationModelEvent { integration_model: String = req, user_id: String = req, username: String = req }
        types [IntegrationModelCreated, IntegrationModelUpdated, IntegrationModelDeleted];
    /// Integrations of a project.
    Integration "Integration" Project subject(integration)
        struct IntegrationEvent { project_key: String = req, integration: String = req,
            integration_model: String = req, user_id: String = req, username: String = req }
        types [IntegrationCreated, IntegrationUpdated, IntegrationDeleted];
    Notification "Notification" Project subject(notification)
        struct NotificationEvent { project_key: String = req, notification: String = req,
            user_id: String = req, username: String = req }
        types [NotificationCreated, NotificationUpdated, NotificationDeleted];
    Organization "Organization" Global subject(organization)
        struct OrganizationEvent { organization: String = req, user_id: String = req, username: String = req }
        types [OrganizationCreated, OrganizationDeleted];
    Permission "Permission" Global subject(permission)
        struct PermissionEvent { permission: String = req, user_id: String = req, username: String = req }
        types [PermissionCreated, PermissionUpdated, PermissionDeleted];
    Plugin "Plugin" Global subject(plugin)
        struct PluginEvent { plugin: String = req, user_id: String = req, username: String = req }
        types [PluginCreated, PluginUpdated, PluginDeleted];
    Project "Project" Project subject(project_key)
        struct ProjectEvent { project_key: String = req, user_id: String = req, username: String = req }
        types [ProjectCreated, ProjectUpdated, ProjectDeleted];
    ProjectPurge "ProjectPurge" Project subject(purge_report_id)
        struct ProjectPurgeEvent { project_key: String = req, purge_report_id: String = opt }
        types [EventProjectPurge];
    Region "Region" Global subject(region)
        struct RegionEvent { region: String = req, user_id: String = req, username: String = req }
        types [RegionCreated, RegionDeleted];
    Repository "Repository" Project subject(vcs_name, repository)
        struct RepositoryEvent { project_key: String = req, vcs_name: String = req, repository: String = req,
            user_id: String = req, username: String = req }
        types [RepositoryCreated, RepositoryDeleted];
    User "User" Global subject(user_id)
        struct UserEvent { user_id: String = req, username: String = req }
        types [UserCreated, UserUpdated, UserDeleted];
    UserGPGKey "UserGPGKey" Global subject(gpg_key)
        struct UserGpgKeyEvent { user_id: String = req, username: String = req, gpg_key: String = req }
        types [UserGPGKeyCreated, UserGPGKeyDeleted];
    VariableSet "VariableSet" Project subject(variable_set)
        struct VariableSetEvent { project_key: String = req, variable_set: String = req,
            user_id: String = req, username: String = req }
        types [VariableSetCreated, VariableSetDeleted];
    VariableSetItem "VariableSetItem" Project subject(variable_set, item)
        struct VariableSetItemEvent { project_key: String = req, variable_set: String = req, item: String = req,
            user_id: String = req, username: String = req }
        types [VariableSetItemCreated, VariableSetItemUpdated, VariableSetItemDeleted];
    Vcs "VCS" Project subject(vcs_name)
        struct VcsEvent { project_key: String = req, vcs_name: String = req, user_id: String = req, username: String = req }
        types [VCSCreated, VCSUpdated, VCSDeleted];
    Concurrency "Concurrency" Project subject(concurrency)
        struct ConcurrencyEvent { project_key: String = req, concurrency: String = req,
            user_id: String = req, username: String = req }
        types [ConcurrencyCreated, ConcurrencyUpdated, ConcurrencyDeleted];
    /// A workflow run's life.
    WorkflowRun "WorkflowRun" Project subject(workflow_run_id)
        struct WorkflowRunEvent { project_key: String = req, vcs_name: String = req, repository: String = req,
            repository_origin: String = req, workflow: String = req, workflow_run_id: String = req,
            run_number: i64 = opt, run_attempt: i64 = opt, status: String = req, user_id: String = req,
            username: String = req, user_mail: String = req }
        types [RunCrafted, RunBuilding, RunEnded, RunRestartFailedJob, RunRestart, RunDeleted];
    /// A job of a workflow run.
    WorkflowRunJob "WorkflowRunJob" Project subject(run_job_id)
        struct WorkflowRunJobEvent { project_key: String = req, vcs_name: String = req, repository: String = req,
            workflow: String = req, workflow_run_id: String = req, run_job_id: String = req,
            run_number: i64 = opt, run_attempt: i64 = opt, region: String = req, hatchery: String = req,
            model_type: String = req, model_osarch: String = req, job_id: String = req, status: String = req,
            user_id: String = req, username: String = req }
        types [RunJobEnqueued, RunJobScheduled, RunJobBuilding, RunJobEnded, RunJobBlocked,
            RunJobCancelled, RunJobSkipped, RunJobStopped];
    WorkflowRunJobManual "WorkflowRunJobManual" Project subject(workflow_run_id, job_id)
        struct WorkflowRunJobManualEvent { project_key: String = req, vcs_name: String = req,
            repository: String = req, workflow: String = req, workflow_run_id: String = req, job_id: String = req,
            run_number: i64 = opt, run_attempt: i64 = opt, status: String = req, user_id: String = req,
            username: String = req }
        types [RunJobManualTriggered];
    WorkflowRunJobRunResult "WorkflowRunJobRunResult" Project subject(run_result)
        struct WorkflowRunJobRunResultEvent { project_key: String = req, vcs_name: String = req,
            repository: String = req, workflow: String = req, workflow_run_id: String = req,
            run_job_id: String = req, run_number: i64 = opt, run_attempt: i64 = opt, region: String = req,
            hatchery: String = req, model_type: String = req, job_id: String = req, status: String = req,
            run_result: String = req, user_id: String = req, username: String = req }
        types [RunJobRunResultAdded, RunJobRunResultUpdated];
}

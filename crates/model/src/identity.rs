//! Whose event this is: a project, by its [`ProjectKey`], or the installation
//! itself ([`EventScope::Global`]). Parsed once at the edge; nothing inside
//! the workspace spells "global" as an empty string.
//!
//! The enum is `EventScope`, not `Scope`: the catalogue's [`crate::Scope`]
//! is the *kind* of a family (project or global), while an `EventScope` is a
//! value naming one owner (global, or this project). The wire field
//! `project_key` of a full event stays a plain string (`""` for global): that
//! is CDS's format, read through [`FullEvent::event_scope`].

use crate::FullEvent;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

/// A project's key: never empty. Cheap to clone (shared text).
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ProjectKey(Arc<str>);

/// A project key that cannot be one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProjectKeyError {
    /// The empty string means "no project" on the wire; it is never a key.
    #[error("a project key cannot be empty")]
    Empty,
}

impl ProjectKey {
    pub fn new(key: impl AsRef<str>) -> Result<Self, ProjectKeyError> {
        let key = key.as_ref();
        if key.is_empty() {
            return Err(ProjectKeyError::Empty);
        }
        Ok(ProjectKey(Arc::from(key)))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ProjectKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for ProjectKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.0, f)
    }
}

impl AsRef<str> for ProjectKey {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

// Hashes and compares as its text, so a map keyed by `ProjectKey` is
// looked up with an event's wire `project_key` without allocating.
impl std::borrow::Borrow<str> for ProjectKey {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl PartialEq<str> for ProjectKey {
    fn eq(&self, other: &str) -> bool {
        &*self.0 == other
    }
}

impl PartialEq<&str> for ProjectKey {
    fn eq(&self, other: &&str) -> bool {
        &*self.0 == *other
    }
}

impl FromStr for ProjectKey {
    type Err = ProjectKeyError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        ProjectKey::new(s)
    }
}

impl TryFrom<String> for ProjectKey {
    type Error = ProjectKeyError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        ProjectKey::new(s)
    }
}

impl TryFrom<&str> for ProjectKey {
    type Error = ProjectKeyError;
    fn try_from(s: &str) -> Result<Self, Self::Error> {
        ProjectKey::new(s)
    }
}

impl Serialize for ProjectKey {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for ProjectKey {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        ProjectKey::new(s).map_err(serde::de::Error::custom)
    }
}

/// Whose event this is: the installation's (hatcheries, regions, users,
/// plugins…) or one project's.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum EventScope {
    Global,
    Project(ProjectKey),
}

impl EventScope {
    /// The scope named by a wire `project_key`: `""` is global.
    pub fn from_wire(project_key: &str) -> Self {
        match ProjectKey::new(project_key) {
            Ok(key) => EventScope::Project(key),
            Err(ProjectKeyError::Empty) => EventScope::Global,
        }
    }

    /// The project, if this is a project's event.
    pub fn project(&self) -> Option<&ProjectKey> {
        match self {
            EventScope::Global => None,
            EventScope::Project(key) => Some(key),
        }
    }

    pub fn is_global(&self) -> bool {
        matches!(self, EventScope::Global)
    }

    /// Whether this scope owns an event whose wire `project_key` is given.
    /// Compares without allocating: it runs for every event a filter sees.
    pub fn owns(&self, project_key: &str) -> bool {
        match self {
            EventScope::Global => project_key.is_empty(),
            EventScope::Project(key) => key == project_key,
        }
    }
}

impl From<ProjectKey> for EventScope {
    fn from(key: ProjectKey) -> Self {
        EventScope::Project(key)
    }
}

impl FullEvent {
    /// Whose event this is (its `project_key`, `""` meaning global).
    pub fn event_scope(&self) -> EventScope {
        EventScope::from_wire(&self.project_key)
    }

    /// The project's key, or `None` for a global event: the scope borrowed,
    /// for checks that run on every event and should not allocate.
    pub fn project(&self) -> Option<&str> {
        (!self.project_key.is_empty()).then_some(self.project_key.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::EventType;

    #[test]
    fn a_project_key_refuses_the_empty_string() {
        assert_eq!(ProjectKey::new(""), Err(ProjectKeyError::Empty));
        assert!("".parse::<ProjectKey>().is_err());
        assert!(ProjectKey::try_from(String::new()).is_err());
        assert!(serde_json::from_str::<ProjectKey>("\"\"").is_err());
    }

    #[test]
    fn a_project_key_is_a_plain_string_on_the_wire() {
        let key: ProjectKey = "PROJ".parse().expect("key");
        assert_eq!(key.as_str(), "PROJ");
        assert_eq!(key.to_string(), "PROJ");
        assert_eq!(serde_json::to_string(&key).expect("json"), "\"PROJ\"");
        assert_eq!(
            serde_json::from_str::<ProjectKey>("\"PROJ\"").ok(),
            Some(key)
        );
    }

    #[test]
    fn a_global_event_has_the_global_scope() {
        let mut e = FullEvent::new(EventType::parse("HatcheryCreated").expect("type"));
        e.project_key = String::new();
        assert_eq!(e.event_scope(), EventScope::Global);
        e.project_key = "P".into();
        let p = ProjectKey::new("P").expect("key");
        assert_eq!(e.event_scope(), EventScope::Project(p.clone()));
        assert!(EventScope::Project(p).owns("P"));
        assert!(!EventScope::Global.owns("P"));
        assert!(EventScope::Global.owns(""));
    }
}

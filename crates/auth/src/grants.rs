//! Grants, written as strings the way people know scopes from GitHub or
//! GitLab, and what a principal holding them may do.

use cds_events_model::{EventScope, FullEvent, ProjectKey};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// One right given to a token.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Grant {
    /// Everything, including managing tokens and reading the audit trail.
    Admin,
    /// Publish events: of every project and the global families (`publish`),
    /// or of one project (`publish:PROJ`).
    Publish(Option<ProjectKey>),
    /// Read a project's events (`read:PROJ`), or every project's (`read:*`).
    Read(Option<ProjectKey>),
    /// Read the global-scope families (hatcheries, regions, users, plugins…).
    ReadGlobal,
    /// Manage a project's notifications (`manage-notifications:PROJ`).
    ManageNotifications(ProjectKey),
    /// Take jobs from the queue of a region (`hatchery:REGION`), or of every
    /// region (`hatchery:*`), on `/v2/hatchery/ws`.
    Hatchery(Option<String>),
}

/// A grant string that is not one of the forms above.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "invalid grant {0:?}: expected admin, publish, publish:PROJ, read:PROJ, read:*, read-global, manage-notifications:PROJ, hatchery:REGION or hatchery:*"
)]
pub struct InvalidGrant(pub String);

/// A name in a grant (a project key or a region): at most 128 characters,
/// none of them a wildcard, list separator, space or control.
fn name(s: &str, whole: &str) -> Result<String, InvalidGrant> {
    let ok = !s.is_empty()
        && s.len() <= 128
        && !s.contains(['*', ',', ' '])
        && !s.chars().any(char::is_control);
    if ok {
        Ok(s.to_owned())
    } else {
        Err(InvalidGrant(whole.to_owned()))
    }
}

fn project(s: &str, whole: &str) -> Result<ProjectKey, InvalidGrant> {
    ProjectKey::try_from(name(s, whole)?).map_err(|_| InvalidGrant(whole.to_owned()))
}

impl FromStr for Grant {
    type Err = InvalidGrant;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.split_once(':') {
            None => match s {
                "admin" => Ok(Grant::Admin),
                "publish" => Ok(Grant::Publish(None)),
                "read-global" => Ok(Grant::ReadGlobal),
                _ => Err(InvalidGrant(s.to_owned())),
            },
            Some(("publish", p)) => Ok(Grant::Publish(Some(project(p, s)?))),
            Some(("read", "*")) => Ok(Grant::Read(None)),
            Some(("read", p)) => Ok(Grant::Read(Some(project(p, s)?))),
            Some(("manage-notifications", p)) => Ok(Grant::ManageNotifications(project(p, s)?)),
            Some(("hatchery", "*")) => Ok(Grant::Hatchery(None)),
            Some(("hatchery", r)) => Ok(Grant::Hatchery(Some(name(r, s)?))),
            _ => Err(InvalidGrant(s.to_owned())),
        }
    }
}

impl fmt::Display for Grant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Grant::Admin => f.write_str("admin"),
            Grant::Publish(None) => f.write_str("publish"),
            Grant::Publish(Some(p)) => write!(f, "publish:{p}"),
            Grant::Read(None) => f.write_str("read:*"),
            Grant::Read(Some(p)) => write!(f, "read:{p}"),
            Grant::ReadGlobal => f.write_str("read-global"),
            Grant::ManageNotifications(p) => write!(f, "manage-notifications:{p}"),
            Grant::Hatchery(None) => f.write_str("hatchery:*"),
            Grant::Hatchery(Some(r)) => write!(f, "hatchery:{r}"),
        }
    }
}

impl Serialize for Grant {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Grant {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// Who is calling: the token's id and name, and its grants.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Principal {
    pub token_id: String,
    pub name: String,
    pub grants: Vec<Grant>,
}

/// The events a principal may read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReadScope {
    /// Every event.
    Everything,
    /// These projects (`None`: all of them) and, if `global`, the global families.
    Some {
        projects: Option<Vec<ProjectKey>>,
        global: bool,
    },
}

impl Principal {
    pub fn is_admin(&self) -> bool {
        self.grants.contains(&Grant::Admin)
    }

    /// May publish an event of `scope`.
    pub fn can_publish(&self, scope: &EventScope) -> bool {
        self.publishes(scope.project().map(ProjectKey::as_str))
    }

    /// May publish `e` (its scope read from the wire without allocating).
    pub fn can_publish_event(&self, e: &FullEvent) -> bool {
        self.publishes(e.project())
    }

    /// `project`: `None` for a global event.
    fn publishes(&self, project: Option<&str>) -> bool {
        self.grants.iter().any(|g| match g {
            Grant::Admin | Grant::Publish(None) => true,
            Grant::Publish(Some(p)) => project.is_some_and(|k| p == k),
            _ => false,
        })
    }

    /// May read events of `scope`.
    pub fn can_read(&self, scope: &EventScope) -> bool {
        self.reads(scope.project().map(ProjectKey::as_str))
    }

    /// May read `e`: the check a live stream makes for every event, so it
    /// reads the scope from the wire field without allocating.
    pub fn can_read_event(&self, e: &FullEvent) -> bool {
        self.reads(e.project())
    }

    /// `project`: `None` for a global event.
    fn reads(&self, project: Option<&str>) -> bool {
        self.grants.iter().any(|g| match g {
            Grant::Admin => true,
            Grant::ReadGlobal => project.is_none(),
            Grant::Read(None) => project.is_some(),
            Grant::Read(Some(p)) => project.is_some_and(|k| p == k),
            _ => false,
        })
    }

    /// May manage the notifications of `project`.
    pub fn can_manage_notifications(&self, project: &ProjectKey) -> bool {
        self.grants.iter().any(|g| match g {
            Grant::Admin => true,
            Grant::ManageNotifications(p) => p == project,
            _ => false,
        })
    }

    /// The regions whose job queue this principal may follow: `None` for
    /// none, `Some(None)` for every region.
    pub fn hatchery_regions(&self) -> Option<Option<Vec<String>>> {
        if self.is_admin() || self.grants.contains(&Grant::Hatchery(None)) {
            return Some(None);
        }
        let regions: Vec<String> = self
            .grants
            .iter()
            .filter_map(|g| match g {
                Grant::Hatchery(Some(r)) => Some(r.clone()),
                _ => None,
            })
            .collect();
        (!regions.is_empty()).then_some(Some(regions))
    }

    pub fn read_scope(&self) -> ReadScope {
        if self.is_admin() {
            return ReadScope::Everything;
        }
        let global = self.grants.contains(&Grant::ReadGlobal);
        if self.grants.contains(&Grant::Read(None)) {
            return if global {
                ReadScope::Everything
            } else {
                ReadScope::Some {
                    projects: None,
                    global,
                }
            };
        }
        let mut projects: Vec<ProjectKey> = self
            .grants
            .iter()
            .filter_map(|g| match g {
                Grant::Read(Some(p)) => Some(p.clone()),
                _ => None,
            })
            .collect();
        projects.sort();
        projects.dedup();
        ReadScope::Some {
            projects: Some(projects),
            global,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(k: &str) -> ProjectKey {
        k.parse().expect("key")
    }

    fn scope(k: &str) -> EventScope {
        EventScope::Project(key(k))
    }

    fn principal(grants: &[&str]) -> Principal {
        Principal {
            token_id: "t".into(),
            name: "n".into(),
            grants: grants.iter().map(|g| g.parse().expect("grant")).collect(),
        }
    }

    #[test]
    fn grants_round_trip_and_refuse_nonsense() {
        for s in [
            "admin",
            "publish",
            "publish:PROJ",
            "read:PROJ",
            "read:*",
            "read-global",
            "manage-notifications:P",
            "hatchery:eu-west",
            "hatchery:*",
        ] {
            assert_eq!(s.parse::<Grant>().expect(s).to_string(), s);
        }
        for s in [
            "",
            "root",
            "read",
            "read:",
            "publish:*",
            "read:A,B",
            "manage-notifications:",
            "write:P",
            "admin:x",
        ] {
            assert!(s.parse::<Grant>().is_err(), "{s:?}");
        }
    }

    #[test]
    fn each_grant_allows_what_it_says_and_nothing_else() {
        let reader = principal(&["read:A"]);
        assert!(
            reader.can_read(&scope("A"))
                && !reader.can_read(&scope("B"))
                && !reader.can_read(&EventScope::Global)
        );
        assert!(!reader.can_publish(&scope("A")) && !reader.can_manage_notifications(&key("A")));
        assert_eq!(
            reader.read_scope(),
            ReadScope::Some {
                projects: Some(vec![key("A")]),
                global: false
            }
        );

        let all = principal(&["read:*"]);
        assert!(all.can_read(&scope("Z")) && !all.can_read(&EventScope::Global));
        assert_eq!(
            all.read_scope(),
            ReadScope::Some {
                projects: None,
                global: false
            }
        );
        assert_eq!(
            principal(&["read:*", "read-global"]).read_scope(),
            ReadScope::Everything
        );

        let global = principal(&["read-global"]);
        assert!(global.can_read(&EventScope::Global) && !global.can_read(&scope("A")));

        let pubp = principal(&["publish:A"]);
        assert!(
            pubp.can_publish(&scope("A"))
                && !pubp.can_publish(&scope("B"))
                && !pubp.can_publish(&EventScope::Global)
        );
        assert!(principal(&["publish"]).can_publish(&EventScope::Global));

        let admin = principal(&["admin"]);
        assert!(
            admin.can_read(&scope("A"))
                && admin.can_read(&EventScope::Global)
                && admin.can_publish(&EventScope::Global)
                && admin.can_manage_notifications(&key("A"))
        );
        assert_eq!(admin.read_scope(), ReadScope::Everything);
        assert!(principal(&["manage-notifications:A"]).can_manage_notifications(&key("A")));
        assert!(!principal(&["manage-notifications:A"]).can_manage_notifications(&key("B")));
        assert_eq!(principal(&["read:A"]).hatchery_regions(), None);
        assert_eq!(
            principal(&["hatchery:eu"]).hatchery_regions(),
            Some(Some(vec!["eu".into()]))
        );
        assert_eq!(principal(&["hatchery:*"]).hatchery_regions(), Some(None));
        assert!(
            !principal(&["hatchery:*"]).can_read(&scope("A")),
            "a hatchery reads the queue, not projects"
        );
    }
}

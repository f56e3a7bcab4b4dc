//! The traffic `cds-events simulate` sends, and the peers benchmark
//! (`bench/peers/`) sends to other brokers: CDS-like events in a plausible
//! order (projects with repositories, analyses and entities, workflow runs
//! that walk the whole run and job life of spec §2), pre-rendered as
//! templates. One generator for both, so that every side of a comparison
//! gets the same events.

use cds_events_model::{EventType, FullEvent, Payload, Timestamp};
use rand::rngs::SmallRng;
use rand::{RngExt, SeedableRng};
use std::collections::VecDeque;

/// Events rendered ahead per connection (about 5 MB): the generator's JSON
/// work is done before the clock starts, so the load generator leaves the
/// machine's cores to the server it measures.
pub const TEMPLATES_PER_CONNECTION: usize = 8192;

/// Pre-rendered events, each kept as the JSON between its id and its
/// timestamp. Sending one costs a fresh UUID v7, a clock read and a copy, so
/// every event sent is still unique and current.
/// (The id may be random instead: `--ids v4`.)
#[derive(Debug)]
pub struct Templates {
    /// Each event's JSON between id and timestamp, and its project's index.
    middles: Vec<(String, u16)>,
    next: usize,
    ids: IdKind,
}

/// Which UUIDs the events carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
pub enum IdKind {
    /// Time-ordered (what `cds-events publish` and the client crate make).
    V7,
    /// Random, as CDS's Go producers make them (`uuid.New()`).
    V4,
}

impl Templates {
    pub fn new(traffic: &mut Traffic, n: usize, ids: IdKind) -> Self {
        const ID_KEY: &str = r#"{"id":""#;
        const TS_KEY: &str = r#""timestamp":""#;
        let middles = (0..n)
            .map(|_| {
                let e = traffic.next_event();
                let json = e.to_json();
                let start = ID_KEY.len() + e.id.len();
                let end = json
                    .rfind(TS_KEY)
                    .expect("a full event ends with its timestamp")
                    + TS_KEY.len();
                let project = e
                    .project_key
                    .trim_start_matches("PROJ")
                    .parse()
                    .unwrap_or(0);
                (json[start..end].to_owned(), project)
            })
            .collect();
        Templates {
            middles,
            next: 0,
            ids,
        }
    }

    /// Writes the next event; answers its project's index.
    pub fn write(&mut self, out: &mut String) -> u16 {
        let (middle, project) = &self.middles[self.next];
        out.push_str(r#"{"id":""#);
        let id = match self.ids {
            IdKind::V7 => uuid::Uuid::now_v7(),
            IdKind::V4 => uuid::Uuid::new_v4(),
        };
        out.push_str(&id.to_string());
        out.push_str(middle);
        out.push_str(&Timestamp::now().to_go_string());
        out.push_str("\"}");
        self.next = (self.next + 1) % self.middles.len();
        *project
    }
}

pub fn project_key(i: usize) -> String {
    format!("PROJ{i:03}")
}

/// Generates CDS-like events in a plausible order.
#[derive(Debug)]
pub struct Traffic {
    rng: SmallRng,
    projects: usize,
    queue: VecDeque<FullEvent>,
    filler: String,
    run_counter: u64,
    event_bytes: usize,
}

const USERS: [(&str, &str); 4] = [
    ("u-1", "alice"),
    ("u-2", "bob"),
    ("u-3", "carol"),
    ("u-4", "dave"),
];
const WORKFLOWS: [&str; 4] = ["build", "test", "deploy", "release"];
const JOBS: [&str; 5] = ["compile", "unit-tests", "lint", "package", "integration"];
const REGIONS: [&str; 3] = ["eu-west", "us-east", "ap-south"];

impl Traffic {
    pub fn new(projects: usize, event_bytes: usize, seed: u64) -> Self {
        Traffic {
            rng: SmallRng::seed_from_u64(seed),
            projects,
            queue: VecDeque::new(),
            filler: "x".repeat(event_bytes),
            run_counter: 0,
            event_bytes,
        }
    }

    fn next_event(&mut self) -> FullEvent {
        if self.queue.is_empty() {
            self.scenario();
        }
        let mut e = self.queue.pop_front().expect("a scenario yields events");
        e.timestamp = Timestamp::now();
        e
    }

    /// A small payload shaped like CDS's resources (a git context), padded so
    /// that the whole event is about `event_bytes` long.
    fn push(&mut self, mut e: FullEvent) {
        let sha: u128 = self.rng.random();
        let base = format!(
            r#"{{"git":{{"branch":"main","sha":"{sha:032x}{:08x}"}},"note":""#,
            sha as u32
        );
        e.payload = Payload::from_json(format!("{base}\"}}")).expect("json");
        let pad = self
            .event_bytes
            .saturating_sub(e.to_json().len())
            .min(self.filler.len());
        e.payload = Payload::from_json(format!("{base}{}\"}}", &self.filler[..pad])).expect("json");
        self.queue.push_back(e);
    }

    fn scenario(&mut self) {
        let p = project_key(self.rng.random_range(0..self.projects));
        let (uid, uname) = USERS[self.rng.random_range(0..USERS.len())];
        let repo = format!("{}/repo{}", p.to_lowercase(), self.rng.random_range(0..3));
        let roll = self.rng.random_range(0..100);
        if roll < 8 {
            // A repository analysis, which may create or update entities.
            for (t, status) in [
                (EventType::AnalysisStart, "InProgress"),
                (EventType::AnalysisDone, "Success"),
            ] {
                let mut e = FullEvent::new(t);
                (e.project_key, e.vcs_name, e.repository, e.status) =
                    (p.clone(), "github".into(), repo.clone(), status.into());
                (e.user_id, e.username) = (uid.into(), uname.into());
                self.push(e);
            }
            for w in WORKFLOWS.iter().take(self.rng.random_range(0..3)) {
                let mut e = FullEvent::new(EventType::EntityUpdated);
                (e.project_key, e.vcs_name, e.repository) =
                    (p.clone(), "github".into(), repo.clone());
                e.entity = format!("{w}.yml");
                self.push(e);
            }
            return;
        }
        if roll < 10 {
            let t = [
                EventType::RepositoryCreated,
                EventType::ProjectUpdated,
                EventType::VariableSetItemUpdated,
            ][self.rng.random_range(0..3)];
            let mut e = FullEvent::new(t);
            e.project_key = p.clone();
            (e.user_id, e.username) = (uid.into(), uname.into());
            if t == EventType::RepositoryCreated {
                (e.vcs_name, e.repository) = ("github".into(), repo.clone());
            }
            if t == EventType::VariableSetItemUpdated {
                (e.variable_set, e.item) = ("secrets".into(), "token".into());
            }
            self.push(e);
            return;
        }
        // A workflow run through its whole life.
        self.run_counter += 1;
        let wf = WORKFLOWS[self.rng.random_range(0..WORKFLOWS.len())];
        let run_id = uuid_like(&mut self.rng);
        let run_number = self.run_counter as i64;
        let run = |t: EventType, status: &str| {
            let mut e = FullEvent::new(t);
            (e.project_key, e.vcs_name, e.repository, e.repository_origin) =
                (p.clone(), "github".into(), repo.clone(), repo.clone());
            (e.workflow, e.workflow_run_id, e.run_number, e.run_attempt) =
                (wf.into(), run_id.clone(), run_number, 1);
            (e.status, e.user_id, e.username) = (status.into(), uid.into(), uname.into());
            e.user_mail = format!("{uname}@example.org");
            e
        };
        self.push(run(EventType::RunCrafted, "Crafting"));
        self.push(run(EventType::RunBuilding, "Building"));
        let region = REGIONS[self.rng.random_range(0..REGIONS.len())];
        let jobs = self.rng.random_range(2..=4);
        let mut failed = false;
        for job in JOBS.iter().take(jobs) {
            let run_job_id = uuid_like(&mut self.rng);
            let ok = self.rng.random_range(0..20) > 0;
            failed |= !ok;
            let results = self.rng.random_range(0..=2);
            let mut steps: Vec<(EventType, &str)> = vec![
                (EventType::RunJobEnqueued, "Waiting"),
                (EventType::RunJobScheduled, "Scheduling"),
                (EventType::RunJobBuilding, "Building"),
            ];
            for _ in 0..results {
                steps.push((EventType::RunJobRunResultAdded, "Building"));
            }
            steps.push((EventType::RunJobEnded, if ok { "Success" } else { "Fail" }));
            for (t, status) in steps {
                let mut e = FullEvent::new(t);
                (e.project_key, e.vcs_name, e.repository, e.workflow) =
                    (p.clone(), "github".into(), repo.clone(), wf.into());
                (e.workflow_run_id, e.run_job_id, e.run_number, e.run_attempt) =
                    (run_id.clone(), run_job_id.clone(), run_number, 1);
                (e.region, e.job_id, e.status) = (region.into(), (*job).into(), status.into());
                (e.user_id, e.username) = (uid.into(), uname.into());
                if t != EventType::RunJobEnqueued {
                    (e.hatchery, e.model_type, e.model_osarch) = (
                        format!("swarm-{region}"),
                        "docker".into(),
                        "linux/amd64".into(),
                    );
                }
                if t == EventType::RunJobRunResultAdded {
                    e.run_result = format!("{job}-artifact.tar.gz");
                    e.model_osarch.clear();
                }
                self.push(e);
            }
        }
        self.push(run(
            EventType::RunEnded,
            if failed { "Fail" } else { "Success" },
        ));
    }
}

fn uuid_like(rng: &mut SmallRng) -> String {
    let v: u128 = rng.random();
    let h = format!("{v:032x}");
    format!(
        "{}-{}-{}-{}-{}",
        &h[..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..]
    )
}

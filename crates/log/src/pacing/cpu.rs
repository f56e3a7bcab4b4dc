//! How busy the CPU this process may use is: the machine's (`/proc/stat`)
//! or its container quota's (cgroup v2 `cpu.max`), whichever is busier.
//! Reads files only; decides nothing.

use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio::time::Instant;

/// Cumulative CPU time of the machine, in `/proc/stat` ticks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct CpuTimes {
    pub(super) busy: u64,
    pub(super) total: u64,
}

impl CpuTimes {
    /// Reads the machine's line of `/proc/stat`; `None` where there is none.
    pub(super) fn read() -> Option<CpuTimes> {
        let text = std::fs::read_to_string("/proc/stat").ok()?;
        CpuTimes::parse(&text)
    }

    /// Parses the aggregate `cpu` line: user nice system idle iowait irq
    /// softirq steal …; idle and iowait are the time the CPUs had nothing to
    /// run (guest time is already inside user and nice).
    pub(super) fn parse(stat: &str) -> Option<CpuTimes> {
        let line = stat.lines().find(|l| l.starts_with("cpu "))?;
        let fields: Vec<u64> = line
            .split_whitespace()
            .skip(1)
            .take(8)
            .map(|f| f.parse().ok())
            .collect::<Option<_>>()?;
        if fields.len() < 4 {
            return None;
        }
        let total: u64 = fields.iter().sum();
        let idle = fields[3] + fields.get(4).copied().unwrap_or(0);
        Some(CpuTimes {
            busy: total - idle,
            total,
        })
    }

    /// The busy fraction between `earlier` and `self`.
    pub(super) fn busy_since(&self, earlier: &CpuTimes) -> f64 {
        let total = self.total.saturating_sub(earlier.total);
        if total == 0 {
            return 0.0;
        }
        self.busy.saturating_sub(earlier.busy) as f64 / total as f64
    }
}

/// A CPU quota this process runs under (cgroup v2 `cpu.max`, as a container
/// limit sets it): the machine may be idle while the quota is spent.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Quota {
    /// The `cpu.stat` of the cgroup that sets the limit.
    stat: PathBuf,
    /// The limit, in CPUs.
    pub(super) cpus: f64,
}

impl Quota {
    /// This process's quota, if any.
    fn find() -> Option<Quota> {
        let own = std::fs::read_to_string("/proc/self/cgroup").ok()?;
        Quota::at(Path::new("/sys/fs/cgroup"), &own)
    }

    /// The smallest quota set on the process's cgroup (from the text of
    /// `/proc/self/cgroup`) or one of its ancestors, under `root`.
    pub(super) fn at(root: &Path, own: &str) -> Option<Quota> {
        let rel = own.lines().find_map(|l| l.strip_prefix("0::"))?;
        let mut dir = root.join(rel.trim().trim_start_matches('/'));
        let mut best: Option<Quota> = None;
        while dir.starts_with(root) {
            let cpus = std::fs::read_to_string(dir.join("cpu.max"))
                .ok()
                .and_then(|t| parse_cpu_max(&t));
            if let Some(cpus) = cpus
                && best.as_ref().is_none_or(|b| cpus < b.cpus)
            {
                best = Some(Quota {
                    stat: dir.join("cpu.stat"),
                    cpus,
                });
            }
            if !dir.pop() {
                break;
            }
        }
        best
    }

    /// CPU time used by the cgroup so far.
    fn usage(&self) -> Option<Duration> {
        let text = std::fs::read_to_string(&self.stat).ok()?;
        parse_usage(&text)
    }
}

/// `cpu.max`: `"max 100000"` (no limit) or `"QUOTA PERIOD"` (µs), in CPUs.
pub(super) fn parse_cpu_max(text: &str) -> Option<f64> {
    let mut parts = text.split_whitespace();
    let quota: f64 = parts.next()?.parse().ok()?;
    let period: f64 = parts.next()?.parse().ok()?;
    (quota > 0.0 && period > 0.0).then(|| quota / period)
}

/// `usage_usec` of a `cpu.stat`.
pub(super) fn parse_usage(text: &str) -> Option<Duration> {
    text.lines()
        .find_map(|l| l.strip_prefix("usage_usec "))
        .and_then(|v| v.trim().parse().ok())
        .map(Duration::from_micros)
}

/// How busy the CPU this process may use is: the machine's (`/proc/stat`)
/// or its quota's, whichever is busier.
pub(super) struct CpuMeter {
    machine: Option<CpuTimes>,
    pub(super) quota: Option<(Quota, Duration, Instant)>,
}

impl CpuMeter {
    /// `None` where neither can be read (not Linux).
    pub(super) fn new() -> Option<CpuMeter> {
        let machine = CpuTimes::read();
        let quota = Quota::find().and_then(|q| {
            let used = q.usage()?;
            Some((q, used, Instant::now()))
        });
        (machine.is_some() || quota.is_some()).then_some(CpuMeter { machine, quota })
    }

    /// The busy fraction since the last call.
    pub(super) fn busy(&mut self) -> f64 {
        let mut busy: f64 = 0.0;
        if let Some(earlier) = self.machine
            && let Some(now) = CpuTimes::read()
        {
            busy = now.busy_since(&earlier);
            self.machine = Some(now);
        }
        if let Some((q, used, at)) = &mut self.quota
            && let Some(now) = q.usage()
        {
            let wall = at.elapsed().as_secs_f64() * q.cpus;
            if wall > 0.0 {
                busy = busy.max(now.saturating_sub(*used).as_secs_f64() / wall);
            }
            (*used, *at) = (now, Instant::now());
        }
        busy.min(1.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proc_stat_busy_fraction() {
        let a = CpuTimes::parse("cpu  100 0 50 800 50 0 0 0 0 0\ncpu0 1 2 3 4\n").expect("parse");
        assert_eq!(
            a,
            CpuTimes {
                busy: 150,
                total: 1000
            }
        );
        let b = CpuTimes::parse("cpu  250 0 100 850 50 0 0 0 0 0\n").expect("parse");
        assert!((b.busy_since(&a) - 0.8).abs() < 1e-9);
        assert_eq!(a.busy_since(&a), 0.0);
        assert_eq!(CpuTimes::parse("intr 1 2 3\n"), None);
        assert_eq!(CpuTimes::parse("cpu  x y\n"), None);
    }

    #[test]
    fn a_container_quota_is_found_on_the_cgroup_or_an_ancestor() {
        assert_eq!(parse_cpu_max("max 100000\n"), None);
        assert_eq!(parse_cpu_max("200000 100000\n"), Some(2.0));
        assert_eq!(parse_cpu_max("50000 100000"), Some(0.5));
        assert_eq!(parse_cpu_max("x"), None);
        assert_eq!(
            parse_usage("usage_usec 1500000\nuser_usec 1000000\n"),
            Some(Duration::from_millis(1500))
        );
        assert_eq!(parse_usage("user_usec 1\n"), None);

        let root = tempfile::tempdir().expect("tempdir");
        let pod = root.path().join("kubepods/pod1");
        let own = pod.join("ctr");
        std::fs::create_dir_all(&own).expect("mkdir");
        std::fs::write(own.join("cpu.max"), "max 100000\n").expect("write");
        let proc_self = "0::/kubepods/pod1/ctr\n";
        // No limit anywhere.
        assert_eq!(Quota::at(root.path(), proc_self), None);
        // The pod's limit holds for the container.
        std::fs::write(pod.join("cpu.max"), "150000 100000\n").expect("write");
        assert_eq!(
            Quota::at(root.path(), proc_self),
            Some(Quota {
                stat: pod.join("cpu.stat"),
                cpus: 1.5
            })
        );
        // The smallest wins.
        std::fs::write(own.join("cpu.max"), "50000 100000\n").expect("write");
        assert_eq!(Quota::at(root.path(), proc_self).map(|q| q.cpus), Some(0.5));
        // cgroup v1 only: nothing to read.
        assert_eq!(Quota::at(root.path(), "4:cpu,cpuacct:/docker/x\n"), None);
    }

    #[test]
    fn a_spent_quota_counts_as_a_busy_cpu() {
        let dir = tempfile::tempdir().expect("tempdir");
        let stat = dir.path().join("cpu.stat");
        std::fs::write(&stat, "usage_usec 1000\n").expect("write");
        let q = Quota { stat, cpus: 0.5 };
        // The meter's last sample is set 20 ms back instead of waiting 20 ms.
        let ago = || {
            Instant::now()
                .checked_sub(Duration::from_millis(20))
                .expect("an uptime over 20 ms")
        };
        let mut meter = CpuMeter {
            machine: None,
            quota: Some((q.clone(), q.usage().expect("usage"), ago())),
        };
        assert_eq!(meter.busy(), 0.0);
        if let Some((_, _, at)) = &mut meter.quota {
            *at = ago();
        }
        // A second of CPU in 20 ms of a half-CPU quota: spent.
        std::fs::write(&q.stat, "usage_usec 1001000\n").expect("write");
        assert_eq!(meter.busy(), 1.0);
    }
}

//! How many CPUs this process may really use: a container's cgroup quota, else the
//! cores it may run on. Engines default to one intra-op thread per core, which in a
//! container limited to 2 CPUs on a 64-core host means 64 threads fighting over 2.

use std::path::Path;

/// CPUs available to this process (at least 1).
pub fn available_cpus() -> usize {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let quota = cgroup_v2_quota(Path::new("/sys/fs/cgroup/cpu.max"))
        .or_else(|| cgroup_v1_quota(Path::new("/sys/fs/cgroup/cpu")));
    quota.map_or(cores, |q| q.min(cores)).max(1)
}

/// Intra-op threads for each of `instances` instances: the configured number, or an
/// equal share of the available CPUs so the instances together never oversubscribe.
pub fn threads_per_instance(configured: u32, instances: u32) -> u32 {
    if configured > 0 {
        return configured;
    }
    (available_cpus() as u32 / instances.max(1)).max(1)
}

/// `cpu.max` holds `"<quota> <period>"` or `"max <period>"`.
fn cgroup_v2_quota(file: &Path) -> Option<usize> {
    parse_quota(
        std::fs::read_to_string(file)
            .ok()?
            .split_whitespace()
            .collect::<Vec<_>>()
            .as_slice(),
    )
}

fn cgroup_v1_quota(dir: &Path) -> Option<usize> {
    let quota = std::fs::read_to_string(dir.join("cpu.cfs_quota_us")).ok()?;
    let period = std::fs::read_to_string(dir.join("cpu.cfs_period_us")).ok()?;
    parse_quota(&[quota.trim(), period.trim()])
}

/// CPUs from a quota and a period (rounded up: 1.5 CPUs allow 2 busy threads part of
/// the time); `None` when unlimited ("max" or -1).
fn parse_quota(fields: &[&str]) -> Option<usize> {
    let [quota, period] = fields else { return None };
    let quota: i64 = quota.parse().ok()?;
    let period: i64 = period.parse().ok()?;
    (quota > 0 && period > 0).then(|| ((quota + period - 1) / period) as usize)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotas_become_cpus() {
        assert_eq!(parse_quota(&["200000", "100000"]), Some(2));
        assert_eq!(parse_quota(&["150000", "100000"]), Some(2));
        assert_eq!(parse_quota(&["50000", "100000"]), Some(1));
        assert_eq!(parse_quota(&["max", "100000"]), None);
        assert_eq!(parse_quota(&["-1", "100000"]), None);
        assert_eq!(parse_quota(&["100000"]), None);
    }

    #[test]
    fn threads_are_shared_between_instances() {
        assert_eq!(threads_per_instance(3, 4), 3);
        let cpus = available_cpus() as u32;
        assert_eq!(threads_per_instance(0, 1), cpus);
        assert_eq!(threads_per_instance(0, cpus * 2), 1);
    }
}

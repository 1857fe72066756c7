//! CPU time of the stack's processes, read from `/proc`: what a benchmark divides by the work
//! done to get CPU per request. Unlike throughput, CPU per request barely moves when other
//! programs share the machine, so it compares two builds measured on a busy machine.

/// CPU seconds (user + system) used so far by the processes of process group `pgid` (a service
/// and its children: `wrangler dev`, its Node.js and its workerd), split as (workerd, the
/// rest), from `/proc/<pid>/stat`.
pub fn group_seconds(pgid: i32) -> (f64, f64) {
    let mut workerd = 0u64;
    let mut rest = 0u64;
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else { continue };
        // The command name (field 2) may hold spaces; the fields after its ')' are fixed.
        let Some((head, tail)) = stat.rsplit_once(')') else { continue };
        let fields: Vec<&str> = tail.split_whitespace().collect();
        // After ')': state(0) ppid(1) pgrp(2) ... utime(11) stime(12)
        if fields.get(2).and_then(|g| g.parse::<i32>().ok()) != Some(pgid) {
            continue;
        }
        let ticks = |i: usize| fields.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
        let used = ticks(11) + ticks(12);
        if head.ends_with("(workerd") {
            workerd += used;
        } else {
            rest += used;
        }
    }
    (workerd as f64 / TICKS_PER_SEC, rest as f64 / TICKS_PER_SEC)
}

/// CPU seconds used so far by this process (all its threads).
pub fn own_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| fields.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    (ticks(11) + ticks(12)) as f64 / TICKS_PER_SEC
}

/// USER_HZ on Linux.
const TICKS_PER_SEC: f64 = 100.0;

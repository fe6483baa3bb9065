//! CPU time of other processes, read from `/proc`: how the load test and `benches/pg_batch.rs`
//! price PostgreSQL's share of the shared cores (its work happens in processes of its own,
//! which no in-process profile sees). Included by both with `#[path]`.

/// CPU time (user + system, clock ticks) so far of each process whose command name is `comm`.
pub fn processes_cpu(comm: &str) -> std::collections::HashMap<u32, u64> {
    let mut found = std::collections::HashMap::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|name| name.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        let Some((head, rest)) = stat.rsplit_once(')') else {
            continue;
        };
        if head.split_once('(').map(|(_, name)| name) != Some(comm) {
            continue;
        }
        let fields: Vec<&str> = rest.split_whitespace().collect();
        let tick = |i: usize| fields.get(i).and_then(|f| f.parse::<u64>().ok());
        if let (Some(user), Some(system)) = (tick(11), tick(12)) {
            found.insert(pid, user + system);
        }
    }
    found
}

/// CPU ticks spent between two [`processes_cpu`] samples by the processes alive at both.
pub fn processes_cpu_delta(
    before: &std::collections::HashMap<u32, u64>,
    after: &std::collections::HashMap<u32, u64>,
) -> u64 {
    after
        .iter()
        .filter_map(|(pid, ticks)| {
            before
                .get(pid)
                .map(|earlier| ticks.saturating_sub(*earlier))
        })
        .sum()
}

//! `/metrics` lines that do not come from the workers: build info, the process (CPU, memory,
//! file descriptors, from /proc/self) and the health and ejection state of every endpoint (from
//! the endpoint supervisor's table).

use std::fmt::Write;

use crate::config::Snapshot;
use crate::metrics::prometheus_header as header;
use crate::runtime::endpoints::StatusTable;

/// Appends the build, process and endpoint metrics to `o` (Prometheus text format).
pub fn append(o: &mut String, snapshot: &Snapshot, status: &StatusTable) {
    header(o, "ringway_build_info", "gauge", "Always 1; the labels name the build.");
    let _ = writeln!(o, "ringway_build_info{{version=\"{}\"}} 1", env!("CARGO_PKG_VERSION"));
    process(o);
    endpoints(o, snapshot, status);
}

/// The standard `process_*` metrics (the names client libraries use), read from /proc/self.
fn process(o: &mut String) {
    let ticks = USER_HZ;
    if let Ok(stat) = std::fs::read_to_string("/proc/self/stat") {
        // fields after the parenthesised command name; utime and stime are fields 14 and 15
        let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
        let f: Vec<&str> = rest.split_whitespace().collect();
        let num = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
        // rest starts at field 3 (state): field n is f[n - 3]
        let cpu = (num(14 - 3) + num(15 - 3)) / ticks;
        header(o, "process_cpu_seconds_total", "counter", "User and system CPU time spent, in seconds.");
        let _ = writeln!(o, "process_cpu_seconds_total {cpu}");
        let rss_pages = num(24 - 3);
        header(o, "process_resident_memory_bytes", "gauge", "Resident memory size in bytes.");
        let _ = writeln!(o, "process_resident_memory_bytes {}", rss_pages * PAGE_BYTES);
        let vsize = num(23 - 3);
        header(o, "process_virtual_memory_bytes", "gauge", "Virtual memory size in bytes.");
        let _ = writeln!(o, "process_virtual_memory_bytes {vsize}");
        let start_ticks = num(22 - 3);
        if let Some(boot) = boot_time() {
            header(
                o,
                "process_start_time_seconds",
                "gauge",
                "Start time of the process since the Unix epoch, in seconds.",
            );
            let _ = writeln!(o, "process_start_time_seconds {}", boot + start_ticks / ticks);
        }
    }
    if let Ok(dir) = std::fs::read_dir("/proc/self/fd") {
        header(o, "process_open_fds", "gauge", "Number of open file descriptors.");
        let _ = writeln!(o, "process_open_fds {}", dir.count());
    }
    if let Ok(limits) = std::fs::read_to_string("/proc/self/limits") {
        if let Some(max) = limits
            .lines()
            .find(|l| l.starts_with("Max open files"))
            .and_then(|l| l.split_whitespace().nth(3))
            .and_then(|v| v.parse::<u64>().ok())
        {
            header(o, "process_max_fds", "gauge", "Maximum number of open file descriptors.");
            let _ = writeln!(o, "process_max_fds {max}");
        }
    }
}

/// Clock ticks per second in /proc/self/stat (USER_HZ, 100 on Linux).
const USER_HZ: f64 = 100.0;
/// Bytes per page for the RSS field of /proc/self/stat.
const PAGE_BYTES: f64 = 4096.0;

fn boot_time() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    stat.lines().find_map(|l| l.strip_prefix("btime ")).and_then(|v| v.trim().parse().ok())
}

fn endpoints(o: &mut String, snapshot: &Snapshot, status: &StatusTable) {
    let Ok(table) = status.lock() else { return };
    type Field = (&'static str, &'static str, &'static str, fn(&crate::runtime::endpoints::EndpointStatus) -> u64);
    let fields: [Field; 3] = [
        (
            "ringway_upstream_endpoint_healthy",
            "gauge",
            "1 while active health checks pass (or none are configured).",
            |e| u64::from(e.healthy),
        ),
        (
            "ringway_upstream_endpoint_ejected",
            "gauge",
            "1 while passive outlier detection has ejected the endpoint.",
            |e| u64::from(e.ejected_for_ms.is_some()),
        ),
        ("ringway_upstream_endpoint_ejections_total", "counter", "Times the endpoint was ejected.", |e| {
            u64::from(e.times_ejected)
        }),
    ];
    for (name, kind, help, get) in fields {
        header(o, name, kind, help);
        for (u, states) in snapshot.upstreams.iter().zip(table.iter()) {
            for (ep, st) in u.endpoints.iter().zip(states) {
                let _ = writeln!(o, "{name}{{upstream=\"{}\",endpoint=\"{}\"}} {}", u.name, ep.addr, get(st));
            }
        }
    }
}

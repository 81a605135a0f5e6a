//! Allowed-CPU discovery and pinning.
//!
//! Workers are pinned to CPUs from the process's *allowed* set (`sched_getaffinity`), so
//! `taskset`, cgroups cpusets and container limits are honoured (never `id % nproc`).
#![allow(unsafe_code)]

/// CPU ids the process may run on, ascending. Falls back to `0..available_parallelism`.
pub fn allowed_cpus() -> Vec<usize> {
    // SAFETY: cpu_set_t is plain data; zeroed is its documented empty state (CPU_ZERO).
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: valid pointer and size for the calling thread's mask.
    let rc = unsafe { libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) };
    if rc == 0 {
        // SAFETY: `set` was filled by sched_getaffinity; CPU_ISSET only reads it.
        let cpus: Vec<usize> =
            (0..libc::CPU_SETSIZE as usize).filter(|&c| unsafe { libc::CPU_ISSET(c, &set) }).collect();
        if !cpus.is_empty() {
            return cpus;
        }
    }
    (0..std::thread::available_parallelism().map_or(1, |n| n.get())).collect()
}

/// Pins the calling thread to `cpu`; failure is reported, not fatal (the worker still runs).
pub fn pin_current_thread(cpu: usize) -> std::io::Result<()> {
    monoio::utils::bind_to_cpu_set([cpu]).map_err(std::io::Error::from)
}

#[cfg(test)]
mod tests {
    #[test]
    fn allowed_set_is_nonempty_and_sorted() {
        let cpus = super::allowed_cpus();
        assert!(!cpus.is_empty());
        assert!(cpus.windows(2).all(|w| w[0] < w[1]));
    }
}

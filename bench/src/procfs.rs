//! What the kernel knows about processes: memory, CPU time, file descriptors.
//! Linux only (reads `/proc`); on other systems the numbers are simply absent.

use std::collections::HashMap;

/// Resident memory of a process in KiB: (now, peak).
pub fn rss_kib(pid: u32) -> Option<(u64, u64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|v| v.parse::<u64>().ok())
    };
    Some((field("VmRSS:")?, field("VmHWM:")?))
}

/// User plus system CPU time of a process (all its threads), in clock ticks.
pub fn cpu_ticks(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    parse_stat_ticks(&stat)
}

/// CPU ticks of this process.
pub fn own_cpu_ticks() -> u64 {
    cpu_ticks(std::process::id()).unwrap_or(0)
}

/// Fields 14 and 15 (utime, stime) of `/proc/<pid>/stat`; the command name
/// (field 2) may contain spaces, so count from the closing parenthesis.
fn parse_stat_ticks(stat: &str) -> Option<u64> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // rest starts at field 3 (state): utime is field 14, i.e. index 11 here.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(utime + stime)
}

/// Clock ticks per second (for `cpu_ticks`).
pub fn ticks_per_second() -> f64 {
    // SAFETY: sysconf has no preconditions.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if ticks > 0 { ticks as f64 } else { 100.0 }
}

/// Busy and total ticks of the whole machine (all cores), from `/proc/stat`.
pub fn machine_ticks() -> Option<(u64, u64)> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let line = stat.lines().find(|l| l.starts_with("cpu "))?;
    let values: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|v| v.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq steal (guest is inside user).
    let total: u64 = values.iter().take(8).sum();
    let idle = values.get(3).copied().unwrap_or(0) + values.get(4).copied().unwrap_or(0);
    Some((total - idle, total))
}

/// The 1-minute load average (how busy the machine was, others included).
pub fn load_average() -> Option<f64> {
    std::fs::read_to_string("/proc/loadavg")
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// Open files the idle scenarios want: 50,000 waiting requests are as many
/// sockets in the bench and in the broker, plus what each needs besides.
const WANTED_OPEN_FILES: u64 = 131_072;

/// Raise the limit of open files (thousands of waiting requests need as many
/// sockets); children inherit it. The soft limit goes up to the hard one, and
/// when the process may (root), the hard one up to [`WANTED_OPEN_FILES`].
/// Returns the new soft limit.
pub fn raise_open_files() -> u64 {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit write to and read from a valid rlimit struct.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) != 0 {
            return 0;
        }
        let wanted = limit.rlim_max.max(WANTED_OPEN_FILES);
        for max in [wanted, limit.rlim_max] {
            let raised = libc::rlimit {
                rlim_cur: max,
                rlim_max: max,
            };
            if max >= limit.rlim_cur && libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                limit = raised;
                break;
            }
        }
    }
    limit.rlim_cur
}

/// CPU time of several groups of processes between two moments.
#[derive(Debug, Clone, Default)]
pub struct CpuSnapshot {
    pub per_pid: HashMap<u32, u64>,
    pub own: u64,
    pub machine: Option<(u64, u64)>,
}

impl CpuSnapshot {
    pub fn take(pids: impl IntoIterator<Item = u32>) -> CpuSnapshot {
        CpuSnapshot {
            per_pid: pids
                .into_iter()
                .filter_map(|pid| cpu_ticks(pid).map(|t| (pid, t)))
                .collect(),
            own: own_cpu_ticks(),
            machine: machine_ticks(),
        }
    }

    /// Ticks the given pids used since `earlier` (a pid new since then counts from zero).
    pub fn used_since(&self, earlier: &CpuSnapshot, pids: &[u32]) -> u64 {
        pids.iter()
            .filter_map(|pid| {
                let now = self.per_pid.get(pid)?;
                Some(now.saturating_sub(earlier.per_pid.get(pid).copied().unwrap_or(0)))
            })
            .sum()
    }
}

/// The kernel's per-CPU queue of received packets (`net.core.netdev_max_backlog`,
/// 1000 by default). Every loopback packet passes through it: with tens of
/// thousands of waiting connections on one host, the bursts of their TCP
/// keepalive probes overflow it, and connections whose probes are dropped
/// three times are aborted (`Connection timed out`), an artifact of running
/// brokers and clients on one machine that a network card does not have.
/// Raised while the guard lives (when this process may: as root), then put back.
pub struct PacketBacklog {
    previous: Option<u64>,
}

const NETDEV_MAX_BACKLOG: &str = "/proc/sys/net/core/netdev_max_backlog";

impl PacketBacklog {
    /// Raise the queue to at least `wanted`; says on stderr what it did.
    pub fn raise(wanted: u64) -> PacketBacklog {
        let current = std::fs::read_to_string(NETDEV_MAX_BACKLOG)
            .ok()
            .and_then(|text| text.trim().parse::<u64>().ok());
        let Some(current) = current else {
            return PacketBacklog { previous: None };
        };
        if current >= wanted {
            return PacketBacklog { previous: None };
        }
        match std::fs::write(NETDEV_MAX_BACKLOG, wanted.to_string()) {
            Ok(()) => {
                eprintln!(
                    "bench: net.core.netdev_max_backlog {current} -> {wanted} for this scenario \
                     (loopback keepalive bursts; put back afterwards)"
                );
                PacketBacklog {
                    previous: Some(current),
                }
            }
            Err(error) => {
                eprintln!(
                    "bench: cannot raise net.core.netdev_max_backlog from {current} ({error}): \
                     with this many connections on loopback, dropped packets may abort some"
                );
                PacketBacklog { previous: None }
            }
        }
    }
}

impl Drop for PacketBacklog {
    fn drop(&mut self) {
        if let Some(previous) = self.previous {
            let _ = std::fs::write(NETDEV_MAX_BACKLOG, previous.to_string());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_ticks_survive_spaces_and_parentheses_in_the_name() {
        let stat =
            "1234 (tokio (runtime) w) S 1 1234 1234 0 -1 4194304 100 0 0 0 250 40 0 0 20 0 9 0";
        assert_eq!(parse_stat_ticks(stat), Some(290));
    }

    #[test]
    fn own_process_is_readable() {
        assert!(rss_kib(std::process::id()).is_some_and(|(rss, peak)| rss > 0 && peak >= rss));
        assert!(machine_ticks().is_some_and(|(busy, total)| busy <= total));
    }
}

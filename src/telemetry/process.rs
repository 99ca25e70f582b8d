//! The process's own resources for `/metrics`, read from Linux's `/proc/self`
//! at scrape time under the conventional unprefixed names
//! (`process_resident_memory_bytes`, `process_open_fds`, ...), so that the
//! broker and the agent can be graphed side by side. Elsewhere (no `/proc`)
//! the metrics are simply absent.

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;

/// Linux reports CPU times in /proc in clock ticks of 1/100 s (USER_HZ is
/// fixed at 100 in the kernel's ABI, whatever the kernel's own tick rate).
const TICKS_PER_SECOND: f64 = 100.0;

/// What one look at `/proc/self` found.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Sample {
    pub resident_bytes: Option<u64>,
    pub open_fds: Option<u64>,
    pub max_fds: Option<u64>,
    pub cpu_seconds: Option<f64>,
    pub start_time_seconds: Option<f64>,
}

/// Read `/proc/self` now.
pub fn sample() -> Sample {
    let stat = std::fs::read_to_string("/proc/self/stat").ok();
    let stat = stat.as_deref().and_then(stat_fields);
    let page_size = 4096; // every Linux platform this is built for
    Sample {
        resident_bytes: std::fs::read_to_string("/proc/self/statm")
            .ok()
            .and_then(|text| text.split_whitespace().nth(1)?.parse::<u64>().ok())
            .map(|pages| pages * page_size),
        open_fds: std::fs::read_dir("/proc/self/fd")
            .ok()
            // The directory handle itself is one of the entries while it is read.
            .map(|entries| (entries.count() as u64).saturating_sub(1)),
        max_fds: std::fs::read_to_string("/proc/self/limits")
            .ok()
            .and_then(|text| max_open_files(&text)),
        cpu_seconds: stat
            .as_ref()
            .map(|s| (s.utime + s.stime) as f64 / TICKS_PER_SECOND),
        start_time_seconds: stat.as_ref().and_then(|s| {
            let boot = boot_time(&std::fs::read_to_string("/proc/stat").ok()?)?;
            Some(boot as f64 + s.starttime as f64 / TICKS_PER_SECOND)
        }),
    }
}

struct Stat {
    utime: u64,
    stime: u64,
    starttime: u64,
}

/// Fields 14, 15 and 22 of `/proc/self/stat`, counted after the command name
/// (which is in parentheses and may itself contain spaces and parentheses).
fn stat_fields(text: &str) -> Option<Stat> {
    let after_name = &text[text.rfind(')')? + 1..];
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    // after_name starts at field 3 (state).
    let field = |n: usize| fields.get(n - 3)?.parse::<u64>().ok();
    Some(Stat {
        utime: field(14)?,
        stime: field(15)?,
        starttime: field(22)?,
    })
}

fn max_open_files(limits: &str) -> Option<u64> {
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line["Max open files".len()..]
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

fn boot_time(stat: &str) -> Option<u64> {
    stat.lines()
        .find_map(|l| l.strip_prefix("btime "))?
        .trim()
        .parse()
        .ok()
}

/// The collector that writes a [`Sample`] on every scrape.
#[derive(Debug, Default)]
pub struct ProcessCollector;

impl Collector for ProcessCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let now = sample();
        let gauges = [
            (
                "process_resident_memory_bytes",
                "Resident memory size in bytes",
                now.resident_bytes,
            ),
            (
                "process_open_fds",
                "Open file descriptors (sockets included)",
                now.open_fds,
            ),
            (
                "process_max_fds",
                "The limit of open file descriptors (LimitNOFILE)",
                now.max_fds,
            ),
        ];
        for (name, help, value) in gauges {
            if let Some(value) = value {
                let gauge = ConstGauge::new(value as i64);
                let metric = encoder.encode_descriptor(name, help, None, gauge.metric_type())?;
                gauge.encode(metric)?;
            }
        }
        if let Some(seconds) = now.cpu_seconds {
            let counter = ConstCounter::new(seconds);
            let metric = encoder.encode_descriptor(
                "process_cpu_seconds",
                "User and system CPU time in seconds",
                None,
                counter.metric_type(),
            )?;
            counter.encode(metric)?;
        }
        if let Some(seconds) = now.start_time_seconds {
            let gauge = ConstGauge::new(seconds);
            let metric = encoder.encode_descriptor(
                "process_start_time_seconds",
                "Start time of the process since the Unix epoch in seconds",
                None,
                gauge.metric_type(),
            )?;
            gauge.encode(metric)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_fields_survive_odd_command_names() {
        let text = "1234 (a (b) c) S 1 2 3 4 5 6 7 8 9 10 250 50 0 0 20 0 1 0 4200 1000 300";
        let stat = stat_fields(text).unwrap();
        assert_eq!((stat.utime, stat.stime, stat.starttime), (250, 50, 4200));
    }

    #[test]
    fn limits_and_boot_time_parse() {
        let limits = "Limit                     Soft Limit           Hard Limit           Units\nMax open files            65536                524288               files\n";
        assert_eq!(max_open_files(limits), Some(65536));
        assert_eq!(
            boot_time("cpu 1 2\nbtime 1700000000\n"),
            Some(1_700_000_000)
        );
    }

    #[test]
    fn this_process_is_seen() {
        if !std::path::Path::new("/proc/self/stat").exists() {
            return;
        }
        let now = sample();
        assert!(now.resident_bytes.unwrap() > 0);
        assert!(now.open_fds.unwrap() >= 3);
        assert!(now.max_fds.unwrap() >= now.open_fds.unwrap());
        assert!(now.cpu_seconds.is_some() && now.start_time_seconds.unwrap() > 1e9);
    }
}

//! The targets of the issue, checked against what was measured.

use serde::Serialize;

use super::idle::Idle;
use super::scenario::RoundTrips;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Verdict {
    Pass,
    Miss,
    NotRun,
}

impl Verdict {
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Pass => "PASS",
            Verdict::Miss => "MISS",
            Verdict::NotRun => "not run",
        }
    }

    fn of(met: bool) -> Verdict {
        if met { Verdict::Pass } else { Verdict::Miss }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Check {
    pub target: String,
    pub measured: String,
    pub verdict: Verdict,
}

fn check(target: impl Into<String>, measured: Option<(String, bool)>) -> Check {
    let (measured, verdict) = match measured {
        Some((measured, met)) => (measured, Verdict::of(met)),
        None => ("-".into(), Verdict::NotRun),
    };
    Check {
        target: target.into(),
        measured,
        verdict,
    }
}

fn find<'a>(
    rts: &'a [RoundTrips],
    wake: &str,
    instances: usize,
    c: usize,
) -> Option<&'a RoundTrips> {
    rts.iter().find(|r| r.is_broker(wake, instances, c))
}

/// The c=1 p50 of poll divided by that of notify (1 instance each).
pub fn p50_ratio(rts: &[RoundTrips]) -> Option<f64> {
    let notify = find(rts, "notify", 1, 1)?;
    let poll = find(rts, "poll", 1, 1)?;
    (notify.latency.p50_ms > 0.0 && poll.latency.count > 0)
        .then(|| poll.latency.p50_ms / notify.latency.p50_ms)
}

/// A number with thousands separators and no decimals: 12,345.
pub fn thousands(value: f64) -> String {
    let digits = format!("{:.0}", value.abs());
    let mut out = String::new();
    for (i, d) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(d);
    }
    if value < 0.0 && digits != "0" {
        out.insert(0, '-');
    }
    out
}

/// `a / b`, for ratios of measurements (never a division by zero).
fn ratio(a: f64, b: f64) -> f64 {
    a / b.max(f64::MIN_POSITIVE)
}

/// The scenarios the targets read: the broker in notify mode on one
/// instance and on the cluster, and the raw SQL floor.
struct Measured<'a> {
    rts: &'a [RoundTrips],
    cluster_size: usize,
}

impl<'a> Measured<'a> {
    fn notify(&self, c: usize) -> Option<&'a RoundTrips> {
        find(self.rts, "notify", 1, c)
    }

    fn cluster(&self, c: usize) -> Option<&'a RoundTrips> {
        find(self.rts, "notify", self.cluster_size, c)
    }

    fn floor(&self, c: usize) -> Option<&'a RoundTrips> {
        find(self.rts, "raw-sql", 0, c)
    }
}

/// Every target of the issue, in its order. `cluster_size` is the multi-instance count.
pub fn evaluate(rts: &[RoundTrips], idle: &[Idle], cluster_size: usize) -> Vec<Check> {
    // The targets are about the broker as designed; poll idle is the comparison.
    let idle: Vec<Idle> = idle
        .iter()
        .filter(|i| i.wake == "notify")
        .cloned()
        .collect();
    let measured = Measured { rts, cluster_size };
    let mut checks = round_trip_checks(&measured);
    checks.extend(idle_checks(&idle));
    // Group commit (issue 16).
    checks.extend(group_commit_checks(&measured));
    checks.extend(group_commit_idle_checks(&idle));
    checks.push(check(
        "every round trip answered (no errors in any scenario)",
        (!rts.is_empty() || !idle.is_empty()).then(|| {
            let errors: u64 = rts.iter().map(|r| r.errors).sum::<u64>()
                + idle.iter().map(|i| i.errors).sum::<u64>();
            (format!("{errors} errors"), errors == 0)
        }),
    ));
    checks
}

/// Latency and throughput of one instance, the floor and the cluster.
fn round_trip_checks(m: &Measured) -> Vec<Check> {
    let cluster_size = m.cluster_size;
    vec![
        check(
            "c=1 p50 <= 2 ms (notify, 1 instance)",
            m.notify(1).map(|r| {
                let p50 = r.latency.p50_ms;
                (format!("{p50:.2} ms"), r.latency.count > 0 && p50 <= 2.0)
            }),
        ),
        check(
            "c=64 >= 3,000 round trips/s (notify, 1 instance)",
            m.notify(64).map(|r| {
                let rate = r.round_trips_per_sec;
                (format!("{}/s", thousands(rate)), rate >= 3000.0)
            }),
        ),
        check(
            "c=64 >= 2x the raw SQL floor",
            m.notify(64).zip(m.floor(64)).map(|(b, f)| {
                let (b, f) = (b.round_trips_per_sec, f.round_trips_per_sec);
                let ratio = ratio(b, f);
                let text = format!("{ratio:.2}x ({} vs {}/s)", thousands(b), thousands(f));
                (text, ratio >= 2.0)
            }),
        ),
        check(
            format!("{cluster_size} instances >= 0.8x 1 instance (c=64)"),
            m.notify(64).zip(m.cluster(64)).map(|(one, many)| {
                let (one, many) = (one.round_trips_per_sec, many.round_trips_per_sec);
                let ratio = ratio(many, one);
                let text = format!("{ratio:.2}x ({} vs {}/s)", thousands(many), thousands(one));
                (text, ratio >= 0.8)
            }),
        ),
        check(
            "p50 ratio poll/notify >= 20 (c=1)",
            p50_ratio(m.rts).map(|ratio| (format!("{ratio:.1}"), ratio >= 20.0)),
        ),
    ]
}

/// What waiting costs (notify mode).
fn idle_checks(idle: &[Idle]) -> Vec<Check> {
    let idle_at = |n: usize| idle.iter().find(|i| i.waiting == n);
    vec![
        check(
            "idle: <= 2 transactions/s per instance, not growing with waiters",
            (!idle.is_empty()).then(|| {
                let measured: Vec<String> = idle
                    .iter()
                    .map(|i| format!("{} at {}", idle_rate(i), thousands(i.waiting as f64)))
                    .collect();
                let met = idle
                    .iter()
                    .all(|i| i.transactions_per_sec / i.instances as f64 <= 2.0);
                (measured.join(", "), met)
            }),
        ),
        check(
            "idle 1,000 waiting: <= pool size + 2 connections per instance",
            idle_at(1000).map(|i| {
                let limit = (i.pool_size + 2) * i.instances;
                (
                    format!("{} (limit {limit})", i.peak_connections),
                    i.peak_connections <= limit as i64,
                )
            }),
        ),
        check(
            "idle 1,000 waiting: broker RSS <= 64 MiB",
            idle_at(1000).map(|i| (format!("{:.1} MiB", i.rss_mib), i.rss_mib <= 64.0)),
        ),
        check(
            "idle 10,000 waiting: broker RSS <= 256 MiB",
            idle_at(10_000).map(|i| (format!("{:.1} MiB", i.rss_mib), i.rss_mib <= 256.0)),
        ),
        check(
            "idle 10,000 waiting: no errors",
            idle_at(10_000).map(|i| (format!("{} errors", i.errors), i.errors == 0)),
        ),
    ]
}

/// Group commit's round-trip targets (issue 16).
fn group_commit_checks(m: &Measured) -> Vec<Check> {
    let cluster_size = m.cluster_size;
    vec![
        check(
            "c=64 >= 4x the raw SQL floor (notify, 1 instance)",
            m.notify(64).zip(m.floor(64)).map(|(b, f)| {
                let ratio = ratio(b.round_trips_per_sec, f.round_trips_per_sec);
                (format!("{ratio:.2}x"), ratio >= 4.0)
            }),
        ),
        check(
            "c=64 <= 1.0 transactions per round trip (notify, 1 instance)",
            m.notify(64).map(|r| {
                let tx = r.transactions_per_round_trip;
                (format!("{tx:.2}"), tx <= 1.0)
            }),
        ),
        check(
            "c=1 p50 <= the raw SQL floor's c=1 p50",
            m.notify(1).zip(m.floor(1)).map(|(b, f)| {
                (
                    format!("{:.2} ms vs {:.2} ms", b.latency.p50_ms, f.latency.p50_ms),
                    b.latency.count > 0 && b.latency.p50_ms <= f.latency.p50_ms,
                )
            }),
        ),
        check(
            "c=1 p99 <= 2x its own p50 (notify, 1 instance)",
            m.notify(1).map(|r| {
                let ratio = ratio(r.latency.p99_ms, r.latency.p50_ms);
                (
                    format!("{:.2} ms = {ratio:.2}x p50", r.latency.p99_ms),
                    r.latency.count > 0 && ratio <= 2.0,
                )
            }),
        ),
        check(
            format!(
                "{cluster_size} instances: transactions per round trip <= 1.2x one instance's (c=64)"
            ),
            m.notify(64).zip(m.cluster(64)).map(|(one, many)| {
                let (one, many) = (
                    one.transactions_per_round_trip,
                    many.transactions_per_round_trip,
                );
                let ratio = ratio(many, one);
                (format!("{ratio:.2}x ({many:.2} vs {one:.2})"), ratio <= 1.2)
            }),
        ),
        check(
            format!("{cluster_size} instances >= 0.9x 1 instance's round trips/s (c=64)"),
            m.notify(64).zip(m.cluster(64)).map(|(one, many)| {
                let ratio = ratio(many.round_trips_per_sec, one.round_trips_per_sec);
                (format!("{ratio:.2}x"), ratio >= 0.9)
            }),
        ),
    ]
}

/// Group commit's idle targets (issue 16).
fn group_commit_idle_checks(idle: &[Idle]) -> Vec<Check> {
    let idle_at = |n: usize| idle.iter().find(|i| i.waiting == n);
    vec![
        check(
            "idle 10,000 waiting: <= 10 KiB RSS per waiting request over the idle baseline",
            idle_at(10_000).map(|i| {
                (
                    format!("{:.1} KiB", i.kib_per_waiting),
                    i.kib_per_waiting <= 10.0,
                )
            }),
        ),
        check(
            "idle 50,000 waiting: <= 2 transactions/s per instance, no errors",
            idle_at(50_000).map(|i| {
                (
                    format!("{}, {} errors", idle_rate(i), i.errors),
                    i.transactions_per_sec / i.instances as f64 <= 2.0 && i.errors == 0,
                )
            }),
        ),
    ]
}

/// A made-up scenario result for the tests of the pure parts.
#[cfg(test)]
pub(crate) mod tests_support {
    use crate::scenario::{CpuUse, RoundTrips};
    use crate::stats::Latency;

    pub fn rt(wake: &str, instances: usize, c: usize, rate: f64, p50: f64) -> RoundTrips {
        RoundTrips {
            scenario: format!("{wake} {instances} {c}"),
            wake: wake.into(),
            instances,
            concurrency: c,
            seconds: 6.0,
            round_trips_per_sec: rate,
            latency: Latency {
                count: 100,
                p50_ms: p50,
                p90_ms: p50 * 2.0,
                p99_ms: p50 * 4.0,
                max_ms: p50 * 8.0,
                mean_ms: p50,
            },
            measured: 100,
            completed: 120,
            errors: 0,
            first_error: None,
            transactions: 480,
            transactions_per_round_trip: 4.0,
            peak_connections: 18,
            broker_rss_peak_mib: Some(20.0),
            cpu: CpuUse::default(),
            autovacuum: false,
            batches: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::tests_support::rt;
    use super::*;

    #[test]
    fn ratio_and_verdicts() {
        let rts = vec![
            rt("notify", 1, 1, 900.0, 1.0),
            rt("poll", 1, 1, 9.0, 105.0),
            rt("notify", 1, 64, 3500.0, 15.0),
            rt("raw-sql", 0, 64, 2000.0, 30.0),
            rt("notify", 3, 64, 2000.0, 30.0),
        ];
        assert_eq!(p50_ratio(&rts), Some(105.0));
        let checks = evaluate(&rts, &[], 3);
        let verdicts: Vec<Verdict> = checks.iter().map(|c| c.verdict).collect();
        use Verdict::*;
        assert_eq!(
            verdicts,
            [
                Pass, Pass, Miss, Miss, Pass, NotRun, NotRun, NotRun, NotRun, NotRun,
                // Group commit: 1.75x, 4.0 tx/rt, no c=1 floor, p99 4x p50,
                // 3 instances 1.0x the transactions but 0.57x the rate.
                Miss, Miss, NotRun, Miss, Pass, Miss, NotRun, NotRun, Pass
            ]
        );
        assert_eq!(checks[2].measured, "1.75x (3,500 vs 2,000/s)");
        assert_eq!(checks[1].measured, "3,500/s");
    }

    #[test]
    fn poll_idle_is_a_comparison_not_a_target() {
        let idle = |wake: &str, per_sec: f64| Idle {
            wake: wake.into(),
            waiting: 1000,
            instances: 1,
            pool_size: 16,
            window_seconds: 10.0,
            transactions: (per_sec * 10.0) as i64,
            transactions_per_sec: per_sec,
            approximate: wake == "poll",
            setup_transactions_per_request: 2.0,
            peak_connections: 17,
            window_connections: 17,
            rss_mib: 30.0,
            rss_peak_mib: 30.0,
            baseline_rss_mib: 12.0,
            kib_per_waiting: 18.4,
            errors: 0,
            first_error: None,
            ramp_seconds: 0.5,
            autovacuum: false,
        };
        let checks = evaluate(&[], &[idle("notify", 0.1), idle("poll", 6000.0)], 3);
        assert_eq!(checks[5].verdict, Verdict::Pass, "{:?}", checks[5]);
        assert_eq!(checks[5].measured, "0.10/s at 1,000");
        assert_eq!(checks[6].verdict, Verdict::Pass);
    }

    #[test]
    fn thousands_groups_digits() {
        assert_eq!(thousands(0.4), "0");
        assert_eq!(thousands(999.0), "999");
        assert_eq!(thousands(1000.0), "1,000");
        assert_eq!(thousands(1234567.8), "1,234,568");
        assert_eq!(thousands(-4321.0), "-4,321");
    }
}

/// An idle scenario's transactions per second, per instance when it ran several.
fn idle_rate(i: &Idle) -> String {
    if i.instances > 1 {
        format!(
            "{:.2}/s on {} instances ({:.2} each)",
            i.transactions_per_sec,
            i.instances,
            i.transactions_per_sec / i.instances as f64
        )
    } else {
        format!("{:.2}/s", i.transactions_per_sec)
    }
}

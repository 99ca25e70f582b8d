//! The report: a Markdown table for people, JSON for machines, an SVG chart.

use std::fmt::Write as _;
use std::path::Path;

use anyhow::Context;
use chrono::{DateTime, Utc};
use serde::Serialize;

use super::chart;
use super::idle::Idle;
use super::scenario::RoundTrips;
use super::sealing::SealCost;
use super::targets::{Check, thousands};

/// How and where the run happened.
#[derive(Debug, Clone, Serialize)]
pub struct Meta {
    pub version: String,
    pub started_at: DateTime<Utc>,
    pub quick: bool,
    pub cpus: usize,
    pub postgres: String,
    /// 1-minute load average before and after the run: others' work shows here.
    pub load_average_start: Option<f64>,
    pub load_average_end: Option<f64>,
    pub warmup_secs: f64,
    pub measure_secs: f64,
    pub idle_window_secs: f64,
    pub poll_interval_ms: u64,
    pub pool_size: usize,
    pub total_secs: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub meta: Meta,
    pub round_trips: Vec<RoundTrips>,
    pub idle: Vec<Idle>,
    pub p50_ratio_poll_notify: Option<f64>,
    pub targets: Vec<Check>,
    /// Microseconds per sealing step, when sealed scenarios ran.
    pub seal_cost: Option<SealCost>,
}

/// Milliseconds with as many decimals as make sense.
fn ms(value: f64) -> String {
    if value < 10.0 {
        format!("{value:.2}")
    } else if value < 100.0 {
        format!("{value:.1}")
    } else {
        format!("{value:.0}")
    }
}

/// A rate: two decimals while small, thousands separators when large.
fn rate(value: f64) -> String {
    if value < 100.0 {
        format!("{value:.2}")
    } else {
        thousands(value)
    }
}

impl Report {
    /// The line the issue asks for on stdout.
    pub fn ratio_line(&self) -> String {
        match self.p50_ratio_poll_notify {
            Some(ratio) => format!("p50 ratio poll/notify: {ratio:.1}"),
            None => "p50 ratio poll/notify: n/a (notify and poll at c=1 not both measured)".into(),
        }
    }

    pub fn markdown(&self) -> String {
        let mut out = String::new();
        self.heading(&mut out);
        self.round_trip_table(&mut out);
        self.batch_table(&mut out);
        self.sealed_table(&mut out);
        self.idle_table(&mut out);
        self.target_table(&mut out);
        self.notes(&mut out);
        out.push_str(&self.ratio_line());
        out.push('\n');
        out
    }

    /// The title, and how and where the run happened.
    fn heading(&self, out: &mut String) {
        let m = &self.meta;
        let load = |l: Option<f64>| l.map_or("?".into(), |l| format!("{l:.2}"));
        let _ = writeln!(
            out,
            "## backchannel bench{}\n",
            if m.quick { " (quick)" } else { "" }
        );
        let _ = writeln!(
            out,
            "{} on {} CPUs, {}; load average {} before, {} after. \
             Each scenario: {} s warm-up, {} s measured; poll interval {} ms; pool {} per instance; \
             {:.0} s in all.\n",
            m.started_at.format("%Y-%m-%d %H:%M UTC"),
            m.cpus,
            m.postgres,
            load(m.load_average_start),
            load(m.load_average_end),
            m.warmup_secs,
            m.measure_secs,
            m.poll_interval_ms,
            m.pool_size,
            m.total_secs,
        );
    }

    /// One row per round-trip scenario.
    fn round_trip_table(&self, out: &mut String) {
        if !self.round_trips.is_empty() {
            out.push_str(
                "| wake | instances | c | round trips/s | p50 ms | p90 ms | p99 ms | max ms \
                 | tx/round trip | peak conns | errors | CPU % broker / pg / bench / other |\n",
            );
            out.push_str("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |\n");
            for r in &self.round_trips {
                let (wake, instances) = match r.wake.as_str() {
                    "raw-sql" => ("raw SQL floor".to_string(), "-".to_string()),
                    "sealed" => ("notify, sealed".to_string(), r.instances.to_string()),
                    _ => (r.wake.clone(), r.instances.to_string()),
                };
                let _ = writeln!(
                    out,
                    "| {wake} | {instances} | {} | {} | {} | {} | {} | {} | {:.2} | {} | {} | {:.0} / {:.0} / {:.0} / {:.0} |",
                    r.concurrency,
                    thousands(r.round_trips_per_sec),
                    ms(r.latency.p50_ms),
                    ms(r.latency.p90_ms),
                    ms(r.latency.p99_ms),
                    ms(r.latency.max_ms),
                    r.transactions_per_round_trip,
                    r.peak_connections,
                    r.errors,
                    r.cpu.broker_pct,
                    r.cpu.postgres_pct,
                    r.cpu.bench_pct,
                    r.cpu.other_pct,
                );
            }
            out.push('\n');
        }
    }

    /// Jobs per transaction of each notify scenario that reported them.
    fn batch_table(&self, out: &mut String) {
        let batched: Vec<_> = self
            .round_trips
            .iter()
            .filter_map(|r| Some((r, r.batches.as_ref()?)))
            .filter(|(r, _)| r.wake == "notify")
            .collect();
        if !batched.is_empty() {
            out.push_str(
                "| jobs per transaction: instances | c | insert mean / p99 | answer+cancel mean / p99 | claim mean / p99 |\n",
            );
            out.push_str("| --- | ---: | ---: | ---: | ---: |\n");
            for (r, b) in batched {
                let cell = |x: &crate::batches::Batching| format!("{:.1} / {:.0}", x.mean, x.p99);
                let _ = writeln!(
                    out,
                    "| {} | {} | {} | {} | {} |",
                    r.instances,
                    r.concurrency,
                    cell(&b.insert),
                    cell(&b.finish),
                    cell(&b.claim),
                );
            }
            out.push('\n');
        }
    }

    /// Each sealed scenario beside the same scenario unsealed, and what each
    /// sealing step costs alone.
    fn sealed_table(&self, out: &mut String) {
        let pairs: Vec<_> = self
            .round_trips
            .iter()
            .filter(|r| r.wake == "sealed")
            .map(|sealed| {
                let plain = self
                    .round_trips
                    .iter()
                    .find(|r| r.is_broker("notify", 1, sealed.concurrency));
                (sealed, plain)
            })
            .collect();
        if pairs.is_empty() {
            return;
        }
        out.push_str(
            "| sealing: c | round trips/s plain / sealed | sealed/plain | p50 ms plain / sealed | p99 ms plain / sealed | CPU µs/rt broker / bench, plain / sealed |\n",
        );
        out.push_str("| ---: | ---: | ---: | ---: | ---: | ---: |\n");
        for (sealed, plain) in pairs {
            let Some(plain) = plain else {
                let _ = writeln!(
                    out,
                    "| {} | - / {} | - | - / {} | - / {} | - |",
                    sealed.concurrency,
                    thousands(sealed.round_trips_per_sec),
                    ms(sealed.latency.p50_ms),
                    ms(sealed.latency.p99_ms),
                );
                continue;
            };
            let ratio = if plain.round_trips_per_sec > 0.0 {
                format!(
                    "{:.2}",
                    sealed.round_trips_per_sec / plain.round_trips_per_sec
                )
            } else {
                "-".into()
            };
            let _ = writeln!(
                out,
                "| {} | {} / {} | {ratio} | {} / {} | {} / {} | {:.0} / {:.0}, {:.0} / {:.0} |",
                sealed.concurrency,
                thousands(plain.round_trips_per_sec),
                thousands(sealed.round_trips_per_sec),
                ms(plain.latency.p50_ms),
                ms(sealed.latency.p50_ms),
                ms(plain.latency.p99_ms),
                ms(sealed.latency.p99_ms),
                plain.cpu.broker_us_per_round_trip,
                plain.cpu.bench_us_per_round_trip,
                sealed.cpu.broker_us_per_round_trip,
                sealed.cpu.bench_us_per_round_trip,
            );
        }
        out.push('\n');
        if let Some(cost) = &self.seal_cost {
            let _ = writeln!(
                out,
                "Sealing alone, µs per request (mean of {}, one core): seal the request {:.1}, \
                 open it (every check) {:.1}, seal the answer {:.1}, open the answer {:.1}; \
                 {:.1} in all per round trip.\n",
                cost.requests,
                cost.seal_request_us,
                cost.open_request_us,
                cost.seal_answer_us,
                cost.open_answer_us,
                cost.seal_request_us
                    + cost.open_request_us
                    + cost.seal_answer_us
                    + cost.open_answer_us,
            );
        }
    }

    /// One row per idle scenario.
    fn idle_table(&self, out: &mut String) {
        if !self.idle.is_empty() {
            out.push_str(
                "| idle: wake | waiting | tx/s | tx in window | peak conns | broker RSS MiB (peak) | KiB per waiting request | errors | setup tx/request |\n",
            );
            out.push_str("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n");
            for i in &self.idle {
                let approx = if i.approximate { "~" } else { "" };
                let _ = writeln!(
                    out,
                    "| {} | {} | {approx}{} | {approx}{} in {:.0} s | {} | {:.1} ({:.1}) | {:.1} | {} | {:.2} |",
                    i.wake,
                    thousands(i.waiting as f64),
                    rate(i.transactions_per_sec),
                    thousands(i.transactions as f64),
                    i.window_seconds,
                    i.peak_connections,
                    i.rss_mib,
                    i.rss_peak_mib,
                    i.kib_per_waiting,
                    i.errors,
                    i.setup_transactions_per_request,
                );
            }
            out.push('\n');
        }
    }

    /// Every target with what was measured and its verdict.
    fn target_table(&self, out: &mut String) {
        out.push_str("| target | measured | result |\n| --- | --- | --- |\n");
        for c in &self.targets {
            let _ = writeln!(
                out,
                "| {} | {} | {} |",
                c.target,
                c.measured,
                c.verdict.as_str()
            );
        }
        out.push('\n');
    }

    /// Autovacuum seen, and the first error of each scenario that had one.
    fn notes(&self, out: &mut String) {
        let errors: Vec<String> = self
            .round_trips
            .iter()
            .filter_map(|r| {
                r.first_error
                    .as_ref()
                    .map(|e| format!("{}: {e}", r.scenario))
            })
            .chain(self.idle.iter().filter_map(|i| {
                i.first_error
                    .as_ref()
                    .map(|e| format!("idle, {}, {} waiting: {e}", i.wake, i.waiting))
            }))
            .collect();
        let vacuumed: Vec<String> = self
            .round_trips
            .iter()
            .filter(|r| r.autovacuum)
            .map(|r| r.scenario.clone())
            .chain(
                self.idle
                    .iter()
                    .filter(|i| i.autovacuum)
                    .map(|i| format!("idle cost, {}, {} waiting", i.wake, i.waiting)),
            )
            .collect();
        if !vacuumed.is_empty() {
            let _ = writeln!(
                out,
                "Autovacuum worked on the scratch database during: {} (its transactions are counted there too).\n",
                vacuumed.join("; ")
            );
        }
        if !errors.is_empty() {
            out.push_str("First error of each scenario that had one:\n\n");
            for e in errors {
                let _ = writeln!(out, "- {e}");
            }
            out.push('\n');
        }
    }

    /// Write report.md, report.json and latency.svg into `dir`.
    pub fn write(&self, dir: &Path) -> anyhow::Result<()> {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        std::fs::write(dir.join("report.md"), self.markdown())?;
        std::fs::write(
            dir.join("report.json"),
            serde_json::to_string_pretty(self).expect("the report serialises"),
        )?;
        std::fs::write(
            dir.join("latency.svg"),
            chart::latency_svg(&self.round_trips)?,
        )?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::targets::{self, Verdict};

    fn report() -> Report {
        let rts = vec![
            targets_tests_rt("notify", 1, 1, 850.0, 1.1),
            targets_tests_rt("poll", 1, 1, 9.2, 104.5),
            targets_tests_rt("raw-sql", 0, 16, 2000.0, 7.0),
        ];
        Report {
            meta: Meta {
                version: "0.1.0".into(),
                started_at: "2026-01-02T03:04:05Z".parse().unwrap(),
                quick: true,
                cpus: 2,
                postgres: "PostgreSQL 15.20".into(),
                load_average_start: Some(0.5),
                load_average_end: None,
                warmup_secs: 0.5,
                measure_secs: 2.0,
                idle_window_secs: 3.0,
                poll_interval_ms: 100,
                pool_size: 16,
                total_secs: 40.2,
            },
            p50_ratio_poll_notify: targets::p50_ratio(&rts),
            targets: targets::evaluate(&rts, &[], 3),
            round_trips: rts,
            idle: vec![idle("notify", 0, 0.0), idle("poll", 32896, 6519.45)],
            seal_cost: None,
        }
    }

    fn idle(wake: &str, transactions: i64, per_sec: f64) -> Idle {
        Idle {
            wake: wake.into(),
            waiting: 1000,
            instances: 1,
            pool_size: 16,
            window_seconds: 5.0,
            transactions,
            transactions_per_sec: per_sec,
            approximate: wake == "poll",
            setup_transactions_per_request: 2.3,
            peak_connections: 17,
            window_connections: 17,
            rss_mib: 32.5,
            rss_peak_mib: 32.5,
            baseline_rss_mib: 12.0,
            kib_per_waiting: 20.9,
            errors: 0,
            first_error: None,
            ramp_seconds: 0.4,
            autovacuum: false,
        }
    }

    fn targets_tests_rt(wake: &str, i: usize, c: usize, rate: f64, p50: f64) -> RoundTrips {
        let mut r = crate::targets::tests_support::rt(wake, i, c, rate, p50);
        if wake == "poll" {
            r.errors = 1;
            r.first_error = Some("submit answered 202".into());
        }
        r
    }

    #[test]
    fn markdown_has_rows_targets_errors_and_the_ratio_line() {
        let md = report().markdown();
        assert!(md.contains("## backchannel bench (quick)"), "{md}");
        assert!(
            md.contains("| notify | 1 | 1 | 850 | 1.10 | 2.20 | 4.40 | 8.80 | 4.00 | 18 | 0 |"),
            "{md}"
        );
        assert!(
            md.contains("| raw SQL floor | - | 16 | 2,000 | 7.00 |"),
            "{md}"
        );
        assert!(
            md.contains("| p50 ratio poll/notify >= 20 (c=1) | 95.0 | PASS |"),
            "{md}"
        );
        assert!(md.contains("- poll 1 1: submit answered 202"), "{md}");
        assert!(
            md.contains(
                "| notify | 1,000 | 0.00 | 0 in 5 s | 17 | 32.5 (32.5) | 20.9 | 0 | 2.30 |"
            ),
            "{md}"
        );
        assert!(
            md.contains("| poll | 1,000 | ~6,519 | ~32,896 in 5 s |"),
            "{md}"
        );
        assert!(
            md.trim_end().ends_with("p50 ratio poll/notify: 95.0"),
            "{md}"
        );
        assert_eq!(report().targets[1].verdict, Verdict::NotRun);
    }

    #[test]
    fn sealed_rows_stand_beside_their_unsealed_twin() {
        let mut report = report();
        assert!(!report.markdown().contains("| sealing:"), "no sealed rows");
        report
            .round_trips
            .push(targets_tests_rt("sealed", 1, 1, 800.0, 1.25));
        report.seal_cost = Some(SealCost {
            requests: 2000,
            seal_request_us: 60.0,
            open_request_us: 110.0,
            seal_answer_us: 3.0,
            open_answer_us: 2.5,
        });
        let md = report.markdown();
        assert!(
            md.contains("| notify, sealed | 1 | 1 | 800 | 1.25 |"),
            "{md}"
        );
        assert!(
            md.contains("| 1 | 850 / 800 | 0.94 | 1.10 / 1.25 | 4.40 / 5.00 |"),
            "{md}"
        );
        assert!(md.contains("seal the request 60.0, open it (every check) 110.0, seal the answer 3.0, open the answer 2.5; 175.5 in all"), "{md}");
        // The targets still read the unsealed rows.
        assert_eq!(report.targets[0].verdict, Verdict::Pass);
    }

    #[test]
    fn json_and_svg_are_written() {
        let dir = std::env::temp_dir().join(format!("bc-bench-report-{}", std::process::id()));
        report().write(&dir).unwrap();
        let json: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(dir.join("report.json")).unwrap())
                .unwrap();
        assert_eq!(json["round_trips"][0]["latency"]["p50_ms"], 1.1);
        assert_eq!(json["targets"][0]["verdict"], "PASS");
        let svg = std::fs::read_to_string(dir.join("latency.svg")).unwrap();
        assert!(
            svg.starts_with("<svg") && svg.contains("notify p50"),
            "{svg}"
        );
        std::fs::remove_dir_all(dir).unwrap();
    }
}

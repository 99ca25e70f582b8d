//! Which scenarios run, in which order, for how long.

use std::time::Duration;

use super::brokers::BrokerSpec;
use super::{BenchArgs, Group};
use backchannel::config::WakeMode;

#[derive(Debug, Clone, PartialEq)]
pub enum Scenario {
    /// Brokers over HTTP with the simulated listener.
    Broker {
        wake: WakeMode,
        instances: usize,
        concurrency: usize,
        /// Forwarding to the stream's holder (on in every notify row but
        /// the one labelled `notify, no forwarding`).
        forwarding: bool,
    },
    /// Notify, 1 instance, every payload and answer sealed end to end
    /// (docs/sealed.md): to compare with the same broker scenario unsealed.
    Sealed { concurrency: usize },
    /// The same hand-off in plain SQL, no HTTP.
    Floor { concurrency: usize },
    /// Requests waiting on one instance with no listener.
    Idle { wake: WakeMode, waiting: usize },
}

impl Scenario {
    pub fn label(&self) -> String {
        match self {
            Scenario::Broker {
                wake,
                instances,
                concurrency,
                forwarding,
            } => {
                let wake = wake_label(*wake, *forwarding);
                let s = if *instances == 1 { "" } else { "s" };
                format!("{wake}, {instances} instance{s}, c={concurrency}")
            }
            Scenario::Sealed { concurrency } => {
                format!("sealed, notify, 1 instance, c={concurrency}")
            }
            Scenario::Floor { concurrency } => format!("raw SQL floor, c={concurrency}"),
            Scenario::Idle {
                wake: WakeMode::Notify,
                waiting,
            } => format!("idle cost, {waiting} waiting"),
            Scenario::Idle {
                wake: WakeMode::Poll,
                waiting,
            } => format!("idle cost, poll, {waiting} waiting"),
        }
    }
}

/// The wake column of a broker row: `notify` (forwarding on), `notify, no
/// forwarding`, or `poll`.
pub fn wake_label(wake: WakeMode, forwarding: bool) -> &'static str {
    match (wake, forwarding) {
        (WakeMode::Notify, true) => "notify",
        (WakeMode::Notify, false) => "notify, no forwarding",
        (WakeMode::Poll, _) => "poll",
    }
}

/// Everything a run needs, with the defaults (or the quick ones) filled in.
#[derive(Debug, Clone)]
pub struct Plan {
    pub scenarios: Vec<Scenario>,
    pub warmup: Duration,
    pub duration: Duration,
    pub idle_window: Duration,
    pub settle: Duration,
    pub idle_ramp_per_sec: usize,
    pub quick: bool,
    /// The instances' settings (`wake` is set per scenario).
    pub broker: BrokerSpec,
}

pub fn plan(args: &BenchArgs, broker: BrokerSpec) -> Plan {
    let quick = args.quick;
    let concurrency = args.concurrency.clone().unwrap_or_else(|| {
        if quick {
            vec![1, 16]
        } else {
            vec![1, 16, 64, 256]
        }
    });
    let groups = args.only.clone().unwrap_or_else(|| Group::ALL.to_vec());
    let wants = |g: Group| groups.contains(&g);
    let mut scenarios = Vec::new();
    for &c in &concurrency {
        // The quick run keeps what the ratio line and a smoke test need.
        let full = !quick || c > 1;
        if wants(Group::Notify) {
            scenarios.push(Scenario::Broker {
                wake: WakeMode::Notify,
                instances: 1,
                concurrency: c,
                forwarding: true,
            });
        }
        // Sealed beside its unsealed twin: at c=1 (latency) and c=64
        // (throughput); the quick run, at each of its concurrencies.
        if wants(Group::Sealed) && (quick || c == 1 || c == 64) {
            scenarios.push(Scenario::Sealed { concurrency: c });
        }
        if wants(Group::Poll) && (!quick || c == 1) {
            scenarios.push(Scenario::Broker {
                wake: WakeMode::Poll,
                instances: 1,
                concurrency: c,
                forwarding: false,
            });
        }
        if wants(Group::Cluster) && full && args.cluster_size > 1 {
            scenarios.push(Scenario::Broker {
                wake: WakeMode::Notify,
                instances: args.cluster_size,
                concurrency: c,
                forwarding: true,
            });
            // Today's path beside it, at the targets' concurrencies: what
            // forwarding buys.
            if quick || c == 1 || c == 64 {
                scenarios.push(Scenario::Broker {
                    wake: WakeMode::Notify,
                    instances: args.cluster_size,
                    concurrency: c,
                    forwarding: false,
                });
            }
        }
        if wants(Group::Floor) && full {
            scenarios.push(Scenario::Floor { concurrency: c });
        }
    }
    if wants(Group::Idle) {
        let waiting = args.idle_waiting.clone().unwrap_or_else(|| {
            if quick {
                vec![1000]
            } else {
                vec![1000, 10_000, 50_000]
            }
        });
        let wake = WakeMode::Notify;
        scenarios.extend(
            waiting
                .iter()
                .map(|&waiting| Scenario::Idle { wake, waiting }),
        );
        // The seed design's idle cost, for comparison (the smallest count only).
        if wants(Group::Poll) && !quick {
            if let Some(&waiting) = waiting.iter().min() {
                scenarios.push(Scenario::Idle {
                    wake: WakeMode::Poll,
                    waiting,
                });
            }
        }
    }
    let secs = |given: Option<f64>, default: f64, quick_default: f64| {
        Duration::from_secs_f64(given.unwrap_or(if quick { quick_default } else { default }))
    };
    Plan {
        scenarios,
        warmup: secs(args.warmup, 2.0, 0.5),
        duration: secs(args.duration, 6.0, 2.0),
        idle_window: secs(args.idle_window, 10.0, 3.0),
        settle: Duration::from_secs_f64(args.stats_settle),
        idle_ramp_per_sec: args.idle_ramp.max(1),
        quick,
        broker,
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        args: BenchArgs,
    }

    fn plan_of(argv: &[&str]) -> Plan {
        let mut full = vec!["bench", "--database-url", "postgres://u@h/db"];
        full.extend_from_slice(argv);
        let cli = Cli::parse_from(full);
        let spec = BrokerSpec {
            binary: "backchannel".into(),
            database_url: String::new(),
            pooled_url: None,
            wake: WakeMode::Notify,
            poll_interval_ms: 100,
            pool_size: 16,
            forwarding: true,
        };
        plan(&cli.args, spec)
    }

    #[test]
    fn default_plan_covers_every_scenario_of_the_issue() {
        let plan = plan_of(&[]);
        assert_eq!(plan.scenarios.len(), 4 * 4 + 4 + 2 + 2);
        assert!(plan.scenarios.contains(&Scenario::Broker {
            wake: WakeMode::Poll,
            instances: 1,
            concurrency: 256,
            forwarding: false,
        }));
        for forwarding in [true, false] {
            assert!(plan.scenarios.contains(&Scenario::Broker {
                wake: WakeMode::Notify,
                instances: 3,
                concurrency: 64,
                forwarding,
            }));
        }
        assert!(
            plan.scenarios
                .contains(&Scenario::Floor { concurrency: 64 })
        );
        for concurrency in [1, 64] {
            assert!(plan.scenarios.contains(&Scenario::Sealed { concurrency }));
        }
        assert!(plan.scenarios.contains(&Scenario::Idle {
            wake: WakeMode::Notify,
            waiting: 10_000
        }));
        assert!(plan.scenarios.contains(&Scenario::Idle {
            wake: WakeMode::Poll,
            waiting: 1000
        }));
        assert_eq!(plan.duration, Duration::from_secs(6));
    }

    #[test]
    fn quick_plan_keeps_notify_and_poll_at_one() {
        let plan = plan_of(&["--quick"]);
        let labels: Vec<String> = plan.scenarios.iter().map(Scenario::label).collect();
        assert_eq!(
            labels,
            [
                "notify, 1 instance, c=1",
                "sealed, notify, 1 instance, c=1",
                "poll, 1 instance, c=1",
                "notify, 1 instance, c=16",
                "sealed, notify, 1 instance, c=16",
                "notify, 3 instances, c=16",
                "notify, no forwarding, 3 instances, c=16",
                "raw SQL floor, c=16",
                "idle cost, 1000 waiting",
            ]
        );
        assert_eq!(plan.duration, Duration::from_secs(2));
    }

    #[test]
    fn flags_narrow_the_plan() {
        let plan = plan_of(&[
            "--only",
            "floor,idle",
            "--concurrency",
            "8",
            "--idle-waiting",
            "5",
        ]);
        assert_eq!(
            plan.scenarios,
            [
                Scenario::Floor { concurrency: 8 },
                Scenario::Idle {
                    wake: WakeMode::Notify,
                    waiting: 5
                }
            ]
        );
    }
}

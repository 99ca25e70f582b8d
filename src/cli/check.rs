//! The monitoring-plugin verdict of `backchannel status --check` (Nagios,
//! Icinga, Sensu, ...): one line `BACKCHANNEL <STATE> - <summary> | <perfdata>`
//! and the exit code.

use serde_json::{Value, json};

use super::status::Report;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    Ok = 0,
    Warning = 1,
    Critical = 2,
    Unknown = 3,
}

impl Level {
    pub fn name(self) -> &'static str {
        match self {
            Level::Ok => "OK",
            Level::Warning => "WARNING",
            Level::Critical => "CRITICAL",
            Level::Unknown => "UNKNOWN",
        }
    }
}

#[derive(Debug, Clone)]
pub struct Verdict {
    pub level: Level,
    pub summary: String,
    pub perfdata: String,
    pub report: Option<Value>,
}

impl Verdict {
    pub fn unknown(summary: String) -> Verdict {
        Verdict {
            level: Level::Unknown,
            summary,
            perfdata: String::new(),
            report: None,
        }
    }

    /// `BACKCHANNEL OK - listener ... | listener_connected=1;;1:;0;1 ...`
    pub fn line(&self) -> String {
        // `|` starts the perfdata: none may appear in the summary.
        let summary = self.summary.replace('|', "/").replace('\n', " ");
        let mut line = format!("BACKCHANNEL {} - {summary}", self.level.name());
        if !self.perfdata.is_empty() {
            line.push_str(" | ");
            line.push_str(&self.perfdata);
        }
        line
    }

    pub fn json(&self) -> Value {
        let mut value = json!({
            "status": self.level.name().to_ascii_lowercase(),
            "exit_code": self.level as i32,
            "summary": self.summary,
        });
        if let Some(Value::Object(report)) = &self.report {
            for (key, item) in report {
                value[key] = item.clone();
            }
        }
        value
    }
}

/// CRITICAL without a listener or with the oldest pending job at least
/// `crit` seconds old, WARNING from `warn` seconds, else OK.
pub fn judge(report: &Report, warn: f64, crit: f64) -> Verdict {
    if !(warn.is_finite() && crit.is_finite() && warn >= 0.0 && warn <= crit) {
        return Verdict::unknown(
            "--warn-pending-age must be 0 or more and not above --crit-pending-age".into(),
        );
    }
    let (listener, stats) = (&report.listener, &report.stats);
    let held = listener["held"] == true;
    let count = |state: &str| stats["jobs"][state].as_i64().unwrap_or(0);
    let (pending, delivered) = (count("pending"), count("delivered"));
    let age = stats["oldest_pending_age_seconds"].as_f64();
    let age_text = match age {
        Some(age) => format!("oldest pending job {age:.1} s old"),
        None => "no pending job".to_string(),
    };
    let jobs = format!("{pending} pending, {delivered} delivered, {age_text}");
    let (level, summary) = if !held {
        (
            Level::Critical,
            format!("no listener holds the stream; {jobs}"),
        )
    } else {
        let who = format!(
            "listener {} connected on {}",
            listener["listener_id"].as_str().unwrap_or("(no id)"),
            listener["instance"]
                .as_str()
                .unwrap_or("(unknown instance)")
        );
        match age {
            Some(age) if age >= crit => (
                Level::Critical,
                format!("{age_text} (critical from {crit} s); {who}"),
            ),
            Some(age) if age >= warn => (
                Level::Warning,
                format!("{age_text} (warning from {warn} s); {who}"),
            ),
            _ => (Level::Ok, format!("{who}; {jobs}")),
        }
    };
    let perfdata = format!(
        "listener_connected={};;1:;0;1 pending={pending};;;0 delivered={delivered};;;0 oldest_pending_age={:.3}s;{warn};{crit};0;",
        i32::from(held),
        age.unwrap_or(0.0)
    );
    Verdict {
        level,
        summary,
        perfdata,
        report: Some(json!({"listener": listener, "stats": stats})),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(held: bool, age: Option<f64>) -> Report {
        Report {
            listener: json!({"held": held, "listener_id": "castellum|1", "instance": "a"}),
            stats: json!({"jobs": {"pending": 2, "delivered": 1}, "oldest_pending_age_seconds": age}),
        }
    }

    #[test]
    fn levels_follow_the_listener_and_the_thresholds() {
        assert_eq!(judge(&report(true, None), 30.0, 120.0).level, Level::Ok);
        assert_eq!(
            judge(&report(true, Some(29.0)), 30.0, 120.0).level,
            Level::Ok
        );
        assert_eq!(
            judge(&report(true, Some(30.0)), 30.0, 120.0).level,
            Level::Warning
        );
        assert_eq!(
            judge(&report(true, Some(500.0)), 30.0, 120.0).level,
            Level::Critical
        );
        assert_eq!(
            judge(&report(false, None), 30.0, 120.0).level,
            Level::Critical
        );
        assert_eq!(
            judge(&report(true, None), 130.0, 120.0).level,
            Level::Unknown
        );
    }

    #[test]
    fn one_line_with_perfdata_and_no_stray_bar() {
        let line = judge(&report(true, Some(3.0)), 30.0, 120.0).line();
        assert!(
            line.starts_with("BACKCHANNEL OK - listener castellum/1 connected on a;"),
            "{line}"
        );
        assert_eq!(line.matches('|').count(), 1, "{line}");
        assert!(
            line.ends_with("oldest_pending_age=3.000s;30;120;0;"),
            "{line}"
        );
        assert!(line.contains("listener_connected=1;;1:;0;1 pending=2;;;0 delivered=1;;;0"));
    }
}

//! The dashboard and the alerts in deploy/ name only metrics that a live
//! broker and a live agent expose, under the names Prometheus stores them.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;

use crate::support::agent::*;
use crate::support::*;

const DASHBOARD: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/deploy/grafana/backchannel.json"
);
const RULES: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/deploy/prometheus/backchannel.rules.yml"
);

/// Every PromQL expression of the dashboard's panels.
fn dashboard_exprs() -> Vec<String> {
    fn walk(value: &Value, out: &mut Vec<String>) {
        match value {
            Value::Object(map) => {
                if let Some(Value::String(expr)) = map.get("expr") {
                    out.push(expr.clone());
                }
                map.values().for_each(|v| walk(v, out));
            }
            Value::Array(items) => items.iter().for_each(|v| walk(v, out)),
            _ => {}
        }
    }
    let text = std::fs::read_to_string(DASHBOARD).unwrap();
    let dashboard: Value = serde_json::from_str(&text).expect("the dashboard is JSON");
    let mut exprs = Vec::new();
    walk(&dashboard, &mut exprs);
    exprs
}

/// Every `expr` of the rules file.
fn rule_exprs() -> Vec<String> {
    let text = std::fs::read_to_string(RULES).unwrap();
    let rules: serde_json::Value = serde_norway::from_str(&text).expect("the rules are YAML");
    rules["groups"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|g| g["rules"].as_array().unwrap().iter())
        .map(|r| {
            r["expr"]
                .as_str()
                .expect("every rule has an expr")
                .to_owned()
        })
        .collect()
}

/// The metric names an expression uses: identifiers of ours (`backchannel_`,
/// `process_`) outside label matchers' quoted values.
fn names_in(expr: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let mut unquoted = String::new();
    let mut in_quote = false;
    for c in expr.chars() {
        if c == '"' {
            in_quote = !in_quote;
            unquoted.push(' ');
        } else if !in_quote {
            unquoted.push(c);
        }
    }
    for word in unquoted.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':')) {
        if word.starts_with("backchannel_") || word.starts_with("process_") {
            names.insert(word.to_owned());
        }
    }
    names
}

/// The series names an exposition lets Prometheus store, from its `# TYPE`
/// lines: a counter `x` is stored as `x_total`, a histogram as `x_bucket`,
/// `x_sum` and `x_count`, an info as `x_info`, a gauge as `x`. A family with
/// no sample yet (no request refused so far) is described all the same.
fn stored_names(exposition: &str) -> BTreeMap<String, String> {
    let mut names = BTreeMap::new();
    for line in exposition.lines() {
        let Some(rest) = line.strip_prefix("# TYPE ") else {
            continue;
        };
        let (family, kind) = rest.split_once(' ').expect("# TYPE name type");
        let suffixes: &[&str] = match kind {
            "counter" => &["_total"],
            "histogram" => &["_bucket", "_sum", "_count"],
            "summary" => &["", "_sum", "_count"],
            "info" => &["_info"],
            "gauge" | "unknown" | "stateset" => &[""],
            other => panic!("unexpected metric type {other} of {family}"),
        };
        for suffix in suffixes {
            names.insert(format!("{family}{suffix}"), kind.to_owned());
        }
    }
    names
}

async fn scrape(url: String) -> String {
    let response = reqwest::get(url).await.unwrap();
    assert_eq!(response.status(), 200);
    response.text().await.unwrap()
}

#[tokio::test]
async fn every_metric_in_the_dashboard_and_the_rules_is_exposed() {
    let db = TestDb::new().await;
    let bc = instance(&db).await;
    let mut args = agent_args(&bc.base, None);
    args.health_bind = Some("127.0.0.1:0".parse().unwrap());
    let mut agent = RunningAgent::start(args);
    let health = agent.health.expect("a health listener");

    // Refusal reasons are the error codes met so far: meet one.
    let refused = bc
        .send(
            bc.http
                .get(bc.url("/v1/stats"))
                .bearer_auth("not-a-token-000000"),
        )
        .await;
    assert_eq!(refused.status, 401);
    let mut exposed = stored_names(&scrape(bc.url("/metrics")).await);
    exposed.extend(stored_names(
        &scrape(format!("http://{health}/metrics")).await,
    ));
    assert!(exposed.contains_key("backchannel_jobs_submitted_total"));
    assert!(exposed.contains_key("backchannel_agent_handler_seconds_bucket"));

    let mut used = BTreeMap::new();
    for (source, exprs) in [("dashboard", dashboard_exprs()), ("rules", rule_exprs())] {
        assert!(!exprs.is_empty(), "{source} has expressions");
        for expr in exprs {
            for name in names_in(&expr) {
                used.entry(name)
                    .or_insert_with(|| format!("{source}: {expr}"));
            }
        }
    }
    let missing: Vec<_> = used
        .iter()
        .filter(|(name, _)| !exposed.contains_key(*name))
        .map(|(name, expr)| format!("{name} (in {expr})"))
        .collect();
    assert!(
        missing.is_empty(),
        "not exposed under this name (counters end in _total, histograms in _bucket/_sum/_count): {missing:#?}\nexposed: {:#?}",
        exposed.keys().collect::<Vec<_>>()
    );
    // Every agent metric the dashboard shows, and the broker's alerts, are used.
    for needed in [
        "backchannel_agent_stream_up",
        "backchannel_ready",
        "backchannel_http_requests_total",
        "backchannel_oldest_pending_age_seconds",
    ] {
        assert!(used.contains_key(needed), "{needed} is not used");
    }
    agent.stop().await;
}

#[test]
fn names_are_found_outside_quotes_only() {
    let names = names_in(
        r#"sum(rate(backchannel_http_requests_total{route="/v1/jobs",status=~"5.."}[5m])) / process_max_fds and on (job) backchannel_build_info{version="backchannel_fake"}"#,
    );
    let names: Vec<_> = names.into_iter().collect();
    assert_eq!(
        names,
        [
            "backchannel_build_info",
            "backchannel_http_requests_total",
            "process_max_fds"
        ]
    );
}

#[test]
fn stored_names_follow_the_type() {
    let names = stored_names(
        "# TYPE a counter\na_total 1\n# TYPE b histogram\n# TYPE c gauge\nc 1\n# EOF\n",
    );
    let names: Vec<_> = names.keys().cloned().collect();
    assert_eq!(names, ["a_total", "b_bucket", "b_count", "b_sum", "c"]);
}

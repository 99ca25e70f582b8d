//! How much each transaction carried: the brokers' own histograms of jobs per
//! group-commit transaction (`backchannel_batch_jobs{kind}`), scraped from every
//! instance before it stops and added up.

use serde::Serialize;

/// Jobs per transaction of one kind, over every instance of a scenario.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct Batching {
    pub transactions: u64,
    pub mean: f64,
    /// The upper bound of the bucket holding the 99th percentile.
    pub p99: f64,
}

/// Inserts, terminal transitions (answers and cancels) and stream claims.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct Batches {
    pub insert: Batching,
    pub finish: Batching,
    pub claim: Batching,
}

#[derive(Default)]
struct Sums {
    /// (upper bound, cumulative count) of each bucket, summed over instances.
    buckets: Vec<(f64, u64)>,
    count: u64,
    sum: f64,
}

impl Sums {
    fn add_bucket(&mut self, le: f64, count: u64) {
        match self.buckets.iter_mut().find(|(bound, _)| *bound == le) {
            Some((_, total)) => *total += count,
            None => self.buckets.push((le, count)),
        }
    }

    fn batching(mut self) -> Batching {
        self.buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
        let wanted = (self.count as f64 * 0.99).ceil() as u64;
        let p99 = self
            .buckets
            .iter()
            .find(|(_, cumulative)| *cumulative >= wanted)
            .map_or(0.0, |(bound, _)| *bound);
        Batching {
            transactions: self.count,
            mean: if self.count == 0 {
                0.0
            } else {
                self.sum / self.count as f64
            },
            p99,
        }
    }
}

/// Add up the batch histograms of the `/metrics` texts of several instances.
pub fn from_metrics(texts: &[String]) -> Batches {
    let mut kinds: [(&str, Sums); 3] = [
        ("insert", Sums::default()),
        ("finish", Sums::default()),
        ("claim", Sums::default()),
    ];
    for line in texts.iter().flat_map(|t| t.lines()) {
        let Some(rest) = line.strip_prefix("backchannel_batch_jobs_") else {
            continue;
        };
        let Some((series, value)) = rest.rsplit_once(' ') else {
            continue;
        };
        let Ok(value) = value.parse::<f64>() else {
            continue;
        };
        for (kind, sums) in kinds.iter_mut() {
            if !series.contains(&format!("kind=\"{kind}\"")) {
                continue;
            }
            if series.starts_with("count") {
                sums.count += value as u64;
            } else if series.starts_with("sum") {
                sums.sum += value;
            } else if let Some(le) = label(series, "le") {
                let le = if le == "+Inf" {
                    f64::INFINITY
                } else {
                    le.parse().unwrap_or(f64::INFINITY)
                };
                sums.add_bucket(le, value as u64);
            }
        }
    }
    let [(_, insert), (_, finish), (_, claim)] = kinds;
    Batches {
        insert: insert.batching(),
        finish: finish.batching(),
        claim: claim.batching(),
    }
}

/// The value of label `name` in a series' `{...}`.
fn label<'a>(series: &'a str, name: &str) -> Option<&'a str> {
    let start = series.find(&format!("{name}=\""))? + name.len() + 2;
    let end = series[start..].find('"')? + start;
    Some(&series[start..end])
}

/// Scrape every instance's `/metrics`.
pub async fn scrape(urls: &[String]) -> Batches {
    let client = reqwest::Client::new();
    let mut texts = Vec::new();
    for url in urls {
        if let Ok(response) = client.get(format!("{url}/metrics")).send().await {
            if let Ok(text) = response.text().await {
                texts.push(text);
            }
        }
    }
    from_metrics(&texts)
}

#[cfg(test)]
mod tests {
    use super::*;

    const ONE: &str = r#"# TYPE backchannel_batch_jobs histogram
backchannel_batch_jobs_sum{kind="insert"} 30.0
backchannel_batch_jobs_count{kind="insert"} 10
backchannel_batch_jobs_bucket{le="1.0",kind="insert"} 5
backchannel_batch_jobs_bucket{le="4.0",kind="insert"} 9
backchannel_batch_jobs_bucket{le="12.0",kind="insert"} 10
backchannel_batch_jobs_bucket{le="+Inf",kind="insert"} 10
backchannel_batch_jobs_sum{kind="claim"} 0.0
backchannel_batch_jobs_count{kind="claim"} 0
"#;

    #[test]
    fn instances_add_up() {
        let batches = from_metrics(&[ONE.to_string(), ONE.to_string()]);
        assert_eq!(batches.insert.transactions, 20);
        assert_eq!(batches.insert.mean, 3.0);
        assert_eq!(batches.insert.p99, 12.0);
        assert_eq!(batches.claim, Batching::default());
    }
}

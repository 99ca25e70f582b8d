//! What sealed/v1 costs per request, in microseconds: seal (scheduler),
//! open (agent: every check of SEALED.md, the replay cache, HPKE), seal the
//! answer (agent) and open it (scheduler). No database, no network.
//!
//! ```sh
//! cargo run --release --example seal_cost            # 2,000 requests
//! cargo run --release --example seal_cost -- 20000   # more
//! ```

use std::time::{Duration, Instant};

use backchannel::seal::{
    Delivery, Incoming, Keyring, Opener, Outcome, RecipientKey, Sealer, SigningKey, unix_now,
};
use serde_json::json;

fn main() -> anyhow::Result<()> {
    let n: usize = match std::env::args().nth(1) {
        Some(text) => text.parse()?,
        None => 2_000,
    };
    let recipient = RecipientKey::generate()?;
    let signing = SigningKey::generate()?;
    let signer = signing.public().clone();
    let sealer = Sealer::new(signing, recipient.public().clone());
    let opener = Opener::new(Keyring::new(vec![recipient], vec![signer]));
    // A payload of a realistic size (about 300 bytes of JSON).
    let payload = json!({
        "participant": "P-0042",
        "fields": ["email", "phone", "address", "consents"],
        "study": "S-2024-017",
        "requested_by": "scheduler@example.org",
        "note": "x".repeat(150),
    });
    let answer = json!({"email": "p42@example.org", "phone": null, "address": "x".repeat(120)});
    let now = unix_now();

    let mut timings = [vec![], vec![], vec![], vec![]];
    let mut sealed = Vec::with_capacity(n);
    for _ in 0..n {
        let start = Instant::now();
        let request = sealer.seal("contact.lookup", &payload, Duration::from_secs(300), now)?;
        timings[0].push(start.elapsed());
        sealed.push((request.envelope.to_string(), request.answer_key));
    }
    let mut answers = Vec::with_capacity(n);
    for (job, (text, _)) in sealed.iter().enumerate() {
        let job = job as i64;
        let start = Instant::now();
        let opened = match opener.open(
            Delivery {
                id: job,
                kind: "contact.lookup",
                payload: text,
            },
            now,
        ) {
            Ok(Incoming::Sealed(opened)) => opened,
            Ok(Incoming::Plain) => anyhow::bail!("opened as plain"),
            Err(refusal) => anyhow::bail!("refused: {refusal}"),
        };
        timings[1].push(start.elapsed());
        let start = Instant::now();
        let sealed_answer = opened.responder.seal(Outcome::Done, &answer)?;
        timings[2].push(start.elapsed());
        answers.push(sealed_answer);
    }
    for (job, ((_, key), sealed_answer)) in sealed.iter().zip(&answers).enumerate() {
        let start = Instant::now();
        let opened = key.open(job as i64, Outcome::Done, sealed_answer)?;
        timings[3].push(start.elapsed());
        anyhow::ensure!(opened == answer, "the answer changed");
    }

    println!("sealed/v1 cost per operation, {n} requests, microseconds");
    println!(
        "{:<34} {:>8} {:>8} {:>8}",
        "operation", "mean", "p50", "p99"
    );
    for (name, mut times) in [
        "seal request (scheduler)",
        "open request, all checks (agent)",
        "seal answer (agent)",
        "open answer (scheduler)",
    ]
    .into_iter()
    .zip(timings)
    {
        times.sort();
        let micros = |d: Duration| d.as_secs_f64() * 1e6;
        let mean = times.iter().copied().map(micros).sum::<f64>() / times.len() as f64;
        let at = |q: f64| micros(times[((times.len() - 1) as f64 * q) as usize]);
        println!("{name:<34} {mean:>8.1} {:>8.1} {:>8.1}", at(0.5), at(0.99));
    }
    Ok(())
}

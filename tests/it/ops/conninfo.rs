//! Connection strings read exactly as libpq reads them, and a mode they state
//! never weakened.
//!
//! The differential test builds a small C program over libpq's own
//! `PQconninfoParse` (`libpq_parse.c`, with `cc` and `pkg-config --cflags
//! --libs libpq`; `scripts/test-deps.sh` installs gcc, pkg-config and
//! libpq-dev) and feeds it and `backchannel::store::conninfo::parse` the same
//! generated strings: the same keywords with the same values, or both refuse.
//! Ours refuses more in one stated case only: a value that is not UTF-8
//! once percent-decoded.
//!
//! The TLS test starts `serve` against a cluster without TLS, with
//! `sslmode=require` written in ways that once fell back to `prefer`.

use std::collections::BTreeMap;
use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

use backchannel::store::conninfo::{self, ConninfoError};
use backchannel::store::tls::TlsParams;

use crate::support::procs::{BrokerProcess, TempCluster};
use crate::support::*;

/// xorshift64: the same strings on every run.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.below(items.len())]
    }

    fn chance(&mut self, percent: usize) -> bool {
        self.below(100) < percent
    }
}

/// A marker no refusal may print (it stands for a password).
const SECRET: &str = "Zq7";

/// C's blanks (isspace), and U+00A0, which is not one.
const BLANKS: &[&str] = &[
    " ", "  ", "\t", "\n", "\r\n", "\r", "\x0b", "\x0c", "\u{a0}", "",
];

const KEYS: &[&str] = &[
    "host",
    "hostaddr",
    "port",
    "dbname",
    "user",
    "password",
    "sslmode",
    "sslrootcert",
    "application_name",
    "options",
    "connect_timeout",
    "tcp_user_timeout",
    "keepalives_idle",
    "target_session_attrs",
    "requiressl",
    "ssl",
    "keepalives_retries",
    "sslcrl",
    "foo",
    "",
];

const PIECES: &[&str] = &[
    "a",
    "b",
    "z",
    "0",
    "9",
    " ",
    "\t",
    "\n",
    "\r",
    "\x0b",
    "\x0c",
    "\u{a0}",
    "'",
    "\\",
    "=",
    "&",
    "?",
    "/",
    "@",
    ":",
    ",",
    "%",
    "%41",
    "%4",
    "%zz",
    "%00",
    "%2C",
    "%2c",
    "%40",
    "%3D",
    "%20",
    "%C3%A9",
    "%FF",
    "[",
    "]",
    "é",
    "+",
    "#",
    "require",
    "verify-full",
    "disable",
    "true",
    "1",
    "::1",
    "fe80::1",
    SECRET,
];

fn word(r: &mut Rng, max: usize) -> String {
    (0..r.below(max + 1)).map(|_| r.pick(PIECES)).collect()
}

/// `key = value` strings with every kind of blank, quote and escape, often
/// broken.
fn key_values(r: &mut Rng) -> String {
    let mut s = String::new();
    for _ in 0..r.below(6) {
        s += r.pick(BLANKS);
        s += r.pick(KEYS);
        s += r.pick(BLANKS);
        if !r.chance(5) {
            s += "=";
        }
        s += r.pick(BLANKS);
        if r.chance(30) {
            s += "'";
            s += &word(r, 6);
            if !r.chance(10) {
                s += "'";
            }
        } else {
            s += &word(r, 6);
        }
    }
    s + r.pick(BLANKS)
}

/// `key=value` strings libpq accepts, mostly: values escaped or quoted,
/// keys repeated, a blank or a newline at the end.
fn mostly_valid(r: &mut Rng) -> String {
    const VALID: &[&str] = &[
        "host",
        "port",
        "dbname",
        "user",
        "password",
        "sslmode",
        "sslrootcert",
        "application_name",
        "options",
        "connect_timeout",
        "hostaddr",
        "target_session_attrs",
        "requiressl",
    ];
    let mut s = String::new();
    for _ in 0..1 + r.below(6) {
        s += r.pick(&[" ", "  ", "\t", "\n", "\x0b", "\x0c", "\r", ""]);
        s += r.pick(VALID);
        s += r.pick(&["=", " = ", "=\t", "\x0c=\x0b"]);
        let value = word(r, 4);
        if r.chance(40) {
            s += "'";
            s += &value.replace('\\', "\\\\").replace('\'', "\\'");
            s += "'";
        } else {
            let escaped: String = value
                .chars()
                .flat_map(|c| match c {
                    ' ' | '\t' | '\n' | '\r' | '\x0b' | '\x0c' | '\\' => vec!['\\', c],
                    c => vec![c],
                })
                .collect();
            s += &escaped;
        }
        s += " ";
    }
    s + r.pick(&["", " ", "\n", "\t\r\n", "\x0b", "\u{a0}"])
}

/// URIs: credentials, several hosts, IPv6 in brackets, ports, a database,
/// query parameters (repeated, `ssl=true`, percent escapes), and blanks
/// where they do not belong.
fn uri(r: &mut Rng) -> String {
    let mut s = String::from(r.pick(&[
        "postgres://",
        "postgresql://",
        "postgres://",
        "postgresql://",
        "postgres:/",
        "Postgres://",
        " postgres://",
    ]));
    if r.chance(40) {
        s += &word(r, 3);
        if r.chance(50) {
            s += ":";
            s += &word(r, 3);
        }
        s += "@";
    }
    for i in 0..1 + r.below(3) {
        if i > 0 {
            s += ",";
        }
        if r.chance(25) {
            s += "[";
            s += r.pick(&["::1", "", "fe80::1%25eth0", "a", "::ffff:127.0.0.1"]);
            if !r.chance(10) {
                s += "]";
            }
            if r.chance(5) {
                s += r.pick(&["x", " "]);
            }
        } else {
            s += &word(r, 3);
        }
        if r.chance(40) {
            s += ":";
            s += r.pick(&["5432", "", "x", "1%30", "0"]);
        }
    }
    if r.chance(60) {
        s += "/";
        s += &word(r, 3);
    }
    if r.chance(60) {
        s += "?";
        for i in 0..r.below(5) {
            if i > 0 {
                s += "&";
            }
            s += r.pick(KEYS);
            if !r.chance(10) {
                s += "=";
            }
            s += &word(r, 4);
        }
    }
    if r.chance(20) {
        s += r.pick(BLANKS);
    }
    s
}

/// Our reading as libpq's output would show it: the last value of each
/// keyword; `None` where libpq refuses (our grammar keeps any keyword,
/// libpq refuses one it does not know).
fn ours(text: &str, keywords: &[String]) -> Option<BTreeMap<String, Vec<u8>>> {
    let pairs = conninfo::parse(text).ok()?;
    if !pairs.iter().all(|(k, _)| keywords.contains(k)) {
        return None;
    }
    Some(
        pairs
            .into_iter()
            .map(|(k, v)| (k, v.into_bytes()))
            .collect(),
    )
}

fn unhex(hex: &str) -> Vec<u8> {
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
        .collect()
}

/// The oracle, built from libpq_parse.c into the test's scratch folder.
fn oracle() -> std::path::PathBuf {
    let flags = Command::new("pkg-config")
        .args(["--cflags", "--libs", "libpq"])
        .output()
        .expect("pkg-config (scripts/test-deps.sh installs it, with libpq-dev and gcc)");
    assert!(
        flags.status.success(),
        "pkg-config does not know libpq: install libpq-dev (scripts/test-deps.sh)"
    );
    let flags = String::from_utf8(flags.stdout).unwrap();
    let binary = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("libpq_parse-{}", std::process::id()));
    let built = Command::new("cc")
        .args(["-O1", "-o"])
        .arg(&binary)
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/it/ops/libpq_parse.c"
        ))
        .args(flags.split_whitespace())
        .status()
        .expect("cc (scripts/test-deps.sh installs gcc)");
    assert!(built.success(), "building the libpq oracle failed");
    binary
}

#[test]
fn libpq_and_we_read_every_string_alike() {
    let oracle = oracle();
    let keywords: Vec<String> = String::from_utf8(
        Command::new(&oracle)
            .arg("--keywords")
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap()
    .lines()
    .map(String::from)
    .collect();
    // Every keyword the broker reads is libpq's (two are newer than
    // libpq 15: load_balance_hosts in 16, sslnegotiation in 17).
    for keyword in backchannel::store::conninfo::config::SUPPORTED {
        assert!(
            keywords.iter().any(|k| k == keyword)
                || ["load_balance_hosts", "sslnegotiation"].contains(&keyword),
            "{keyword} is not a libpq keyword"
        );
    }

    let mut r = Rng(0x9e37_79b9_7f4a_7c15);
    let mut inputs: Vec<String> = [
        "host=db user=app dbname=bc sslmode=require\n",
        "host=db sslmode=require \t",
        "host=db sslmode=require\x0b",
        "host=db sslmode=require\u{a0}",
        "sslmode=require requiressl=0",
        "postgres://u:p@h:1,h2:2/db?sslmode=require",
        "postgres://u:p@h/db?sslmode=require\n",
        "postgres://[::1]:5432/db?ssl=true&sslmode=verify-full",
        "postgres://a,b/db",
        "postgresql://%5B::1%5D/%64b?host=%2Fvar%2Frun",
    ]
    .map(String::from)
    .to_vec();
    for _ in 0..30_000 {
        inputs.push(match r.below(4) {
            0 => key_values(&mut r),
            1 => uri(&mut r),
            2 => mostly_valid(&mut r),
            _ => word(&mut r, 12),
        });
    }

    let mut child = Command::new(&oracle)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let feed: String = inputs
        .iter()
        .map(|s| s.bytes().map(|b| format!("{b:02x}")).collect::<String>() + "\n")
        .collect();
    let writer = std::thread::spawn(move || stdin.write_all(feed.as_bytes()).unwrap());
    let out = String::from_utf8(child.wait_with_output().unwrap().stdout).unwrap();
    writer.join().unwrap();
    let _ = std::fs::remove_file(&oracle);

    let mut lines = out.lines();
    let (mut accepted, mut several, mut refused, mut not_utf8) = (0, 0, 0, 0);
    for input in &inputs {
        let head = lines.next().expect("an answer per input");
        let mut libpq = BTreeMap::new();
        for line in lines.by_ref() {
            if line == "." {
                break;
            }
            let (k, hex) = line.split_once(' ').unwrap();
            libpq.insert(k.to_string(), unhex(hex));
        }
        let theirs = (head == "O").then_some(libpq);
        let mine = ours(input, &keywords);
        match (&theirs, &mine) {
            (Some(a), Some(b)) if a == b => {
                accepted += 1;
                if a.len() >= 2 {
                    several += 1;
                }
            }
            (None, None) => refused += 1,
            (Some(_), None) if conninfo::parse(input) == Err(ConninfoError::NotUtf8) => {
                not_utf8 += 1
            }
            _ => panic!(
                "{input:?}: libpq {theirs:?}, ours {mine:?} ({:?})",
                conninfo::parse(input)
            ),
        }
        // No refusal, of the grammar or of the values, prints a value.
        let refusal = match conninfo::parse(input) {
            Err(e) => Some(e.to_string()),
            Ok(pairs) => conninfo::config::config(&pairs)
                .err()
                .or_else(|| TlsParams::resolve(&pairs, &|_| None).err()),
        };
        if let Some(refusal) = refusal {
            assert!(!refusal.contains(SECRET), "{input:?}: {refusal}");
        }
    }
    eprintln!(
        "libpq and backchannel: {accepted} accepted alike ({several} with 2+ keywords), \
         {refused} refused by both, {not_utf8} refused by backchannel only (not UTF-8)"
    );
    assert!(accepted > 5_000 && several > 2_000 && refused > 5_000);
}

/// `serve` with this DATABASE_URL: whether it started, and its stderr.
async fn serve(database_url: &str) -> (bool, String) {
    let output = tokio::time::timeout(
        Duration::from_secs(60),
        tokio::process::Command::new(env!("CARGO_BIN_EXE_backchannel"))
            .arg("serve")
            .env("DATABASE_URL", database_url)
            .env("BACKCHANNEL_BIND", "127.0.0.1:0")
            .env("BACKCHANNEL_SUBMITTER_TOKENS", SUBMITTER)
            .env("BACKCHANNEL_LISTENER_TOKENS", LISTENER)
            .env_remove("PGSSLMODE")
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .kill_on_drop(true)
            .output(),
    )
    .await;
    match output {
        // Still running after a minute: it started (and is killed on drop).
        Err(_) => (true, String::new()),
        Ok(output) => {
            let output = output.unwrap();
            (
                output.status.success(),
                String::from_utf8_lossy(&output.stderr).into_owned(),
            )
        }
    }
}

#[tokio::test]
async fn sslmode_require_with_trailing_blanks_refuses_a_server_without_tls() {
    let cluster = TempCluster::start();
    let plain = format!("postgres://postgres@127.0.0.1:{}/postgres", cluster.port);
    let kv = format!(
        "host=127.0.0.1 port={} user=postgres dbname=postgres",
        cluster.port
    );
    // The cluster has no TLS; with sslmode=disable the broker does start
    // (so the refusals below are TLS's, not another failure).
    drop(BrokerProcess::spawn(&format!("{plain}?sslmode=disable"), &[]).await);
    let require = [
        format!("{kv} sslmode=require "),
        format!("{kv} sslmode=require\t"),
        format!("{kv} sslmode=require\n"),
        format!("{kv} sslmode=require \r\n"),
        format!("{kv} sslmode=require\x0b\x0c"),
        format!("{kv}\nsslmode = 'require'\n"),
        format!("{kv} requiressl=1\n"),
        format!("sslmode=require\n{kv}\n"),
        format!("{plain}?sslmode=require&application_name=a\n"),
        format!("{plain}?application_name=a%20b&sslmode=require&connect_timeout=%205%20"),
        format!("{plain}?ssl=true&application_name=x\t"),
    ];
    for url in &require {
        let (started, stderr) = serve(url).await;
        assert!(!started, "{url:?}: serve started without TLS");
        assert!(
            stderr.contains("the server refused TLS") && stderr.contains("sslmode=require"),
            "{url:?}: {stderr}"
        );
    }
    // Blanks a URL does not allow: a value libpq would refuse, refused.
    for url in [
        format!("{plain}?sslmode=require\n"),
        format!("{plain}?sslmode=require "),
        format!("{plain}?sslmode= require"),
    ] {
        let (started, stderr) = serve(&url).await;
        assert!(!started, "{url:?}: serve started");
        assert!(
            stderr.contains("DATABASE_URL: sslmode must be"),
            "{url:?}: {stderr}"
        );
    }
    // Something before the scheme: not a URL to libpq, and refused without
    // printing it.
    let (started, stderr) = serve(&format!(" {plain}?sslmode=require")).await;
    assert!(!started);
    assert!(stderr.contains("must start with postgres://"), "{stderr}");
    assert!(!stderr.contains("127.0.0.1"), "{stderr}");
}

//! A connection string's keywords (as libpq reads them, [`super::parse`])
//! made into tokio-postgres' [`Config`] with libpq's meaning of each value.
//! tokio-postgres never parses the string itself: one reading, ours.
//!
//! A keyword libpq knows and the broker cannot honour (`service`, `passfile`,
//! `sslcrl`, `gssencmode=require`, ...) is refused by name rather than
//! ignored: a setting that silently does nothing is worse than a refusal.
//! So is a keyword libpq does not know (tokio-postgres' own
//! `keepalives_retries`, say): the string must mean the same to `psql`.

use std::net::IpAddr;
use std::time::Duration;

use tokio_postgres::Config;
use tokio_postgres::config::{ChannelBinding, LoadBalanceHosts, TargetSessionAttrs};

/// The keywords handled by the TLS set-up ([`crate::store::tls`]), not by [`Config`].
pub const TLS_KEYWORDS: [&str; 4] = ["sslmode", "sslrootcert", "sslcert", "sslkey"];

/// Every keyword the broker reads (the others are refused by name); libpq's
/// old `requiressl` is read as the `sslmode` it stands for, by [`super::parse`].
pub const SUPPORTED: [&str; 25] = [
    "host",
    "hostaddr",
    "port",
    "dbname",
    "user",
    "password",
    "options",
    "application_name",
    "fallback_application_name",
    "connect_timeout",
    "keepalives",
    "keepalives_idle",
    "keepalives_interval",
    "keepalives_count",
    "tcp_user_timeout",
    "target_session_attrs",
    "channel_binding",
    "load_balance_hosts",
    "client_encoding",
    "gssencmode",
    "sslnegotiation",
    "sslmode",
    "sslrootcert",
    "sslcert",
    "sslkey",
];

/// What the string set itself, each a default of the broker's must not
/// replace. A keyword counts as set even where its value means "the
/// system's default" (`connect_timeout=0`, `tcp_user_timeout=0`): that is
/// the string's choice too.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Explicit {
    pub connect_timeout: bool,
    pub keepalives: bool,
    pub keepalives_idle: bool,
    pub keepalives_interval: bool,
    pub keepalives_count: bool,
    pub tcp_user_timeout: bool,
    pub application_name: bool,
}

/// `pairs` (the last value of a keyword wins) as a [`Config`], without TLS
/// (the caller's); refusals name the keyword, never its value.
pub fn config(pairs: &[(String, String)]) -> Result<(Config, Explicit), String> {
    let mut config = Config::new();
    let mut explicit = Explicit::default();
    let last = |key: &str| super::value(pairs, key);
    let mut seen: Vec<&str> = Vec::new();
    for (key, _) in pairs.iter().rev() {
        if seen.contains(&key.as_str()) {
            continue;
        }
        seen.push(key);
        let value = last(key).unwrap_or_default();
        match key.as_str() {
            // An empty value is no value to libpq: the operating system's
            // user name, the user's database, no password (tokio-postgres
            // does the same with none).
            "user" if value.is_empty() => {}
            "user" => {
                config.user(value);
            }
            "password" if value.is_empty() => {}
            "password" => {
                config.password(value);
            }
            "dbname" if value.is_empty() => {}
            "dbname" => {
                config.dbname(value);
            }
            "options" => {
                if !value.is_empty() {
                    config.options(value);
                }
            }
            "application_name" => {
                if !value.is_empty() {
                    config.application_name(value);
                    explicit.application_name = true;
                }
            }
            "fallback_application_name" => {
                if last("application_name").is_none_or(str::is_empty) && !value.is_empty() {
                    config.application_name(value);
                    explicit.application_name = true;
                }
            }
            "host" => {
                for host in value.split(',') {
                    if host.is_empty() {
                        return Err("host: an empty entry in the list of hosts (libpq would \
                                    use its default host there; write the host)"
                            .into());
                    }
                    config.host(host);
                }
            }
            "hostaddr" => {
                for addr in value.split(',') {
                    let addr: IpAddr = addr
                        .parse()
                        .map_err(|_| "hostaddr: not an IP address".to_string())?;
                    config.hostaddr(addr);
                }
            }
            "port" => {
                for port in value.split(',') {
                    let port = if port.is_empty() {
                        5432
                    } else {
                        let n = int(key, port)?;
                        u16::try_from(n)
                            .ok()
                            .filter(|p| *p > 0)
                            .ok_or_else(|| "port: not a port number (1 to 65535)".to_string())?
                    };
                    config.port(port);
                }
            }
            "connect_timeout" => {
                // libpq: zero or less waits forever; under 2 s means 2 s.
                let seconds = int(key, value)?;
                if seconds > 0 {
                    config.connect_timeout(Duration::from_secs(seconds.max(2) as u64));
                }
                explicit.connect_timeout = true;
            }
            "keepalives" => {
                config.keepalives(int(key, value)? != 0);
                explicit.keepalives = true;
            }
            "keepalives_idle" => {
                if let Some(d) = positive_seconds(key, value)? {
                    config.keepalives_idle(d);
                }
                explicit.keepalives_idle = true;
            }
            "keepalives_interval" => {
                if let Some(d) = positive_seconds(key, value)? {
                    config.keepalives_interval(d);
                }
                explicit.keepalives_interval = true;
            }
            "keepalives_count" => {
                let n = int(key, value)?;
                if n > 0 {
                    config.keepalives_retries(n as u32);
                }
                explicit.keepalives_count = true;
            }
            "tcp_user_timeout" => {
                // libpq: milliseconds; zero is the system's default.
                let ms = int(key, value)?;
                if ms > 0 {
                    config.tcp_user_timeout(Duration::from_millis(ms as u64));
                }
                explicit.tcp_user_timeout = true;
            }
            "target_session_attrs" => {
                config.target_session_attrs(match value {
                    "any" => TargetSessionAttrs::Any,
                    "read-write" => TargetSessionAttrs::ReadWrite,
                    "read-only" => TargetSessionAttrs::ReadOnly,
                    _ => return Err(unsupported_value(key, "any, read-write or read-only")),
                });
            }
            "channel_binding" => {
                config.channel_binding(match value {
                    "disable" => ChannelBinding::Disable,
                    "prefer" => ChannelBinding::Prefer,
                    "require" => ChannelBinding::Require,
                    _ => return Err(unsupported_value(key, "disable, prefer or require")),
                });
            }
            "load_balance_hosts" => {
                config.load_balance_hosts(match value {
                    "disable" => LoadBalanceHosts::Disable,
                    "random" => LoadBalanceHosts::Random,
                    _ => return Err(unsupported_value(key, "disable or random")),
                });
            }
            "client_encoding" => {
                // tokio-postgres always speaks UTF-8.
                let v = value.to_ascii_lowercase().replace(['-', '_'], "");
                if v != "utf8" && v != "unicode" {
                    return Err(unsupported_value(
                        key,
                        "UTF8 (the broker always speaks UTF-8)",
                    ));
                }
            }
            "gssencmode" => {
                if value != "disable" && value != "prefer" {
                    return Err(unsupported_value(
                        key,
                        "disable or prefer (GSSAPI is not supported)",
                    ));
                }
            }
            "sslnegotiation" => {
                if value != "postgres" {
                    return Err(unsupported_value(key, "postgres"));
                }
            }
            k if TLS_KEYWORDS.contains(&k) => {}
            other => return Err(unsupported_keyword(other)),
        }
    }
    let (hosts, addrs, ports) = (
        config.get_hosts().len(),
        config.get_hostaddrs().len(),
        config.get_ports().len(),
    );
    if addrs > 0 && hosts > 0 && addrs != hosts {
        return Err("hostaddr: as many entries as host, or host left out".into());
    }
    let targets = hosts.max(addrs).max(1);
    if ports > 1 && ports != targets {
        return Err("port: one port, or one per host".into());
    }
    Ok((config, explicit))
}

/// A keyword the broker does not read. Named when it looks like a keyword;
/// otherwise it is more likely a piece of a URL that does not start with
/// `postgres://` (which may hold a password), and is not shown.
fn unsupported_keyword(keyword: &str) -> String {
    let supported = SUPPORTED.join(", ");
    let looks_like_one = !keyword.is_empty()
        && keyword.len() <= 40
        && keyword
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
    if looks_like_one {
        format!("{keyword}: not a connection option backchannel supports (it reads {supported})")
    } else {
        "a parameter name that is not a connection option (not shown: it may hold a secret); \
         a URL must start with postgres:// or postgresql://, with nothing before it"
            .into()
    }
}

fn unsupported_value(key: &str, allowed: &str) -> String {
    format!("{key}: the value is not one backchannel supports ({allowed})")
}

/// An integer as libpq reads one (`strtol` into an `int`): blanks around it
/// allowed, nothing else.
fn int(key: &str, value: &str) -> Result<i64, String> {
    let trimmed =
        value.trim_matches(|c: char| matches!(c, ' ' | '\t' | '\n' | '\x0b' | '\x0c' | '\r'));
    trimmed
        .parse::<i32>()
        .map(i64::from)
        .map_err(|_| format!("{key}: not an integer"))
}

fn positive_seconds(key: &str, value: &str) -> Result<Option<Duration>, String> {
    let n = int(key, value)?;
    Ok((n > 0).then(|| Duration::from_secs(n as u64)))
}

#[cfg(test)]
mod tests {
    use super::super::parse;
    use super::*;

    fn read(text: &str) -> Result<(Config, Explicit), String> {
        config(&parse(text).map_err(|e| e.to_string())?)
    }

    #[test]
    fn libpq_meanings_of_values() {
        let (c, e) = read(
            "host=a,b port=5433, dbname=bc user=app connect_timeout=1 tcp_user_timeout=1500 \
             keepalives_idle=0 keepalives_count=4 application_name=",
        )
        .unwrap();
        assert_eq!(c.get_hosts().len(), 2);
        assert_eq!(c.get_ports(), &[5433, 5432]);
        assert_eq!(c.get_connect_timeout(), Some(&Duration::from_secs(2)));
        assert_eq!(c.get_tcp_user_timeout(), Some(&Duration::from_millis(1500)));
        assert_eq!(c.get_keepalives_retries(), Some(4));
        assert_eq!(c.get_application_name(), None, "empty is none, as in libpq");
        assert!(e.connect_timeout && e.tcp_user_timeout && e.keepalives_idle);
        assert!(e.keepalives_count && !e.keepalives && !e.keepalives_interval);
        assert!(!e.application_name);
        let (c, _) = read("host=h user='' password='' dbname='' options=''").unwrap();
        assert_eq!(c.get_user(), None, "empty is none, as in libpq");
        assert_eq!(c.get_password(), None);
        assert_eq!(c.get_dbname(), None);
        assert_eq!(c.get_options(), None);
        let (c, e) = read("host=h fallback_application_name=f").unwrap();
        assert_eq!(c.get_application_name(), Some("f"));
        assert!(e.application_name);
        let (c, _) = read("host=h fallback_application_name=f application_name=a").unwrap();
        assert_eq!(c.get_application_name(), Some("a"));
        let (c, e) = read("host=h connect_timeout=0 tcp_user_timeout=' 0 '").unwrap();
        assert_eq!(c.get_connect_timeout(), None);
        assert_eq!(c.get_tcp_user_timeout(), None);
        assert!(e.connect_timeout && e.tcp_user_timeout);
    }

    #[test]
    fn refusals_name_the_keyword_never_the_value() {
        for (text, word) in [
            ("host=h port=s3cret", "port: not an integer"),
            ("host=h port=70000", "port: not a port number"),
            ("host=h sslcrl=/s3cret", "sslcrl: not a connection option"),
            ("host=h keepalives_retries=3", "keepalives_retries: not a"),
            ("host=h service=s3cret", "service: not a"),
            (
                "host=h target_session_attrs=primary",
                "target_session_attrs: the value",
            ),
            ("host=h gssencmode=require", "GSSAPI is not supported"),
            (
                "host=h client_encoding=LATIN1",
                "client_encoding: the value",
            ),
            ("host=a,,b", "host: an empty entry"),
            ("host=a,b port=1,2,3", "port: one port, or one per host"),
            ("hostaddr=s3cret", "hostaddr: not an IP address"),
        ] {
            let error = read(text).unwrap_err();
            assert!(error.contains(word), "{text}: {error}");
            assert!(!error.contains("s3cret"), "{text}: {error}");
        }
        // A URL with something before its scheme reads as one long keyword.
        let error = read(" postgres://app:s3cret@db/bc?sslmode=require").unwrap_err();
        assert!(!error.contains("s3cret"), "{error}");
        assert!(error.contains("must start with postgres://"), "{error}");
    }
}

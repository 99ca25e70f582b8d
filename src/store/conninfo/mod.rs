//! Connection strings read exactly as libpq reads them (`PQconninfoParse`):
//! the `key=value` form and the `postgres://` URI form, with libpq's blanks,
//! quotes, escapes, percent-decoding and "the last value of a keyword wins".
//! This is the one reading of `DATABASE_URL` and
//! `BACKCHANNEL_DIRECT_DATABASE_URL`: tokio-postgres never parses them.
//!
//! [`parse`] knows the grammar only: it returns every keyword with its
//! value, in the order written. [`config::config`] decides which keywords
//! the broker understands and makes them a `tokio_postgres::Config`; the TLS
//! keywords go to [`super::tls::TlsParams::resolve`]. A test
//! (`tests/it/ops/conninfo.rs`) runs libpq itself over generated strings and
//! holds the two readings equal.
//!
//! No error quotes the string: it may hold a password.

pub mod config;

/// A connection string libpq would refuse, or one whose decoded value is
/// not UTF-8 (libpq would pass such bytes on; we refuse them).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConninfoError {
    #[error("a parameter has no \"=\" after its name (at character {0})")]
    MissingEquals(usize),
    #[error("a quoted value has no closing quote")]
    UnterminatedQuote,
    #[error("an IPv6 address in [...] has no closing \"]\"")]
    UnterminatedIpv6,
    #[error("an IPv6 address in [...] is empty")]
    EmptyIpv6,
    #[error("an IPv6 address in [...] is followed by an unexpected character (at character {0})")]
    AfterIpv6(usize),
    #[error("a URI query parameter has no \"=\"")]
    QueryWithoutEquals,
    #[error("a URI query parameter has a second \"=\"")]
    QueryExtraEquals,
    #[error("a percent-encoded character is not two hexadecimal digits")]
    BadPercent,
    #[error("a percent-encoded value holds %00")]
    PercentZero,
    #[error("a value is not UTF-8 once percent-decoded")]
    NotUtf8,
}

/// Every `(keyword, value)` of `text` in the order written (a keyword may
/// come more than once: the last one counts, as in libpq).
pub fn parse(text: &str) -> Result<Vec<(String, String)>, ConninfoError> {
    let bytes = text.as_bytes();
    match uri_prefix(bytes) {
        // Positions count from the start of the whole string, as libpq's.
        Some(prefix) => parse_uri(&bytes[prefix..]).map_err(|e| match e {
            ConninfoError::AfterIpv6(at) => ConninfoError::AfterIpv6(at + prefix),
            e => e,
        }),
        None => parse_key_values(bytes),
    }
}

/// The value the string gives `keyword`, if any (the last one written).
pub fn value<'a>(pairs: &'a [(String, String)], keyword: &str) -> Option<&'a str> {
    pairs
        .iter()
        .rev()
        .find(|(k, _)| k == keyword)
        .map(|(_, v)| v.as_str())
}

fn uri_prefix(bytes: &[u8]) -> Option<usize> {
    ["postgresql://", "postgres://"]
        .iter()
        .find(|prefix| bytes.starts_with(prefix.as_bytes()))
        .map(|prefix| prefix.len())
}

/// The C library's `isspace` in the C locale.
fn is_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | 0x0b | 0x0c | b'\r')
}

fn text(bytes: Vec<u8>) -> Result<String, ConninfoError> {
    String::from_utf8(bytes).map_err(|_| ConninfoError::NotUtf8)
}

/// `key = value key='quoted value'`: blanks around `=`, values unquoted
/// (ending at a blank) or single-quoted, a backslash takes the next
/// character literally.
fn parse_key_values(s: &[u8]) -> Result<Vec<(String, String)>, ConninfoError> {
    let mut pairs = Vec::new();
    let mut i = 0;
    while i < s.len() {
        if is_space(s[i]) {
            i += 1;
            continue;
        }
        let start = i;
        let mut end = s.len();
        while i < s.len() {
            if s[i] == b'=' {
                end = i;
                break;
            }
            if is_space(s[i]) {
                end = i;
                while i < s.len() && is_space(s[i]) {
                    i += 1;
                }
                break;
            }
            i += 1;
        }
        if i >= s.len() || s[i] != b'=' {
            return Err(ConninfoError::MissingEquals(start + 1));
        }
        let name = s[start..end].to_vec();
        i += 1;
        while i < s.len() && is_space(s[i]) {
            i += 1;
        }
        let mut value = Vec::new();
        if i < s.len() && s[i] == b'\'' {
            i += 1;
            loop {
                match s.get(i) {
                    None => return Err(ConninfoError::UnterminatedQuote),
                    Some(b'\\') => {
                        i += 1;
                        if let Some(&c) = s.get(i) {
                            value.push(c);
                            i += 1;
                        }
                    }
                    Some(b'\'') => {
                        i += 1;
                        break;
                    }
                    Some(&c) => {
                        value.push(c);
                        i += 1;
                    }
                }
            }
        } else {
            while let Some(&c) = s.get(i) {
                i += 1;
                if is_space(c) {
                    break;
                }
                if c == b'\\' {
                    if let Some(&next) = s.get(i) {
                        value.push(next);
                        i += 1;
                    }
                } else {
                    value.push(c);
                }
            }
        }
        pairs.push(stored(text(name)?, text(value)?));
    }
    Ok(pairs)
}

/// libpq's translation of the old `requiressl` (`1...` is `sslmode=require`,
/// anything else `sslmode=prefer`), applied wherever a keyword is stored.
fn stored(key: String, value: String) -> (String, String) {
    if key == "requiressl" {
        let mode = if value.starts_with('1') {
            "require"
        } else {
            "prefer"
        };
        return ("sslmode".into(), mode.into());
    }
    (key, value)
}

/// `postgres://[user[:password]@][host][:port][,...][/dbname][?key=value&...]`
/// (after the prefix), with percent-decoding of every part.
fn parse_uri(s: &[u8]) -> Result<Vec<(String, String)>, ConninfoError> {
    let mut pairs = Vec::new();
    let store = |key: &str, raw: &[u8], pairs: &mut Vec<(String, String)>| {
        if !raw.is_empty() {
            pairs.push((key.to_owned(), text(decode(raw)?)?));
        }
        Ok::<(), ConninfoError>(())
    };
    let at = |p: usize| s.get(p).copied().unwrap_or(0);

    // Credentials: an '@' before the first '/'.
    let mut p = 0;
    while p < s.len() && s[p] != b'@' && s[p] != b'/' {
        p += 1;
    }
    if at(p) == b'@' {
        let mut q = 0;
        while s[q] != b':' && s[q] != b'@' {
            q += 1;
        }
        store("user", &s[..q], &mut pairs)?;
        if s[q] == b':' {
            let from = q + 1;
            let mut r = q;
            while s[r] != b'@' {
                r += 1;
            }
            store("password", &s[from..r], &mut pairs)?;
            q = r;
        }
        p = q + 1;
    } else {
        p = 0;
    }

    // Hosts and ports, comma-separated.
    let mut hosts = Vec::new();
    let mut ports = Vec::new();
    let mut terminator;
    loop {
        let host;
        if at(p) == b'[' {
            p += 1;
            let from = p;
            while p < s.len() && s[p] != b']' {
                p += 1;
            }
            if p >= s.len() {
                return Err(ConninfoError::UnterminatedIpv6);
            }
            if p == from {
                return Err(ConninfoError::EmptyIpv6);
            }
            host = &s[from..p];
            p += 1;
            if p < s.len() && !matches!(s[p], b':' | b'/' | b'?' | b',') {
                return Err(ConninfoError::AfterIpv6(p + 1));
            }
        } else {
            let from = p;
            while p < s.len() && !matches!(s[p], b':' | b'/' | b'?' | b',') {
                p += 1;
            }
            host = &s[from..p];
        }
        terminator = at(p);
        hosts.extend_from_slice(host);
        if terminator == b':' {
            p += 1;
            let from = p;
            while p < s.len() && !matches!(s[p], b'/' | b'?' | b',') {
                p += 1;
            }
            terminator = at(p);
            ports.extend_from_slice(&s[from..p]);
        }
        if terminator != b',' {
            break;
        }
        p += 1;
        hosts.push(b',');
        ports.push(b',');
    }
    store("host", &hosts, &mut pairs)?;
    store("port", &ports, &mut pairs)?;

    // The database, up to the query.
    if terminator != 0 && terminator != b'?' {
        p += 1;
        let from = p;
        while p < s.len() && s[p] != b'?' {
            p += 1;
        }
        terminator = at(p);
        store("dbname", &s[from..p], &mut pairs)?;
    }
    if terminator != 0 {
        parse_query(&s[p + 1..], &mut pairs)?;
    }
    Ok(pairs)
}

/// `key=value&key=value`: each part percent-decoded; `ssl=true` is
/// `sslmode=require` (libpq's nod to JDBC).
fn parse_query(s: &[u8], pairs: &mut Vec<(String, String)>) -> Result<(), ConninfoError> {
    let mut p = 0;
    while p < s.len() {
        let start = p;
        let mut equals = None;
        loop {
            match s.get(p) {
                Some(b'=') => {
                    if equals.is_some() {
                        return Err(ConninfoError::QueryExtraEquals);
                    }
                    equals = Some(p);
                    p += 1;
                }
                Some(b'&') | None => break,
                Some(_) => p += 1,
            }
        }
        let end = p;
        if p < s.len() {
            p += 1;
        }
        let Some(equals) = equals else {
            return Err(ConninfoError::QueryWithoutEquals);
        };
        let key = text(decode(&s[start..equals])?)?;
        let value = text(decode(&s[equals + 1..end])?)?;
        if key == "ssl" && value == "true" {
            pairs.push(("sslmode".into(), "require".into()));
        } else {
            pairs.push(stored(key, value));
        }
    }
    Ok(())
}

/// Percent-decoding as libpq does it: `%XX` with two hexadecimal digits,
/// never `%00`; `+` stays `+`.
fn decode(s: &[u8]) -> Result<Vec<u8>, ConninfoError> {
    let mut out = Vec::with_capacity(s.len());
    let mut i = 0;
    while i < s.len() {
        if s[i] != b'%' {
            out.push(s[i]);
            i += 1;
            continue;
        }
        let digit = |at: usize| s.get(at).and_then(|&c| (c as char).to_digit(16));
        let (Some(hi), Some(lo)) = (digit(i + 1), digit(i + 2)) else {
            return Err(ConninfoError::BadPercent);
        };
        let byte = (hi * 16 + lo) as u8;
        if byte == 0 {
            return Err(ConninfoError::PercentZero);
        }
        out.push(byte);
        i += 3;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(text: &str) -> Vec<(String, String)> {
        parse(text).unwrap()
    }

    fn owned(expected: &[(&str, &str)]) -> Vec<(String, String)> {
        expected
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    // The inputs of the tests of the former splitter (tls/conninfo.rs, which
    // took the TLS keywords out and left the rest to tokio-postgres): the
    // same keywords and values, now all of them read here.
    #[test]
    fn a_url_with_tls_parameters_and_others() {
        assert_eq!(
            pairs(
                "postgres://u:p%3Fa@db.example:5432/app?application_name=x&sslmode=verify-full&sslrootcert=%2Fetc%2Fca.pem&target_session_attrs=read-write"
            ),
            owned(&[
                ("user", "u"),
                ("password", "p?a"),
                ("host", "db.example"),
                ("port", "5432"),
                ("dbname", "app"),
                ("application_name", "x"),
                ("sslmode", "verify-full"),
                ("sslrootcert", "/etc/ca.pem"),
                ("target_session_attrs", "read-write"),
            ])
        );
        assert_eq!(
            pairs("postgresql://u@h/db?sslmode=require"),
            owned(&[
                ("user", "u"),
                ("host", "h"),
                ("dbname", "db"),
                ("sslmode", "require")
            ])
        );
        // A '?' in the password (before the '@') is not the query.
        assert_eq!(
            pairs("postgres://u:a?b@h/db"),
            owned(&[
                ("user", "u"),
                ("password", "a?b"),
                ("host", "h"),
                ("dbname", "db")
            ])
        );
    }

    #[test]
    fn key_value_strings_too() {
        assert_eq!(
            pairs(
                "host=h password='a \\' b' sslmode = verify-ca sslrootcert='/a b/ca.pem' dbname=app"
            ),
            owned(&[
                ("host", "h"),
                ("password", "a ' b"),
                ("sslmode", "verify-ca"),
                ("sslrootcert", "/a b/ca.pem"),
                ("dbname", "app"),
            ])
        );
    }

    #[test]
    fn blanks_after_an_equals_sign_are_skipped_as_libpq_does() {
        // `user=` with nothing before the blank takes the next word.
        assert_eq!(pairs("user= password=x"), owned(&[("user", "password=x")]));
        assert_eq!(
            pairs("user='' password=x"),
            owned(&[("user", ""), ("password", "x")])
        );
    }

    #[test]
    fn trailing_blanks_end_the_last_value() {
        for end in ["\n", " ", "\t", "\r\n", "\x0b", "\x0c", " \t\n"] {
            let text = format!("host=db user=app dbname=bc sslmode=require{end}");
            assert_eq!(value(&pairs(&text), "sslmode"), Some("require"), "{text:?}");
        }
        // U+00A0 is not a blank to libpq (C's isspace): part of the value.
        let text = "host=db sslmode=require\u{a0}";
        assert_eq!(value(&pairs(text), "sslmode"), Some("require\u{a0}"));
        // In a URL nothing is a blank: the newline belongs to the last value.
        let text = "postgres://db/bc?sslmode=require\n";
        assert_eq!(value(&pairs(text), "sslmode"), Some("require\n"));
    }

    #[test]
    fn libpq_s_old_spellings_and_the_last_value_wins() {
        let p = pairs("host=db requiressl=1 port=1 port=2");
        assert_eq!(value(&p, "sslmode"), Some("require"));
        assert_eq!(value(&p, "port"), Some("2"));
        assert_eq!(value(&pairs("requiressl=0"), "sslmode"), Some("prefer"));
        assert_eq!(
            value(&pairs("postgres://db?ssl=true"), "sslmode"),
            Some("require")
        );
        assert_eq!(
            pairs("postgres://db?ssl=1"),
            owned(&[("host", "db"), ("ssl", "1")])
        );
    }

    #[test]
    fn hosts_ports_and_ipv6() {
        assert_eq!(
            pairs("postgres://[::1]:5433,h2,[fe80::1%25eth0]:7/db"),
            owned(&[
                ("host", "::1,h2,fe80::1%eth0"),
                ("port", "5433,,7"),
                ("dbname", "db")
            ])
        );
        assert_eq!(
            parse("postgres://[::1"),
            Err(ConninfoError::UnterminatedIpv6)
        );
        assert_eq!(parse("postgres://[]/db"), Err(ConninfoError::EmptyIpv6));
        assert_eq!(
            parse("postgres://[::1]x/db"),
            Err(ConninfoError::AfterIpv6(17))
        );
        assert_eq!(pairs("postgres://"), owned(&[]));
        assert_eq!(pairs("postgres:///db"), owned(&[("dbname", "db")]));
    }

    #[test]
    fn refusals_as_libpq_s() {
        assert_eq!(parse("host"), Err(ConninfoError::MissingEquals(1)));
        assert_eq!(parse("host=a b"), Err(ConninfoError::MissingEquals(8)));
        assert_eq!(parse("password='x"), Err(ConninfoError::UnterminatedQuote));
        assert_eq!(
            parse("postgres://h/d?a"),
            Err(ConninfoError::QueryWithoutEquals)
        );
        assert_eq!(
            parse("postgres://h/d?a=b=c"),
            Err(ConninfoError::QueryExtraEquals)
        );
        assert_eq!(parse("postgres://h/d%4"), Err(ConninfoError::BadPercent));
        assert_eq!(parse("postgres://h/d%00"), Err(ConninfoError::PercentZero));
        assert_eq!(parse("postgres://h/d%FF"), Err(ConninfoError::NotUtf8));
        // No message holds a value.
        let error = parse("postgres://u:s3cret%zz@h/d").unwrap_err().to_string();
        assert!(!error.contains("s3cret"), "{error}");
    }
}

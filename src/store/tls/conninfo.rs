//! Our parameters out of a connection string, parsed as libpq parses it (a
//! URL, or `key=value` pairs with quotes and escapes); the rest is left, as
//! written, to tokio-postgres.

/// The parameters this module reads; tokio-postgres never sees them.
const OURS: [&str; 4] = ["sslmode", "sslrootcert", "sslcert", "sslkey"];

/// The connection string without our parameters, and their values in order.
/// A string this cannot read is returned whole, for tokio-postgres to refuse.
pub fn split(connection: &str) -> (String, Vec<(&'static str, String)>) {
    let parsed = if connection.starts_with("postgres://") || connection.starts_with("postgresql://")
    {
        split_url(connection)
    } else {
        split_key_values(connection)
    };
    parsed.unwrap_or_else(|| (connection.to_owned(), Vec::new()))
}

fn ours(key: &str) -> Option<&'static str> {
    OURS.iter().copied().find(|name| *name == key)
}

/// `postgres://user:password@host/db?sslmode=...`: like tokio-postgres, the
/// credentials end at the first `@`, and the query starts at the next `?`.
fn split_url(url: &str) -> Option<(String, Vec<(&'static str, String)>)> {
    let after_scheme = url.find("://")? + 3;
    let from = after_scheme + url[after_scheme..].find('@').map_or(0, |at| at + 1);
    let Some(question) = url[from..].find('?').map(|q| q + from) else {
        return Some((url.to_owned(), Vec::new()));
    };
    let mut kept = Vec::new();
    let mut found = Vec::new();
    for pair in url[question + 1..].split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        match ours(&percent_decode(key)?) {
            Some(name) => found.push((name, percent_decode(value)?)),
            None => kept.push(pair),
        }
    }
    let mut rest = url[..question].to_owned();
    if !kept.is_empty() {
        rest.push('?');
        rest.push_str(&kept.join("&"));
    }
    Some((rest, found))
}

fn percent_decode(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = text.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

type Chars<'a> = std::iter::Peekable<std::str::CharIndices<'a>>;

/// `host=... sslmode=...`: values plain or single-quoted, `\` escapes.
fn split_key_values(text: &str) -> Option<(String, Vec<(&'static str, String)>)> {
    let mut kept = Vec::new();
    let mut found = Vec::new();
    let mut chars = text.char_indices().peekable();
    loop {
        skip_space(&mut chars);
        let &(start, _) = chars.peek()?;
        let mut key = String::new();
        while let Some((_, c)) = chars.next_if(|(_, c)| *c != '=' && !c.is_whitespace()) {
            key.push(c);
        }
        skip_space(&mut chars);
        chars.next_if(|(_, c)| *c == '=')?;
        skip_space(&mut chars);
        let (value, end) = if chars.next_if(|(_, c)| *c == '\'').is_some() {
            quoted_value(&mut chars)?
        } else {
            plain_value(&mut chars, text.len())?
        };
        match ours(&key) {
            Some(name) => found.push((name, value)),
            None => kept.push(&text[start..end]),
        }
        if chars.peek().is_none() {
            return Some((kept.join(" "), found));
        }
    }
}

fn skip_space(chars: &mut Chars<'_>) {
    while chars.next_if(|(_, c)| c.is_whitespace()).is_some() {}
}

/// A value after its opening quote, up to the closing one; with the byte
/// offset just past the closing quote.
fn quoted_value(chars: &mut Chars<'_>) -> Option<(String, usize)> {
    let mut value = String::new();
    loop {
        match chars.next()? {
            (_, '\\') => value.push(chars.next()?.1),
            (i, '\'') => return Some((value, i + 1)),
            (_, c) => value.push(c),
        }
    }
}

/// A value up to the next blank or the end (`len`); with the byte offset of
/// its end.
fn plain_value(chars: &mut Chars<'_>, len: usize) -> Option<(String, usize)> {
    let mut value = String::new();
    loop {
        match chars.peek() {
            Some(&(i, c)) if c.is_whitespace() => return Some((value, i)),
            Some(&(_, '\\')) => {
                chars.next();
                value.push(chars.next()?.1);
            }
            Some(&(_, c)) => {
                value.push(c);
                chars.next();
            }
            None => return Some((value, len)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn our_parameters_leave_the_url_and_the_rest_stays() {
        let (rest, found) = split(
            "postgres://u:p%3Fa@db.example:5432/app?application_name=x&sslmode=verify-full&sslrootcert=%2Fetc%2Fca.pem&target_session_attrs=read-write",
        );
        assert_eq!(
            rest,
            "postgres://u:p%3Fa@db.example:5432/app?application_name=x&target_session_attrs=read-write"
        );
        assert_eq!(
            found,
            vec![
                ("sslmode", "verify-full".to_owned()),
                ("sslrootcert", "/etc/ca.pem".to_owned())
            ]
        );
        let (rest, found) = split("postgresql://u@h/db?sslmode=require");
        assert_eq!(rest, "postgresql://u@h/db");
        assert_eq!(found, vec![("sslmode", "require".to_owned())]);
        // A '?' in the password (before the '@') is not the query.
        let (rest, found) = split("postgres://u:a?b@h/db");
        assert_eq!(rest, "postgres://u:a?b@h/db");
        assert!(found.is_empty());
    }

    #[test]
    fn key_value_strings_too() {
        let (rest, found) = split(
            "host=h password='a \\' b' sslmode = verify-ca sslrootcert='/a b/ca.pem' dbname=app",
        );
        assert_eq!(rest, "host=h password='a \\' b' dbname=app");
        assert_eq!(
            found,
            vec![
                ("sslmode", "verify-ca".to_owned()),
                ("sslrootcert", "/a b/ca.pem".to_owned())
            ]
        );
    }
}

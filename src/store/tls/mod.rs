//! TLS to PostgreSQL with libpq's `sslmode` semantics, on rustls.
//!
//! tokio-postgres' own `Config` knows `sslmode` `disable`, `prefer` and
//! `require`, and none of the certificate parameters. The connection string
//! is read once, by [`crate::store::conninfo`]; [`TlsParams::resolve`]
//! (here) takes `sslmode`, `sslrootcert`, `sslcert` and `sslkey` from its
//! keywords and applies libpq's rules to them (tokio-postgres is given the
//! nearest mode it knows, [`SslMode::for_tokio_postgres`]);
//! [`TlsParams::connector`] (in `verify`) builds a rustls connector that
//! checks what libpq would check:
//!
//! | sslmode | encrypted | the server's certificate |
//! | --- | --- | --- |
//! | `disable` | never | - |
//! | `prefer` (default) | when the server offers TLS | not checked; with `sslrootcert`, its chain |
//! | `require` | always | not checked; with `sslrootcert`, its chain (as `verify-ca`) |
//! | `verify-ca` | always | its chain, up to `sslrootcert` |
//! | `verify-full` | always | its chain and the host name |
//!
//! A parameter missing from the string comes from `PGSSLMODE`,
//! `PGSSLROOTCERT`, `PGSSLCERT` or `PGSSLKEY`, as in libpq. Unlike libpq,
//! nothing is read from `~/.postgresql/`: every file is named. A failed
//! connection is explained in words naming the parameter to change
//! ([`TlsParams::explain`], in `explain`).

mod explain;
mod verify;

use std::path::PathBuf;

pub use explain::endpoints;

/// libpq's `sslmode`, less `allow` (plain first, TLS only when refused).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SslMode {
    Disable,
    Prefer,
    Require,
    VerifyCa,
    VerifyFull,
}

impl SslMode {
    fn parse(value: &str) -> Result<SslMode, String> {
        Ok(match value {
            "disable" => SslMode::Disable,
            "prefer" => SslMode::Prefer,
            "require" => SslMode::Require,
            "verify-ca" => SslMode::VerifyCa,
            "verify-full" => SslMode::VerifyFull,
            "allow" => {
                return Err("sslmode=allow is not supported: use prefer, or disable".into());
            }
            _ => {
                return Err(
                    "sslmode must be disable, prefer, require, verify-ca or verify-full".into(),
                );
            }
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            SslMode::Disable => "disable",
            SslMode::Prefer => "prefer",
            SslMode::Require => "require",
            SslMode::VerifyCa => "verify-ca",
            SslMode::VerifyFull => "verify-full",
        }
    }

    /// The mode tokio-postgres is given: whether to ask for TLS, and whether
    /// a refusal is fatal. What is checked of the certificate is ours.
    pub fn for_tokio_postgres(self) -> tokio_postgres::config::SslMode {
        use tokio_postgres::config::SslMode as Pg;
        match self {
            SslMode::Disable => Pg::Disable,
            SslMode::Prefer => Pg::Prefer,
            SslMode::Require | SslMode::VerifyCa | SslMode::VerifyFull => Pg::Require,
        }
    }
}

/// The certificates the server's chain must lead to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Roots {
    File(PathBuf),
    /// `sslrootcert=system`: the operating system's trusted roots.
    System,
}

/// The TLS parameters of one connection string, resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsParams {
    pub mode: SslMode,
    pub roots: Option<Roots>,
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
}

/// What is checked of the server's certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Check {
    Nothing,
    Chain,
    ChainAndHost,
}

impl TlsParams {
    /// Resolve the TLS keywords of a connection string's `pairs` (as
    /// [`crate::store::conninfo::parse`] reads them; the last of each wins),
    /// falling back to `PGSSLMODE` & co. from `env`, with libpq's rules.
    ///
    /// Never weaker than the string says: an `sslmode` written twice (or
    /// `requiressl`, `ssl=true`) whose later value is weaker than an
    /// earlier one is refused, where libpq would take the last.
    pub fn resolve(
        pairs: &[(String, String)],
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<TlsParams, String> {
        let value = |name: &str, variable: &str| -> Option<String> {
            crate::store::conninfo::value(pairs, name)
                .map(str::to_owned)
                .or_else(|| env(variable).filter(|v| !v.is_empty()))
        };
        refuse_a_weaker_repeat(pairs)?;
        let mode = value("sslmode", "PGSSLMODE")
            .map(|m| SslMode::parse(&m))
            .transpose()?;
        let roots = value("sslrootcert", "PGSSLROOTCERT").map(|r| match r.as_str() {
            "system" => Roots::System,
            _ => Roots::File(r.into()),
        });
        let cert = value("sslcert", "PGSSLCERT").map(PathBuf::from);
        let key = value("sslkey", "PGSSLKEY").map(PathBuf::from);
        let mode = match (mode, &roots) {
            (None, Some(Roots::System)) => SslMode::VerifyFull,
            (Some(mode), Some(Roots::System)) if mode != SslMode::VerifyFull => {
                return Err(format!(
                    "sslrootcert=system needs sslmode=verify-full, not {}: the system's roots \
                     vouch for hosts of every name, so the host name must be checked",
                    mode.as_str()
                ));
            }
            (mode, _) => mode.unwrap_or(SslMode::Prefer),
        };
        if matches!(mode, SslMode::VerifyCa | SslMode::VerifyFull) && roots.is_none() {
            return Err(format!(
                "sslmode={} needs sslrootcert: the CA certificate file (PEM) that signed the \
                 server's certificate, or sslrootcert=system for the system's trusted roots",
                mode.as_str()
            ));
        }
        if cert.is_some() != key.is_some() {
            return Err("sslcert and sslkey go together: give both, or neither".into());
        }
        Ok(TlsParams {
            mode,
            roots,
            cert,
            key,
        })
    }

    fn check(&self) -> Check {
        match (self.mode, &self.roots) {
            (SslMode::VerifyFull, _) => Check::ChainAndHost,
            (_, Some(_)) => Check::Chain,
            (_, None) => Check::Nothing,
        }
    }
}

/// How much an `sslmode` value promises, for comparing two of them
/// (`allow` included: libpq knows it); `None` for a value libpq refuses.
fn strength(mode: &str) -> Option<u8> {
    [
        "disable",
        "allow",
        "prefer",
        "require",
        "verify-ca",
        "verify-full",
    ]
    .iter()
    .position(|m| *m == mode)
    .map(|p| p as u8)
}

/// Refuse a string whose `sslmode` is written more than once with a later
/// value weaker than an earlier one (`sslmode=verify-full ... sslmode=prefer`,
/// a template that appends its own default): libpq would take the last, and
/// the string would connect with less than it says in one place. In doubt,
/// no start. An earlier value libpq would refuse is refused too.
fn refuse_a_weaker_repeat(pairs: &[(String, String)]) -> Result<(), String> {
    let modes: Vec<&str> = pairs
        .iter()
        .filter(|(k, _)| k == "sslmode")
        .map(|(_, v)| v.as_str())
        .collect();
    let mut strongest: Option<(u8, &str)> = None;
    for mode in modes.iter().copied() {
        let Some(level) = strength(mode) else {
            if modes.len() > 1 {
                return Err(
                    "sslmode is given more than once, once with a value that is not a mode: \
                     give it once"
                        .into(),
                );
            }
            continue;
        };
        if let Some((best, named)) = strongest {
            if level < best {
                return Err(format!(
                    "sslmode is given more than once, and a later {mode} would weaken an \
                     earlier {named} (libpq takes the last; backchannel refuses): give it once \
                     (requiressl and ssl=true count as sslmode)"
                ));
            }
        }
        strongest = Some((level, mode));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn no_env(_: &str) -> Option<String> {
        None
    }

    /// The keywords of `url`, read as libpq reads them.
    fn pairs(url: &str) -> Vec<(String, String)> {
        crate::store::conninfo::parse(url).expect("a valid connection string")
    }

    fn resolve(url: &str) -> Result<TlsParams, String> {
        TlsParams::resolve(&pairs(url), &no_env)
    }

    #[test]
    fn libpq_rules() {
        assert_eq!(resolve("postgres://h/db").unwrap().mode, SslMode::Prefer);
        let p = resolve("postgres://h/db?sslmode=require").unwrap();
        assert_eq!(p.check(), Check::Nothing);
        let p = resolve("postgres://h/db?sslmode=require&sslrootcert=/ca.pem").unwrap();
        assert_eq!(
            p.check(),
            Check::Chain,
            "require with a root behaves as verify-ca"
        );
        let p = resolve("postgres://h/db?sslmode=verify-full&sslrootcert=/ca.pem").unwrap();
        assert_eq!(p.check(), Check::ChainAndHost);
        let p = resolve("postgres://h/db?sslrootcert=system").unwrap();
        assert_eq!(p.mode, SslMode::VerifyFull);
        assert!(
            resolve("postgres://h/db?sslmode=require&sslrootcert=system")
                .unwrap_err()
                .contains("verify-full")
        );
        assert!(
            resolve("postgres://h/db?sslmode=verify-ca")
                .unwrap_err()
                .contains("needs sslrootcert")
        );
        assert!(
            resolve("postgres://h/db?sslmode=require&sslcert=/c.pem")
                .unwrap_err()
                .contains("sslkey")
        );
        assert!(resolve("postgres://h/db?sslmode=allow").is_err());
        assert!(resolve("postgres://h/db?sslmode=sometimes").is_err());
    }

    #[test]
    fn the_environment_fills_what_the_url_leaves_out() {
        let env = |name: &str| match name {
            "PGSSLMODE" => Some("verify-full".to_owned()),
            "PGSSLROOTCERT" => Some("/env/ca.pem".to_owned()),
            _ => None,
        };
        let p = TlsParams::resolve(&pairs("postgres://h/db"), &env).unwrap();
        assert_eq!(p.mode, SslMode::VerifyFull);
        assert_eq!(p.roots, Some(Roots::File("/env/ca.pem".into())));
        let p = TlsParams::resolve(&pairs("postgres://h/db?sslmode=disable"), &env).unwrap();
        assert_eq!(p.mode, SslMode::Disable, "the URL wins");
    }

    #[test]
    fn a_mode_the_string_states_is_never_weakened() {
        // Trailing blanks of an env file or a mounted secret: still require.
        for text in [
            "host=db user=app dbname=bc sslmode=require\n",
            "host=db sslmode=require ",
            "host=db sslmode=require\t",
            "host=db sslmode='require'\r\n",
            "host=db requiressl=1\n",
            "postgres://app@db/bc?ssl=true",
        ] {
            assert_eq!(resolve(text).unwrap().mode, SslMode::Require, "{text:?}");
        }
        // The environment never weakens what the string says.
        let env = |name: &str| (name == "PGSSLMODE").then(|| "disable".to_owned());
        let p = TlsParams::resolve(&pairs("host=db sslmode=require\n"), &env).unwrap();
        assert_eq!(p.mode, SslMode::Require);
        // Said twice, weaker the second time: refused, where libpq takes the last.
        for text in [
            "host=db sslmode=require sslmode=prefer",
            "host=db sslmode=verify-full sslrootcert=/ca.pem requiressl=0",
            "postgres://db/bc?ssl=true&sslmode=disable",
            "host=db sslmode=bogus sslmode=require",
        ] {
            let error = resolve(text).unwrap_err();
            assert!(error.contains("more than once"), "{text}: {error}");
        }
        // Stronger the second time, or the same: as libpq, the last.
        let p = resolve("postgres://db/bc?ssl=true&sslmode=verify-full&sslrootcert=/ca.pem");
        assert_eq!(p.unwrap().mode, SslMode::VerifyFull);
        assert_eq!(
            resolve("host=db sslmode=require sslmode=require")
                .unwrap()
                .mode,
            SslMode::Require
        );
    }
}

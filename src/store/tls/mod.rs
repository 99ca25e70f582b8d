//! TLS to PostgreSQL with libpq's `sslmode` semantics, on rustls.
//!
//! tokio-postgres' own `Config` knows `sslmode` `disable`, `prefer` and
//! `require`, and none of the certificate parameters. [`split`] (in
//! `conninfo`) takes `sslmode`, `sslrootcert`, `sslcert` and `sslkey` out of a
//! connection string (URL or `key=value` form) and leaves the rest to
//! tokio-postgres with the nearest mode it knows; [`TlsParams::resolve`] (here)
//! applies libpq's rules to them; [`TlsParams::connector`] (in `verify`)
//! builds a rustls connector that checks what libpq would check:
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

mod conninfo;
mod explain;
mod verify;

use std::path::PathBuf;

pub use conninfo::split;
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
    /// Resolve the parameters found in the string (the last of each wins),
    /// falling back to `PGSSLMODE` & co. from `env`, with libpq's rules.
    pub fn resolve(
        found: &[(&'static str, String)],
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<TlsParams, String> {
        let value = |name: &str, variable: &str| -> Option<String> {
            found
                .iter()
                .rev()
                .find(|(n, _)| *n == name)
                .map(|(_, v)| v.clone())
                .or_else(|| env(variable).filter(|v| !v.is_empty()))
        };
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

#[cfg(test)]
mod tests {
    use super::*;

    fn no_env(_: &str) -> Option<String> {
        None
    }

    fn resolve(url: &str) -> Result<TlsParams, String> {
        TlsParams::resolve(&split(url).1, &no_env)
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
        let p = TlsParams::resolve(&split("postgres://h/db").1, &env).unwrap();
        assert_eq!(p.mode, SslMode::VerifyFull);
        assert_eq!(p.roots, Some(Roots::File("/env/ca.pem".into())));
        let p = TlsParams::resolve(&split("postgres://h/db?sslmode=disable").1, &env).unwrap();
        assert_eq!(p.mode, SslMode::Disable, "the URL wins");
    }
}

//! A failed connection in words: where it went (host and port, or the
//! socket), then why: the host name did not resolve, nothing listens there,
//! no answer in time, the server's own refusal (authentication, a missing
//! database), or what TLS found wrong with the certificate, naming the
//! parameter to change. Never the connection string.

use std::io::ErrorKind;

use rustls::CertificateError;
use tokio_postgres::Config;
use tokio_postgres::config::Host;
use tokio_postgres::error::SqlState;

use super::{Roots, SslMode, TlsParams};

impl TlsParams {
    /// What went wrong with a connection to `config`'s server(s): where, then
    /// why, in words naming what to change. Never includes the connection
    /// string (nor its password).
    pub fn explain(&self, config: &Config, error: &tokio_postgres::Error) -> String {
        format!("{}: {}", endpoints(config), self.cause(error))
    }

    /// Why a connection failed (without where).
    fn cause(&self, error: &tokio_postgres::Error) -> String {
        if let Some(db) = error.as_db_error() {
            let mut text = format!(
                "the server says: {} (SQLSTATE {})",
                db.message(),
                db.code().code()
            );
            if self.mode == SslMode::Disable
                && *db.code() == SqlState::INVALID_AUTHORIZATION_SPECIFICATION
            {
                text.push_str(
                    "; with sslmode=disable the connection is not encrypted, and the server \
                     may accept only TLS connections (hostssl in pg_hba.conf): use \
                     sslmode=require or stronger",
                );
            }
            return text;
        }
        let mut source = std::error::Error::source(error);
        while let Some(cause) = source {
            let tls = cause.downcast_ref::<rustls::Error>().or_else(|| {
                cause
                    .downcast_ref::<std::io::Error>()
                    .and_then(|io| io.get_ref())
                    .and_then(|inner| inner.downcast_ref::<rustls::Error>())
            });
            if let Some(tls) = tls {
                return self.explain_tls(tls);
            }
            if cause.to_string() == "server does not support TLS" {
                return format!(
                    "the server refused TLS (is ssl = on in postgresql.conf?), and \
                     sslmode={} requires it",
                    self.mode.as_str()
                );
            }
            if let Some(io) = cause.downcast_ref::<std::io::Error>() {
                return unreachable(io);
            }
            source = cause.source();
        }
        match std::error::Error::source(error) {
            Some(cause) => format!("{error}: {cause}"),
            None => error.to_string(),
        }
    }

    fn explain_tls(&self, error: &rustls::Error) -> String {
        let roots = match &self.roots {
            Some(Roots::File(path)) => format!("the CA of sslrootcert ({})", path.display()),
            Some(Roots::System) => "any of the system's trusted roots (sslrootcert=system)".into(),
            None => "a trusted CA".into(),
        };
        match error {
            rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer) => {
                format!("TLS: the server's certificate is not signed by {roots} (unknown CA)")
            }
            // A CA of the same name as the one that signed it, but not that CA.
            rustls::Error::InvalidCertificate(CertificateError::BadSignature) => format!(
                "TLS: the server's certificate is not signed by {roots} (unknown CA: a CA of \
                 the same name, whose signature does not match)"
            ),
            rustls::Error::InvalidCertificate(CertificateError::NotValidForNameContext {
                expected,
                presented,
            }) => format!(
                "TLS: the server's certificate is not valid for the host name {} (it names {}); \
                 sslmode=verify-full checks that the host in the URL is one the certificate names",
                expected.to_str(),
                presented
                    .iter()
                    .map(|name| unquote(name))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            rustls::Error::InvalidCertificate(CertificateError::NotValidForName) => {
                "TLS: the server's certificate is not valid for the host name in the URL \
                 (wrong host name); sslmode=verify-full checks it"
                    .into()
            }
            rustls::Error::InvalidCertificate(
                CertificateError::Expired | CertificateError::ExpiredContext { .. },
            ) => "TLS: the server's certificate has expired".into(),
            rustls::Error::InvalidCertificate(
                CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. },
            ) => "TLS: the server's certificate is not valid yet (check the clocks)".into(),
            rustls::Error::AlertReceived(alert) => format!(
                "TLS: the server ended the handshake ({alert:?}): it may want a client \
                 certificate (sslcert and sslkey), or refuse the one given"
            ),
            other => format!("TLS handshake failed: {other}"),
        }
    }
}

/// Where a connection goes: `host:port` (or the Unix socket), each host of a
/// multi-host string in order, its `hostaddr` in brackets when given.
pub fn endpoints(config: &Config) -> String {
    let ports = config.get_ports();
    let port = |i: usize| ports.get(i).or(ports.first()).copied().unwrap_or(5432);
    let hosts = config.get_hosts();
    let addrs = config.get_hostaddrs();
    let count = hosts.len().max(addrs.len());
    if count == 0 {
        return "(no host)".into();
    }
    let each: Vec<String> = (0..count)
        .map(|i| {
            let shown = match (hosts.get(i), addrs.get(i)) {
                (Some(Host::Tcp(name)), Some(addr)) => format!("{name} [{addr}]"),
                (Some(Host::Tcp(name)), None) => bracketed(name),
                (Some(Host::Unix(dir)), _) => {
                    return format!("{}/.s.PGSQL.{}", dir.display(), port(i));
                }
                (None, Some(addr)) => bracketed(&addr.to_string()),
                (None, None) => "?".into(),
            };
            format!("{shown}:{}", port(i))
        })
        .collect();
    if each.len() == 1 {
        each.into_iter().next().unwrap_or_default()
    } else {
        format!(
            "{} (each tried in turn; the last one's failure)",
            each.join(", ")
        )
    }
}

/// An IPv6 address in brackets, so that its port stands apart.
fn bracketed(host: &str) -> String {
    if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]")
    } else {
        host.to_owned()
    }
}

/// A connection that never reached a server, by the socket error's kind.
/// A failed name lookup has no kind of its own in the standard library
/// (`getaddrinfo`'s errors are "uncategorized"), so it is told by the text
/// the standard library gives it, which is also quoted.
fn unreachable(io: &std::io::Error) -> String {
    let text = io.to_string();
    match io.kind() {
        ErrorKind::ConnectionRefused => format!(
            "connection refused: nothing listens there (is PostgreSQL running? check the host \
             and port of the URL, and listen_addresses and port in postgresql.conf) ({text})"
        ),
        ErrorKind::TimedOut => format!(
            "no answer within the connect timeout: a firewall drops the packets, or the \
             address is wrong ({text})"
        ),
        ErrorKind::HostUnreachable | ErrorKind::NetworkUnreachable => {
            format!("the host cannot be reached from here (routing, firewall or VPN) ({text})")
        }
        ErrorKind::NotFound => format!(
            "no such socket: is PostgreSQL running, with its socket in that folder \
             (unix_socket_directories)? ({text})"
        ),
        ErrorKind::PermissionDenied => format!("permission denied ({text})"),
        _ if text.starts_with("failed to lookup address information")
            || text.contains("could not resolve any addresses") =>
        {
            format!("the host name does not resolve (DNS lookup failed: {text})")
        }
        _ => format!("cannot connect ({text})"),
    }
}

/// `DnsName("localhost")` (how rustls shows a presented name) as `localhost`.
fn unquote(name: &str) -> &str {
    match (name.find('"'), name.rfind('"')) {
        (Some(first), Some(last)) if first < last => &name[first + 1..last],
        _ => name,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(url: &str) -> Config {
        url.parse().expect("a valid connection string")
    }

    #[test]
    fn endpoints_name_each_host_and_port() {
        assert_eq!(
            endpoints(&config("postgres://u@db.example/x")),
            "db.example:5432"
        );
        assert_eq!(
            endpoints(&config("postgres://u@[::1]:6432/x")),
            "[::1]:6432"
        );
        assert_eq!(
            endpoints(&config("host=/run/postgresql port=5433 user=u")),
            "/run/postgresql/.s.PGSQL.5433"
        );
        assert_eq!(
            endpoints(&config("host=a,b port=1,2 user=u")),
            "a:1, b:2 (each tried in turn; the last one's failure)"
        );
        assert_eq!(
            endpoints(&config("host=db hostaddr=10.0.0.7 user=u")),
            "db [10.0.0.7]:5432"
        );
    }

    #[test]
    fn socket_errors_say_which_failure() {
        let refused = std::io::Error::from(ErrorKind::ConnectionRefused);
        assert!(unreachable(&refused).starts_with("connection refused"));
        let dns = std::io::Error::other(
            "failed to lookup address information: Name or service not known",
        );
        assert!(unreachable(&dns).starts_with("the host name does not resolve"));
        let timeout = std::io::Error::new(ErrorKind::TimedOut, "connection timed out");
        assert!(unreachable(&timeout).starts_with("no answer"));
    }
}

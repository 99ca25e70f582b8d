//! A failed connection in words: the server's own refusal, or what TLS
//! found wrong with the certificate, naming the parameter to change. Never
//! the connection string.

use rustls::CertificateError;
use tokio_postgres::error::SqlState;

use super::{Roots, SslMode, TlsParams};

impl TlsParams {
    /// What went wrong with a connection, in words naming the parameter to
    /// change. Never includes the connection string.
    pub fn explain(&self, error: &tokio_postgres::Error) -> String {
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
            source = cause.source();
        }
        error.to_string()
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

/// `DnsName("localhost")` (how rustls shows a presented name) as `localhost`.
fn unquote(name: &str) -> &str {
    match (name.find('"'), name.rfind('"')) {
        (Some(first), Some(last)) if first < last => &name[first + 1..last],
        _ => name,
    }
}

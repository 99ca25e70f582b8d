//! TLS to PostgreSQL with libpq's `sslmode` semantics, on rustls.
//!
//! tokio-postgres' own `Config` knows `sslmode` `disable`, `prefer` and
//! `require`, and none of the certificate parameters. [`split`] takes
//! `sslmode`, `sslrootcert`, `sslcert` and `sslkey` out of a connection string
//! (URL or `key=value` form) and leaves the rest to tokio-postgres with the
//! nearest mode it knows; [`TlsParams::connector`] builds a rustls connector
//! that checks what libpq would check:
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
//! nothing is read from `~/.postgresql/`: every file is named.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme,
};
use tokio_postgres::error::SqlState;
use tokio_postgres_rustls::MakeRustlsConnect;

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

/// `host=... sslmode=...`: values plain or single-quoted, `\` escapes.
fn split_key_values(text: &str) -> Option<(String, Vec<(&'static str, String)>)> {
    let mut kept = Vec::new();
    let mut found = Vec::new();
    let mut chars = text.char_indices().peekable();
    let skip_space = |chars: &mut std::iter::Peekable<std::str::CharIndices>| {
        while chars.next_if(|(_, c)| c.is_whitespace()).is_some() {}
    };
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
        let mut value = String::new();
        let end;
        if chars.next_if(|(_, c)| *c == '\'').is_some() {
            loop {
                match chars.next()? {
                    (_, '\\') => value.push(chars.next()?.1),
                    (i, '\'') => {
                        end = i + 1;
                        break;
                    }
                    (_, c) => value.push(c),
                }
            }
        } else {
            loop {
                match chars.peek() {
                    Some(&(i, c)) if c.is_whitespace() => {
                        end = i;
                        break;
                    }
                    Some(&(_, '\\')) => {
                        chars.next();
                        value.push(chars.next()?.1);
                    }
                    Some(&(_, c)) => {
                        value.push(c);
                        chars.next();
                    }
                    None => {
                        end = text.len();
                        break;
                    }
                }
            }
        }
        match ours(&key) {
            Some(name) => found.push((name, value)),
            None => kept.push(&text[start..end]),
        }
        if chars.peek().is_none() {
            return Some((kept.join(" "), found));
        }
    }
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

    /// The rustls connector: reads the certificate files now, so that a
    /// missing or unreadable file is found at start-up.
    pub fn connector(&self) -> Result<MakeRustlsConnect, String> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| format!("TLS set-up failed: {e}"))?
            .dangerous();
        let verifier: Arc<dyn ServerCertVerifier> = match self.check() {
            Check::Nothing => Arc::new(NoCheck(provider)),
            Check::Chain => Arc::new(ChainOnly(self.webpki(provider)?)),
            Check::ChainAndHost => self.webpki(provider)?,
        };
        let builder = builder.with_custom_certificate_verifier(verifier);
        let mut config = match (&self.cert, &self.key) {
            (Some(cert), Some(key)) => builder
                .with_client_auth_cert(read_certs(cert, "sslcert")?, read_key(key)?)
                .map_err(|e| {
                    format!(
                        "the client certificate (sslcert {}, sslkey {}) cannot be used: {e}",
                        cert.display(),
                        key.display()
                    )
                })?,
            _ => builder.with_no_client_auth(),
        };
        // What PostgreSQL 17 asks of direct TLS; older servers ignore it.
        config.alpn_protocols = vec![b"postgresql".to_vec()];
        Ok(MakeRustlsConnect::new(config))
    }

    fn webpki(&self, provider: Arc<CryptoProvider>) -> Result<Arc<WebPkiServerVerifier>, String> {
        let mut store = RootCertStore::empty();
        match &self.roots {
            Some(Roots::File(path)) => {
                for cert in read_certs(path, "sslrootcert")? {
                    store.add(cert).map_err(|e| {
                        format!(
                            "the sslrootcert file {} holds a certificate that cannot be used: {e}",
                            path.display()
                        )
                    })?;
                }
            }
            Some(Roots::System) => {
                let found = rustls_native_certs::load_native_certs();
                store.add_parsable_certificates(found.certs);
                if store.is_empty() {
                    return Err("sslrootcert=system: no system root certificates were found".into());
                }
            }
            None => return Err("no sslrootcert to check the server's certificate with".into()),
        }
        WebPkiServerVerifier::builder_with_provider(Arc::new(store), provider)
            .build()
            .map_err(|e| format!("sslrootcert cannot be used: {e}"))
    }

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

fn read_certs(path: &Path, what: &str) -> Result<Vec<CertificateDer<'static>>, String> {
    let pem = std::fs::read(path)
        .map_err(|e| format!("cannot read the {what} file {}: {e}", path.display()))?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("the {what} file {} is not valid PEM: {e}", path.display()))?;
    if certs.is_empty() {
        return Err(format!(
            "the {what} file {} holds no PEM certificate",
            path.display()
        ));
    }
    Ok(certs)
}

fn read_key(path: &Path) -> Result<PrivateKeyDer<'static>, String> {
    let pem = std::fs::read(path)
        .map_err(|e| format!("cannot read the sslkey file {}: {e}", path.display()))?;
    PrivateKeyDer::from_pem_slice(&pem).map_err(|_| {
        format!(
            "the sslkey file {} holds no unencrypted private key in PEM (PKCS#8, PKCS#1 or SEC1)",
            path.display()
        )
    })
}

/// `prefer` and `require` without `sslrootcert`: encrypted, nothing checked
/// of the certificate (the handshake's own signatures still are).
#[derive(Debug)]
struct NoCheck(Arc<CryptoProvider>);

impl ServerCertVerifier for NoCheck {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// `verify-ca`: the chain must lead to the roots; any host name will do.
#[derive(Debug)]
struct ChainOnly(Arc<WebPkiServerVerifier>);

impl ServerCertVerifier for ChainOnly {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        // The chain is checked before the name: a name error means a good chain.
        match self
            .0
            .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
        {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
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

    #[test]
    fn a_missing_root_file_is_named() {
        let p = resolve("postgres://h/db?sslmode=verify-full&sslrootcert=/no/such/ca.pem").unwrap();
        let error = p.connector().err().unwrap();
        assert!(
            error.contains("cannot read the sslrootcert file /no/such/ca.pem"),
            "{error}"
        );
    }
}

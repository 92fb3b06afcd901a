//! What the processes of a cluster prove to each other, read and checked:
//! the TLS files (`--tls-cert`, `--tls-key`, `--tls-ca`, PEM) and the shared
//! secret (`CUSTVAL_CLUSTER_SECRET`, or the file named by
//! `CUSTVAL_CLUSTER_SECRET_FILE`; never a flag, which `ps` would show), and the
//! warning for a process listening beyond loopback without them. No network
//! code: `cluster` puts these on its connections. Also the credential
//! derived from the secret for executors' Flight ports ([`FlightToken`]: its
//! derivation and its form in a user agent) and the process's one TLS
//! crypto provider ([`install_crypto_provider`]).

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use subtle::ConstantTimeEq;

use crate::error::{Error, Result};

/// Environment variable holding the cluster secret itself.
pub const SECRET_ENV: &str = "CUSTVAL_CLUSTER_SECRET";
/// Environment variable naming a file that holds the cluster secret.
pub const SECRET_FILE_ENV: &str = "CUSTVAL_CLUSTER_SECRET_FILE";
/// The gRPC metadata key every client sends the secret in.
pub const SECRET_HEADER: &str = "x-custval-cluster-secret";
/// Shortest secret accepted, in bytes (`openssl rand -hex 32` gives 64).
pub const MIN_SECRET_LEN: usize = 16;
/// The user-agent product that carries the [`FlightToken`]:
/// `custval-flight/<token>`.
pub const FLIGHT_AGENT_PRODUCT: &str = "custval-flight";
/// What the [`FlightToken`] is the HMAC-SHA256 of, keyed with the secret;
/// a new version of the credential changes it.
pub const FLIGHT_TOKEN_CONTEXT: &[u8] = b"custval flight v1";

/// The PEM files given with `--tls-cert`, `--tls-key` and `--tls-ca` (or
/// `CUSTVAL_TLS_CERT`, `CUSTVAL_TLS_KEY`, `CUSTVAL_TLS_CA`), not yet read.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsFiles {
    /// This process's certificate chain (PEM).
    pub cert: Option<PathBuf>,
    /// The private key of `cert` (PEM).
    pub key: Option<PathBuf>,
    /// The certificate authority peers are verified against (PEM); given to
    /// a scheduler or executor it also requires client certificates (mutual TLS).
    pub ca: Option<PathBuf>,
}

/// [`TlsFiles`] read: PEM text, checked to hold what each file should.
#[derive(Clone)]
pub struct TlsPem {
    /// Certificate chain and private key, when given.
    pub identity: Option<(String, String)>,
    /// The certificate authority, when given.
    pub ca: Option<String>,
}

impl fmt::Debug for TlsPem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsPem")
            .field("identity", &self.identity.as_ref().map(|_| "<cert, key>"))
            .field("ca", &self.ca.as_ref().map(|_| "<ca>"))
            .finish()
    }
}

fn read_pem(path: &Path, what: &str, marker: &str) -> Result<String> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    if !text.contains("-----BEGIN ") || !text.contains(marker) {
        return Err(Error::Tls {
            path: path.to_path_buf(),
            message: format!("not a PEM {what} (no `{marker}` block)"),
        });
    }
    Ok(text)
}

impl TlsFiles {
    /// Whether no TLS file was given (plain gRPC).
    pub fn is_empty(&self) -> bool {
        self.cert.is_none() && self.key.is_none() && self.ca.is_none()
    }

    /// Read the files. `server`: a scheduler or executor, which needs a
    /// certificate and key whenever TLS is asked for. [`Error::Argument`]
    /// when a certificate comes without its key (or the reverse), or a
    /// server has a CA but no certificate; [`Error::Io`] when a file cannot
    /// be read; [`Error::Tls`] when it is not the PEM it should be.
    pub fn read(&self, server: bool) -> Result<Option<TlsPem>> {
        if self.is_empty() {
            return Ok(None);
        }
        let identity = match (&self.cert, &self.key) {
            (Some(c), Some(k)) => Some((
                read_pem(c, "certificate", "CERTIFICATE-----")?,
                read_pem(k, "private key", "PRIVATE KEY-----")?,
            )),
            (None, None) if !server => None,
            (None, None) => {
                return Err(Error::Argument(
                    "--tls-ca on a scheduler or executor needs --tls-cert and --tls-key too".into(),
                ))
            }
            _ => {
                return Err(Error::Argument(
                    "--tls-cert and --tls-key go together (certificate and its private key)".into(),
                ))
            }
        };
        let ca = match &self.ca {
            Some(p) => Some(read_pem(p, "CA certificate", "CERTIFICATE-----")?),
            None => None,
        };
        Ok(Some(TlsPem { identity, ca }))
    }
}

/// The cluster's shared secret. Its `Debug` never shows it, and no error
/// built from it carries it.
#[derive(Clone)]
pub struct Secret(Arc<str>);

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

impl Secret {
    /// The secret from `CUSTVAL_CLUSTER_SECRET` or the file named by
    /// `CUSTVAL_CLUSTER_SECRET_FILE` (trailing line break removed); `None`
    /// when neither is set. [`Error::Env`] when both are set, or the secret
    /// is shorter than [`MIN_SECRET_LEN`] or not printable ASCII (it travels
    /// as a header value); [`Error::Io`] when the file cannot be read.
    pub fn from_env() -> Result<Option<Secret>> {
        let value = std::env::var_os(SECRET_ENV).filter(|v| !v.is_empty());
        let file = std::env::var_os(SECRET_FILE_ENV).filter(|v| !v.is_empty());
        match (value, file) {
            (Some(_), Some(_)) => Err(Error::Env {
                var: SECRET_ENV.into(),
                message: format!("set {SECRET_ENV} or {SECRET_FILE_ENV}, not both"),
            }),
            (Some(v), None) => Secret::checked(SECRET_ENV, &v.to_string_lossy()).map(Some),
            (None, Some(path)) => {
                let path = PathBuf::from(path);
                let text = std::fs::read_to_string(&path).map_err(|e| Error::io(&path, e))?;
                let var = format!("{SECRET_FILE_ENV} ({})", path.display());
                Secret::checked(&var, text.trim_end_matches(['\r', '\n'])).map(Some)
            }
            (None, None) => Ok(None),
        }
    }

    /// A secret from its text, checked as [`Secret::from_env`] says; `var`
    /// names where it came from in the error, which never quotes it.
    pub fn checked(var: &str, text: &str) -> Result<Secret> {
        let bad = |message: String| Error::Env {
            var: var.to_string(),
            message,
        };
        if text.len() < MIN_SECRET_LEN {
            return Err(bad(format!(
                "the cluster secret is {} bytes; use at least {MIN_SECRET_LEN} \
                 (e.g. `openssl rand -hex 32`)",
                text.len()
            )));
        }
        if let Some(i) = text.bytes().position(|b| !(0x21..=0x7e).contains(&b)) {
            return Err(bad(format!(
                "the cluster secret has a space, control or non-ASCII byte at \
                 position {i}; use printable ASCII (e.g. `openssl rand -hex 32`)"
            )));
        }
        Ok(Secret(Arc::from(text)))
    }

    /// Whether `offered` is the secret, compared in constant time (the
    /// time depends on the lengths only).
    pub fn matches(&self, offered: &[u8]) -> bool {
        self.0.as_bytes().ct_eq(offered).into()
    }

    /// The text to send as [`SECRET_HEADER`]; never to be logged.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// The credential executors' Flight ports check, derived from this
    /// secret: see [`FlightToken`].
    pub fn flight_token(&self) -> FlightToken {
        let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, self.0.as_bytes());
        let tag = ring::hmac::sign(&key, FLIGHT_TOKEN_CONTEXT);
        let hex: String = tag.as_ref().iter().map(|b| format!("{b:02x}")).collect();
        FlightToken(Arc::from(hex))
    }
}

/// The credential on executors' Flight ports (results and shuffle data):
/// the lower-case hex of HMAC-SHA256 keyed with the cluster secret over
/// [`FLIGHT_TOKEN_CONTEXT`], 64 characters. It travels in the user agent
/// (`custval-flight/<token>`), the one header Ballista 55's Flight client
/// lets custval set (through the endpoint hook; it has no metadata hook).
/// Not the secret itself: a proxy or server that logs user agents learns a
/// token that opens Flight only, not the scheduler, and not the secret.
/// Its `Debug` never shows it.
#[derive(Clone)]
pub struct FlightToken(Arc<str>);

impl fmt::Debug for FlightToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("FlightToken(<redacted>)")
    }
}

/// What a user agent shows of the Flight credential.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlightCredential {
    /// A `custval-flight/` product carrying this token.
    Right,
    /// `custval-flight/` products, none carrying this token.
    Wrong,
    /// No `custval-flight/` product.
    Missing,
}

impl FlightToken {
    /// The user-agent product a client sends, `custval-flight/<token>`
    /// (tonic appends ` tonic/<version>`); never to be logged.
    pub fn user_agent(&self) -> String {
        format!("{FLIGHT_AGENT_PRODUCT}/{}", self.0)
    }

    /// Which [`FlightCredential`] the user agent `agent` (the header's
    /// bytes; products separated by spaces) carries. Each offered token is
    /// compared in constant time (the time depends on the lengths only).
    pub fn offered_in(&self, agent: &[u8]) -> FlightCredential {
        let prefix = FLIGHT_AGENT_PRODUCT.as_bytes();
        let mut seen = FlightCredential::Missing;
        for product in agent.split(|b| *b == b' ') {
            let Some(offered) = product
                .strip_prefix(prefix)
                .and_then(|rest| rest.strip_prefix(b"/"))
            else {
                continue;
            };
            if bool::from(self.0.as_bytes().ct_eq(offered)) {
                return FlightCredential::Right;
            }
            seen = FlightCredential::Wrong;
        }
        seen
    }
}

/// Whether `host` (an address or name to listen on) is loopback only.
pub fn is_loopback(host: &str) -> bool {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    match host.parse::<std::net::IpAddr>() {
        Ok(ip) => ip.is_loopback(),
        Err(_) => host.eq_ignore_ascii_case("localhost"),
    }
}

/// What a process listening on `bind_host` leaves open, `None` when it is
/// loopback or has both TLS and a secret: the text of its startup warning.
pub fn exposure(role: &str, bind_host: &str, tls: bool, secret: bool) -> Option<String> {
    if is_loopback(bind_host) || (tls && secret) {
        return None;
    }
    let missing = match (tls, secret) {
        (false, false) => {
            "without TLS or a cluster secret: anyone who reaches its ports \
                           can submit plans and read shuffle data, in clear text"
        }
        (false, true) => {
            "without TLS: the secret, plans and data cross the network in \
                          clear text"
        }
        _ => {
            "without a cluster secret: any client the TLS setup lets in can submit \
              plans (set CUSTVAL_CLUSTER_SECRET or CUSTVAL_CLUSTER_SECRET_FILE)"
        }
    };
    Some(format!(
        "{role} listens on {bind_host}, beyond loopback, {missing}; see README, Cluster"
    ))
}

/// Make ring the process-wide rustls crypto provider (idempotent). Call
/// once at start, before any TLS connection (cluster, object stores, Delta):
/// with both ring and aws-lc-rs compiled in, rustls cannot choose one
/// itself and panics at the first handshake.
pub fn install_crypto_provider() {
    // Err only when a provider is already installed, which is what we want.
    let _ = rustls::crypto::ring::default_provider().install_default();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_secret_is_compared_whole_and_never_shown() {
        let s = Secret::checked("X", "0123456789abcdef-secret").unwrap();
        assert!(s.matches(b"0123456789abcdef-secret"));
        assert!(!s.matches(b"0123456789abcdef-secreT"));
        assert!(!s.matches(b"0123456789abcdef-secre"));
        assert!(!s.matches(b""));
        assert_eq!(format!("{s:?}"), "Secret(<redacted>)");
    }

    #[test]
    fn the_flight_token_is_the_secrets_hmac_and_found_in_a_user_agent() {
        // The expected token is computed independently by OpenSSL:
        let s = Secret::checked("X", "0123456789abcdef-secret").unwrap();
        let token = s.flight_token();
        // printf 'custval flight v1' | openssl dgst -sha256 -hmac '0123456789abcdef-secret'
        const EXPECTED: &str = "c54fe09fc0dc3ba18b6dd7954472a2b8742f8bf05a3a5056649befd18598f9a4";
        assert_eq!(token.user_agent(), format!("custval-flight/{EXPECTED}"));
        assert_eq!(format!("{token:?}"), "FlightToken(<redacted>)");
        let agent = |a: &str| token.offered_in(a.as_bytes());
        // As tonic sends it: the endpoint's agent, then its own product.
        assert_eq!(
            agent(&format!("custval-flight/{EXPECTED} tonic/0.14.9")),
            FlightCredential::Right
        );
        assert_eq!(
            agent(&format!(
                "grpc-go/1.0 custval-flight/{EXPECTED} tonic/0.14.9"
            )),
            FlightCredential::Right
        );
        let other = Secret::checked("X", "0123456789abcdef-secreT").unwrap();
        assert_eq!(
            token.offered_in(other.flight_token().user_agent().as_bytes()),
            FlightCredential::Wrong
        );
        assert_eq!(
            agent(&format!("custval-flight/{}", &EXPECTED[..63])),
            FlightCredential::Wrong
        );
        // The secret itself is not the credential.
        assert_eq!(
            agent("custval-flight/0123456789abcdef-secret"),
            FlightCredential::Wrong
        );
        assert_eq!(agent("tonic/0.14.9"), FlightCredential::Missing);
        assert_eq!(
            agent(&format!("custval-flightX/{EXPECTED}")),
            FlightCredential::Missing
        );
        assert_eq!(agent(""), FlightCredential::Missing);
    }

    #[test]
    fn weak_or_unsendable_secrets_are_refused_without_quoting_them() {
        for bad in [
            "short",
            "has a space in the middle!!",
            "tab\there-0123456789",
        ] {
            let e = Secret::checked("CUSTVAL_CLUSTER_SECRET", bad)
                .unwrap_err()
                .to_string();
            assert!(e.contains("CUSTVAL_CLUSTER_SECRET"), "{e}");
            assert!(!e.contains(bad), "the error quotes the secret: {e}");
        }
    }

    #[test]
    fn a_server_needs_a_certificate_with_its_key() {
        let only_ca = TlsFiles {
            ca: Some("ca.pem".into()),
            ..Default::default()
        };
        assert!(matches!(only_ca.read(true), Err(Error::Argument(_))));
        let no_key = TlsFiles {
            cert: Some("c.pem".into()),
            ..Default::default()
        };
        assert!(matches!(no_key.read(false), Err(Error::Argument(_))));
        assert!(TlsFiles::default().read(true).unwrap().is_none());
    }

    #[test]
    fn only_a_secured_or_loopback_listener_is_quiet() {
        assert!(exposure("scheduler", "127.0.0.1", false, false).is_none());
        assert!(exposure("scheduler", "localhost", false, false).is_none());
        assert!(exposure("scheduler", "::1", false, false).is_none());
        assert!(exposure("scheduler", "0.0.0.0", true, true).is_none());
        for (tls, secret) in [(false, false), (true, false), (false, true)] {
            let w = exposure("executor", "0.0.0.0", tls, secret).unwrap();
            assert!(w.contains("executor listens on 0.0.0.0"), "{w}");
        }
    }
}

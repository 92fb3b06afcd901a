//! What the processes of a cluster prove to each other, read and checked:
//! the TLS files (`--tls-cert`, `--tls-key`, `--tls-ca`, PEM) and the shared
//! secret (`CUSTVAL_CLUSTER_SECRET`, or the file named by
//! `CUSTVAL_CLUSTER_SECRET_FILE`; never a flag, which `ps` would show), and the
//! warning for a process listening beyond loopback without them. No network
//! code: `cluster` puts these on its connections. Also the process's one TLS
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

//! TLS and the cluster secret on Ballista's connections: one [`Guard`] per
//! process builds the server TLS (mutual when a CA is given), the check of
//! the secret every server applies to each request, and what every client
//! side needs: the endpoint override Ballista applies before it connects
//! (TLS to schedulers and executors alike), the secret as gRPC metadata, and
//! a probe that turns a refusal into a clear error naming the scheduler.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use ballista_core::extension::{BallistaGrpcMetadataInterceptor, EndpointOverrideFn};
use ballista_core::serde::protobuf::scheduler_grpc_client::SchedulerGrpcClient;
use ballista_core::serde::protobuf::GetJobStatusParams;
use tonic::service::Interceptor;
use tonic::transport::{Certificate, ClientTlsConfig, Endpoint, Identity, ServerTlsConfig};
use tonic::{Code, Request, Status};

use crate::error::{Error, Result};
use crate::security::{Secret, TlsFiles, TlsPem, SECRET_ENV, SECRET_FILE_ENV, SECRET_HEADER};

/// What one process proves and checks: its TLS material and the secret.
#[derive(Debug, Clone, Default)]
pub struct Guard {
    tls: Option<TlsPem>,
    secret: Option<Secret>,
}

impl Guard {
    /// Read the TLS files (`server`: a scheduler or executor) and the secret
    /// from the environment; errors as [`TlsFiles::read`] and
    /// [`Secret::from_env`] say.
    pub fn load(files: &TlsFiles, server: bool) -> Result<Guard> {
        Ok(Guard {
            tls: files.read(server)?,
            secret: Secret::from_env()?,
        })
    }

    /// Whether connections use TLS.
    pub fn tls(&self) -> bool {
        self.tls.is_some()
    }

    /// Whether requests carry (clients) or need (servers) the secret.
    pub fn has_secret(&self) -> bool {
        self.secret.is_some()
    }

    /// Whether anything is protected: TLS or a secret.
    pub fn secured(&self) -> bool {
        self.tls() || self.has_secret()
    }

    /// The server side of TLS: this process's certificate, and with a CA
    /// the requirement that clients present one it signed (mutual TLS).
    pub fn server_tls(&self) -> Option<ServerTlsConfig> {
        let tls = self.tls.as_ref()?;
        let (cert, key) = tls.identity.as_ref()?;
        let mut config = ServerTlsConfig::new().identity(Identity::from_pem(cert, key));
        if let Some(ca) = &tls.ca {
            config = config.client_ca_root(Certificate::from_pem(ca));
        }
        Some(config)
    }

    /// The client side of TLS: servers verified against the CA (or the
    /// system's roots without one), and this process's certificate shown to
    /// servers that require one.
    fn client_tls(&self) -> Option<ClientTlsConfig> {
        let tls = self.tls.as_ref()?;
        let mut config = ClientTlsConfig::new();
        config = match &tls.ca {
            Some(ca) => config.ca_certificate(Certificate::from_pem(ca)),
            None => config.with_native_roots(),
        };
        if let Some((cert, key)) = &tls.identity {
            config = config.identity(Identity::from_pem(cert, key));
        }
        Some(config)
    }

    /// The override Ballista applies to every gRPC endpoint it creates
    /// (client to scheduler, Flight fetches of results and shuffles): TLS,
    /// with the scheme made `https` (Ballista 55 writes `http://` for the
    /// scheduler, and tonic only applies TLS to `https` URIs). `None` in
    /// plain mode.
    pub fn endpoint_override(&self) -> Option<EndpointOverrideFn> {
        let tls = self.client_tls()?;
        Some(Arc::new(move |endpoint: Endpoint| {
            secure_endpoint(endpoint.uri(), tls.clone())
                .map_err(|e| Box::new(e) as Box<dyn std::error::Error + Send + Sync>)
        }))
    }

    /// The gRPC metadata every client request carries: the secret, if any.
    pub fn metadata(&self) -> HashMap<String, String> {
        self.secret
            .iter()
            .map(|s| (SECRET_HEADER.to_string(), s.expose().to_string()))
            .collect()
    }

    /// The interceptor that adds [`Guard::metadata`] to a Ballista client.
    pub fn interceptor(&self) -> BallistaGrpcMetadataInterceptor {
        BallistaGrpcMetadataInterceptor::new(self.metadata())
    }

    /// The check a server applies to each request, named by `role`
    /// (`scheduler`, `executor`) in its refusals.
    pub fn check(&self, role: &'static str) -> SecretCheck {
        SecretCheck {
            secret: self.secret.clone(),
            role,
        }
    }

    /// A channel to the scheduler at `host:port`, TLS as configured.
    pub async fn connect(&self, host: &str, port: u16) -> Result<tonic::transport::Channel> {
        let address = format!("ballista://{host}:{port}");
        let err = |e: &dyn std::fmt::Display| Error::Cluster {
            address: address.clone(),
            message: e.to_string(),
        };
        let uri: tonic::codegen::http::Uri = format!("http://{host}:{port}")
            .parse()
            .map_err(|e| err(&e))?;
        let endpoint = match self.client_tls() {
            Some(tls) => secure_endpoint(&uri, tls).map_err(|e| err(&chain(&e)))?,
            None => tuned(Endpoint::from(uri)),
        };
        endpoint.connect().await.map_err(|e| {
            let hint = if self.tls() {
                "is it a TLS scheduler whose certificate the --tls-ca signed, and \
                 does it accept this client's --tls-cert?"
            } else {
                "does it require TLS? then pass --tls-ca (CUSTVAL_TLS_CA)"
            };
            err(&format!("no gRPC connection ({}); {hint}", chain(&e)))
        })
    }

    /// Connect to the scheduler at `host:port` and ask it one harmless
    /// question with this guard's TLS and secret, so that a refusal fails
    /// here, before any plan is sent, naming the scheduler:
    /// [`Error::ClusterRefused`] for a missing or wrong secret,
    /// [`Error::Cluster`] for TLS or the connection. Returns the channel.
    pub async fn probe(&self, host: &str, port: u16) -> Result<tonic::transport::Channel> {
        let address = format!("ballista://{host}:{port}");
        let channel = self.connect(host, port).await?;
        let mut client = SchedulerGrpcClient::with_interceptor(channel.clone(), self.interceptor());
        let asked = client
            .get_job_status(GetJobStatusParams {
                job_id: "custval-probe".into(),
            })
            .await;
        match asked {
            Err(status) if status.code() == Code::Unauthenticated => Err(Error::ClusterRefused {
                address,
                message: status.message().to_string(),
            }),
            // An unknown job is answered with no status, not an error: any
            // other failure is the connection's (TLS, HTTP/2) or the server's.
            Err(status) => Err(Error::Cluster {
                address,
                message: format!(
                    "the scheduler did not answer gRPC ({}); {}",
                    match std::error::Error::source(&status) {
                        Some(cause) => format!("{}: {}", status.message(), chain(cause)),
                        None => status.message().to_string(),
                    },
                    if self.tls() {
                        "check --tls-ca and --tls-cert against its certificates"
                    } else {
                        "does it require TLS? then pass --tls-ca (CUSTVAL_TLS_CA)"
                    }
                ),
            }),
            Ok(_) => Ok(channel),
        }
    }
}

/// An error and its sources, one line: tonic's own text is often only
/// "transport error".
fn chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

/// Ballista's client settings (`ballista_core::utils::create_grpc_client_endpoint`
/// with its defaults, less the per-request timeout, which would cut long
/// Flight streams): connect within 20 s, no Nagle, keep-alives, large windows.
fn tuned(endpoint: Endpoint) -> Endpoint {
    endpoint
        .connect_timeout(Duration::from_secs(20))
        .tcp_nodelay(true)
        .tcp_keepalive(Some(Duration::from_secs(3600)))
        .http2_keep_alive_interval(Duration::from_secs(300))
        .keep_alive_timeout(Duration::from_secs(20))
        .keep_alive_while_idle(true)
        .initial_connection_window_size(Some(64 << 20))
        .initial_stream_window_size(Some(16 << 20))
}

/// `uri`'s host and port as an `https` endpoint with `tls`.
fn secure_endpoint(
    uri: &tonic::codegen::http::Uri,
    tls: ClientTlsConfig,
) -> std::result::Result<Endpoint, tonic::transport::Error> {
    let authority = uri.authority().map(|a| a.as_str()).unwrap_or_default();
    let endpoint = Endpoint::from_shared(format!("https://{authority}"))?;
    tuned(endpoint).tls_config(tls)
}

/// The server-side check of the cluster secret, a tonic interceptor applied
/// to every request of a scheduler's or executor's gRPC server. Without a
/// secret configured it lets everything through.
#[derive(Clone)]
pub struct SecretCheck {
    secret: Option<Secret>,
    role: &'static str,
}

impl Interceptor for SecretCheck {
    fn call(&mut self, request: Request<()>) -> std::result::Result<Request<()>, Status> {
        let Some(secret) = &self.secret else {
            return Ok(request);
        };
        let offered = request.metadata().get(SECRET_HEADER);
        let reason = match offered {
            Some(v) if secret.matches(v.as_bytes()) => return Ok(request),
            Some(_) => "a wrong cluster secret",
            None => "no cluster secret",
        };
        let peer = request
            .remote_addr()
            .map(|a| a.to_string())
            .unwrap_or_else(|| "an unknown peer".into());
        tracing::warn!(%peer, role = self.role, "refused a request with {reason}");
        Err(Status::unauthenticated(format!(
            "the {} refused the request: it carried {reason}; set {SECRET_ENV} \
             (or {SECRET_FILE_ENV}) to the cluster's secret",
            self.role
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn guard(secret: Option<&str>) -> Guard {
        Guard {
            tls: None,
            secret: secret.map(|s| Secret::checked("test", s).unwrap()),
        }
    }

    fn request(secret: Option<&str>) -> Request<()> {
        let mut r = Request::new(());
        if let Some(s) = secret {
            r.metadata_mut().insert(SECRET_HEADER, s.parse().unwrap());
        }
        r
    }

    #[test]
    fn the_check_passes_only_the_secret_and_never_quotes_it() {
        const S: &str = "0123456789abcdef-right";
        let mut check = guard(Some(S)).check("scheduler");
        assert!(check.call(request(Some(S))).is_ok());
        for (offered, says) in [
            (None, "no cluster secret"),
            (Some("0123456789abcdef-wrong"), "a wrong cluster secret"),
        ] {
            let refused = check.call(request(offered)).unwrap_err();
            assert_eq!(refused.code(), Code::Unauthenticated);
            let text = refused.message();
            assert!(
                text.contains(says) && text.contains("the scheduler refused"),
                "{text}"
            );
            assert!(
                !text.contains(S) && offered.is_none_or(|o| !text.contains(o)),
                "{text}"
            );
        }
        // Without a secret configured, every request passes.
        assert!(guard(None).check("executor").call(request(None)).is_ok());
    }

    #[test]
    fn clients_send_the_secret_as_metadata() {
        let mut interceptor = guard(Some("0123456789abcdef-right")).interceptor();
        let sent = interceptor.call(Request::new(())).unwrap();
        assert_eq!(
            sent.metadata()
                .get(SECRET_HEADER)
                .map(|v| v.to_str().unwrap()),
            Some("0123456789abcdef-right")
        );
        assert!(guard(None).metadata().is_empty());
    }

    #[test]
    fn ballistas_http_endpoints_become_https() {
        let uri: tonic::codegen::http::Uri = "http://10.0.0.5:50051".parse().unwrap();
        let endpoint = secure_endpoint(&uri, ClientTlsConfig::new()).unwrap();
        assert_eq!(endpoint.uri().to_string(), "https://10.0.0.5:50051/");
    }
}

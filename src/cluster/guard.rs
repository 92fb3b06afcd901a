//! TLS and the cluster secret on Ballista's connections: one [`Guard`] per
//! process builds the server TLS (mutual when a CA is given), the checks
//! servers apply to each request (the secret as gRPC metadata on the
//! scheduler, the [`FlightToken`] in the user agent on executors' Flight
//! ports), and what every client side needs: the endpoint override Ballista
//! applies before it connects (TLS and the Flight token, to schedulers and
//! executors alike), the secret as gRPC metadata, and a probe that turns a
//! refusal into a clear error naming the scheduler.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use ballista_core::extension::{BallistaGrpcMetadataInterceptor, EndpointOverrideFn};
use ballista_core::serde::protobuf::scheduler_grpc_client::SchedulerGrpcClient;
use ballista_core::serde::protobuf::GetJobStatusParams;
use tonic::codegen::http::header::USER_AGENT;
use tonic::service::Interceptor;
use tonic::transport::{Certificate, ClientTlsConfig, Endpoint, Identity, ServerTlsConfig};
use tonic::{Code, Request, Status};

use crate::error::{Error, Result};
use crate::security::{
    FlightCredential, FlightToken, Secret, TlsFiles, TlsPem, SECRET_ENV, SECRET_FILE_ENV,
    SECRET_HEADER,
};

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
    /// scheduler, and tonic only applies TLS to `https` URIs); and with a
    /// secret, the [`FlightToken`] as the user agent, which executors'
    /// Flight ports check (Ballista's Flight client sends no metadata, and
    /// this hook is the one way onto its requests; the scheduler ignores
    /// it). `None` in plain mode.
    pub fn endpoint_override(&self) -> Option<EndpointOverrideFn> {
        if !self.secured() {
            return None;
        }
        let tls = self.client_tls();
        let agent = self.secret.as_ref().map(|s| s.flight_token().user_agent());
        type Failure = Box<dyn std::error::Error + Send + Sync>;
        Some(Arc::new(
            move |endpoint: Endpoint| -> std::result::Result<Endpoint, Failure> {
                let endpoint = match &tls {
                    Some(tls) => secure_endpoint(endpoint.uri(), tls.clone())?,
                    None => endpoint,
                };
                Ok(match &agent {
                    Some(agent) => endpoint.user_agent(agent.clone())?,
                    None => endpoint,
                })
            },
        ))
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

    /// The check the scheduler applies to each request: the secret as
    /// [`SECRET_HEADER`] metadata; `role` names the server in refusals.
    pub fn check(&self, role: &str) -> SecretCheck {
        SecretCheck {
            wanted: self.secret.clone().map(Wanted::Secret),
            server: Arc::from(role),
        }
    }

    /// The check an executor's Flight port applies to each request: the
    /// [`FlightToken`] in the user agent; `server` (e.g. `executor
    /// 10.0.0.7:50051`) names it in refusals.
    pub fn flight_check(&self, server: &str) -> SecretCheck {
        SecretCheck {
            wanted: self
                .secret
                .as_ref()
                .map(|s| Wanted::Flight(s.flight_token())),
            server: Arc::from(server),
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

/// What a [`SecretCheck`] wants of each request.
#[derive(Clone)]
enum Wanted {
    /// The secret as [`SECRET_HEADER`] metadata (the scheduler).
    Secret(Secret),
    /// The Flight token in the user agent (executors' Flight ports).
    Flight(FlightToken),
}

impl Wanted {
    /// `None` when `request` carries what is wanted, else why not.
    fn refusal(&self, request: &Request<()>) -> Option<&'static str> {
        match self {
            Wanted::Secret(secret) => match request.metadata().get(SECRET_HEADER) {
                Some(v) if secret.matches(v.as_bytes()) => None,
                Some(_) => Some("a wrong cluster secret"),
                None => Some("no cluster secret"),
            },
            Wanted::Flight(token) => {
                // tonic keeps the user agent in the metadata it hands to
                // interceptors (its test `doesnt_remove_headers_from_requests`).
                let mut seen = FlightCredential::Missing;
                for agent in request.metadata().get_all(USER_AGENT.as_str()) {
                    match token.offered_in(agent.as_bytes()) {
                        FlightCredential::Right => return None,
                        FlightCredential::Wrong => seen = FlightCredential::Wrong,
                        FlightCredential::Missing => {}
                    }
                }
                Some(match seen {
                    FlightCredential::Wrong => "a wrong Flight credential",
                    _ => "no Flight credential",
                })
            }
        }
    }
}

/// The server-side check of the cluster secret, a tonic interceptor applied
/// (as a tower layer, `InterceptorLayer`) to every request of a scheduler's
/// gRPC server or an executor's Flight server. Without a secret configured
/// it lets everything through. A refusal is gRPC `Unauthenticated`, naming
/// the server and what was missing, never the secret or the token.
#[derive(Clone)]
pub struct SecretCheck {
    wanted: Option<Wanted>,
    server: Arc<str>,
}

impl Interceptor for SecretCheck {
    fn call(&mut self, request: Request<()>) -> std::result::Result<Request<()>, Status> {
        let Some(wanted) = &self.wanted else {
            return Ok(request);
        };
        let Some(reason) = wanted.refusal(&request) else {
            return Ok(request);
        };
        let peer = request
            .remote_addr()
            .map(|a| a.to_string())
            .unwrap_or_else(|| "an unknown peer".into());
        let server = &*self.server;
        tracing::warn!(%peer, server, "refused a request with {reason}");
        let hint = match wanted {
            Wanted::Secret(_) => "",
            Wanted::Flight(_) => {
                " (custval clients and executors send a credential derived from \
                 it in the user agent)"
            }
        };
        Err(Status::unauthenticated(format!(
            "the {server} refused the request: it carried {reason}; set {SECRET_ENV} \
             (or {SECRET_FILE_ENV}) to the cluster's secret{hint}"
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

    fn agent_request(agent: Option<&str>, secret_header: Option<&str>) -> Request<()> {
        let mut r = request(secret_header);
        if let Some(a) = agent {
            r.metadata_mut().insert("user-agent", a.parse().unwrap());
        }
        r
    }

    #[test]
    fn the_flight_check_passes_only_the_token_and_never_quotes_it() {
        const S: &str = "0123456789abcdef-right";
        let token = Secret::checked("test", S).unwrap().flight_token();
        let right = format!("{} tonic/0.14.9", token.user_agent());
        let wrong = guard(Some("0123456789abcdef-wrong"))
            .secret
            .unwrap()
            .flight_token()
            .user_agent();
        let mut check = guard(Some(S)).flight_check("executor 10.0.0.7:50051");
        assert!(check.call(agent_request(Some(&right), None)).is_ok());
        for (agent, header, says) in [
            (None, None, "no Flight credential"),
            (Some("tonic/0.14.9"), None, "no Flight credential"),
            // The scheduler's credential does not open Flight.
            (None, Some(S), "no Flight credential"),
            (Some(wrong.as_str()), None, "a wrong Flight credential"),
        ] {
            let refused = check.call(agent_request(agent, header)).unwrap_err();
            assert_eq!(refused.code(), Code::Unauthenticated);
            let text = refused.message();
            assert!(
                text.contains(says) && text.contains("the executor 10.0.0.7:50051 refused"),
                "{text}"
            );
            assert!(
                !text.contains(S) && !text.contains(&token.user_agent()),
                "{text}"
            );
            assert!(!text.contains(&wrong), "{text}");
        }
        // Nor does the Flight token open the scheduler.
        let mut scheduler = guard(Some(S)).check("scheduler");
        assert!(scheduler.call(agent_request(Some(&right), None)).is_err());
        // Without a secret configured, every request passes.
        let mut open = guard(None).flight_check("executor");
        assert!(open.call(agent_request(None, None)).is_ok());
    }

    /// The check as a tower layer in front of Ballista's Flight service on a
    /// real server, reached the way Ballista's Flight client reaches it (an
    /// endpoint through [`Guard::endpoint_override`]): tonic composes the
    /// user agent, the layer reads it.
    #[tokio::test]
    async fn a_flight_server_behind_the_layer_answers_only_the_token() {
        use arrow_flight::flight_service_client::FlightServiceClient;
        use arrow_flight::flight_service_server::FlightServiceServer;
        use arrow_flight::Ticket;
        use ballista_executor::flight_service::BallistaFlightService;
        use tonic::service::InterceptorLayer;
        use tonic::transport::server::TcpIncoming;

        const S: &str = "0123456789abcdef-right";
        let incoming = TcpIncoming::bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let addr = incoming.local_addr().unwrap();
        let work = tempfile::tempdir().unwrap();
        let flight = BallistaFlightService::new(work.path().display().to_string());
        let server = tonic::transport::Server::builder()
            .layer(InterceptorLayer::new(
                guard(Some(S)).flight_check("executor test"),
            ))
            .add_service(FlightServiceServer::new(flight))
            .serve_with_incoming(incoming);
        let served = tokio::spawn(server);
        let fetch = |client: Guard| async move {
            let mut endpoint = tuned(Endpoint::from_shared(format!("http://{addr}")).unwrap());
            if let Some(f) = client.endpoint_override() {
                endpoint = f(endpoint).unwrap();
            }
            let channel = endpoint.connect().await.unwrap();
            let ticket = Ticket {
                ticket: b"not a ticket".to_vec().into(),
            };
            FlightServiceClient::new(channel)
                .do_get(ticket)
                .await
                .map(|_| ())
                .unwrap_err()
        };
        // With the token the request reaches Ballista's service, which
        // answers an undecodable ticket with Internal (its `from_ballista_err`).
        assert_eq!(fetch(guard(Some(S))).await.code(), Code::Internal);
        for (client, says) in [
            (guard(None), "no Flight credential"),
            (
                guard(Some("0123456789abcdef-wrong")),
                "a wrong Flight credential",
            ),
        ] {
            let refused = fetch(client).await;
            assert_eq!(refused.code(), Code::Unauthenticated, "{refused:?}");
            assert!(refused.message().contains(says), "{refused:?}");
            assert!(!refused.message().contains(S), "{refused:?}");
        }
        served.abort();
    }

    #[test]
    fn ballistas_http_endpoints_become_https() {
        let uri: tonic::codegen::http::Uri = "http://10.0.0.5:50051".parse().unwrap();
        let endpoint = secure_endpoint(&uri, ClientTlsConfig::new()).unwrap();
        assert_eq!(endpoint.uri().to_string(), "https://10.0.0.5:50051/");
    }
}

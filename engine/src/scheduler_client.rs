//! The client side of a Strata scheduler's pipeline service: the address rule, the
//! connection with bounded retries, the version handshake, and how a caller presents
//! its token and reaches a scheduler whose port serves TLS.

use std::sync::Arc;
use std::time::Duration;

use ballista_core::extension::EndpointOverrideFn;
use strata_proto::pipeline::HelloRequest;
use strata_proto::pipeline::pipeline_service_client::PipelineServiceClient;
use tonic::metadata::{AsciiMetadataValue, MetadataMap};
use tonic::service::Interceptor;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint};

use crate::cluster_tls::ClusterTls;
use crate::error::EngineError;

/// The Strata version of this build; every process of a cluster must run the same one.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// Attempts to reach a scheduler before giving up, one second apart.
pub const CONNECT_ATTEMPTS: u32 = 10;

/// A scheduler address as a URL: `host:port` gets `http://`.
pub fn scheduler_url(address: &str) -> String {
    if address.contains("://") {
        address.to_owned()
    } else {
        format!("http://{address}")
    }
}

/// The environment variable (and `--token` flag) a caller's token comes from.
pub const TOKEN_ENV: &str = "STRATA_TOKEN";

/// The environment variable (and `--tls-ca` flag) naming the PEM file of the CA that
/// a scheduler's certificate chains to (or the self-signed certificate itself).
pub const TLS_CA_ENV: &str = "STRATA_TLS_CA";

/// What a caller presents to a scheduler: its token, and, when the scheduler's port
/// serves TLS, the CA to trust and the name its certificate has.
#[derive(Clone, Default)]
pub struct Credentials {
    pub token: Option<String>,
    /// PEM; with it every connection to the scheduler uses TLS.
    pub tls_ca: Option<Vec<u8>>,
    /// The name to check the certificate for, when not the address's host.
    pub tls_domain: Option<String>,
    /// The identity presented on the executors' ports, when they speak mutual TLS.
    pub cluster: Option<ClusterTls>,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .field("tls", &self.tls_ca.is_some())
            .field("tls_domain", &self.tls_domain)
            .field("cluster", &self.cluster.is_some())
            .finish()
    }
}

impl Credentials {
    fn tls(&self) -> Option<ClientTlsConfig> {
        let ca = self.tls_ca.as_ref()?;
        let config = ClientTlsConfig::new().ca_certificate(Certificate::from_pem(ca));
        Some(match &self.tls_domain {
            Some(domain) => config.domain_name(domain.clone()),
            None => config,
        })
    }
}

/// A URL with the scheme its port speaks: `https://` for TLS.
pub(crate) fn with_scheme(url: &str, tls: bool) -> String {
    match (tls, url.strip_prefix("http://")) {
        (true, Some(rest)) => format!("https://{rest}"),
        _ => url.to_owned(),
    }
}

/// What Ballista's clients must do to every connection (Ballista makes them
/// `http://`). To the scheduler at `url`: TLS when the credentials have a CA, and, for
/// an executor, its token in the User-Agent. To executors: mutual TLS with the cluster
/// identity, when there is one. None when there is nothing to do.
pub fn endpoint_override(
    url: &str,
    credentials: &Credentials,
    executor: bool,
) -> Option<EndpointOverrideFn> {
    let tls = credentials.tls();
    let token = credentials.token.clone().filter(|_| executor);
    let cluster = credentials.cluster.clone();
    if tls.is_none() && token.is_none() && cluster.is_none() {
        return None;
    }
    let scheduler = scheduler_url(url)
        .parse::<tonic::codegen::http::Uri>()
        .ok()
        .and_then(|uri| uri.authority().cloned());
    Some(Arc::new(move |endpoint: Endpoint| {
        if endpoint.uri().authority() != scheduler.as_ref() {
            return match &cluster {
                Some(cluster) => Ok(cluster.upgrade(&endpoint)?),
                None => Ok(endpoint),
            };
        }
        let mut endpoint = match &tls {
            Some(tls) => Endpoint::from_shared(with_scheme(&endpoint.uri().to_string(), true))?
                .connect_timeout(Duration::from_secs(20))
                .timeout(Duration::from_secs(20 * 60))
                .tcp_keepalive(Some(Duration::from_secs(60)))
                .http2_keep_alive_interval(Duration::from_secs(30))
                .tls_config(tls.clone())?,
            None => endpoint,
        };
        if let Some(token) = &token {
            endpoint = endpoint.user_agent(format!("{EXECUTOR_AGENT}{token}"))?;
        }
        Ok(endpoint)
    }))
}

/// The header a token travels in, as `Bearer <token>`.
pub const AUTHORIZATION: &str = "authorization";

/// What starts an executor's User-Agent before its token: Ballista's executor client
/// cannot add headers, only set the User-Agent of its connection to the scheduler.
const EXECUTOR_AGENT: &str = "strata-executor token=";

/// A client of the pipeline service that presents its token on every call.
pub type SchedulerClient = PipelineServiceClient<InterceptedService<Channel, Bearer>>;

/// Adds `authorization: Bearer <token>` to every call, when there is a token.
#[derive(Clone, Default)]
pub struct Bearer(Option<AsciiMetadataValue>);

impl Bearer {
    /// A token's header; a token that cannot be a header value is refused here.
    pub fn new(token: Option<&str>) -> Result<Self, EngineError> {
        token
            .map(|token| {
                format!("Bearer {token}")
                    .parse::<AsciiMetadataValue>()
                    .map_err(|_| EngineError::BadToken)
            })
            .transpose()
            .map(Self)
    }
}

impl Interceptor for Bearer {
    fn call(
        &mut self,
        mut request: tonic::Request<()>,
    ) -> Result<tonic::Request<()>, tonic::Status> {
        if let Some(value) = &self.0 {
            request.metadata_mut().insert(AUTHORIZATION, value.clone());
        }
        Ok(request)
    }
}

/// The `authorization` header of Ballista's own calls from a client session.
pub fn ballista_metadata(token: Option<&str>) -> std::collections::HashMap<String, String> {
    token
        .map(|token| (AUTHORIZATION.to_owned(), format!("Bearer {token}")))
        .into_iter()
        .collect()
}

/// The token a call presents: a bearer token, or an executor's User-Agent token.
pub fn presented_token(metadata: &MetadataMap) -> Option<&str> {
    let bearer = metadata
        .get(AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Bearer "));
    let agent = || {
        metadata
            .get("user-agent")
            .and_then(|value| value.to_str().ok())
            .and_then(|agent| agent.split_once(EXECUTOR_AGENT))
            .map(|(_, rest)| rest.split(' ').next().unwrap_or(rest))
    };
    bearer
        .or_else(agent)
        .map(str::trim)
        .filter(|token| !token.is_empty())
}

/// rustls needs one crypto provider chosen, and the dependency graph enables two; an
/// error only means one is already installed.
pub fn install_crypto() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
}

/// Connects to a scheduler's pipeline service and checks it runs this version.
///
/// `url` is `host:port` or `http://host:port`. A scheduler that is not up yet is tried
/// [`CONNECT_ATTEMPTS`] times; a scheduler of another version is refused at once, and
/// so is a missing or wrong `token` when the scheduler asks for one.
pub async fn connect(
    url: &str,
    role: &str,
    name: &str,
    credentials: &Credentials,
) -> Result<SchedulerClient, EngineError> {
    install_crypto();
    let bearer = Bearer::new(credentials.token.as_deref())?;
    let tls = credentials.tls();
    let url = with_scheme(&scheduler_url(url), tls.is_some());
    let bad_address = |cause: String| EngineError::BadSchedulerAddress {
        url: url.clone(),
        cause,
    };
    let mut endpoint = Channel::from_shared(url.clone())
        .map_err(|error| bad_address(error.to_string()))?
        .connect_timeout(Duration::from_secs(2));
    if let Some(tls) = tls {
        endpoint = endpoint
            .tls_config(tls)
            .map_err(|error| bad_address(error.to_string()))?;
    }
    let mut last_error = String::new();
    for attempt in 1..=CONNECT_ATTEMPTS {
        match endpoint.connect().await {
            Ok(channel) => {
                let mut client = PipelineServiceClient::with_interceptor(channel, bearer)
                    .max_decoding_message_size(64 << 20)
                    .max_encoding_message_size(64 << 20);
                let hello = HelloRequest {
                    version: VERSION.to_owned(),
                    role: role.to_owned(),
                    name: name.to_owned(),
                };
                return match client.hello(hello).await {
                    Ok(_) => Ok(client),
                    Err(status) if status.code() == tonic::Code::Unimplemented => {
                        Err(EngineError::NotAScheduler { url })
                    }
                    Err(status) if status.code() == tonic::Code::Unauthenticated => {
                        Err(EngineError::SchedulerAuth {
                            url,
                            reason: status.message().to_owned(),
                        })
                    }
                    Err(status) => Err(EngineError::SchedulerRefused {
                        url,
                        role: role.to_owned(),
                        reason: status.message().to_owned(),
                    }),
                };
            }
            Err(error) => {
                last_error = std::error::Error::source(&error)
                    .map_or_else(|| error.to_string(), |source| source.to_string());
                if attempt < CONNECT_ATTEMPTS {
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        }
    }
    Err(EngineError::SchedulerUnreachable {
        url,
        attempts: CONNECT_ATTEMPTS,
        cause: last_error,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_is_found_in_the_header_or_in_an_executor_user_agent() {
        let mut metadata = MetadataMap::new();
        assert_eq!(presented_token(&metadata), None);
        metadata.insert(AUTHORIZATION, "Bearer abc".parse().unwrap());
        assert_eq!(presented_token(&metadata), Some("abc"));

        let mut metadata = MetadataMap::new();
        metadata.insert(
            "user-agent",
            "strata-executor token=xyz tonic/0.14".parse().unwrap(),
        );
        assert_eq!(presented_token(&metadata), Some("xyz"));

        let mut metadata = MetadataMap::new();
        metadata.insert(AUTHORIZATION, "Basic abc".parse().unwrap());
        assert_eq!(presented_token(&metadata), None);
    }

    #[test]
    fn only_connections_to_the_scheduler_are_upgraded_to_tls() {
        let credentials = Credentials {
            token: Some("t0k3n-0123456789abcdef".into()),
            tls_ca: Some(b"-----BEGIN CERTIFICATE-----\n-----END CERTIFICATE-----\n".to_vec()),
            tls_domain: None,
            cluster: None,
        };
        let upgrade = endpoint_override("sched:50050", &credentials, true).unwrap();
        let scheduler = upgrade(Endpoint::from_static("http://sched:50050")).unwrap();
        assert_eq!(scheduler.uri().scheme_str(), Some("https"));
        let executor = upgrade(Endpoint::from_static("http://exec-1:50052")).unwrap();
        assert_eq!(executor.uri().scheme_str(), Some("http"));
        let plain = Credentials::default();
        assert!(endpoint_override("sched:50050", &plain, true).is_none());
    }

    #[test]
    fn with_a_cluster_identity_connections_to_executors_speak_tls() {
        let dir = std::env::temp_dir().join(format!("strata-upgrade-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let made = std::process::Command::new("openssl")
            .args([
                "req",
                "-x509",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
            ])
            .args(["-nodes", "-days", "1", "-subj", "/CN=strata-cluster"])
            .arg("-keyout")
            .arg(dir.join("tls.key"))
            .arg("-out")
            .arg(dir.join("tls.crt"))
            .output()
            .unwrap();
        assert!(made.status.success(), "{made:?}");
        std::fs::copy(dir.join("tls.crt"), dir.join("ca.crt")).unwrap();
        let credentials = Credentials {
            cluster: Some(ClusterTls::from_dir(&dir).unwrap()),
            ..Credentials::default()
        };
        let upgrade = endpoint_override("sched:50050", &credentials, false).unwrap();
        let executor = upgrade(Endpoint::from_static("http://exec-1:50052")).unwrap();
        assert_eq!(executor.uri().to_string(), "https://exec-1:50052/");
        let scheduler = upgrade(Endpoint::from_static("http://sched:50050")).unwrap();
        assert_eq!(scheduler.uri().scheme_str(), Some("http"));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_token_that_cannot_be_a_header_is_refused() {
        assert!(matches!(
            Bearer::new(Some("a\nb")),
            Err(EngineError::BadToken)
        ));
        assert!(Bearer::new(None).is_ok());
    }
}

//! The client side of a Strata scheduler's pipeline service: the address rule, the
//! connection with bounded retries, and the version handshake.

use std::time::Duration;

use strata_proto::pipeline::HelloRequest;
use strata_proto::pipeline::pipeline_service_client::PipelineServiceClient;
use tonic::transport::Channel;

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

/// Connects to a scheduler's pipeline service and checks it runs this version.
///
/// `url` is `host:port` or `http://host:port`. A scheduler that is not up yet is tried
/// [`CONNECT_ATTEMPTS`] times; a scheduler of another version is refused at once.
pub async fn connect(
    url: &str,
    role: &str,
    name: &str,
) -> Result<PipelineServiceClient<Channel>, EngineError> {
    let url = scheduler_url(url);
    let endpoint = Channel::from_shared(url.clone())
        .map_err(|error| EngineError::BadSchedulerAddress {
            url: url.clone(),
            cause: error.to_string(),
        })?
        .connect_timeout(Duration::from_secs(2));
    let mut last_error = String::new();
    for attempt in 1..=CONNECT_ATTEMPTS {
        match endpoint.connect().await {
            Ok(channel) => {
                let mut client = PipelineServiceClient::new(channel)
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

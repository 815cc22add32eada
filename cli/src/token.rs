//! The token a command presents to a scheduler that asks for one.

use clap::Args;

/// `--token`, or `STRATA_TOKEN` from the environment (a Kubernetes Secret, say).
#[derive(Args, Clone, Default)]
pub struct TokenArg {
    /// The token to present to a scheduler that asks for one.
    #[arg(
        long = "token",
        env = strata_engine::scheduler_client::TOKEN_ENV,
        hide_env_values = true,
        value_name = "TOKEN"
    )]
    pub token: Option<String>,
}

impl TokenArg {
    pub fn as_deref(&self) -> Option<&str> {
        self.token.as_deref()
    }
}

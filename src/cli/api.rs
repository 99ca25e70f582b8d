//! What `backchannel submit` and `backchannel status` share: where the
//! broker is, the submitter token, and the broker's error answers in words.

use anyhow::Context;
use clap::Args;
use serde_json::Value;

/// Where the broker is and the submitter token to use.
#[derive(Debug, Clone, Args)]
pub struct BrokerArgs {
    /// The broker's base URL.
    #[arg(long, env = "BACKCHANNEL_SERVER")]
    pub server: String,
    /// A submitter token.
    #[arg(long, env = "BACKCHANNEL_SUBMITTER_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// The deprecated name of BACKCHANNEL_SUBMITTER_TOKEN, used when it is not set.
    #[arg(
        long = "deprecated-token",
        env = "BACKCHANNEL_TOKEN",
        hide = true,
        hide_env_values = true
    )]
    pub deprecated_token: Option<String>,
}

impl BrokerArgs {
    pub fn new(server: &str, token: &str) -> BrokerArgs {
        BrokerArgs {
            server: server.to_owned(),
            token: Some(token.to_owned()),
            deprecated_token: None,
        }
    }

    pub fn token(&self) -> anyhow::Result<&str> {
        self.token
            .as_deref()
            .or(self.deprecated_token.as_deref())
            .context("a submitter token is required: --token or BACKCHANNEL_SUBMITTER_TOKEN")
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.server.trim_end_matches('/'), path)
    }
}

pub async fn error_of(response: reqwest::Response) -> anyhow::Error {
    let status = response.status();
    let body: Value = response.json().await.unwrap_or(Value::Null);
    let message = body["error"]["message"].as_str().unwrap_or("no message");
    let code = body["error"]["code"].as_str().unwrap_or("unknown");
    anyhow::anyhow!("the broker answered {status}: {code}: {message}")
}

/// A client error in one line, with its causes.
pub fn describe(error: &reqwest::Error) -> String {
    let mut text = error.to_string();
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

//! What `backchannel submit` and `backchannel status` share: where the
//! broker is, the token, and the broker's error answers in words.

use std::path::PathBuf;

use anyhow::Context;
use clap::Args;
use serde_json::Value;

use crate::job::{DEFAULT_CHANNEL_NAME, is_channel_name};

/// Where the broker is and the token to use: a submitter token (`status`
/// also takes a monitor token).
#[derive(Debug, Clone, Args)]
pub struct BrokerArgs {
    /// The broker's base URL.
    #[arg(long, env = "BACKCHANNEL_SERVER")]
    pub server: String,
    /// A file holding the token (surrounding whitespace ignored): a submitter
    /// token, or for `status` a monitor token. Wins over --token and the
    /// variables; prefer it to --token, which shows in process lists.
    #[arg(long, value_name = "PATH")]
    pub token_file: Option<PathBuf>,
    /// A submitter token (for `status`: a submitter or monitor token).
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
    /// The channel to submit to (`submit`) or report on (`status`); its
    /// token must be allowed on it.
    #[arg(long, env = "BACKCHANNEL_CHANNEL", default_value = DEFAULT_CHANNEL_NAME)]
    pub channel: String,
}

impl BrokerArgs {
    pub fn new(server: &str, token: &str) -> BrokerArgs {
        BrokerArgs {
            server: server.to_owned(),
            token_file: None,
            token: Some(token.to_owned()),
            deprecated_token: None,
            channel: DEFAULT_CHANNEL_NAME.to_owned(),
        }
    }

    /// `/v1/<rest>` for the default channel (as every release answers it),
    /// else `/v1/channels/<channel>/<rest>`; refused for a name that is no
    /// channel's.
    pub fn channel_url(&self, rest: &str) -> anyhow::Result<String> {
        anyhow::ensure!(
            is_channel_name(&self.channel),
            "--channel {:?} is not a channel name (lowercase letters, digits and inner hyphens, 1 to 63 characters)",
            self.channel
        );
        Ok(if self.channel == DEFAULT_CHANNEL_NAME {
            self.url(&format!("/v1/{rest}"))
        } else {
            self.url(&format!("/v1/channels/{}/{rest}", self.channel))
        })
    }

    /// The token: from `--token-file`, else `--token` or its variables. A
    /// file that cannot be read or holds nothing is an error naming the
    /// file (never its content).
    pub fn token(&self) -> anyhow::Result<String> {
        if let Some(path) = &self.token_file {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("--token-file: cannot read {}", path.display()))?;
            let token = text.trim();
            anyhow::ensure!(
                !token.is_empty(),
                "--token-file: {} holds no token",
                path.display()
            );
            anyhow::ensure!(
                !token.contains(char::is_whitespace),
                "--token-file: {} holds more than one word: put the token alone in it",
                path.display()
            );
            return Ok(token.to_owned());
        }
        self.token
            .as_deref()
            .or(self.deprecated_token.as_deref())
            .map(str::to_owned)
            .context("a token is required: --token-file, --token or BACKCHANNEL_SUBMITTER_TOKEN")
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

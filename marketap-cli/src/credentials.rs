//! The client from the credentials: the key from `--api-key-file` or
//! `MARKETAP_API_KEY`, the project from `--project` or
//! `MARKETAP_PROJECT_ID`, and `MARKETAP_BASE_URL` if set. There is no flag
//! for the key itself (it would show in the process list), and no message
//! ever shows it.

use std::{path::Path, time::Duration};

use marketap_ext::{BatchConfig, Config, Marketap, RetryConfig};

use crate::{args::CredentialArgs, error::CliError};

/// How requests are cut and retried.
#[derive(Debug, Clone, Copy, Default)]
pub struct Sending {
    /// Batch size and requests in flight.
    pub batch: BatchConfig,
    /// Attempts per request.
    pub max_attempts: Option<u32>,
    /// Letters are resent without the reserved check.
    pub skip_reserved_check: bool,
}

/// A client for `credentials`, sending as `sending` says.
pub fn client(credentials: &CredentialArgs, sending: Sending) -> Result<Marketap, CliError> {
    let env = |name: &str| std::env::var(name).ok().filter(|v| !v.trim().is_empty());
    let key = match &credentials.api_key_file {
        Some(path) => read_key(path)?,
        None => env("MARKETAP_API_KEY").ok_or(CliError::MissingCredential {
            what: "API key",
            env: "MARKETAP_API_KEY",
            flag: "--api-key-file FILE",
        })?,
    };
    let project = credentials
        .project
        .clone()
        .filter(|p| !p.trim().is_empty())
        .or_else(|| env("MARKETAP_PROJECT_ID"))
        .ok_or(CliError::MissingCredential {
            what: "project id",
            env: "MARKETAP_PROJECT_ID",
            flag: "--project ID",
        })?;
    let mut config = Config::new(key, project)
        .with_batch(sending.batch)
        .with_reserved_check(!sending.skip_reserved_check);
    if let Some(max_attempts) = sending.max_attempts {
        config = config.with_retry(RetryConfig {
            max_attempts,
            ..RetryConfig::default()
        });
    }
    if let Some(url) = env("MARKETAP_BASE_URL") {
        config = config.with_base_url(url);
    }
    // A request of 1,000 items can take a while on a slow link.
    config = config.with_request_timeout(Duration::from_secs(60));
    Ok(Marketap::new(config)?)
}

/// The key in `path`, without surrounding whitespace.
fn read_key(path: &Path) -> Result<String, CliError> {
    let key = std::fs::read_to_string(path).map_err(|e| CliError::file(path, e))?;
    let key = key.trim();
    if key.is_empty() {
        return Err(CliError::EmptyKeyFile {
            path: path.to_owned(),
        });
    }
    Ok(key.to_owned())
}

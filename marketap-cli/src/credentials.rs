//! The client from the credentials: the key from `--api-key-file` or
//! `MARKETAP_API_KEY`, the project from `--project` or
//! `MARKETAP_PROJECT_ID`, and `MARKETAP_BASE_URL` if set. There is no flag
//! for the key itself (it would show in the process list), and no message
//! ever shows it.

use std::{path::Path, time::Duration};

use marketap_ext::{BatchConfig, Config, ConfigError, Marketap, RateLimit, RetryConfig};

use crate::{args::CredentialArgs, error::CliError};

/// How requests are cut and retried.
#[derive(Debug, Clone, Default)]
pub struct Sending {
    /// Batch size and requests in flight.
    pub batch: BatchConfig,
    /// Attempts per request.
    pub max_attempts: Option<u32>,
    /// Requests and items per second, at most.
    pub rate: RateLimit,
    /// Letters are resent without the reserved check.
    pub skip_reserved_check: bool,
}

/// A client for `credentials`, sending as `sending` says. The flags stand
/// in for their variables; everything else is read as
/// [`Config::from_lookup`] reads it.
pub fn client(credentials: &CredentialArgs, sending: Sending) -> Result<Marketap, CliError> {
    let key_file = credentials
        .api_key_file
        .as_deref()
        .map(read_key)
        .transpose()?;
    let project = credentials.project.clone().filter(|p| !p.trim().is_empty());
    let lookup = |name: &str| match name {
        "MARKETAP_API_KEY" if key_file.is_some() => key_file.clone(),
        "MARKETAP_PROJECT_ID" if project.is_some() => project.clone(),
        _ => std::env::var(name).ok(),
    };
    let mut config = Config::from_lookup(lookup).map_err(|error| match error {
        ConfigError::MissingEnv {
            name: "MARKETAP_API_KEY",
        } => CliError::MissingCredential {
            what: "API key",
            env: "MARKETAP_API_KEY",
            flag: "--api-key-file FILE",
        },
        ConfigError::MissingEnv {
            name: "MARKETAP_PROJECT_ID",
        } => CliError::MissingCredential {
            what: "project id",
            env: "MARKETAP_PROJECT_ID",
            flag: "--project ID",
        },
        other => CliError::Config(other),
    })?;
    config = config
        .with_batch(sending.batch)
        .with_rate_limit(sending.rate)
        .with_reserved_check(!sending.skip_reserved_check)
        // A request of 1,000 items can take a while on a slow link.
        .with_request_timeout(Duration::from_secs(60));
    if let Some(max_attempts) = sending.max_attempts {
        config = config.with_retry(RetryConfig::default().with_max_attempts(max_attempts));
    }
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

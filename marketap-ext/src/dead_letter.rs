//! The dead-letter file: requests whose items were finally not delivered,
//! one JSON object per line (NDJSON), each holding the request body in the
//! API's own shape, so a later run can [`read`] them and
//! [`Marketap::resend`] them.
//!
//! A line looks like
//! `{"operation":"collect_bulk_user_events","error":"…","status":503,"attempts":5,"body":{"events":[…]}}`.

use std::{io, path::Path, path::PathBuf};

use serde::{Deserialize, Serialize, de::DeserializeOwned};
use tokio::io::AsyncWriteExt;

use crate::{
    batch::FailedBatch,
    client::Marketap,
    error::{Error, ValidationError},
    ingest::Undelivered,
    item::{Device, Event, Item, UserProfile, wire::Wire},
};

/// One failed request, as written to the dead-letter file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeadLetter {
    /// The operation, e.g. `collect_bulk_user_events`.
    pub operation: String,
    /// Why it failed.
    pub error: String,
    /// The HTTP status, if the server answered.
    pub status: Option<u16>,
    /// How many times it was sent.
    pub attempts: u32,
    /// The request body, as the API takes it.
    pub body: serde_json::Value,
}

impl DeadLetter {
    fn new<T: Item>(batch: &FailedBatch<T>) -> Self {
        Self {
            operation: T::OPERATION.to_owned(),
            error: batch.error.to_string(),
            status: batch.error.status(),
            attempts: batch.attempts,
            body: serde_json::json!({ T::FIELD: batch.items }),
        }
    }

    pub(crate) fn from_undelivered(undelivered: &Undelivered) -> Self {
        match undelivered {
            Undelivered::Events(batch) => Self::new(batch),
            Undelivered::Profiles(batch) => Self::new(batch),
            Undelivered::Devices(batch) => Self::new(batch),
        }
    }
}

/// Reads every line of a dead-letter file. A line that is not a
/// [`DeadLetter`] is an `InvalidData` error naming its number.
pub fn read(path: impl AsRef<Path>) -> io::Result<Vec<DeadLetter>> {
    let text = std::fs::read_to_string(path)?;
    text.lines()
        .enumerate()
        .filter(|(_, line)| !line.trim().is_empty())
        .map(|(number, line)| {
            serde_json::from_str(line).map_err(|e| {
                io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("line {}: {e}", number + 1),
                )
            })
        })
        .collect()
}

impl Marketap {
    /// Sends a dead letter's items again, as one request (with retries).
    /// Returns how many items were accepted; on failure the letter is
    /// still yours to keep. Items are validated again first: the file may
    /// have been edited.
    pub async fn resend(&self, letter: &DeadLetter) -> Result<usize, Error> {
        match letter.operation.as_str() {
            op if op == Event::OPERATION => self.resend_as::<Event>(letter).await,
            op if op == UserProfile::OPERATION => self.resend_as::<UserProfile>(letter).await,
            op if op == Device::OPERATION => self.resend_as::<Device>(letter).await,
            other => Err(ValidationError::config(
                "operation",
                other,
                "not an operation the ingestor sends",
            )
            .into()),
        }
    }

    async fn resend_as<T: Item>(&self, letter: &DeadLetter) -> Result<usize, Error>
    where
        T::Body: DeserializeOwned,
    {
        let body: T::Body = serde_json::from_value(letter.body.clone()).map_err(|e| {
            ValidationError::Unserializable {
                field: "body".into(),
                reason: e.to_string(),
            }
        })?;
        let items = T::into_items(body)
            .into_iter()
            .map(T::validate)
            .collect::<Result<Vec<_>, _>>()?;
        self.send_batch(items).await.map_err(|failed| failed.error)
    }
}

/// Appends dead letters to a file, opening it on first use.
pub(crate) struct DeadLetterWriter {
    path: PathBuf,
    file: Option<tokio::fs::File>,
}

impl DeadLetterWriter {
    pub(crate) fn new(path: PathBuf) -> Self {
        Self { path, file: None }
    }

    /// Appends one line. A write that fails is logged; the items still
    /// reach the caller through the callback or the shutdown report.
    pub(crate) async fn append(&mut self, undelivered: &Undelivered) {
        let mut line = serde_json::to_vec(&DeadLetter::from_undelivered(undelivered))
            .expect("items serialise: they were validated");
        line.push(b'\n');
        if let Err(error) = self.write(&line).await {
            tracing::error!(path = %self.path.display(), %error, "could not write the dead-letter file");
        }
    }

    async fn write(&mut self, line: &[u8]) -> io::Result<()> {
        if self.file.is_none() {
            let file = tokio::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&self.path)
                .await?;
            self.file = Some(file);
        }
        let file = self.file.as_mut().expect("opened above");
        file.write_all(line).await?;
        file.flush().await
    }
}

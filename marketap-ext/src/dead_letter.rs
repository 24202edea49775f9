//! The dead-letter file: requests whose items were finally not delivered,
//! one JSON object per line (NDJSON), each holding the request body in the
//! API's own shape, so a later run can [`read`] them and
//! [`Marketap::resend`] them.
//!
//! A line looks like
//! `{"operation":"collect_bulk_user_events","error":"…","status":503,"attempts":5,"body":{"events":[…]}}`.

use std::{io, path::Path, path::PathBuf};

use marketap_api::types;
use serde::{Deserialize, Serialize};
use tokio::io::AsyncWriteExt;

use crate::{
    batch::FailedBatch,
    client::Marketap,
    error::{Error, ValidationError},
    ingest::Undelivered,
    item::{Device, Event, Item, UserProfile},
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
    /// still yours to keep.
    pub async fn resend(&self, letter: &DeadLetter) -> Result<usize, Error> {
        fn items<B: serde::de::DeserializeOwned, R, T>(
            letter: &DeadLetter,
            list: impl FnOnce(B) -> Vec<R>,
            validate: impl Fn(R) -> Result<T, ValidationError>,
        ) -> Result<Vec<T>, Error> {
            let body: B = serde_json::from_value(letter.body.clone()).map_err(|e| {
                ValidationError::Unserializable {
                    field: "body".into(),
                    reason: e.to_string(),
                }
            })?;
            Ok(list(body)
                .into_iter()
                .map(validate)
                .collect::<Result<_, _>>()?)
        }
        match letter.operation.as_str() {
            "collect_bulk_user_events" => {
                let events = items(
                    letter,
                    |b: types::CreateBulkEventReq| b.events,
                    Event::from_raw,
                )?;
                self.send_batch(events).await.map_err(|failed| failed.error)
            }
            "update_bulk_user_profiles" => {
                let profiles = items(
                    letter,
                    |b: types::UpdateBulkUserProfileReq| b.profiles,
                    UserProfile::from_raw,
                )?;
                self.send_batch(profiles)
                    .await
                    .map_err(|failed| failed.error)
            }
            "update_bulk_device_profiles" => {
                let devices = items(
                    letter,
                    |b: types::UpdateBulkDeviceProfileReq| b.profiles,
                    Device::from_raw,
                )?;
                self.send_batch(devices)
                    .await
                    .map_err(|failed| failed.error)
            }
            other => Err(ValidationError::config(
                "operation",
                other,
                "not an operation the ingestor sends",
            )
            .into()),
        }
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

//! The overlay (`openapi/overlay.json`): what the published sources lack, as typed rules.
//!
//! Unknown keys are rejected so that a misspelt rule fails instead of being skipped, and
//! every entry must carry a `comment` saying where its content comes from.

use serde::Deserialize;
use serde_json::{Map, Value};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Overlay {
    #[serde(rename = "x-comment")]
    _comment: Option<String>,
    pub info: InfoRule,
    #[serde(default)]
    pub unify: Vec<UnifyRule>,
    #[serde(default)]
    pub operations: Vec<OperationRule>,
    #[serde(default)]
    pub schemas: Vec<SchemaRule>,
}

/// Replaces the `info` of the merged document (the sources disagree on it).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InfoRule {
    #[serde(rename = "comment")]
    _comment: String,
    pub value: Map<String, Value>,
}

/// Renames the schema `schema` to `into` in every source, provided the shapes are identical.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UnifyRule {
    #[serde(rename = "comment")]
    _comment: String,
    pub schema: String,
    pub into: String,
}

/// Merges `merge` into the operation at `path` and `method`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OperationRule {
    #[serde(rename = "comment")]
    _comment: String,
    pub method: String,
    pub path: String,
    pub merge: Map<String, Value>,
}

/// Merges `merge` into the component schema named `schema`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SchemaRule {
    #[serde(rename = "comment")]
    _comment: String,
    pub schema: String,
    pub merge: Map<String, Value>,
}

impl Overlay {
    pub fn from_value(value: &Value) -> Result<Self, serde_json::Error> {
        Self::deserialize(value)
    }
}

//! The file-system side of `merge` and `check`: where the inputs and the output live, reading
//! and parsing them, and rendering the merged document byte for byte.

use std::fs;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};

use serde_json::{Map, Value};

use crate::merge::{self, MergeError};

/// The merged document, relative to the repository root.
pub const OUTPUT: &str = "openapi/marketap.json";
const SOURCES_DIR: &str = "openapi/sources";
const OVERLAY: &str = "openapi/overlay.json";

/// The repository root: the parent of this crate's directory.
pub fn repo_root() -> PathBuf {
    let manifest_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest_dir
        .parent()
        .expect("xtask lives one level below the repository root")
        .to_path_buf()
}

/// What `cargo xtask merge` writes, with the document it renders.
pub struct Generated {
    pub document: Value,
    pub text: String,
}

pub fn generate(root: &Path) -> Result<Generated, MergeError> {
    let document = merge::merge(read_sources(root)?, &read_overlay(root)?)?;
    let text = render(&document);
    Ok(Generated { document, text })
}

/// Every `openapi/sources/*.json`, parsed and named relative to `openapi/`, sorted by name.
pub fn read_sources(root: &Path) -> Result<Vec<(String, Value)>, MergeError> {
    let dir = root.join(SOURCES_DIR);
    let io_error = |source| MergeError::Io {
        action: "list",
        path: dir.clone(),
        source,
    };
    let mut names = Vec::new();
    for entry in fs::read_dir(&dir).map_err(io_error)? {
        let name = entry
            .map_err(io_error)?
            .file_name()
            .to_string_lossy()
            .into_owned();
        if name.ends_with(".json") {
            names.push(name);
        }
    }
    names.sort();
    names
        .into_iter()
        .map(|name| {
            let document = read_json(&dir.join(&name), &format!("sources/{name}"))?;
            Ok((format!("sources/{name}"), document))
        })
        .collect()
}

pub fn read_overlay(root: &Path) -> Result<Value, MergeError> {
    read_json(&root.join(OVERLAY), "overlay.json")
}

fn read_json(path: &Path, name: &str) -> Result<Value, MergeError> {
    let text = fs::read_to_string(path).map_err(|source| MergeError::Io {
        action: "read",
        path: path.to_path_buf(),
        source,
    })?;
    serde_json::from_str(&text).map_err(|source| MergeError::Parse {
        file: name.to_owned(),
        source,
    })
}

/// The committed output, or `None` if there is none.
pub fn read_output(root: &Path) -> Result<Option<String>, MergeError> {
    let path = root.join(OUTPUT);
    match fs::read_to_string(&path) {
        Ok(text) => Ok(Some(text)),
        Err(error) if error.kind() == ErrorKind::NotFound => Ok(None),
        Err(source) => Err(MergeError::Io {
            action: "read",
            path,
            source,
        }),
    }
}

pub fn write_output(root: &Path, text: &str) -> Result<(), MergeError> {
    let path = root.join(OUTPUT);
    fs::write(&path, text).map_err(|source| MergeError::Io {
        action: "write",
        path,
        source,
    })
}

/// Pretty-printed JSON with keys sorted and a trailing newline.
pub fn render(document: &Value) -> String {
    let mut text =
        serde_json::to_string_pretty(&sorted(document)).expect("a JSON value always serializes");
    text.push('\n');
    text
}

/// Sorts object keys explicitly: serde_json's `preserve_order` feature, if another crate in a
/// workspace build turns it on, would otherwise change the output's key order.
fn sorted(value: &Value) -> Value {
    match value {
        Value::Object(map) => {
            let mut entries: Vec<(&String, &Value)> = map.iter().collect();
            entries.sort_by_key(|(key, _)| *key);
            let map: Map<String, Value> = entries
                .into_iter()
                .map(|(key, value)| (key.clone(), sorted(value)))
                .collect();
            Value::Object(map)
        }
        Value::Array(items) => Value::Array(items.iter().map(sorted).collect()),
        other => other.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The published page the sources were copied from, beside the repo.
    const PUBLISHED: &str = "../shared/marketap/open-api-user-event-request.ko.md";

    /// Each source parses to the same JSON value as the block published for
    /// its operation. Runs where the page is at hand (a checkout next to
    /// the project's shared folder, as in CI); says so where it is not.
    #[test]
    fn sources_are_exactly_as_published() {
        let root = repo_root();
        let Ok(page) = std::fs::read_to_string(root.join(PUBLISHED)) else {
            println!("skipped: {PUBLISHED} is not beside this checkout");
            return;
        };
        let published: Vec<Value> = page
            .split("```json\n")
            .skip(1)
            .map(|block| {
                serde_json::from_str(&block[..block.find("\n```").expect("closed block")])
                    .expect("valid JSON")
            })
            .collect();
        let sources = read_sources(&root).unwrap();
        assert_eq!((published.len(), sources.len()), (5, 5));
        for (name, source) in &sources {
            assert!(
                published.contains(source),
                "{name} differs from every block published on the page"
            );
        }
    }
}

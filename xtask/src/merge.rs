//! The pure merge: the published source documents plus the overlay in, one OpenAPI document out.
//!
//! Nothing here touches the file system (`spec_io` does). Wherever two inputs could disagree,
//! the merge fails with a [`MergeError`] naming both sides instead of letting one of them win.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;

use serde_json::{Map, Value};

use crate::overlay::{Overlay, UnifyRule};

pub const GENERATED_BY: &str =
    "cargo xtask merge (from openapi/sources/*.json and openapi/overlay.json); do not edit by hand";

/// The keys of a path item that are operations; any other key is a field shared by them.
const METHODS: [&str; 8] = [
    "get", "put", "post", "delete", "options", "head", "patch", "trace",
];

/// The top-level keys of a source that the merge knows how to combine. `info` is replaced by
/// the overlay's; anything else is refused rather than dropped.
const KNOWN_KEYS: [&str; 6] = [
    "openapi",
    "info",
    "servers",
    "security",
    "components",
    "paths",
];

#[derive(Debug, thiserror::Error)]
pub enum MergeError {
    #[error("cannot {action} {}: {source}", path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{file} is not valid JSON: {source}")]
    Parse {
        file: String,
        source: serde_json::Error,
    },
    #[error("overlay.json does not follow the overlay format: {0}")]
    InvalidOverlay(#[source] serde_json::Error),
    #[error("no source documents to merge")]
    NoSources,
    #[error("{file}: {pointer} should be {expected}")]
    Malformed {
        file: String,
        pointer: String,
        expected: &'static str,
    },
    #[error(
        "{file}: the merge does not know the top-level key `{key}`; teach xtask about it rather than drop it"
    )]
    UnsupportedKey { file: String, key: String },
    #[error(
        "OpenAPI versions differ: {first_file} has {first_version}, {second_file} has {second_version}"
    )]
    VersionMismatch {
        first_file: String,
        first_version: String,
        second_file: String,
        second_version: String,
    },
    #[error(
        "cannot unify schema `{schema}` ({file}) into `{into}` ({into_file}): they differ {difference}"
    )]
    UnifyShapeMismatch {
        schema: String,
        file: String,
        into: String,
        into_file: String,
        difference: Difference,
    },
    #[error(
        "overlay unify rule `{schema}` -> `{into}` is stale: no source defines schema `{schema}`"
    )]
    StaleUnify { schema: String, into: String },
    /// Two sources define a component (a schema, a security scheme, ...) of the same name differently.
    #[error(
        "components.{section}.{name} differs between {first_file} and {second_file} {difference}"
    )]
    ComponentConflict {
        section: String,
        name: String,
        first_file: String,
        second_file: String,
        difference: Difference,
    },
    #[error("operation `{method} {path}` is defined by both {first_file} and {second_file}")]
    DuplicateOperation {
        method: String,
        path: String,
        first_file: String,
        second_file: String,
    },
    #[error(
        "field `{field}` of path item {path} differs between {first_file} and {second_file} {difference}"
    )]
    PathItemConflict {
        path: String,
        field: String,
        first_file: String,
        second_file: String,
        difference: Difference,
    },
    #[error("overlay entry {entry} targets {target}, which the merged sources do not define")]
    OverlayTargetMissing { entry: String, target: String },
    #[error(
        "overlay entry {entry} ({target}) would replace {pointer}: the sources have {source_value}, the overlay has {overlay_value}; an overlay may add keys or restate values, never replace them"
    )]
    OverlayOverride {
        entry: String,
        target: String,
        pointer: String,
        source_value: Value,
        overlay_value: Value,
    },
    #[error("operation `{operation}` has no operationId; give it one in openapi/overlay.json")]
    MissingOperationId { operation: String },
    #[error("operationId `{id}` is used by both `{first}` and `{second}`")]
    DuplicateOperationId {
        id: String,
        first: String,
        second: String,
    },
}

/// The first place where two JSON values differ: a JSON pointer (relative to the values
/// compared) and what each side has there (`None` where the key or element is absent).
#[derive(Debug, Clone, PartialEq)]
pub struct Difference {
    pub pointer: String,
    pub first: Option<Value>,
    pub second: Option<Value>,
}

impl fmt::Display for Difference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let show = |value: &Option<Value>| {
            value
                .as_ref()
                .map_or("(absent)".to_owned(), Value::to_string)
        };
        let at = if self.pointer.is_empty() {
            "the top level"
        } else {
            &self.pointer
        };
        write!(
            f,
            "at {at}: {} vs {}",
            show(&self.first),
            show(&self.second)
        )
    }
}

/// Merges `sources` (`(name, document)` pairs; the names end up in `x-sources` and in error
/// messages) and applies `overlay`. The result does not depend on the order of `sources`.
pub fn merge(mut sources: Vec<(String, Value)>, overlay: &Value) -> Result<Value, MergeError> {
    let overlay = Overlay::from_value(overlay).map_err(MergeError::InvalidOverlay)?;
    sources.sort_by(|a, b| a.0.cmp(&b.0));
    let mut sources = sources
        .into_iter()
        .map(|(file, doc)| Source::new(file, doc))
        .collect::<Result<Vec<_>, _>>()?;

    let openapi = common_version(&sources)?;
    for rule in &overlay.unify {
        unify(&mut sources, rule)?;
    }
    let names: Vec<Value> = sources
        .iter()
        .map(|s| Value::from(s.file.clone()))
        .collect();

    let mut doc = Combined::from_sources(&sources)?.into_document(openapi);
    doc.insert("info".into(), Value::Object(overlay.info.value.clone()));
    let mut doc = Value::Object(doc);
    apply_overlay(&mut doc, &overlay)?;
    check_operation_ids(&doc)?;

    let top = doc
        .as_object_mut()
        .expect("the merged document is an object");
    top.insert("x-sources".into(), Value::Array(names));
    top.insert("x-generated-by".into(), GENERATED_BY.into());
    Ok(doc)
}

/// The counts printed after a merge.
#[derive(Debug, PartialEq, Eq)]
pub struct Summary {
    pub operations: usize,
    pub schemas: usize,
    pub sources: usize,
}

impl Summary {
    pub fn of(doc: &Value) -> Self {
        let count = |pointer| {
            doc.pointer(pointer)
                .and_then(Value::as_object)
                .map_or(0, Map::len)
        };
        let sources = doc
            .get("x-sources")
            .and_then(Value::as_array)
            .map_or(0, Vec::len);
        Self {
            operations: operations(doc).count(),
            schemas: count("/components/schemas"),
            sources,
        }
    }
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} operations, {} schemas (from {} sources)",
            self.operations, self.schemas, self.sources
        )
    }
}

/// Every operation of `doc` as `(path, method, operation)`, in sorted order.
pub fn operations(doc: &Value) -> impl Iterator<Item = (&str, &str, &Value)> {
    let paths = doc.get("paths").and_then(Value::as_object);
    paths.into_iter().flatten().flat_map(|(path, item)| {
        let item = item.as_object().into_iter().flatten();
        item.filter(|(key, _)| METHODS.contains(&key.as_str()))
            .map(move |(method, op)| (path.as_str(), method.as_str(), op))
    })
}

/// One source document, known to be a JSON object with only keys the merge understands.
struct Source {
    file: String,
    doc: Value,
}

impl Source {
    fn new(file: String, doc: Value) -> Result<Self, MergeError> {
        let Some(top) = doc.as_object() else {
            return Err(malformed(&file, "the document", "an object"));
        };
        if let Some(key) = top.keys().find(|key| !KNOWN_KEYS.contains(&key.as_str())) {
            return Err(MergeError::UnsupportedKey {
                key: key.clone(),
                file,
            });
        }
        Ok(Self { file, doc })
    }

    /// The object at `pointer`, if there is anything there.
    fn object(&self, pointer: &str) -> Result<Option<&Map<String, Value>>, MergeError> {
        match self.doc.pointer(pointer) {
            None => Ok(None),
            Some(Value::Object(map)) => Ok(Some(map)),
            Some(_) => Err(malformed(&self.file, pointer, "an object")),
        }
    }

    fn object_mut(&mut self, pointer: &str) -> Result<Option<&mut Map<String, Value>>, MergeError> {
        match self.doc.pointer_mut(pointer) {
            None => Ok(None),
            Some(Value::Object(map)) => Ok(Some(map)),
            Some(_) => Err(malformed(&self.file, pointer, "an object")),
        }
    }

    fn array(&self, pointer: &str) -> Result<&[Value], MergeError> {
        match self.doc.pointer(pointer) {
            None => Ok(&[]),
            Some(Value::Array(items)) => Ok(items),
            Some(_) => Err(malformed(&self.file, pointer, "an array")),
        }
    }
}

fn malformed(file: &str, pointer: &str, expected: &'static str) -> MergeError {
    MergeError::Malformed {
        file: file.to_owned(),
        pointer: pointer.to_owned(),
        expected,
    }
}

fn common_version(sources: &[Source]) -> Result<Value, MergeError> {
    let version = |source: &Source| match source.doc.get("openapi") {
        Some(Value::String(version)) => Ok(version.clone()),
        _ => Err(malformed(&source.file, "/openapi", "a version string")),
    };
    let (first, rest) = sources.split_first().ok_or(MergeError::NoSources)?;
    let first_version = version(first)?;
    for source in rest {
        let second_version = version(source)?;
        if second_version != first_version {
            return Err(MergeError::VersionMismatch {
                first_file: first.file.clone(),
                first_version,
                second_file: source.file.clone(),
                second_version,
            });
        }
    }
    Ok(first_version.into())
}

/// Renames schema `rule.schema` to `rule.into` wherever it is defined or referenced, after
/// checking that each definition has exactly the shape that `rule.into` already has.
fn unify(sources: &mut [Source], rule: &UnifyRule) -> Result<(), MergeError> {
    let schema_pointer = |name: &str| format!("/components/schemas/{}", escape(name));
    let (from, into) = (schema_pointer(&rule.schema), schema_pointer(&rule.into));

    // The shape to match: the first definition of `into`, if any source has one. Sources that
    // define `into` differently among themselves are caught later as a component conflict.
    let mut target: Option<(String, Value)> = sources
        .iter()
        .find_map(|s| Some((s.file.clone(), s.doc.pointer(&into)?.clone())));
    let mut matched = false;
    for source in sources.iter_mut() {
        let file = source.file.clone();
        let Some(schemas) = source.object_mut("/components/schemas")? else {
            continue;
        };
        let Some(shape) = schemas.remove(&rule.schema) else {
            continue;
        };
        matched = true;
        match &target {
            Some((into_file, into_shape)) => {
                if let Some(difference) = first_difference(&shape, into_shape) {
                    return Err(MergeError::UnifyShapeMismatch {
                        schema: rule.schema.clone(),
                        file,
                        into: rule.into.clone(),
                        into_file: into_file.clone(),
                        difference,
                    });
                }
            }
            None => target = Some((file, shape.clone())),
        }
        schemas.entry(rule.into.clone()).or_insert(shape);
    }
    if !matched {
        return Err(MergeError::StaleUnify {
            schema: rule.schema.clone(),
            into: rule.into.clone(),
        });
    }
    // References are rewritten in every source, not only the defining ones, so that none is
    // left dangling.
    let (from, into) = (format!("#{from}"), format!("#{into}"));
    for source in sources.iter_mut() {
        rewrite_refs(&mut source.doc, &from, &into);
    }
    Ok(())
}

/// Rewrites every `$ref` to `from` (or to something inside it) so that it points into `into`.
fn rewrite_refs(value: &mut Value, from: &str, into: &str) {
    match value {
        Value::Object(map) => {
            for (key, value) in map.iter_mut() {
                match value {
                    Value::String(target) if key == "$ref" => {
                        if let Some(rest) = target.strip_prefix(from)
                            && (rest.is_empty() || rest.starts_with('/'))
                        {
                            *target = format!("{into}{rest}");
                        }
                    }
                    _ => rewrite_refs(value, from, into),
                }
            }
        }
        Value::Array(items) => items
            .iter_mut()
            .for_each(|item| rewrite_refs(item, from, into)),
        _ => {}
    }
}

/// What the sources add up to, each item remembering the first file that defined it.
#[derive(Default)]
struct Combined {
    /// path → key of its path item (a method or a shared field) → (file, value).
    paths: BTreeMap<String, BTreeMap<String, (String, Value)>>,
    /// components section (`schemas`, `securitySchemes`, ...) → name → (file, value).
    components: BTreeMap<String, BTreeMap<String, (String, Value)>>,
    servers: Vec<Value>,
    security: Vec<Value>,
}

impl Combined {
    fn from_sources(sources: &[Source]) -> Result<Self, MergeError> {
        let mut combined = Self::default();
        for source in sources {
            combined.add(source)?;
        }
        Ok(combined)
    }

    fn add(&mut self, source: &Source) -> Result<(), MergeError> {
        let file = &source.file;
        for (path, item) in source.object("/paths")?.into_iter().flatten() {
            let Value::Object(item) = item else {
                let pointer = format!("/paths/{}", escape(path));
                return Err(malformed(file, &pointer, "a path item object"));
            };
            let merged = self.paths.entry(path.clone()).or_default();
            for (key, value) in item {
                let Some((first_file, existing)) = merged.get(key) else {
                    merged.insert(key.clone(), (file.clone(), value.clone()));
                    continue;
                };
                if METHODS.contains(&key.as_str()) {
                    return Err(MergeError::DuplicateOperation {
                        method: key.clone(),
                        path: path.clone(),
                        first_file: first_file.clone(),
                        second_file: file.clone(),
                    });
                }
                if let Some(difference) = first_difference(existing, value) {
                    return Err(MergeError::PathItemConflict {
                        path: path.clone(),
                        field: key.clone(),
                        first_file: first_file.clone(),
                        second_file: file.clone(),
                        difference,
                    });
                }
            }
        }

        for (section, entries) in source.object("/components")?.into_iter().flatten() {
            let Value::Object(entries) = entries else {
                let pointer = format!("/components/{}", escape(section));
                return Err(malformed(file, &pointer, "an object"));
            };
            let merged = self.components.entry(section.clone()).or_default();
            for (name, value) in entries {
                let Some((first_file, existing)) = merged.get(name) else {
                    merged.insert(name.clone(), (file.clone(), value.clone()));
                    continue;
                };
                if let Some(difference) = first_difference(existing, value) {
                    return Err(MergeError::ComponentConflict {
                        section: section.clone(),
                        name: name.clone(),
                        first_file: first_file.clone(),
                        second_file: file.clone(),
                        difference,
                    });
                }
            }
        }

        for (pointer, list) in [
            ("/servers", &mut self.servers),
            ("/security", &mut self.security),
        ] {
            for item in source.array(pointer)? {
                if !list.contains(item) {
                    list.push(item.clone());
                }
            }
        }
        Ok(())
    }

    fn into_document(self, openapi: Value) -> Map<String, Value> {
        fn strip<K: Ord>(items: BTreeMap<K, (String, Value)>) -> impl Iterator<Item = (K, Value)> {
            items.into_iter().map(|(key, (_file, value))| (key, value))
        }
        let mut doc = Map::new();
        doc.insert("openapi".into(), openapi);
        if !self.servers.is_empty() {
            doc.insert("servers".into(), Value::Array(self.servers));
        }
        if !self.security.is_empty() {
            doc.insert("security".into(), Value::Array(self.security));
        }
        let paths = self
            .paths
            .into_iter()
            .map(|(path, item)| (path, Value::Object(strip(item).collect())));
        doc.insert("paths".into(), paths.collect());
        if !self.components.is_empty() {
            let components = self
                .components
                .into_iter()
                .map(|(section, entries)| (section, Value::Object(strip(entries).collect())));
            doc.insert("components".into(), components.collect());
        }
        doc
    }
}

/// Applies the overlay's operation and schema entries to the merged document.
fn apply_overlay(doc: &mut Value, overlay: &Overlay) -> Result<(), MergeError> {
    let targets = overlay
        .operations
        .iter()
        .enumerate()
        .map(|(index, rule)| {
            let entry = format!("operations[{index}]");
            let target = format!("operation `{} {}`", rule.method, rule.path);
            let pointer = format!("/paths/{}/{}", escape(&rule.path), escape(&rule.method));
            (entry, target, pointer, &rule.merge)
        })
        .chain(overlay.schemas.iter().enumerate().map(|(index, rule)| {
            let entry = format!("schemas[{index}]");
            let target = format!("schema `{}`", rule.schema);
            let pointer = format!("/components/schemas/{}", escape(&rule.schema));
            (entry, target, pointer, &rule.merge)
        }));
    for (entry, target, pointer, patch) in targets {
        let Some(value) = doc.pointer_mut(&pointer) else {
            return Err(MergeError::OverlayTargetMissing { entry, target });
        };
        merge_patch(value, patch, "").map_err(|(pointer, source_value, overlay_value)| {
            MergeError::OverlayOverride {
                entry,
                target,
                pointer,
                source_value,
                overlay_value,
            }
        })?;
    }
    Ok(())
}

/// Merges `patch` into `target`: objects merge key by key, and any other value may only be
/// added or restated. A replacement is returned as `(pointer, existing value, patch value)`.
fn merge_patch(
    target: &mut Value,
    patch: &Map<String, Value>,
    at: &str,
) -> Result<(), (String, Value, Value)> {
    let target = match target {
        Value::Object(target) => target,
        other => return Err((at.to_owned(), other.clone(), Value::Object(patch.clone()))),
    };
    for (key, value) in patch {
        let at = format!("{at}/{}", escape(key));
        match (target.get_mut(key), value) {
            (None, _) => {
                target.insert(key.clone(), value.clone());
            }
            (Some(existing), Value::Object(patch)) => merge_patch(existing, patch, &at)?,
            (Some(existing), _) if existing == value => {}
            (Some(existing), _) => return Err((at, existing.clone(), value.clone())),
        }
    }
    Ok(())
}

/// Every operation needs an operationId (the client generator names methods after them), and
/// no two may share one.
fn check_operation_ids(doc: &Value) -> Result<(), MergeError> {
    let mut seen: BTreeMap<&str, String> = BTreeMap::new();
    for (path, method, op) in operations(doc) {
        let operation = format!("{method} {path}");
        let Some(id) = op.get("operationId").and_then(Value::as_str) else {
            return Err(MergeError::MissingOperationId { operation });
        };
        if let Some(first) = seen.insert(id, operation.clone()) {
            return Err(MergeError::DuplicateOperationId {
                id: id.to_owned(),
                first,
                second: operation,
            });
        }
    }
    Ok(())
}

/// The first place (in sorted key order) where `first` and `second` differ, if they do.
pub fn first_difference(first: &Value, second: &Value) -> Option<Difference> {
    fn walk(first: &Value, second: &Value, at: &mut String) -> Option<Difference> {
        let mut descend = |key: &str, a: Option<&Value>, b: Option<&Value>| {
            let len = at.len();
            at.push('/');
            at.push_str(&escape(key));
            let found = match (a, b) {
                (Some(a), Some(b)) => walk(a, b, at),
                (a, b) => Some(Difference {
                    pointer: at.clone(),
                    first: a.cloned(),
                    second: b.cloned(),
                }),
            };
            at.truncate(len);
            found
        };
        match (first, second) {
            (Value::Object(a), Value::Object(b)) => {
                let keys: std::collections::BTreeSet<&String> = a.keys().chain(b.keys()).collect();
                keys.into_iter()
                    .find_map(|key| descend(key, a.get(key), b.get(key)))
            }
            (Value::Array(a), Value::Array(b)) => {
                (0..a.len().max(b.len())).find_map(|i| descend(&i.to_string(), a.get(i), b.get(i)))
            }
            (a, b) if a == b => None,
            (a, b) => Some(Difference {
                pointer: at.clone(),
                first: Some(a.clone()),
                second: Some(b.clone()),
            }),
        }
    }
    walk(first, second, &mut String::new())
}

/// Escapes one JSON pointer segment (RFC 6901).
fn escape(segment: &str) -> String {
    segment.replace('~', "~0").replace('/', "~1")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// A minimal source: one POST operation at `path` whose body is `schema`, plus `schemas`.
    fn source(path: &str, schema: &str, schemas: Value) -> Value {
        json!({
            "openapi": "3.0.0",
            "info": { "title": "t", "version": "1" },
            "servers": [{ "url": "https://example.test" }],
            "security": [{ "Bearer": [] }],
            "components": {
                "securitySchemes": { "Bearer": { "type": "http", "scheme": "bearer" } },
                "schemas": schemas,
            },
            "paths": {
                path: { "post": {
                    "requestBody": { "content": { "application/json": {
                        "schema": { "$ref": format!("#/components/schemas/{schema}") }
                    } } },
                    "responses": { "400": { "description": "bad", "content": { "application/json": {
                        "schema": { "$ref": "#/components/schemas/Error" }
                    } } } }
                } }
            }
        })
    }

    fn error_schema() -> Value {
        json!({ "type": "object", "properties": { "code": { "type": "integer" } } })
    }

    /// An overlay naming each operation after its path, with the given unify and schema rules.
    fn overlay(paths: &[&str], unify: Value, schemas: Value) -> Value {
        let operations: Vec<Value> = paths
            .iter()
            .map(|path| {
                json!({
                    "comment": "test", "method": "post", "path": path,
                    "merge": { "operationId": path.trim_start_matches('/') }
                })
            })
            .collect();
        json!({
            "info": { "comment": "test", "value": { "title": "Merged", "version": "2" } },
            "unify": unify,
            "operations": operations,
            "schemas": schemas,
        })
    }

    fn two_sources() -> Vec<(String, Value)> {
        vec![
            (
                "a.json".into(),
                source(
                    "/a",
                    "A",
                    json!({ "A": { "type": "string" }, "Error": error_schema() }),
                ),
            ),
            (
                "b.json".into(),
                source(
                    "/b",
                    "B",
                    json!({ "B": { "type": "integer" }, "Error": error_schema() }),
                ),
            ),
        ]
    }

    fn merge_err(sources: Vec<(String, Value)>, overlay: &Value) -> (MergeError, String) {
        let error = merge(sources, overlay).expect_err("the merge should fail");
        let message = error.to_string();
        (error, message)
    }

    #[test]
    fn identical_schemas_collapse_and_lists_are_deduplicated() {
        let merged = merge(two_sources(), &overlay(&["/a", "/b"], json!([]), json!([]))).unwrap();
        let schemas = merged["components"]["schemas"].as_object().unwrap();
        assert_eq!(schemas.keys().collect::<Vec<_>>(), ["A", "B", "Error"]);
        assert_eq!(merged["components"]["schemas"]["Error"], error_schema());
        assert_eq!(
            merged["servers"],
            json!([{ "url": "https://example.test" }])
        );
        assert_eq!(merged["security"], json!([{ "Bearer": [] }]));
        assert_eq!(merged["info"], json!({ "title": "Merged", "version": "2" }));
        assert_eq!(merged["x-sources"], json!(["a.json", "b.json"]));
        assert_eq!(merged["x-generated-by"], GENERATED_BY);
    }

    #[test]
    fn servers_and_security_are_unioned_in_first_seen_order() {
        let mut sources = two_sources();
        sources[0].1["servers"] =
            json!([{ "url": "https://one.test" }, { "url": "https://two.test" }]);
        sources[1].1["servers"] =
            json!([{ "url": "https://three.test" }, { "url": "https://one.test" }]);
        sources[1].1["security"] = json!([{ "Other": [] }, { "Bearer": [] }]);
        let merged = merge(sources, &overlay(&["/a", "/b"], json!([]), json!([]))).unwrap();
        assert_eq!(
            merged["servers"],
            json!([{ "url": "https://one.test" }, { "url": "https://two.test" }, { "url": "https://three.test" }])
        );
        assert_eq!(
            merged["security"],
            json!([{ "Bearer": [] }, { "Other": [] }])
        );
    }

    #[test]
    fn input_order_does_not_matter() {
        let overlay = overlay(&["/a", "/b"], json!([]), json!([]));
        let forward = merge(two_sources(), &overlay).unwrap();
        let backward = merge(two_sources().into_iter().rev().collect(), &overlay).unwrap();
        assert_eq!(forward, backward);
    }

    #[test]
    fn schema_conflict_names_files_schema_and_difference() {
        let mut sources = two_sources();
        sources[1].1["components"]["schemas"]["Error"]["properties"]["code"]["type"] =
            json!("string");
        let (error, message) = merge_err(sources, &overlay(&["/a", "/b"], json!([]), json!([])));
        assert!(
            matches!(error, MergeError::ComponentConflict { ref section, ref name, .. } if section == "schemas" && name == "Error")
        );
        for needle in [
            "a.json",
            "b.json",
            "schemas.Error",
            "/properties/code/type",
            "\"integer\" vs \"string\"",
        ] {
            assert!(
                message.contains(needle),
                "{needle:?} missing from: {message}"
            );
        }
    }

    #[test]
    fn security_scheme_conflict_names_files_and_scheme() {
        let mut sources = two_sources();
        sources[1].1["components"]["securitySchemes"]["Bearer"]["scheme"] = json!("basic");
        let (error, message) = merge_err(sources, &overlay(&["/a", "/b"], json!([]), json!([])));
        assert!(
            matches!(error, MergeError::ComponentConflict { ref section, .. } if section == "securitySchemes")
        );
        for needle in [
            "a.json",
            "b.json",
            "securitySchemes.Bearer",
            "/scheme",
            "\"bearer\" vs \"basic\"",
        ] {
            assert!(
                message.contains(needle),
                "{needle:?} missing from: {message}"
            );
        }
    }

    #[test]
    fn a_missing_key_is_reported_as_absent() {
        let difference = first_difference(&json!({ "a": [1, 2] }), &json!({ "a": [1] })).unwrap();
        assert_eq!(difference.pointer, "/a/1");
        assert_eq!(difference.to_string(), "at /a/1: 2 vs (absent)");
        assert_eq!(
            first_difference(&json!({ "a/b": 1 }), &json!({ "a/b": 1 })),
            None
        );
    }

    #[test]
    fn duplicate_operation_names_both_files_method_and_path() {
        let mut sources = two_sources();
        sources[1].1 = source(
            "/a",
            "B",
            json!({ "B": { "type": "integer" }, "Error": error_schema() }),
        );
        let (error, message) = merge_err(sources, &overlay(&["/a"], json!([]), json!([])));
        assert!(matches!(error, MergeError::DuplicateOperation { .. }));
        assert!(message.contains("post /a"), "{message}");
        assert!(
            message.contains("a.json") && message.contains("b.json"),
            "{message}"
        );
    }

    #[test]
    fn same_path_with_different_methods_merges_the_path_item() {
        let mut sources = two_sources();
        let post = sources[1].1["paths"]["/b"]["post"].take();
        sources[1].1["paths"] = json!({ "/a": { "put": post } });
        let mut overlay = overlay(&["/a"], json!([]), json!([]));
        overlay["operations"].as_array_mut().unwrap().push(
            json!({ "comment": "t", "method": "put", "path": "/a", "merge": { "operationId": "put_a" } }),
        );
        let merged = merge(sources, &overlay).unwrap();
        let item = merged["paths"]["/a"].as_object().unwrap();
        assert_eq!(item.keys().collect::<Vec<_>>(), ["post", "put"]);
        assert_eq!(Summary::of(&merged).operations, 2);
    }

    #[test]
    fn version_mismatch_names_both_files_and_versions() {
        let mut sources = two_sources();
        sources[1].1["openapi"] = json!("3.1.0");
        let (error, message) = merge_err(sources, &overlay(&["/a", "/b"], json!([]), json!([])));
        assert!(matches!(error, MergeError::VersionMismatch { .. }));
        assert_eq!(
            message,
            "OpenAPI versions differ: a.json has 3.0.0, b.json has 3.1.0"
        );
    }

    #[test]
    fn unknown_top_level_keys_are_refused() {
        let mut sources = two_sources();
        sources[0].1["tags"] = json!([{ "name": "x" }]);
        let (error, message) = merge_err(sources, &overlay(&["/a", "/b"], json!([]), json!([])));
        assert!(matches!(error, MergeError::UnsupportedKey { .. }));
        assert!(
            message.contains("a.json") && message.contains("`tags`"),
            "{message}"
        );
    }

    fn sources_with_alias() -> Vec<(String, Value)> {
        let mut sources = two_sources();
        let b = &mut sources[1].1;
        let error = b["components"]["schemas"]["Error"].take();
        b["components"]["schemas"] = json!({ "B": { "type": "integer" }, "Alias": error });
        b["paths"]["/b"]["post"]["responses"]["400"]["content"]["application/json"]["schema"]["$ref"] =
            json!("#/components/schemas/Alias");
        sources
    }

    #[test]
    fn unify_renames_the_schema_and_rewrites_refs() {
        let unify = json!([{ "comment": "t", "schema": "Alias", "into": "Error" }]);
        let merged = merge(
            sources_with_alias(),
            &overlay(&["/a", "/b"], unify, json!([])),
        )
        .unwrap();
        let schemas = merged["components"]["schemas"].as_object().unwrap();
        assert!(!schemas.contains_key("Alias"));
        assert_eq!(schemas["Error"], error_schema());
        let text = merged.to_string();
        assert!(!text.contains("#/components/schemas/Alias"), "{text}");
        assert_eq!(
            merged["paths"]["/b"]["post"]["responses"]["400"]["content"]["application/json"]["schema"],
            json!({ "$ref": "#/components/schemas/Error" })
        );
    }

    #[test]
    fn unify_fails_when_the_shapes_differ() {
        let mut sources = sources_with_alias();
        sources[1].1["components"]["schemas"]["Alias"]["properties"]["message"] =
            json!({ "type": "string" });
        let unify = json!([{ "comment": "t", "schema": "Alias", "into": "Error" }]);
        let (error, message) = merge_err(sources, &overlay(&["/a", "/b"], unify, json!([])));
        assert!(matches!(error, MergeError::UnifyShapeMismatch { .. }));
        for needle in [
            "`Alias` (b.json)",
            "`Error` (a.json)",
            "/properties/message",
            "(absent)",
        ] {
            assert!(
                message.contains(needle),
                "{needle:?} missing from: {message}"
            );
        }
    }

    #[test]
    fn a_unify_rule_matching_nothing_is_stale() {
        let unify = json!([{ "comment": "t", "schema": "Nowhere", "into": "Error" }]);
        let (error, message) = merge_err(two_sources(), &overlay(&["/a", "/b"], unify, json!([])));
        assert!(matches!(error, MergeError::StaleUnify { .. }));
        assert!(message.contains("`Nowhere`"), "{message}");
    }

    #[test]
    fn overlay_adds_operation_ids_and_max_items() {
        let mut sources = two_sources();
        sources[0].1["components"]["schemas"]["A"] =
            json!({ "type": "array", "items": { "type": "string" } });
        let schemas = json!([{ "comment": "t", "schema": "A", "merge": { "maxItems": 1000, "type": "array" } }]);
        let merged = merge(sources, &overlay(&["/a", "/b"], json!([]), schemas)).unwrap();
        assert_eq!(merged["components"]["schemas"]["A"]["maxItems"], 1000);
        assert_eq!(merged["paths"]["/a"]["post"]["operationId"], "a");
        assert_eq!(merged["paths"]["/b"]["post"]["operationId"], "b");
    }

    #[test]
    fn overlay_may_not_replace_a_source_value() {
        let schemas = json!([{ "comment": "t", "schema": "Error", "merge": { "properties": { "code": { "type": "number" } } } }]);
        let (error, message) =
            merge_err(two_sources(), &overlay(&["/a", "/b"], json!([]), schemas));
        assert!(matches!(error, MergeError::OverlayOverride { .. }));
        for needle in [
            "schemas[0]",
            "`Error`",
            "/properties/code/type",
            "\"integer\"",
            "\"number\"",
        ] {
            assert!(
                message.contains(needle),
                "{needle:?} missing from: {message}"
            );
        }
    }

    #[test]
    fn overlay_targets_must_exist() {
        let (error, message) = merge_err(
            two_sources(),
            &overlay(&["/a", "/b", "/c"], json!([]), json!([])),
        );
        assert!(matches!(error, MergeError::OverlayTargetMissing { .. }));
        assert!(
            message.contains("operations[2]") && message.contains("post /c"),
            "{message}"
        );

        let schemas = json!([{ "comment": "t", "schema": "Missing", "merge": { "maxItems": 1 } }]);
        let (error, message) =
            merge_err(two_sources(), &overlay(&["/a", "/b"], json!([]), schemas));
        assert!(matches!(error, MergeError::OverlayTargetMissing { .. }));
        assert!(message.contains("schema `Missing`"), "{message}");
    }

    #[test]
    fn every_operation_needs_an_operation_id() {
        let (error, message) = merge_err(two_sources(), &overlay(&["/a"], json!([]), json!([])));
        assert!(matches!(error, MergeError::MissingOperationId { .. }));
        assert!(message.contains("post /b"), "{message}");
    }

    #[test]
    fn operation_ids_must_be_unique() {
        let mut overlay = overlay(&["/a", "/b"], json!([]), json!([]));
        overlay["operations"][1]["merge"]["operationId"] = json!("a");
        let (error, message) = merge_err(two_sources(), &overlay);
        assert!(matches!(error, MergeError::DuplicateOperationId { .. }));
        assert!(
            message.contains("`a`") && message.contains("post /a") && message.contains("post /b"),
            "{message}"
        );
    }

    #[test]
    fn a_misspelt_overlay_rule_is_refused() {
        let mut overlay = overlay(&["/a", "/b"], json!([]), json!([]));
        overlay["operation"] = json!([]);
        let (error, _) = merge_err(two_sources(), &overlay);
        assert!(matches!(error, MergeError::InvalidOverlay(_)));
    }

    mod real_files {
        use super::*;
        use crate::spec_io;

        fn inputs() -> (Vec<(String, Value)>, Value) {
            let root = spec_io::repo_root();
            (
                spec_io::read_sources(&root).unwrap(),
                spec_io::read_overlay(&root).unwrap(),
            )
        }

        #[test]
        fn the_sources_merge_into_five_named_operations_and_one_error_schema() {
            let (sources, overlay) = inputs();
            let merged = merge(sources, &overlay).unwrap();
            let ids: Vec<&str> = operations(&merged)
                .map(|(_, _, op)| op["operationId"].as_str().unwrap())
                .collect();
            assert_eq!(ids.len(), 5);
            assert_eq!(
                ids.iter().collect::<std::collections::BTreeSet<_>>().len(),
                5
            );

            let schemas = merged["components"]["schemas"].as_object().unwrap();
            assert!(schemas.contains_key("IngestionResponse"));
            assert!(!schemas.contains_key("UserProfileResponse"));
            let error_shaped = schemas
                .values()
                .filter(|s| **s == schemas["IngestionResponse"])
                .count();
            assert_eq!(error_shaped, 1);
            assert!(!merged.to_string().contains("UserProfileResponse"));
            assert_eq!(
                schemas["CreateBulkEventReq"]["properties"]["events"]["maxItems"],
                1000
            );
            assert_eq!(merged["x-sources"].as_array().unwrap().len(), 5);
        }

        #[test]
        fn merging_twice_gives_identical_bytes() {
            let (sources, overlay) = inputs();
            let once = spec_io::render(&merge(sources.clone(), &overlay).unwrap());
            let twice = spec_io::render(&merge(sources, &overlay).unwrap());
            assert_eq!(once, twice);
        }

        #[test]
        fn merging_the_output_again_changes_nothing() {
            let (sources, mut overlay) = inputs();
            let merged = merge(sources, &overlay).unwrap();

            let mut again = merged.clone();
            let top = again.as_object_mut().unwrap();
            // The generated markers are not source keys, and the unification already happened:
            // a rule that renames nothing is stale by design.
            top.remove("x-sources");
            top.remove("x-generated-by");
            overlay["unify"] = json!([]);
            let remerged = merge(vec![("marketap.json".into(), again)], &overlay).unwrap();

            assert_eq!(remerged["paths"], merged["paths"]);
            assert_eq!(remerged["components"], merged["components"]);
        }
    }
}

//! `cargo xtask msrv`: the half of the MSRV check that needs no second toolchain.
//!
//! The workspace declares `rust-version` (the minimum supported Rust version). Two checks keep
//! that promise with only the current toolchain:
//! - our own code: clippy's `incompatible_msrv` lint (denied in `[workspace.lints.clippy]`)
//!   reads each package's `rust-version` and refuses a std API stabilised after it;
//! - our dependencies: this command. Every package in the locked dependency graph
//!   (`cargo metadata --locked`, its `resolve` nodes) whose declared `rust-version` is newer
//!   than ours fails the check. That is every dependency of every workspace member, normal,
//!   build and dev alike (the tests must build on the MSRV too), for every target platform
//!   (a Windows user builds the Windows-only crates). A package that declares no
//!   `rust-version` cannot be judged from its manifest and is counted, not failed.
//!
//! "Ours" is the lowest `rust-version` among the workspace members (they all inherit the
//! workspace's); a member that declares none fails the check. So does a member whose manifest
//! does not inherit the workspace lints (`[lints] workspace = true`), because clippy's half of
//! the check would then not apply to it.

use std::cmp::Ordering;
use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::str::FromStr;

use serde::Deserialize;

/// Why the check could not be run (as opposed to running and finding offenders).
#[derive(Debug, thiserror::Error)]
pub enum MsrvError {
    #[error("cannot run `cargo metadata`: {error}")]
    Spawn { error: std::io::Error },
    #[error("`cargo metadata --format-version 1 --locked` failed: {status}")]
    Metadata { status: std::process::ExitStatus },
    #[error("`cargo metadata` printed JSON this check cannot read: {error}")]
    Parse { error: serde_json::Error },
    #[error("`cargo metadata` printed no `resolve` graph")]
    NoResolve,
    #[error("the resolve graph names package `{id}`, which `packages` does not list")]
    UnknownPackage { id: String },
    #[error("{name} {version} declares rust-version {value:?}: {reason}")]
    BadRustVersion {
        name: String,
        version: String,
        value: String,
        reason: &'static str,
    },
    #[error("the workspace has no members")]
    NoMembers,
    #[error("cannot read {}: {error}", path.display())]
    ReadManifest {
        path: PathBuf,
        error: std::io::Error,
    },
}

/// A `rust-version`: `major.minor` or `major.minor.patch`, numbers only (what Cargo accepts).
/// A missing patch is zero, so `1.88 == 1.88.0`, and `1.9 < 1.88`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct RustVersion {
    major: u64,
    minor: u64,
    patch: u64,
}

impl FromStr for RustVersion {
    type Err = &'static str;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let mut parts = text.split('.').map(|part| {
            if part.is_empty() || !part.bytes().all(|b| b.is_ascii_digit()) {
                return Err("each part must be a number");
            }
            part.parse::<u64>().map_err(|_| "a part is too large")
        });
        let major = parts.next().ok_or("empty")??;
        let minor = parts.next().ok_or("expected major.minor[.patch]")??;
        let patch = parts.next().transpose()?.unwrap_or(0);
        if parts.next().is_some() {
            return Err("expected major.minor[.patch]");
        }
        Ok(Self {
            major,
            minor,
            patch,
        })
    }
}

impl fmt::Display for RustVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.major, self.minor, self.patch)
    }
}

/// The parts of `cargo metadata --format-version 1` this check reads.
#[derive(Debug, Deserialize)]
pub struct Metadata {
    packages: Vec<Package>,
    workspace_members: Vec<String>,
    resolve: Option<Resolve>,
}

#[derive(Debug, Deserialize)]
struct Package {
    id: String,
    name: String,
    version: String,
    rust_version: Option<String>,
    manifest_path: PathBuf,
}

#[derive(Debug, Deserialize)]
struct Resolve {
    nodes: Vec<Node>,
}

#[derive(Debug, Deserialize)]
struct Node {
    id: String,
}

/// A locked package that needs a newer Rust than ours, or a member that declares none.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Offender {
    pub name: String,
    pub version: String,
    /// `None`: a workspace member without a `rust-version`.
    pub rust_version: Option<String>,
}

impl fmt::Display for Offender {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.rust_version {
            Some(rust_version) => write!(
                f,
                "{} {} (rust-version {rust_version})",
                self.name, self.version
            ),
            None => write!(
                f,
                "{} {} (a workspace member with no rust-version)",
                self.name, self.version
            ),
        }
    }
}

/// What the check found in one metadata document.
#[derive(Debug)]
pub struct Findings {
    /// The workspace's rust-version, as the lowest member declares it.
    pub ours: String,
    /// Packages in the resolve graph.
    pub checked: usize,
    /// Of those, how many declare no rust-version (not judged).
    pub undeclared: usize,
    /// Sorted by name, then version.
    pub offenders: Vec<Offender>,
}

impl Metadata {
    pub fn parse(json: &[u8]) -> Result<Self, MsrvError> {
        serde_json::from_slice(json).map_err(|error| MsrvError::Parse { error })
    }

    /// The workspace members' manifests.
    fn member_manifests(&self) -> impl Iterator<Item = (&str, &Path)> {
        self.packages
            .iter()
            .filter(|package| self.workspace_members.contains(&package.id))
            .map(|package| (package.name.as_str(), package.manifest_path.as_path()))
    }
}

/// Every package in `metadata`'s resolve graph whose `rust-version` is newer than the
/// workspace's, and every workspace member that declares none.
pub fn find_offenders(metadata: &Metadata) -> Result<Findings, MsrvError> {
    let resolve = metadata.resolve.as_ref().ok_or(MsrvError::NoResolve)?;
    let by_id: HashMap<&str, &Package> = metadata
        .packages
        .iter()
        .map(|package| (package.id.as_str(), package))
        .collect();
    let parsed = |package: &Package| -> Result<Option<RustVersion>, MsrvError> {
        package
            .rust_version
            .as_deref()
            .map(|value| {
                value.parse().map_err(|reason| MsrvError::BadRustVersion {
                    name: package.name.clone(),
                    version: package.version.clone(),
                    value: value.to_owned(),
                    reason,
                })
            })
            .transpose()
    };

    let mut offenders = Vec::new();
    let mut ours: Option<(RustVersion, &str)> = None;
    for id in &metadata.workspace_members {
        let member = by_id
            .get(id.as_str())
            .ok_or_else(|| MsrvError::UnknownPackage { id: id.clone() })?;
        match (parsed(member)?, member.rust_version.as_deref()) {
            (Some(version), Some(text)) => {
                if ours.is_none_or(|(lowest, _)| version < lowest) {
                    ours = Some((version, text));
                }
            }
            _ => offenders.push(Offender {
                name: member.name.clone(),
                version: member.version.clone(),
                rust_version: None,
            }),
        }
    }
    let Some((ours, ours_text)) = ours else {
        return if offenders.is_empty() {
            Err(MsrvError::NoMembers)
        } else {
            Ok(Findings {
                ours: "(none declared)".to_owned(),
                checked: 0,
                undeclared: 0,
                offenders,
            })
        };
    };

    let mut undeclared = 0;
    for node in &resolve.nodes {
        let package = by_id
            .get(node.id.as_str())
            .ok_or_else(|| MsrvError::UnknownPackage {
                id: node.id.clone(),
            })?;
        match parsed(package)? {
            None => undeclared += 1,
            Some(version) if version.cmp(&ours) == Ordering::Greater => offenders.push(Offender {
                name: package.name.clone(),
                version: package.version.clone(),
                rust_version: package.rust_version.clone(),
            }),
            Some(_) => {}
        }
    }
    offenders.sort_by(|a, b| (&a.name, &a.version).cmp(&(&b.name, &b.version)));
    offenders.dedup();
    Ok(Findings {
        ours: ours_text.to_owned(),
        checked: resolve.nodes.len(),
        undeclared,
        offenders,
    })
}

/// Whether a `Cargo.toml` has `workspace = true` in its `[lints]` table (the one spelling the
/// workspace uses; `lints.workspace = true` at the top level is accepted too).
pub fn inherits_workspace_lints(manifest: &str) -> bool {
    let mut in_lints = false;
    for line in manifest.lines() {
        let line = line.split('#').next().unwrap_or("").trim();
        if line.starts_with('[') {
            in_lints = line == "[lints]";
            continue;
        }
        let Some((key, value)) = line.split_once('=') else {
            continue;
        };
        let (key, value) = (key.trim(), value.trim());
        let inherits = (in_lints && key == "workspace") || key == "lints.workspace";
        if inherits && value == "true" {
            return true;
        }
    }
    false
}

/// `cargo xtask msrv`: runs `cargo metadata`, prints what it found, fails on any offender.
pub fn run() -> Result<ExitCode, MsrvError> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let output = Command::new(cargo)
        .current_dir(crate::spec_io::repo_root())
        .args(["metadata", "--format-version", "1", "--locked"])
        .stderr(Stdio::inherit())
        .output()
        .map_err(|error| MsrvError::Spawn { error })?;
    if !output.status.success() {
        return Err(MsrvError::Metadata {
            status: output.status,
        });
    }
    let metadata = Metadata::parse(&output.stdout)?;

    let mut no_lints = Vec::new();
    for (name, path) in metadata.member_manifests() {
        let text = std::fs::read_to_string(path).map_err(|error| MsrvError::ReadManifest {
            path: path.to_path_buf(),
            error,
        })?;
        if !inherits_workspace_lints(&text) {
            no_lints.push(name.to_owned());
        }
    }

    let findings = find_offenders(&metadata)?;
    let mut failed = false;
    if !no_lints.is_empty() {
        failed = true;
        eprintln!(
            "error: these workspace members do not inherit the workspace lints, so clippy's \
             incompatible_msrv does not guard them (add `workspace = true` under `[lints]`): {}",
            no_lints.join(", ")
        );
    }
    if findings.offenders.is_empty() {
        println!(
            "msrv: all {} locked packages need at most Rust {} ({} declare no rust-version)",
            findings.checked, findings.ours, findings.undeclared
        );
    } else {
        failed = true;
        eprintln!(
            "error: {} locked packages need a newer Rust than our rust-version {}:",
            findings.offenders.len(),
            findings.ours
        );
        for offender in &findings.offenders {
            eprintln!("  {offender}");
        }
        eprintln!(
            "raise rust-version in Cargo.toml (and the README), or pin an older version of each \
             (`cargo update -p NAME --precise VERSION`)"
        );
    }
    Ok(if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn version(text: &str) -> RustVersion {
        text.parse().unwrap()
    }

    #[test]
    fn versions_compare_by_number_with_a_missing_patch_as_zero() {
        assert_eq!(version("1.88"), version("1.88.0"));
        assert!(version("1.9") < version("1.88"));
        assert!(version("1.88.1") > version("1.88"));
        assert!(version("1.89") > version("1.88.9"));
        assert!(version("2.0") > version("1.100.100"));
        assert_eq!(version("1.88").to_string(), "1.88.0");
    }

    #[test]
    fn versions_that_cargo_would_refuse_are_refused() {
        for bad in [
            "",
            "1",
            "1.",
            ".88",
            "1.88.0.0",
            "1.88-beta",
            "v1.88",
            "1.8 8",
            "1.+8",
        ] {
            assert!(bad.parse::<RustVersion>().is_err(), "{bad:?} parsed");
        }
    }

    /// A workspace `ws` at `ours`, and locked packages `(name, version, rust_version)`;
    /// `extra` are listed in `packages` but not in the resolve graph.
    fn metadata(
        ours: Option<&str>,
        locked: &[(&str, &str, Option<&str>)],
        extra: &[&str],
    ) -> Metadata {
        let package = |name: &str, version: &str, rust_version: Option<&str>| {
            serde_json::json!({
                "id": format!("{name}@{version}"),
                "name": name,
                "version": version,
                "rust_version": rust_version,
                "manifest_path": format!("/src/{name}/Cargo.toml"),
                "dependencies": [],
            })
        };
        let mut packages = vec![package("ws", "0.1.0", ours)];
        let mut nodes = vec![serde_json::json!({ "id": "ws@0.1.0", "dependencies": [] })];
        for (name, version, rust_version) in locked {
            packages.push(package(name, version, *rust_version));
            nodes.push(serde_json::json!({ "id": format!("{name}@{version}"), "deps": [] }));
        }
        for name in extra {
            packages.push(package(name, "9.9.9", Some("1.99")));
        }
        let json = serde_json::json!({
            "packages": packages,
            "workspace_members": ["ws@0.1.0"],
            "resolve": { "nodes": nodes, "root": null },
            "version": 1,
        });
        Metadata::parse(json.to_string().as_bytes()).unwrap()
    }

    #[test]
    fn a_graph_within_our_rust_version_passes() {
        let found = find_offenders(&metadata(
            Some("1.88"),
            &[
                ("same", "1.0.0", Some("1.88.0")),
                ("older", "2.0.0", Some("1.9")),
                ("silent", "0.3.0", None),
            ],
            &["not-locked"],
        ))
        .unwrap();
        assert_eq!(found.offenders, []);
        assert_eq!(found.ours, "1.88");
        assert_eq!((found.checked, found.undeclared), (4, 1));
    }

    #[test]
    fn every_newer_package_is_an_offender_and_nothing_else() {
        let found = find_offenders(&metadata(
            Some("1.70"),
            &[
                ("zeta", "1.2.3", Some("1.88")),
                ("alpha", "0.1.0", Some("1.70.1")),
                ("fine", "1.0.0", Some("1.70")),
                ("old", "1.0.0", Some("1.9")),
            ],
            &["not-locked"],
        ))
        .unwrap();
        let offenders: Vec<String> = found.offenders.iter().map(ToString::to_string).collect();
        assert_eq!(
            offenders,
            [
                "alpha 0.1.0 (rust-version 1.70.1)",
                "zeta 1.2.3 (rust-version 1.88)"
            ]
        );
    }

    #[test]
    fn a_member_without_a_rust_version_fails() {
        let found =
            find_offenders(&metadata(None, &[("dep", "1.0.0", Some("1.99"))], &[])).unwrap();
        assert_eq!(found.offenders.len(), 1);
        assert_eq!(found.offenders[0].name, "ws");
        assert_eq!(found.offenders[0].rust_version, None);
    }

    #[test]
    fn an_unparsable_rust_version_names_the_package() {
        let error = find_offenders(&metadata(
            Some("1.88"),
            &[("odd", "1.0.0", Some("1.x"))],
            &[],
        ))
        .unwrap_err();
        assert_eq!(
            error.to_string(),
            "odd 1.0.0 declares rust-version \"1.x\": each part must be a number"
        );
    }

    #[test]
    fn the_workspace_lints_must_be_inherited() {
        assert!(inherits_workspace_lints(
            "[package]\nname = \"a\"\n\n[lints]\nworkspace = true\n"
        ));
        assert!(inherits_workspace_lints(
            "[lints]\nworkspace=true # all of them\n"
        ));
        assert!(inherits_workspace_lints(
            "lints.workspace = true\n[package]\n"
        ));
        assert!(!inherits_workspace_lints("[package]\nname = \"a\"\n"));
        assert!(!inherits_workspace_lints("[lints]\nworkspace = false\n"));
        assert!(!inherits_workspace_lints(
            "[lints]\n[package]\nworkspace = true\n"
        ));
        assert!(!inherits_workspace_lints(
            "[lints.rust]\nworkspace = true\n"
        ));
    }
}

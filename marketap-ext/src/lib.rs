//! Placeholder; filled in by the ext-client issue.
pub use marketap_api as api;

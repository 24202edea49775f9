//! What the examples share: their configuration, from the environment or,
//! when `MARKETAP_API_KEY` and `MARKETAP_PROJECT_ID` are unset, an
//! embedded mock server generated from the same spec.
#![allow(dead_code)] // Each example uses a different part.

use marketap_api::mock::MockServerExt;
use marketap_ext::Config;
use serde_json::json;

pub const MOCK_KEY: &str = "example-key";
pub const MOCK_PROJECT: &str = "example-project";

/// The configuration to use, and the mock server it points at when the
/// environment has no credentials (keep it alive for the whole run).
pub fn config_or_mock() -> (Config, Option<httpmock::MockServer>) {
    config_or_mock_with(|_| {})
}

/// [`config_or_mock`], with mocks of the example's own tried first.
pub fn config_or_mock_with(
    first: impl FnOnce(&httpmock::MockServer),
) -> (Config, Option<httpmock::MockServer>) {
    match Config::from_env() {
        Ok(config) => (config, None),
        Err(why) => {
            let server = httpmock::MockServer::start();
            first(&server);
            accept_all(&server);
            println!(
                "{why}, so this run uses an embedded mock server at {} \
                 (set MARKETAP_API_KEY and MARKETAP_PROJECT_ID to use the real API).",
                server.base_url()
            );
            (
                Config::new(MOCK_KEY, MOCK_PROJECT).with_base_url(server.base_url()),
                Some(server),
            )
        }
    }
}

/// Mocks all five operations: each accepts requests carrying the mock key
/// and project; anything else is unauthorized. httpmock tries mocks in the
/// order they were made, so the 401 comes last.
fn accept_all(server: &httpmock::MockServer) {
    let bearer = format!("Bearer {MOCK_KEY}");
    server.collect_bulk_user_events(|when, then| {
        when.project_id(MOCK_PROJECT)
            .into_inner()
            .header("authorization", &bearer);
        then.accepted();
    });
    server.update_bulk_user_profiles(|when, then| {
        when.project_id(MOCK_PROJECT)
            .into_inner()
            .header("authorization", &bearer);
        then.accepted();
    });
    server.update_bulk_device_profiles(|when, then| {
        when.project_id(MOCK_PROJECT)
            .into_inner()
            .header("authorization", &bearer);
        then.accepted();
    });
    server.request_user_profile_deletion(|when, then| {
        when.project_id(MOCK_PROJECT)
            .into_inner()
            .header("authorization", &bearer);
        then.accepted();
    });
    server.request_bulk_user_profile_deletion(|when, then| {
        when.project_id(MOCK_PROJECT)
            .into_inner()
            .header("authorization", &bearer);
        then.accepted();
    });
    server.mock(|_, then| {
        then.status(401)
            .header("content-type", "application/json")
            .json_body(json!({ "code": 401, "message": "invalid api key or project" }));
    });
}

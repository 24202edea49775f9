//! Generates the client from the merged spec (`openapi.json`, a link to
//! `../openapi/marketap.json`) with progenitor, into `$OUT_DIR`.
//!
//! The `schemars` feature adds `schemars::JsonSchema` to the types' derives.
//!
//! `src/lib.rs` includes `codegen.rs`, `error_statuses.rs` (the error
//! statuses the spec documents with a JSON body) and `operations.rs` (each
//! operation's id, method and path); with the `mock` feature
//! it also includes `mock.rs`, progenitor's typed httpmock extension.

use std::{env, fs, path::Path};

use progenitor::{GenerationSettings, Generator, InterfaceStyle};

const SPEC: &str = "openapi.json";

fn main() {
    println!("cargo:rerun-if-changed={SPEC}");
    println!("cargo:rerun-if-changed=build.rs");

    let text = fs::read_to_string(SPEC).unwrap_or_else(|e| panic!("reading {SPEC}: {e}"));
    let spec: openapiv3::OpenAPI =
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("parsing {SPEC}: {e}"));

    let mut settings = GenerationSettings::default();
    settings
        // Positional methods borrow the request body (`&types::CreateBulkEventReq`),
        // so a caller can retry a request or hand its items back on failure
        // without cloning them. The builder style takes the body by value.
        .with_interface(InterfaceStyle::Positional)
        .with_derive("PartialEq")
        // Every request gets its `Authorization` header from `crate::Auth`,
        // so a caller's own `reqwest::Client` can be used as it is.
        .with_inner_type(tokens("crate::Auth"))
        .with_pre_hook(tokens("crate::Auth::apply"));
    if env::var_os("CARGO_FEATURE_SCHEMARS").is_some() {
        settings.with_derive("schemars::JsonSchema");
    }

    let out_dir = env::var("OUT_DIR").expect("cargo sets OUT_DIR");
    let client = Generator::new(&settings)
        .generate_tokens(&spec)
        .unwrap_or_else(|e| panic!("generating the client from {SPEC}: {e}"));
    write_pretty(&Path::new(&out_dir).join("codegen.rs"), client);

    let statuses = documented_error_statuses(&spec);
    fs::write(
        Path::new(&out_dir).join("error_statuses.rs"),
        format!(
            "/// The error statuses the spec documents with a JSON body, which the\n\
             /// generated client decodes: {statuses:?}.\n\
             const DOCUMENTED_ERROR_STATUSES: &[u16] = &{statuses:?};\n"
        ),
    )
    .unwrap_or_else(|e| panic!("writing error_statuses.rs: {e}"));

    fs::write(
        Path::new(&out_dir).join("operations.rs"),
        operations_table(&spec),
    )
    .unwrap_or_else(|e| panic!("writing operations.rs: {e}"));

    if env::var_os("CARGO_FEATURE_MOCK").is_some() {
        let mock = Generator::new(&settings)
            .httpmock(&spec, "crate")
            .unwrap_or_else(|e| panic!("generating the httpmock extension from {SPEC}: {e}"));
        write_pretty(&Path::new(&out_dir).join("mock.rs"), mock);
    }
}

/// Every non-2xx status that some operation documents with an
/// `application/json` body, sorted.
fn documented_error_statuses(spec: &openapiv3::OpenAPI) -> Vec<u16> {
    let mut statuses: Vec<u16> = spec
        .operations()
        .flat_map(|(_, _, operation)| &operation.responses.responses)
        .filter_map(|(status, response)| match (status, response) {
            (openapiv3::StatusCode::Code(code), openapiv3::ReferenceOr::Item(response))
                if !(200..300).contains(code)
                    && response.content.contains_key("application/json") =>
            {
                Some(*code)
            }
            (openapiv3::StatusCode::Code(code), openapiv3::ReferenceOr::Reference { .. })
                if !(200..300).contains(code) =>
            {
                Some(*code)
            }
            _ => None,
        })
        .collect();
    statuses.sort_unstable();
    statuses.dedup();
    statuses
}

/// `OPERATIONS`: each operation's `operationId`, method and path, as the
/// spec gives them, sorted by `operationId`.
fn operations_table(spec: &openapiv3::OpenAPI) -> String {
    let mut rows: Vec<String> = spec
        .operations()
        .map(|(path, method, operation)| {
            let id = operation
                .operation_id
                .as_deref()
                .unwrap_or_else(|| panic!("{method} {path} has no operationId"));
            format!("    ({id:?}, {:?}, {path:?}),\n", method.to_uppercase())
        })
        .collect();
    rows.sort();
    format!(
        "/// Each operation's `operationId`, HTTP method and path, from the spec:\n\
         /// for callers that send a body they serialised themselves (see\n\
         /// \"Pre-serialised bodies\" in the crate docs).\n\
         pub const OPERATIONS: &[(&str, &str, &str)] = &[\n{}];\n",
        rows.concat()
    )
}

fn tokens(code: &str) -> proc_macro2::TokenStream {
    code.parse().expect("a valid Rust path")
}

fn write_pretty(path: &Path, tokens: proc_macro2::TokenStream) {
    let file: syn::File = syn::parse2(tokens).expect("progenitor emits valid Rust");
    fs::write(path, prettyplease::unparse(&file))
        .unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
}

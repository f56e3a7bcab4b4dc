//! The API under a schema-driven fuzzer: schemathesis (PyPI) reads
//! `/v2/openapi.json` and sends what it generates to the real server, with
//! the admin token: no answer is a 5xx, and every answer matches the
//! document (status, content type, headers, body schema, `Allow` on 405).
//!
//! Left out, each for a reason:
//! - `/v2/ws`, `/v2/hatchery/ws` (websocket upgrades) and
//!   `/v2/events/stream` (an SSE body that never ends): the stream tests
//!   cover them;
//! - `DELETE /v2/auth/tokens/{id}`: the fuzzer would revoke its own token
//!   (the listing gives it the id), and every later answer would be a 401;
//! - the `positive_data_acceptance` check: the document cannot say every
//!   rule a valid request follows (a filter expression's syntax, fields a
//!   type makes mandatory, a webhook URL without credentials), so some
//!   schema-valid requests are rightly refused with a 400.

use crate::receiver::Receiver;
use crate::{ADMIN, TestServer, call, ensure_python_package};
use serde_json::json;
use std::process::Command;

/// Every check of schemathesis but `positive_data_acceptance` (see above)
/// and `object_level_authorization` (one token here).
const CHECKS: &str = "not_a_server_error,status_code_conformance,content_type_conformance,\
    response_headers_conformance,response_schema_conformance,negative_data_rejection,\
    missing_required_header,unsupported_method,allow_header_conformance,use_after_free,\
    ensure_resource_availability,ignored_auth";

#[test]
fn the_api_answers_a_schema_driven_fuzzer_as_its_document_says() {
    ensure_python_package("schemathesis", "schemathesis==4.32.5");
    let dir = tempfile::tempdir().expect("tempdir");
    // A sink and a notification to find, so that their routes are reached
    // past their 404s: a Redis pub/sub channel of this test (nothing kept).
    let channel = format!("itfuzz:{}:ui", std::process::id());
    let sinks = dir.path().join("sinks.toml");
    std::fs::write(
        &sinks,
        format!(
            "[[sinks]]\nname = \"hook\"\nkind = \"redis\"\nurl = \"redis://127.0.0.1:6379\"\n\
             channel = \"{channel}\"\nrun_job_channel = \"\"\n"
        ),
    )
    .expect("sinks file");
    let s = TestServer::builder()
        .arg("--config")
        .arg(sinks.to_str().expect("utf-8 path"))
        .start();
    let rx = Receiver::ok();
    let (status, out) = call(
        &s.http,
        reqwest::Method::POST,
        &s.url("/v2/project/PROJ/notification"),
        Some(&json!({"name": "hook", "webhook_url": rx.url})),
    );
    assert_eq!(status, 201, "{out}");
    let ids = s.publish_jobs("PROJ", 1, 5);
    // The fuzzer draws path values from these known names most of the time,
    // and generates others the rest of it.
    let config = dir.path().join("schemathesis.toml");
    std::fs::write(
        &config,
        format!(
            "[dictionaries.projects]\nvalues = [\"PROJ\"]\n\
             [dictionaries.names]\nvalues = [\"hook\"]\n\
             [dictionaries.ids]\nvalues = [\"{}\"]\n\
             [parameters]\n\
             \"path.projectKey\" = {{ dictionary = \"projects\", probability = 0.7 }}\n\
             \"path.name\" = {{ dictionary = \"names\", probability = 0.7 }}\n\
             \"path.id\" = {{ dictionary = \"ids\", probability = 0.5 }}\n",
            ids[0]
        ),
    )
    .expect("schemathesis config");
    let out = Command::new("schemathesis")
        .current_dir(dir.path())
        .arg("--config-file")
        .arg(&config)
        .arg("run")
        .arg(s.url("/v2/openapi.json"))
        .args(["-H", &format!("Authorization: Bearer {ADMIN}")])
        .args(["--checks", CHECKS])
        .args([
            "--exclude-path",
            "/v2/ws",
            "--exclude-path",
            "/v2/hatchery/ws",
        ])
        .args(["--exclude-path", "/v2/events/stream"])
        .args(["--exclude-path", "/v2/auth/tokens/{id}"])
        .args(["--generation-with-security-parameters", "false"])
        .args(["--generation-database", "none"])
        // Fixed: a failure here is the same failure on the next run.
        .args([
            "--seed",
            "20261130",
            "--max-examples",
            "40",
            "--workers",
            "2",
        ])
        .args(["--request-timeout", "20", "--no-color"])
        .output()
        .expect("schemathesis runs (pip install schemathesis)");
    let report =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "schemathesis found failures:\n{report}"
    );
    // The run did reach the API: at least the operations it tested.
    assert!(
        report.contains("Tested:"),
        "no summary in schemathesis' output:\n{report}"
    );
}

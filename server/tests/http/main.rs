//! The reference server driven over a real loopback socket by a real HTTP client, through the
//! same accept loop `cargo run --example server` runs. This file: every status and body of
//! seeds 000 and 001, key regeneration, revocation, expiry, rate limiting and project scoping.
//! The other modules: one per part of running it as a service.
//!
//! These are end-to-end tests: where time is the subject (expiry, timeouts, purges) they sleep
//! or poll with a deadline, the only sleeps in the suite.
#![expect(
    clippy::unwrap_used,
    reason = "a broken test fixture should stop the test loudly"
)]
#![expect(
    clippy::indexing_slicing,
    reason = "JSON indexing in assertions yields Null, never panics"
)]
#![expect(clippy::panic, reason = "a test fails by panicking")]

mod accounts;
mod addresses;
mod connections;
mod errors;
mod logs;
mod pagination;
mod state;
mod support;

use std::time::Duration;

use serde_json::{Value, json};
use support::{error, start};

#[test]
fn seed_000_create_project_returns_the_full_project_detail() {
    let s = start();
    let body = json!({
        "name": "Customer Support EN",
        "language": "en",
        "industry": "ecommerce",
        "retention_days": 365
    });
    let reply = s.root("POST", "/projects", Some(body));
    assert_eq!(reply.status, 201);
    let data = &reply.body["data"];
    assert!(data["id"].is_u64());
    assert_eq!(data["name"], "Customer Support EN");
    assert_eq!(data["language"], "en");
    assert_eq!(data["industry"], "ecommerce");
    assert_eq!(data["retention_days"], 365);
    assert_eq!(data["quality_baseline_enabled"], false);
    assert_eq!(data["recordings_count"], 0);
    assert_eq!(data["virtual_numbers_count"], 0);
    for null_field in [
        "description",
        "goal_language",
        "summary_language",
        "long_pause_threshold_seconds",
        "transcription_hints",
        "quality_baseline_pct",
    ] {
        assert_eq!(data[null_field], Value::Null, "{null_field}");
    }
    let created_at = data["created_at"].as_str().unwrap();
    assert!(
        created_at.parse::<keygate::Timestamp>().is_ok(),
        "{created_at}"
    );
    assert_eq!(data["updated_at"], data["created_at"]);
    // Exactly the 16 fields of seed 000's example.
    assert_eq!(data.as_object().unwrap().len(), 16);
}

#[test]
fn seed_000_errors_401_403_422() {
    let s = start();
    let body = json!({"name": "x", "language": "en"});
    for key in [
        None,
        Some("idc_notarealkey"),
        Some("idc_00000000000000000000000000000000"),
    ] {
        let reply = s.call("POST", "/projects", key, Some(body.clone()));
        assert_eq!(
            (reply.status, reply.body),
            (401, error("Invalid or expired API key"))
        );
    }
    let reply = s.root(
        "POST",
        "/projects",
        Some(json!({"name": "  ", "language": "en"})),
    );
    assert_eq!(
        (reply.status, reply.body),
        (422, json!({"errors": ["Name can't be blank"]}))
    );
    let reply = s.root("POST", "/projects", Some(json!({})));
    assert_eq!(reply.status, 422);
    assert_eq!(
        reply.body,
        json!({"errors": ["Name can't be blank", "Language can't be blank"]})
    );

    let project = s.project("Support");
    let (_, read_only) = s.key(json!({"name": "reader", "permissions": ["read"]}));
    let reply = s.call("POST", "/projects", Some(&read_only), Some(body.clone()));
    assert_eq!(
        (reply.status, reply.body),
        (403, error("Write permission required"))
    );

    let scoped = json!({"name": "scoped", "permissions": ["read", "write", "delete"], "project_id": project});
    let (_, scoped) = s.key(scoped);
    let seed_message = "Project-scoped API keys cannot create or destroy projects";
    let reply = s.call("POST", "/projects", Some(&scoped), Some(body));
    assert_eq!((reply.status, reply.body), (403, error(seed_message)));
    let reply = s.call(
        "DELETE",
        &format!("/projects/{project}"),
        Some(&scoped),
        None,
    );
    assert_eq!((reply.status, reply.body), (403, error(seed_message)));
}

#[test]
fn projects_list_get_update_delete() {
    let s = start();
    let a = s.project("Alpha");
    let b = s.project("Beta");
    let reply = s.root("GET", "/projects", None);
    assert_eq!(reply.status, 200);
    assert_eq!(reply.body["data"].as_array().unwrap().len(), 2);

    let (_, scoped) = s.key(json!({"name": "a-only", "permissions": ["read"], "project_id": a}));
    let reply = s.call("GET", "/projects", Some(&scoped), None);
    let ids: Vec<u64> = reply.body["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["id"].as_u64().unwrap())
        .collect();
    assert_eq!(ids, [a], "a project-scoped key sees its project only");
    assert_eq!(
        s.call("GET", &format!("/projects/{a}"), Some(&scoped), None)
            .status,
        200
    );
    let reply = s.call("GET", &format!("/projects/{b}"), Some(&scoped), None);
    assert_eq!((reply.status, reply.body), (404, error("Not found")));

    let reply = s.root(
        "PATCH",
        &format!("/projects/{a}"),
        Some(json!({"description": "d"})),
    );
    assert_eq!(reply.status, 200);
    assert_eq!(reply.body["data"]["description"], "d");
    assert_eq!(reply.body["data"]["name"], "Alpha");
    let reply = s.root(
        "PATCH",
        &format!("/projects/{a}"),
        Some(json!({"name": ""})),
    );
    assert_eq!(
        (reply.status, reply.body),
        (422, json!({"errors": ["Name can't be blank"]}))
    );

    assert_eq!(
        s.root("DELETE", &format!("/projects/{b}"), None).status,
        204
    );
    assert_eq!(s.root("GET", &format!("/projects/{b}"), None).status, 404);
    assert_eq!(s.root("GET", "/projects/999", None).status, 404);
}

#[test]
fn seed_001_recordings_need_read_write_delete() {
    let s = start();
    let project = s.project("Calls");
    let recording = s.recording(project);
    let path = format!("/recordings/{recording}");

    let (_, reader) = s.key(json!({"name": "analytics", "permissions": ["read"]}));
    let (_, uploader) = s.key(json!({"name": "upload", "permissions": ["write"]}));
    let (_, backend) = s.key(json!({"name": "backend", "permissions": ["read", "write"]}));

    assert_eq!(s.call("GET", &path, Some(&reader), None).status, 200);
    assert_eq!(
        s.call("GET", "/recordings", Some(&reader), None).status,
        200
    );
    let reply = s.call("GET", &format!("{path}/transcription"), Some(&reader), None);
    assert_eq!(reply.status, 200);
    assert_eq!(reply.body["data"]["text"], "hello");

    let reply = s.call("GET", &path, Some(&uploader), None);
    assert_eq!(
        (reply.status, reply.body),
        (403, error("Read permission required"))
    );
    let body = json!({"project_id": project, "title": "t"});
    let reply = s.call("POST", "/recordings", Some(&reader), Some(body.clone()));
    assert_eq!(
        (reply.status, reply.body),
        (403, error("Write permission required"))
    );
    assert_eq!(
        s.call("POST", "/recordings", Some(&uploader), Some(body))
            .status,
        201
    );
    let patch = Some(json!({"title": "renamed"}));
    assert_eq!(
        s.call("PATCH", &path, Some(&uploader), patch.clone())
            .status,
        200
    );
    let reply = s.call("PATCH", &path, Some(&reader), patch);
    assert_eq!(
        (reply.status, reply.body),
        (403, error("Write permission required"))
    );
    let reply = s.call("DELETE", &path, Some(&backend), None);
    assert_eq!(
        (reply.status, reply.body),
        (403, error("Delete permission required"))
    );
    assert_eq!(s.root("DELETE", &path, None).status, 204);
    assert_eq!(s.root("GET", &path, None).status, 404);
}

#[test]
fn project_scoped_key_gets_404_for_another_projects_recording() {
    let s = start();
    let mine = s.project("Mine");
    let theirs = s.project("Theirs");
    let their_recording = s.recording(theirs);
    let my_recording = s.recording(mine);
    let (_, scoped) = s.key(
        json!({"name": "scoped", "permissions": ["read", "write", "delete"], "project_id": mine}),
    );

    for (method, path) in [
        ("GET", format!("/recordings/{their_recording}")),
        (
            "GET",
            format!("/recordings/{their_recording}/transcription"),
        ),
        ("PATCH", format!("/recordings/{their_recording}")),
        ("DELETE", format!("/recordings/{their_recording}")),
    ] {
        let body = (method == "PATCH").then(|| json!({"title": "x"}));
        let reply = s.call(method, &path, Some(&scoped), body);
        assert_eq!(
            (reply.status, reply.body),
            (404, error("Not found")),
            "{method} {path}"
        );
    }
    let reply = s.call(
        "POST",
        "/recordings",
        Some(&scoped),
        Some(json!({"project_id": theirs, "title": "x"})),
    );
    assert_eq!(reply.status, 404);
    let reply = s.call("GET", "/recordings", Some(&scoped), None);
    let ids: Vec<u64> = reply.body["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_u64().unwrap())
        .collect();
    assert_eq!(ids, [my_recording]);
    // Without a project_id, its recordings go to its own project.
    let reply = s.call(
        "POST",
        "/recordings",
        Some(&scoped),
        Some(json!({"title": "default"})),
    );
    assert_eq!(reply.status, 201);
    assert_eq!(reply.body["data"]["project_id"], mine);
}

#[test]
fn api_keys_are_shown_once_listed_without_secrets_and_regenerated() {
    let s = start();
    let reply = s.root(
        "POST",
        "/api_keys",
        Some(json!({"name": "CI", "permissions": ["read"]})),
    );
    assert_eq!(reply.status, 201);
    let data = &reply.body["data"];
    let id = data["id"].as_str().unwrap().to_owned();
    let secret = data["key"].as_str().unwrap().to_owned();
    assert!(secret.starts_with("idc_") && secret.len() == 36);
    assert_eq!(data["permissions"], json!(["read"]));
    assert_eq!(data["project_id"], Value::Null);

    for reply in [
        s.root("GET", "/api_keys", None),
        s.root("GET", &format!("/api_keys/{id}"), None),
    ] {
        assert_eq!(reply.status, 200);
        let text = reply.body.to_string();
        assert!(!text.contains(&secret), "the secret is never shown again");
        assert!(!text.contains("\"key\""));
    }
    assert_eq!(s.call("GET", "/projects", Some(&secret), None).status, 200);

    let reply = s.root("POST", &format!("/api_keys/{id}/regenerate"), None);
    assert_eq!(reply.status, 201);
    let fresh = reply.body["data"]["key"].as_str().unwrap().to_owned();
    assert_ne!(fresh, secret);
    assert_eq!(reply.body["data"]["id"], id.as_str());
    let old = s.call("GET", "/projects", Some(&secret), None);
    assert_eq!(
        (old.status, old.body),
        (401, error("Invalid or expired API key"))
    );
    assert_eq!(s.call("GET", "/projects", Some(&fresh), None).status, 200);

    assert_eq!(
        s.root("DELETE", &format!("/api_keys/{id}"), None).status,
        204
    );
    let revoked = s.call("GET", "/projects", Some(&fresh), None);
    assert_eq!(
        (revoked.status, revoked.body),
        (401, error("Invalid or expired API key"))
    );
    assert_eq!(
        s.root("GET", "/api_keys/00000000000000000000000000000000", None)
            .status,
        404
    );
    assert_eq!(s.root("GET", "/api_keys/nonsense", None).status, 404);
}

#[test]
fn key_creation_validates_and_refuses_escalation() {
    let s = start();
    let reply = s.root("POST", "/api_keys", Some(json!({"name": ""})));
    assert_eq!(reply.status, 422);
    assert!(
        reply.body["errors"]
            .as_array()
            .unwrap()
            .contains(&json!("Name can't be blank"))
    );
    let reply = s.root(
        "POST",
        "/api_keys",
        Some(json!({"name": "x", "expires_at": "2030-01-01T00:00:00Z", "ttl_seconds": 60})),
    );
    assert_eq!(reply.status, 422, "{}", reply.body);
    let reply = s.root(
        "POST",
        "/api_keys",
        Some(json!({"name": "x", "permissions": ["admin"]})),
    );
    assert_eq!(reply.status, 422, "{}", reply.body);

    let project = s.project("P");
    let (_, writer) =
        s.key(json!({"name": "w", "permissions": ["read", "write"], "project_id": project}));
    // A project-scoped key may mint keys for its own project, within its own permissions...
    let reply = s.call(
        "POST",
        "/api_keys",
        Some(&writer),
        Some(json!({"name": "child", "permissions": ["read"]})),
    );
    assert_eq!(reply.status, 201, "{}", reply.body);
    assert_eq!(reply.body["data"]["project_id"], project);
    // ...but never one with more permissions, or an account-wide one.
    let reply = s.call(
        "POST",
        "/api_keys",
        Some(&writer),
        Some(json!({"name": "c", "permissions": ["delete"]})),
    );
    assert_eq!(reply.status, 403, "{}", reply.body);
    let other = s.project("Q");
    let reply = s.call(
        "POST",
        "/api_keys",
        Some(&writer),
        Some(json!({"name": "c", "project_id": other})),
    );
    assert_eq!(reply.status, 403, "{}", reply.body);
    // A key without write cannot mint at all.
    let (_, reader) = s.key(json!({"name": "r", "permissions": ["read"]}));
    let reply = s.call(
        "POST",
        "/api_keys",
        Some(&reader),
        Some(json!({"name": "c"})),
    );
    assert_eq!(reply.status, 403, "{}", reply.body);
}

#[test]
fn a_key_with_a_two_second_ttl_is_401_once_it_passes() {
    let s = start();
    let (_, short) = s.key(json!({"name": "short", "ttl_seconds": 2}));
    assert_eq!(s.call("GET", "/projects", Some(&short), None).status, 200);
    std::thread::sleep(Duration::from_millis(2_200));
    let reply = s.call("GET", "/projects", Some(&short), None);
    assert_eq!(
        (reply.status, reply.body),
        (401, error("Invalid or expired API key"))
    );
}

#[test]
fn rate_limit_is_429_with_retry_after() {
    let s = start();
    let limited = json!({"name": "limited", "rate_limit": {"requests": 2, "period_seconds": 60}});
    let (_, key) = s.key(limited);
    assert_eq!(s.call("GET", "/projects", Some(&key), None).status, 200);
    assert_eq!(s.call("GET", "/projects", Some(&key), None).status, 200);
    let reply = s.call("GET", "/projects", Some(&key), None);
    assert_eq!(reply.status, 429);
    assert_eq!(reply.body["error"], "Rate limit exceeded");
    let retry = reply.body["retry_after"].as_u64().unwrap();
    assert!((29..=30).contains(&retry), "one request per 30 s: {retry}");
    assert_eq!(
        reply.header("retry-after"),
        Some(retry.to_string().as_str())
    );
    // Other keys are unaffected.
    assert_eq!(s.root("GET", "/projects", None).status, 200);
}

#[test]
fn named_limits_and_credits_are_429s_and_bad_ones_422s() {
    let s = start();
    let body = json!({"name": "metered", "limits": [
        {"name": "per-minute", "requests": 1, "period_seconds": 60}
    ], "credits": {"remaining": 1, "refill": {"amount": 1, "period_seconds": 86400}}});
    let (_, key) = s.key(body);
    assert_eq!(s.call("GET", "/projects", Some(&key), None).status, 200);
    let reply = s.call("GET", "/projects", Some(&key), None);
    assert_eq!(reply.status, 429);
    assert_eq!(reply.body["error"], "Rate limit exceeded");

    for (body, message) in [
        (
            json!({"name": "k", "credits": {"remaining": 1, "refill": {"amount": 0, "period_seconds": 1}}}),
            "Credits are invalid: credits refill amount must be at least 1",
        ),
        (
            json!({"name": "k", "limits": [{"name": "Bad Name", "requests": 1, "period_seconds": 1}]}),
            "Limit is invalid: limit names must be 1 to 32 characters of a-z, 0-9, '_', '-' and '.'",
        ),
        (
            json!({"name": "k", "limits": (0..5).map(|i| json!({"name": format!("l{i}"), "requests": 1, "period_seconds": 1})).collect::<Vec<_>>()}),
            "Too many limits (maximum is 4)",
        ),
    ] {
        let reply = s.root("POST", "/api_keys", Some(body));
        assert_eq!(reply.status, 422, "{}", reply.body);
        assert_eq!(reply.body["errors"], json!([message]));
    }
}

#[test]
fn usage_is_tracked_per_key() {
    let s = start();
    let (id, key) = s.key(json!({"name": "tracked", "permissions": ["read"]}));
    s.call("GET", "/projects", Some(&key), None);
    s.call("GET", "/projects", Some(&key), None);
    s.call(
        "POST",
        "/projects",
        Some(&key),
        Some(json!({"name": "x", "language": "en"})),
    );
    let reply = s.root("GET", &format!("/api_keys/{id}/usage"), None);
    assert_eq!(reply.status, 200, "{}", reply.body);
    let usage = &reply.body["data"];
    assert_eq!(usage["total_requests"], 3);
    assert_eq!(usage["requests_by_endpoint"]["GET /projects"], 2);
    assert_eq!(usage["requests_by_endpoint"]["POST /projects"], 1);
    assert!(usage["last_used_at"].is_string());
}

/// Management cannot escalate (OWASP API5): a read+write key can neither take over (regenerate)
/// nor revoke the richer bootstrap key, nor even see it; it still manages the keys it issued, and
/// revoking a key revokes the keys it issued.
#[test]
fn a_read_write_key_cannot_regenerate_or_revoke_the_bootstrap_key() {
    let server = start();
    let root_id = server.root("GET", "/api_keys", None).body["data"][0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let (_, writer) = server.key(json!({"name": "rw", "permissions": ["read", "write"]}));
    let regenerate = server.call(
        "POST",
        &format!("/api_keys/{root_id}/regenerate"),
        Some(&writer),
        None,
    );
    assert_eq!(regenerate.status, 403, "{}", regenerate.body);
    assert_eq!(
        regenerate.body,
        error("Cannot manage an API key holding permissions the caller does not hold: delete")
    );
    let revoke = server.call(
        "DELETE",
        &format!("/api_keys/{root_id}"),
        Some(&writer),
        None,
    );
    assert_eq!(revoke.status, 403, "{}", revoke.body);
    assert_eq!(revoke.body, error("Delete permission required"));
    let read = server.call("GET", &format!("/api_keys/{root_id}"), Some(&writer), None);
    assert_eq!(read.status, 403);
    // The bootstrap key still works, with its old secret.
    assert_eq!(server.root("GET", "/projects", None).status, 200);
    // The listing shows the writer only what it may read: itself.
    let listed = server.call("GET", "/api_keys", Some(&writer), None);
    assert_eq!(listed.body["data"].as_array().unwrap().len(), 1);

    // Its own child: regenerate works; the child's old secret is refused at once.
    let child = server.call(
        "POST",
        "/api_keys",
        Some(&writer),
        Some(json!({"name": "child", "permissions": ["read"]})),
    );
    assert_eq!(child.status, 201, "{}", child.body);
    let child_id = child.body["data"]["id"].as_str().unwrap().to_owned();
    let old_secret = child.body["data"]["key"].as_str().unwrap().to_owned();
    let regenerated = server.call(
        "POST",
        &format!("/api_keys/{child_id}/regenerate"),
        Some(&writer),
        None,
    );
    assert_eq!(regenerated.status, 201, "{}", regenerated.body);
    let new_secret = regenerated.body["data"]["key"].as_str().unwrap().to_owned();
    assert_eq!(
        server
            .call("GET", "/projects", Some(&old_secret), None)
            .status,
        401
    );
    assert_eq!(
        server
            .call("GET", "/projects", Some(&new_secret), None)
            .status,
        200
    );

    // Revoking the writer (by the root key) revokes the child it issued too.
    // By name: the listing is in (random) id order, and the writer now sees its child too.
    let listed = server.call("GET", "/api_keys", Some(&writer), None).body;
    let writer_id = listed["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["name"] == "rw")
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(
        server
            .root("DELETE", &format!("/api_keys/{writer_id}"), None)
            .status,
        204
    );
    assert_eq!(
        server.call("GET", "/projects", Some(&writer), None).status,
        401
    );
    assert_eq!(
        server
            .call("GET", "/projects", Some(&new_secret), None)
            .status,
        401
    );
}

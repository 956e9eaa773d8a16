//! Bounded state: usage counts routes only, revoked and expired keys are purged after the
//! retention, and accounts stay within their tier's and the configured limits.

use keygate_server as app;

use std::time::{Duration, Instant};

use keygate::Tier;
use serde_json::json;

use crate::support::{Server, error, start, start_with};

#[test]
fn usage_counts_matched_routes_and_methods_only() {
    let s = start();
    let (id, key) = s.key(json!({"name": "tracked"}));
    let project = s.project("P");
    s.call("GET", "/projects", Some(&key), None);
    s.call("GET", &format!("/projects/{project}"), Some(&key), None);
    s.call("GET", "/projects/424242", Some(&key), None);
    // Unsupported methods on real paths, made-up methods, made-up paths: none is an endpoint.
    s.call("PUT", "/projects", Some(&key), None);
    s.call("DELETE", "/api_keys", Some(&key), None);
    for method in ["BREW", "X-ANYTHING", "get"] {
        let reply = s.raw(&format!(
            "{method} /api/v1/public/projects HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {key}"
        ));
        assert_eq!(reply.status, 405, "{method}");
    }
    for path in ["/nowhere", "/projects/1/2/3", "/api_keys/x/y"] {
        assert_eq!(s.call("GET", path, Some(&key), None).status, 404, "{path}");
    }
    let reply = s.root("GET", &format!("/api_keys/{id}/usage"), None);
    let usage = &reply.body["data"];
    assert_eq!(
        usage["requests_by_endpoint"],
        json!({"GET /projects": 1, "GET /projects/{id}": 2}),
        "{usage}"
    );
    assert_eq!(usage["total_requests"], 3);
    assert_eq!(usage["errors_by_status_class"], json!({"4xx": 1}));

    // A rate-limited key: its 429s count under the route, and 405s neither spend its allowance
    // nor count.
    let limited = json!({"name": "limited", "rate_limit": {"requests": 1, "period_seconds": 60}});
    let (id, key) = s.key(limited);
    for _ in 0..3 {
        assert_eq!(s.call("PUT", "/projects", Some(&key), None).status, 405);
    }
    assert_eq!(s.call("GET", "/projects", Some(&key), None).status, 200);
    assert_eq!(s.call("GET", "/projects", Some(&key), None).status, 429);
    let reply = s.raw(&format!(
        "BREW /api/v1/public/projects HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {key}"
    ));
    assert_eq!(reply.status, 405);
    let reply = s.root("GET", &format!("/api_keys/{id}/usage"), None);
    let usage = &reply.body["data"];
    assert_eq!(
        usage["requests_by_endpoint"],
        json!({"GET /projects": 2}),
        "{usage}"
    );
    assert_eq!(usage["errors_by_status_class"], json!({"4xx": 1}));
}

fn config(retention: Duration) -> app::Config {
    app::Config {
        key_retention: retention,
        purge_interval: Duration::from_millis(100),
        ..app::Config::default()
    }
}

/// Polls `GET /api_keys/{id}` until it is 404, for at most `within`.
fn gone_within(s: &Server, id: &str, within: Duration) -> bool {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if s.root("GET", &format!("/api_keys/{id}"), None).status == 404 {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

#[test]
fn revoked_and_expired_keys_are_purged_after_the_retention() {
    let s = start_with(config(Duration::from_secs(1)));
    let (revoked, _) = s.key(json!({"name": "revoked"}));
    let (expiring, _) = s.key(json!({"name": "expiring", "ttl_seconds": 1}));
    let (live, live_key) = s.key(json!({"name": "live"}));
    assert_eq!(
        s.root("DELETE", &format!("/api_keys/{revoked}"), None)
            .status,
        204
    );
    // Within the retention, a revoked key is still listed, with when it was revoked.
    let reply = s.root("GET", &format!("/api_keys/{revoked}"), None);
    assert_eq!(reply.status, 200);
    assert!(reply.body["data"]["revoked_at"].is_string());
    let started = Instant::now();
    assert!(gone_within(&s, &revoked, Duration::from_secs(5)));
    assert!(
        started.elapsed() >= Duration::from_millis(700),
        "kept for the retention"
    );
    // The expiring key: 1 s to expire, 1 s of retention.
    assert!(gone_within(&s, &expiring, Duration::from_secs(5)));
    let reply = s.root("GET", "/api_keys", None);
    let ids: Vec<&str> = reply.body["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids.len(), 2, "{ids:?}");
    assert!(ids.contains(&live.as_str()));
    assert_eq!(
        s.call("GET", "/api_keys/me", Some(&live_key), None).status,
        200
    );
    assert!(s.logs.text().contains("purged revoked and expired keys"));
}

#[test]
fn keys_within_the_retention_are_kept() {
    let s = start_with(config(Duration::from_secs(3600)));
    let (revoked, _) = s.key(json!({"name": "revoked"}));
    assert_eq!(
        s.root("DELETE", &format!("/api_keys/{revoked}"), None)
            .status,
        204
    );
    // Several purges run meanwhile (every 100 ms).
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(
        s.root("GET", &format!("/api_keys/{revoked}"), None).status,
        200
    );
}

#[test]
fn tier_limits_from_seed_002() {
    let mut config = app::Config::default();
    config.limits.tier = Tier::FreeStarter;
    let s = start_with(config);
    let projects: Vec<u64> = (0..5).map(|i| s.project(&format!("P{i}"))).collect();
    let body = json!({"name": "sixth", "language": "en"});
    let reply = s.root("POST", "/projects", Some(body.clone()));
    assert_eq!(
        (reply.status, reply.body),
        (403, error("Project limit reached"))
    );
    // Three keys per project (active ones), whatever creates them.
    let p = projects[0];
    let mut ids = Vec::new();
    for i in 0..3 {
        ids.push(s.key(json!({"name": format!("k{i}"), "project_id": p})).0);
    }
    let one_more = json!({"name": "k3", "project_id": p});
    let reply = s.root("POST", "/api_keys", Some(one_more.clone()));
    assert_eq!(
        (reply.status, &reply.body),
        (403, &error("API key limit reached"))
    );
    // Another project has its own three; account-wide keys count in no project.
    s.key(json!({"name": "other", "project_id": projects[1]}));
    s.key(json!({"name": "account-wide"}));
    // Revoking one frees its place.
    assert_eq!(
        s.root("DELETE", &format!("/api_keys/{}", ids[0]), None)
            .status,
        204
    );
    assert_eq!(
        s.root("POST", "/api_keys", Some(one_more.clone())).status,
        201
    );
    assert_eq!(s.root("POST", "/api_keys", Some(one_more)).status, 403);
    // Deleting a project frees its place too.
    assert_eq!(
        s.root("DELETE", &format!("/projects/{}", projects[4]), None)
            .status,
        204
    );
    assert_eq!(s.root("POST", "/projects", Some(body.clone())).status, 201);
    assert_eq!(s.root("POST", "/projects", Some(body)).status, 403);
}

#[test]
fn configured_caps_on_keys_projects_and_recordings() {
    let mut config = app::Config::default();
    config.limits.max_keys = 3;
    config.limits.max_projects = 2;
    config.limits.max_recordings = 2;
    let s = start_with(config);
    // The bootstrap key is one of the three; revoked keys still count until purged.
    let (first, _) = s.key(json!({"name": "a"}));
    assert_eq!(
        s.root("DELETE", &format!("/api_keys/{first}"), None).status,
        204
    );
    s.key(json!({"name": "b"}));
    let reply = s.root("POST", "/api_keys", Some(json!({"name": "c"})));
    assert_eq!(
        (reply.status, reply.body),
        (403, error("API key limit reached"))
    );
    let project = s.project("P");
    s.project("Q");
    let reply = s.root(
        "POST",
        "/projects",
        Some(json!({"name": "R", "language": "en"})),
    );
    assert_eq!(
        (reply.status, reply.body),
        (403, error("Project limit reached"))
    );
    s.recording(project);
    s.recording(project);
    let reply = s.root(
        "POST",
        "/recordings",
        Some(json!({"project_id": project, "title": "third"})),
    );
    assert_eq!(
        (reply.status, reply.body),
        (403, error("Recording limit reached"))
    );
}

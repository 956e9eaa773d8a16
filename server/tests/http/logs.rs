//! The request log: one line per request with its id, key id, decision, status and latency, and
//! never a token, wherever a client puts one.

use serde_json::json;

use crate::support::start;

#[test]
fn logs_carry_request_facts_and_never_a_token() {
    let s = start();
    let root = s.root_key.clone();
    let project = s.project("P");
    let (id, key) = s.key(json!({"name": "logged", "permissions": ["read"]}));
    let reply = s.root("POST", &format!("/api_keys/{id}/regenerate"), None);
    let rotated = reply.body["data"]["key"].as_str().unwrap().to_owned();
    let mut tokens = vec![root.clone(), key.clone(), rotated.clone()];

    // Tokens everywhere a client might put one.
    let reply = s.call("GET", "/projects", Some(&rotated), None);
    let request_id = reply.header("x-request-id").unwrap().to_owned();
    assert_eq!(
        s.call("GET", "/projects", Some(&key), None).status,
        401,
        "rotated away"
    );
    let near_miss = format!("{}x", &root[..root.len() - 1]);
    tokens.push(near_miss.clone());
    assert_eq!(
        s.call("GET", "/projects", Some(&near_miss), None).status,
        401
    );
    s.call(
        "POST",
        "/projects",
        Some(&rotated),
        Some(json!({"name": "x", "language": "en"})),
    );
    s.root("GET", &format!("/projects?cursor={root}"), None);
    s.root("GET", &format!("/api_keys/{root}"), None);
    s.root("GET", &format!("/{root}"), None);
    s.root(
        "POST",
        "/api_keys",
        Some(json!({"name": root, "bogus": rotated})),
    );
    s.root(
        "POST",
        "/projects",
        Some(json!({"name": format!("{root}\u{202E}"), "language": "en"})),
    );
    s.root(
        "PATCH",
        &format!("/projects/{project}"),
        Some(json!({"description": root})),
    );
    s.send("POST", "/projects", Some(&root), Some(&rotated), Vec::new());
    for head in [
        format!(
            "{root} /api/v1/public/projects HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {root}"
        ),
        format!(
            "GET /api/v1/public/projects HTTP/1.1\r\nHost: x\r\nX-Request-Id: {root}\r\nAuthorization: Bearer {root}"
        ),
        format!("GET /api/v1/public/projects HTTP/1.1\r\nHost: x\r\nAuthorization: {root}"),
        format!(
            "GET /api/v1/public/projects HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {root}\r\nX-Big: {}",
            "v".repeat(17 * 1024)
        ),
        format!(
            "GET /api/v1/public/projects?{root}={} HTTP/1.1\r\nHost: x",
            "a".repeat(9 * 1024)
        ),
    ] {
        s.raw(&head);
    }
    let (_, minted) = s.key(json!({"name": "late"}));
    tokens.push(minted.clone());
    s.call("GET", "/api_keys/me", Some(&minted), None);

    let logs = s.logs.text();
    // The log is there and says what it should (so that the absence below means something).
    let line = logs
        .lines()
        .find(|l| l.contains(&request_id))
        .unwrap_or_else(|| panic!("no line for request {request_id}:\n{logs}"));
    for field in [
        format!("key_id={id}"),
        "decision=\"allow\"".to_owned(),
        "status=200".to_owned(),
        "latency_us=".to_owned(),
        "route=/api/v1/public/projects".to_owned(),
        "method=\"GET\"".to_owned(),
    ] {
        assert!(line.contains(&field), "{field} missing from {line}");
    }
    assert!(
        logs.contains("decision=unknown or malformed API key"),
        "{logs}"
    );
    assert!(logs.lines().count() >= 20, "{logs}");
    for token in &tokens {
        let body = &token[4..];
        assert!(
            !logs.contains(body),
            "a token's body reached the log:\n{logs}"
        );
    }
    assert!(!logs.contains("idc_"), "{logs}");
}

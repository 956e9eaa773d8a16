//! Several accounts, kept apart end to end; and `GET /api_keys/me`.

use keygate_server as app;

use serde_json::{Value, json};

use crate::support::{error, start, start_with};

fn ids(body: &Value) -> Vec<Value> {
    body["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|item| item["id"].clone())
        .collect()
}

#[test]
fn accounts_never_reach_each_other() {
    let s = start_with(app::Config {
        demo_accounts: 3,
        ..app::Config::default()
    });
    assert_eq!(s.keys.len(), 3);
    let (alice, bob) = (s.keys[0].clone(), s.keys[1].clone());
    assert_ne!(alice, bob);
    let project = s.project_as(&alice, "Alice's");
    let recording = s.recording_as(&alice, project);
    let (key_id, alice_child) = s.key_as(&alice, json!({"name": "alice child"}));
    let bob_project = s.project_as(&bob, "Bob's");
    assert_ne!(project, bob_project, "ids are global");

    // Every way Bob could touch Alice's things is a 404, the same as for things that do not
    // exist, and changes nothing.
    let patch = json!({"name": "pwned"});
    for (method, path, body) in [
        ("GET", format!("/projects/{project}"), None),
        ("PATCH", format!("/projects/{project}"), Some(patch.clone())),
        ("DELETE", format!("/projects/{project}"), None),
        ("GET", format!("/recordings/{recording}"), None),
        (
            "GET",
            format!("/recordings/{recording}/transcription"),
            None,
        ),
        (
            "PATCH",
            format!("/recordings/{recording}"),
            Some(json!({"title": "x"})),
        ),
        ("DELETE", format!("/recordings/{recording}"), None),
        ("GET", format!("/api_keys/{key_id}"), None),
        ("GET", format!("/api_keys/{key_id}/usage"), None),
        ("POST", format!("/api_keys/{key_id}/regenerate"), None),
        ("DELETE", format!("/api_keys/{key_id}"), None),
        (
            "POST",
            "/recordings".to_owned(),
            Some(json!({"project_id": project, "title": "x"})),
        ),
    ] {
        let reply = s.call(method, &path, Some(&bob), body);
        assert_eq!(
            (reply.status, reply.body),
            (404, error("Not found")),
            "{method} {path}"
        );
    }
    // Listing another account's project finds nothing in it.
    let reply = s.call(
        "GET",
        &format!("/recordings?project_id={project}"),
        Some(&bob),
        None,
    );
    assert_eq!((reply.status, &reply.body["data"]), (200, &json!([])));
    let reply = s.call(
        "POST",
        "/api_keys",
        Some(&bob),
        Some(json!({"name": "x", "project_id": project})),
    );
    assert_eq!(reply.status, 422, "{}", reply.body);

    // Alice's things are untouched and her keys still work.
    let reply = s.call("GET", &format!("/projects/{project}"), Some(&alice), None);
    assert_eq!(reply.body["data"]["name"], "Alice's");
    assert_eq!(reply.body["data"]["recordings_count"], 1);
    assert_eq!(
        s.call("GET", "/api_keys/me", Some(&alice_child), None)
            .status,
        200
    );
    let reply = s.call(
        "GET",
        &format!("/recordings/{recording}"),
        Some(&alice),
        None,
    );
    assert_eq!(reply.body["data"]["title"], "Call");

    // Lists show each account its own.
    assert_eq!(
        ids(&s.call("GET", "/projects", Some(&alice), None).body),
        [json!(project)]
    );
    assert_eq!(
        ids(&s.call("GET", "/projects", Some(&bob), None).body),
        [json!(bob_project)]
    );
    assert_eq!(
        ids(&s.call("GET", "/recordings", Some(&bob), None).body),
        Vec::<Value>::new()
    );
    assert_eq!(
        ids(&s.call("GET", "/api_keys", Some(&alice), None).body).len(),
        2
    );
    assert_eq!(
        ids(&s.call("GET", "/api_keys", Some(&bob), None).body).len(),
        1
    );
    let carol = s.keys[2].clone();
    assert_eq!(
        ids(&s.call("GET", "/projects", Some(&carol), None).body),
        Vec::<Value>::new()
    );
}

#[test]
fn me_describes_the_presented_key_without_its_secret() {
    let s = start();
    let project = s.project("P");
    let body = json!({
        "name": "uploader",
        "permissions": ["write"],
        "project_id": project,
        "expires_at": "2099-01-01T00:00:00Z",
        "rate_limit": {"requests": 100, "period_seconds": 60}
    });
    let (id, secret) = s.key(body);
    let reply = s.call("GET", "/api_keys/me", Some(&secret), None);
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(
        reply.body,
        json!({"data": {
            "id": id,
            "name": "uploader",
            "scope": "project",
            "project_id": project,
            "permissions": ["write"],
            "expires_at": "2099-01-01T00:00:00Z",
            "rate_limit": {"requests": 100, "period_seconds": 60}
        }})
    );
    let text = reply.body.to_string();
    assert!(!text.contains(&secret) && !text.contains(&secret[4..]));

    let root = s.root("GET", "/api_keys/me", None);
    assert_eq!(root.body["data"]["scope"], "account");
    assert_eq!(root.body["data"]["project_id"], Value::Null);
    assert_eq!(
        root.body["data"]["permissions"],
        json!(["delete", "read", "write"])
    );
    assert_eq!(root.body["data"]["expires_at"], Value::Null);
    assert_ne!(root.body["data"]["id"], json!(id));

    assert_eq!(
        s.root("DELETE", &format!("/api_keys/{id}"), None).status,
        204
    );
    let reply = s.call("GET", "/api_keys/me", Some(&secret), None);
    assert_eq!(
        (reply.status, reply.body),
        (401, error("Invalid or expired API key"))
    );
    assert_eq!(s.call("GET", "/api_keys/me", None, None).status, 401);
}

/// `--account-limit`: every key of an account shares one budget, and each account has its own.
#[test]
fn an_account_limit_is_shared_by_the_accounts_keys_only() {
    let s = start_with(app::Config {
        demo_accounts: 2,
        account_limits: vec![
            keygate::NamedLimit::new("per-hour", keygate::RateLimit::per_period(4, 3600).unwrap())
                .unwrap(),
        ],
        ..app::Config::default()
    });
    let (alice, bob) = (s.keys[0].clone(), s.keys[1].clone());
    // Creating a key is one of alice's four requests, and the child shares the rest.
    let (_, child) = s.key_as(&alice, json!({"name": "child"}));
    assert_eq!(s.call("GET", "/projects", Some(&child), None).status, 200);
    assert_eq!(s.call("GET", "/projects", Some(&alice), None).status, 200);
    assert_eq!(s.call("GET", "/projects", Some(&child), None).status, 200);
    for key in [&alice, &child] {
        let reply = s.call("GET", "/projects", Some(key), None);
        assert_eq!(reply.status, 429);
        assert_eq!(reply.body["error"], "Rate limit exceeded");
    }
    // Bob's account has a budget of its own.
    for _ in 0..4 {
        assert_eq!(s.call("GET", "/projects", Some(&bob), None).status, 200);
    }
    assert_eq!(s.call("GET", "/projects", Some(&bob), None).status, 429);
}

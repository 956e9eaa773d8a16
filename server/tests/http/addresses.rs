//! Keys restricted to client address ranges: the TCP peer by default, a trusted proxy's header
//! when configured.

use keygate_server as app;

use serde_json::json;

use crate::support::{error, start, start_with};

const REFUSED: &str = "API key not allowed from this address";

#[test]
fn a_key_works_only_from_its_ranges_as_seen_from_the_tcp_peer() {
    let s = start();
    // The test client is 127.0.0.1.
    let (_, office) = s.key(json!({"name": "office", "allowed_addresses": ["10.0.0.0/8"]}));
    let (local_id, local) =
        s.key(json!({"name": "local", "allowed_addresses": ["127.0.0.0/8", "::1"]}));

    for path in ["/projects", "/api_keys/me", "/recordings"] {
        let reply = s.call("GET", path, Some(&office), None);
        assert_eq!(reply.status, 403, "{path}: {}", reply.body);
        assert_eq!(reply.body, error(REFUSED), "{path}");
        assert_eq!(
            s.call("GET", path, Some(&local), None).status,
            200,
            "{path}"
        );
    }
    // Handlers decide with the address too: a restricted key creates in its own account.
    let project = s.project_as(&local, "from loopback");
    assert!(project > 0);
    let shown = s.call("GET", &format!("/api_keys/{local_id}"), Some(&local), None);
    assert_eq!(
        shown.body["data"]["allowed_addresses"],
        json!(["127.0.0.0/8", "::1/128"])
    );

    // A restricted key cannot mint an unrestricted or wider child (403), only a narrower one.
    let reply = s.call(
        "POST",
        "/api_keys",
        Some(&local),
        Some(json!({"name": "wider", "allowed_addresses": ["0.0.0.0/0"]})),
    );
    assert_eq!(reply.status, 403, "{}", reply.body);
    let (_, child) = s.key_as(&local, json!({"name": "inherits"}));
    assert_eq!(s.call("GET", "/projects", Some(&child), None).status, 200);

    // Malformed ranges are a 422 with every problem named.
    let reply = s.call(
        "POST",
        "/api_keys",
        Some(&s.root_key.clone()),
        Some(json!({"name": "bad", "allowed_addresses": ["10.0.0.1/8", "nowhere"]})),
    );
    assert_eq!(reply.status, 422, "{}", reply.body);
    assert_eq!(
        reply.body["errors"].as_array().unwrap().len(),
        2,
        "{}",
        reply.body
    );
}

#[test]
fn behind_a_trusted_proxy_the_right_most_forwarded_address_decides() {
    let s = start_with(app::Config {
        http: app::HttpConfig {
            trusted_proxy_header: Some("x-forwarded-for".parse().unwrap()),
            ..app::HttpConfig::default()
        },
        ..app::Config::default()
    });
    // Created without the header: the root key is unrestricted, so the address is irrelevant.
    let (_, office) = s.key(json!({"name": "office", "allowed_addresses": ["10.0.0.0/8"]}));
    let get = |forwarded: Option<&str>| {
        let header = forwarded.map_or_else(String::new, |f| format!("\r\nX-Forwarded-For: {f}"));
        s.raw(&format!(
            "GET /api/v1/public/projects HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {office}{header}"
        ))
    };
    assert_eq!(get(Some("203.0.113.9, 10.1.2.3")).status, 200);
    assert_eq!(get(Some("10.1.2.3")).status, 200);
    // What the client wrote first is not what the proxy saw: refused.
    let spoofed = get(Some("10.1.2.3, 203.0.113.9"));
    assert_eq!(spoofed.status, 403);
    assert_eq!(spoofed.json(), error(REFUSED));
    // No header, or nothing parseable in it: no known address, refused (not the peer's).
    assert_eq!(get(None).status, 403);
    assert_eq!(get(Some("unknown")).status, 403);
}

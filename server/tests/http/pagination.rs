//! Every list pages: `limit` (default 50, at most 200), an opaque `cursor`, `next_cursor` null on
//! the last page, id order, nothing lost or repeated while items come and go.

use serde_json::{Value, json};

use crate::support::{Server, start};

/// Follows `next_cursor` from `path` (which has no query, or ends in one) until it is null;
/// returns each page's ids. At most 100 pages.
fn walk(s: &Server, key: &str, path: &str, limit: Option<u32>) -> Vec<Vec<Value>> {
    let mut pages = Vec::new();
    let mut cursor: Option<String> = None;
    for _ in 0..100 {
        let mut query = Vec::new();
        if let Some(limit) = limit {
            query.push(format!("limit={limit}"));
        }
        if let Some(cursor) = &cursor {
            query.push(format!("cursor={cursor}"));
        }
        let separator = if path.contains('?') { '&' } else { '?' };
        let url = if query.is_empty() {
            path.to_owned()
        } else {
            format!("{path}{separator}{}", query.join("&"))
        };
        let reply = s.call("GET", &url, Some(key), None);
        assert_eq!(reply.status, 200, "{url}: {}", reply.body);
        let object = reply.body.as_object().unwrap();
        assert_eq!(object.len(), 2, "data and next_cursor only: {}", reply.body);
        let ids: Vec<Value> = reply.body["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|item| item["id"].clone())
            .collect();
        pages.push(ids);
        match &reply.body["next_cursor"] {
            Value::Null => return pages,
            Value::String(next) => cursor = Some(next.clone()),
            other => panic!("next_cursor {other}"),
        }
    }
    panic!("more than 100 pages");
}

fn flat(pages: &[Vec<Value>]) -> Vec<Value> {
    pages.iter().flatten().cloned().collect()
}

#[test]
fn projects_and_recordings_page_in_id_order() {
    let s = start();
    let projects: Vec<u64> = (0..7).map(|i| s.project(&format!("P{i}"))).collect();
    let key = s.root_key.clone();
    let pages = walk(&s, &key, "/projects", Some(3));
    assert_eq!(pages.iter().map(Vec::len).collect::<Vec<_>>(), [3, 3, 1]);
    assert_eq!(
        flat(&pages),
        projects.iter().map(|p| json!(p)).collect::<Vec<_>>()
    );
    // An exact multiple ends with a full page whose next_cursor is null.
    let pages = walk(&s, &key, "/projects", Some(7));
    assert_eq!(pages.len(), 1);

    // Recordings, filtered by project, in two projects interleaved.
    let (a, b) = (projects[0], projects[1]);
    let mut in_a = Vec::new();
    for i in 0..5 {
        in_a.push(json!(s.recording(a)));
        if i % 2 == 0 {
            s.recording(b);
        }
    }
    let pages = walk(&s, &key, &format!("/recordings?project_id={a}"), Some(2));
    assert_eq!(pages.iter().map(Vec::len).collect::<Vec<_>>(), [2, 2, 1]);
    assert_eq!(flat(&pages), in_a);
    let all = flat(&walk(&s, &key, "/recordings", Some(4)));
    assert_eq!(all.len(), 8);
    let mut sorted = all.clone();
    sorted.sort_by_key(|v| v.as_u64());
    assert_eq!(all, sorted);

    // A project-scoped key pages through its own project only.
    let (_, scoped) = s.key(json!({"name": "b-only", "permissions": ["read"], "project_id": b}));
    assert_eq!(flat(&walk(&s, &scoped, "/projects", Some(1))), [json!(b)]);
    assert_eq!(flat(&walk(&s, &scoped, "/recordings", Some(1))).len(), 3);
}

#[test]
fn api_keys_page_by_default_fifty_and_stay_stable_while_keys_come_and_go() {
    let s = start();
    let key = s.root_key.clone();
    for i in 0..60 {
        s.key(json!({"name": format!("k{i}"), "permissions": ["read"]}));
    }
    let pages = walk(&s, &key, "/api_keys", None);
    assert_eq!(pages.iter().map(Vec::len).collect::<Vec<_>>(), [50, 11]);
    let all = flat(&pages);
    let mut sorted: Vec<String> = all.iter().map(|v| v.as_str().unwrap().to_owned()).collect();
    sorted.sort();
    sorted.dedup();
    assert_eq!(
        sorted.len(),
        61,
        "every key once, the bootstrap key included"
    );
    assert_eq!(
        all.iter().map(|v| v.as_str().unwrap()).collect::<Vec<_>>(),
        sorted.iter().map(String::as_str).collect::<Vec<_>>(),
        "id order"
    );
    assert_eq!(walk(&s, &key, "/api_keys", Some(200)).len(), 1);

    // Take a first page, then revoke a key on it and add keys: the next pages carry on after the
    // cursor with nothing repeated, and every key that existed throughout is seen.
    let first = s.root("GET", "/api_keys?limit=20", None);
    let cursor = first.body["next_cursor"].as_str().unwrap().to_owned();
    let seen: Vec<String> = first.body["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(seen, sorted[..20]);
    let victim = &seen[5];
    assert_eq!(
        s.root("DELETE", &format!("/api_keys/{victim}"), None)
            .status,
        204
    );
    let mut all_ids = sorted.clone();
    for i in 0..5 {
        all_ids.push(s.key(json!({"name": format!("late{i}")})).0);
    }
    all_ids.sort();
    let mut rest = Vec::new();
    let mut next = Some(cursor);
    for _ in 0..10 {
        let Some(cursor) = next.take() else { break };
        let reply = s.root("GET", &format!("/api_keys?limit=20&cursor={cursor}"), None);
        assert_eq!(reply.status, 200);
        for k in reply.body["data"].as_array().unwrap() {
            rest.push(k["id"].as_str().unwrap().to_owned());
        }
        next = reply.body["next_cursor"].as_str().map(str::to_owned);
    }
    assert!(next.is_none());
    // Exactly the keys after the cursor, old and new (the revoked one is still listed until it
    // is purged), in order: nothing repeated, nothing lost.
    let last_seen = seen.last().unwrap();
    let after: Vec<String> = all_ids.into_iter().filter(|id| id > last_seen).collect();
    assert_eq!(rest, after);
    assert!(
        rest.len() >= 41,
        "the 41 older keys after the first page at least"
    );
}

#[test]
fn cursors_are_opaque_and_belong_to_their_list() {
    let s = start();
    for i in 0..3 {
        let project = s.project(&format!("P{i}"));
        s.recording(project);
    }
    let reply = s.root("GET", "/projects?limit=1", None);
    let cursor = reply.body["next_cursor"].as_str().unwrap().to_owned();
    assert!(
        !cursor.contains(':') && !cursor.chars().all(|c| c.is_ascii_digit()),
        "{cursor}"
    );
    let invalid = json!({"errors": ["Cursor is invalid"]});
    for path in [
        format!("/recordings?cursor={cursor}"),
        format!("/api_keys?cursor={cursor}"),
        "/projects?cursor=bm9wZQ".to_owned(),
        "/projects?cursor=".to_owned(),
        format!("/projects?cursor={}", "A".repeat(300)),
    ] {
        let reply = s.root("GET", &path, None);
        assert_eq!((reply.status, &reply.body), (422, &invalid), "{path}");
    }
    let reply = s.root("GET", &format!("/projects?cursor={cursor}"), None);
    assert_eq!(reply.status, 200);
    assert_eq!(reply.body["data"].as_array().unwrap().len(), 2);
}

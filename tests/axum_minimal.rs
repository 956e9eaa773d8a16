//! examples/axum_minimal.rs, driven over HTTP on loopback: each route needs its own permission,
//! a bad key is 401 with `WWW-Authenticate: Bearer`, and a refusal names the permission.
#![cfg(feature = "axum")]
#![expect(
    clippy::unwrap_used,
    reason = "a broken test fixture should stop the test loudly"
)]

use std::io::{Read, Write};
use std::net::TcpStream;

#[path = "../examples/axum_minimal.rs"]
#[expect(
    dead_code,
    reason = "the example's main is its own; the test serves app()"
)]
mod minimal;

/// One HTTP/1.1 request on a fresh connection: (status, headers and body as text).
fn call(addr: std::net::SocketAddr, method: &str, token: &str) -> (u16, String) {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .unwrap();
    write!(
        stream,
        "{method} /recordings HTTP/1.1\r\nHost: test\r\nAuthorization: Bearer {token}\r\n\
         Content-Length: 0\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut text = String::new();
    stream.read_to_string(&mut text).unwrap();
    let status = text.get(9..12).and_then(|s| s.parse().ok()).unwrap_or(0);
    (status, text)
}

#[test]
fn the_minimal_server_needs_each_routes_permission() {
    let (router, tokens) = minimal::app().unwrap();
    let (reader, writer) = (&tokens[0], &tokens[1]);
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async move {
            let listener = tokio::net::TcpListener::from_std(listener).unwrap();
            axum::serve(listener, router).await.unwrap();
        });
    });

    let (status, text) = call(addr, "GET", reader);
    assert_eq!(status, 200, "{text}");
    assert!(text.ends_with("recordings visible to read\n"), "{text}");
    let (status, text) = call(addr, "POST", reader);
    assert_eq!(status, 403, "{text}");
    assert!(
        text.ends_with(r#"{"error":"Write permission required"}"#),
        "{text}"
    );
    let (status, text) = call(addr, "POST", writer);
    assert_eq!(status, 200, "{text}");
    assert!(text.ends_with("stored for write\n"), "{text}");
    let (status, _) = call(addr, "GET", writer);
    assert_eq!(status, 403);
    let (status, text) = call(addr, "GET", "idc_notARealKeynotARealKeynotARealK");
    assert_eq!(status, 401, "{text}");
    assert!(
        text.to_ascii_lowercase()
            .contains("www-authenticate: bearer"),
        "{text}"
    );
    assert!(
        text.ends_with(r#"{"error":"Invalid or expired API key"}"#),
        "{text}"
    );
}

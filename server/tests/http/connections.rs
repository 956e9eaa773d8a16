//! Connections: the header-read timeout against a slowloris, the idle timeout, the connection
//! cap, the request timeout, and graceful shutdown on SIGINT and SIGTERM.

use keygate_server as app;

use std::io::Write;
use std::net::TcpStream;
use std::time::{Duration, Instant};

use serde_json::json;

use crate::support::{
    Stop, error, parse_reply, read_reply, start_stopped_by, start_with, time_to_close,
};

fn http(header: Duration, idle: Duration) -> app::Config {
    app::Config {
        http: app::HttpConfig {
            header_read_timeout: header,
            idle_timeout: idle,
            ..app::HttpConfig::default()
        },
        ..app::Config::default()
    }
}

fn get_projects(key: &str) -> String {
    format!(
        "GET /api/v1/public/projects HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {key}\r\n\r\n"
    )
}

#[test]
fn a_slowloris_is_cut_at_the_header_timeout_and_delays_no_one() {
    let s = start_with(http(Duration::from_secs(1), Duration::from_secs(1)));
    // Twenty sockets trickle a request head one byte every 100 ms: never idle, never complete.
    let mut slow: Vec<TcpStream> = (0..20).map(|_| s.connect()).collect();
    let head = get_projects(&s.root_key);
    let started = Instant::now();
    let mut closed_at: Vec<Option<Duration>> = vec![None; slow.len()];
    let mut served_meanwhile = Vec::new();
    for (i, byte) in head.bytes().cycle().enumerate().take(40) {
        for (socket, closed) in slow.iter_mut().zip(closed_at.iter_mut()) {
            if closed.is_none() && socket.write_all(&[byte]).is_err() {
                *closed = Some(started.elapsed());
            }
        }
        if i % 5 == 0 {
            // A well-behaved client is answered at once all the while.
            let asked = Instant::now();
            assert_eq!(s.root("GET", "/projects", None).status, 200);
            served_meanwhile.push(asked.elapsed());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    for (socket, closed) in slow.iter_mut().zip(closed_at.iter_mut()) {
        if closed.is_none() {
            *closed = time_to_close(socket, Duration::from_secs(1)).map(|_| started.elapsed());
        }
    }
    for closed in &closed_at {
        let closed = closed.expect("every slow socket is closed");
        assert!(
            closed >= Duration::from_millis(900) && closed <= Duration::from_millis(3_000),
            "closed after {closed:?}, header timeout 1 s"
        );
    }
    let slowest = served_meanwhile.iter().max().unwrap();
    assert!(
        *slowest < Duration::from_millis(500),
        "{served_meanwhile:?}"
    );
}

#[test]
fn idle_connections_are_closed_after_the_idle_timeout() {
    let s = start_with(http(Duration::from_secs(4), Duration::from_secs(1)));
    // A kept-alive connection after its response, and one that never sent anything.
    let mut used = s.connect();
    used.write_all(get_projects(&s.root_key).as_bytes())
        .unwrap();
    let mut silent = s.connect();
    let mut buf = [0u8; 4096];
    used.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let n = std::io::Read::read(&mut used, &mut buf).unwrap();
    assert_eq!(parse_reply(&buf[..n]).status, 200);
    for socket in [&mut used, &mut silent] {
        let closed = time_to_close(socket, Duration::from_secs(3)).expect("closed when idle");
        // Well before the 4 s header timeout: this is the idle timer.
        assert!(closed <= Duration::from_millis(2_500), "{closed:?}");
    }
}

#[test]
fn the_connection_cap_holds_new_connections_until_one_closes() {
    let mut config = http(Duration::from_secs(10), Duration::from_secs(10));
    config.http.max_connections = 2;
    let s = start_with(config);
    let first = s.connect();
    let second = s.connect();
    let mut third = s.connect();
    third
        .write_all(get_projects(&s.root_key).as_bytes())
        .unwrap();
    third
        .set_read_timeout(Some(Duration::from_millis(700)))
        .unwrap();
    let mut buf = [0u8; 4096];
    let waited = std::io::Read::read(&mut third, &mut buf);
    assert!(
        waited.is_err(),
        "the third connection is not served while two are open"
    );
    assert!(
        s.logs.text().contains("connection limit reached"),
        "{}",
        s.logs.text()
    );
    drop(first);
    let reply = read_reply_keep_alive(&mut third);
    assert_eq!(reply.status, 200);
    drop(second);
}

/// Reads one response on a kept-alive connection (its head and a JSON body of Content-Length).
fn read_reply_keep_alive(stream: &mut TcpStream) -> crate::support::RawReply {
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let mut bytes = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        let n = std::io::Read::read(stream, &mut buf).unwrap();
        assert!(n > 0, "closed before a full response");
        bytes.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&bytes);
        if let Some((head, body)) = text.split_once("\r\n\r\n") {
            let length = head
                .lines()
                .find_map(|l| {
                    l.to_ascii_lowercase()
                        .strip_prefix("content-length: ")
                        .map(str::to_owned)
                })
                .and_then(|n| n.trim().parse::<usize>().ok())
                .unwrap_or(0);
            if body.len() >= length {
                return parse_reply(&bytes);
            }
        }
    }
    panic!("no full response within 5 s");
}

#[test]
fn a_request_whose_body_never_arrives_is_408() {
    let mut config = app::Config::default();
    config.http.request_timeout = Duration::from_secs(1);
    let s = start_with(config);
    let mut stream = s.connect();
    let head = format!(
        "POST /api/v1/public/projects HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\nContent-Type: application/json\r\nContent-Length: 100\r\nConnection: close\r\n\r\n{{\"na",
        s.root_key
    );
    stream.write_all(head.as_bytes()).unwrap();
    let started = Instant::now();
    let reply = read_reply(&mut stream);
    assert_eq!(
        (reply.status, reply.json()),
        (408, error("Request timeout"))
    );
    assert!(started.elapsed() < Duration::from_secs(4));
}

/// Starts a request whose body is held back, shuts the server down with `signal`, and checks
/// that the listener closes while the request completes, and that the server then stops.
fn drains_on(signal: &str) {
    let mut s = start_stopped_by(app::Config::default(), Stop::Signal);
    let body = json!({"name": "In flight", "language": "en"}).to_string();
    let mut stream = s.connect();
    let head = format!(
        "POST /api/v1/public/projects HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        s.root_key,
        body.len()
    );
    let (early, late) = body.split_at(10);
    stream.write_all(head.as_bytes()).unwrap();
    stream.write_all(early.as_bytes()).unwrap();
    // Let the server start on the request before the signal.
    std::thread::sleep(Duration::from_millis(300));
    let status = std::process::Command::new("kill")
        .args([signal, &std::process::id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    // The listener closes: new connections are refused.
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut refused = false;
    while Instant::now() < deadline {
        if TcpStream::connect(s.addr).is_err() {
            refused = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(refused, "the listener still accepts after {signal}");
    assert!(
        !s.wait_stopped(Duration::from_millis(200)),
        "it waits for the request in flight"
    );
    // The request in flight completes.
    stream.write_all(late.as_bytes()).unwrap();
    let reply = read_reply(&mut stream);
    assert_eq!(reply.status, 201, "{reply:?}");
    assert_eq!(reply.json()["data"]["name"], "In flight");
    assert!(
        s.wait_stopped(Duration::from_secs(5)),
        "stopped once drained"
    );
    let logs = s.logs.text();
    assert!(
        logs.contains("shutting down") && logs.contains("all connections closed"),
        "{logs}"
    );
}

#[test]
fn sigint_and_sigterm_drain_in_flight_requests() {
    // One test for both: a signal reaches every handler in the process, so the two servers
    // must not be up at once.
    drains_on("-INT");
    drains_on("-TERM");
}

#[test]
fn a_client_that_stops_reading_is_dropped() {
    let s = start_with(http(Duration::from_secs(2), Duration::from_secs(1)));
    let project = s.project("P");
    let body = json!({"project_id": project, "title": "t", "transcription": "😀".repeat(100_000)});
    let reply = s.root("POST", "/recordings", Some(body));
    let id = reply.body["data"]["id"].as_u64().unwrap();
    // Thirty pipelined ~400 KB answers: far more than the sockets' buffers hold unread.
    let one = format!(
        "GET /api/v1/public/recordings/{id}/transcription HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\n\r\n",
        s.root_key
    );
    let mut stream = s.connect();
    stream.write_all(one.repeat(30).as_bytes()).unwrap();
    // Not reading: the server's writes stall, it idles, is asked to close, and is dropped.
    std::thread::sleep(Duration::from_secs(4));
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let mut bytes = Vec::new();
    let mut buf = [0u8; 65536];
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        match std::io::Read::read(&mut stream, &mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => bytes.extend_from_slice(&buf[..n]),
        }
    }
    // Whole responses, then a cut one: the connection was dropped mid-write, not closed after
    // finishing a response (which a graceful close alone would have done once we read).
    let mut rest = &bytes[..];
    let mut whole = 0;
    while let Some(end) = rest.windows(4).position(|w| w == b"\r\n\r\n") {
        let head = String::from_utf8_lossy(&rest[..end]).to_ascii_lowercase();
        let length: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length: ").map(str::to_owned))
            .unwrap()
            .parse()
            .unwrap();
        if rest.len() < end + 4 + length {
            break;
        }
        rest = &rest[end + 4 + length..];
        whole += 1;
    }
    assert!(whole < 30, "{whole} whole responses");
    assert!(!rest.is_empty(), "the last response was cut off");
}

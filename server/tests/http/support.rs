//! The harness: a real server (`keygate_server::serve`, the accept loop the example runs) on an
//! ephemeral loopback port in a thread of its own, its logs captured, and clients to drive it:
//! ureq for ordinary calls, raw sockets for what a well-behaved client would never send.

use keygate_server as app;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

/// What stops the server: the harness's channel (on drop), or a real SIGINT/SIGTERM.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    Channel,
    Signal,
}

pub struct Server {
    pub addr: SocketAddr,
    pub base: String,
    /// The bootstrap tokens, one per account.
    pub keys: Vec<String>,
    pub root_key: String,
    pub logs: Logs,
    agent: ureq::Agent,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

pub struct Reply {
    pub status: u16,
    pub body: Value,
    pub headers: ureq::http::HeaderMap,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// Everything the server logged, at every level.
#[derive(Clone, Default)]
pub struct Logs(Arc<Mutex<Vec<u8>>>);

impl Logs {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

pub struct LogWriter(Arc<Mutex<Vec<u8>>>);

impl Write for LogWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Logs {
    type Writer = LogWriter;
    fn make_writer(&'a self) -> LogWriter {
        LogWriter(self.0.clone())
    }
}

pub fn start() -> Server {
    start_with(app::Config::default())
}

pub fn start_with(config: app::Config) -> Server {
    start_stopped_by(config, Stop::Channel)
}

/// Starts the server in a thread of its own with a current-thread runtime, so that the
/// thread's log subscriber sees every task's events.
pub fn start_stopped_by(config: app::Config, how: Stop) -> Server {
    let (state, tokens) = app::App::bootstrap(config).unwrap();
    let keys: Vec<String> = tokens
        .iter()
        .map(|t| t.expose_secret().to_owned())
        .collect();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let addr = listener.local_addr().unwrap();
    let logs = Logs::default();
    let writer = logs.clone();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let (ready, is_ready) = std::sync::mpsc::channel();
    let thread = std::thread::spawn(move || {
        let subscriber = tracing_subscriber::fmt()
            .with_writer(writer)
            .with_max_level(tracing::Level::TRACE)
            .finish();
        let _guard = tracing::subscriber::set_default(subscriber);
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async move {
            let listener = tokio::net::TcpListener::from_std(listener).unwrap();
            match how {
                Stop::Channel => {
                    ready.send(()).unwrap();
                    let shutdown = async {
                        stopped.await.ok();
                    };
                    app::serve(listener, state, shutdown).await.unwrap();
                }
                Stop::Signal => {
                    // Installed before the test is told to go, so its signal is caught.
                    let shutdown = app::shutdown_signal().unwrap();
                    ready.send(()).unwrap();
                    app::serve(listener, state, shutdown).await.unwrap();
                }
            }
        });
    });
    is_ready.recv_timeout(Duration::from_secs(10)).unwrap();
    let agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(10)))
        .build()
        .into();
    Server {
        addr,
        base: format!("http://{addr}/api/v1/public"),
        root_key: keys[0].clone(),
        keys,
        logs,
        agent,
        stop: Some(stop),
        thread: Some(thread),
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            stop.send(()).ok();
        }
    }
}

impl Server {
    pub fn call(&self, method: &str, path: &str, key: Option<&str>, body: Option<Value>) -> Reply {
        let bytes = match &body {
            Some(body) => serde_json::to_vec(body).unwrap(),
            None => Vec::new(),
        };
        let content_type = body.is_some().then_some("application/json");
        self.send(method, path, key, content_type, bytes)
    }

    /// Any request ureq can send: a chosen content type, or none, and raw body bytes.
    pub fn send(
        &self,
        method: &str,
        path: &str,
        key: Option<&str>,
        content_type: Option<&str>,
        body: Vec<u8>,
    ) -> Reply {
        let mut request = ureq::http::Request::builder()
            .method(method)
            .uri(format!("{}{path}", self.base));
        if let Some(key) = key {
            request = request.header("Authorization", format!("Bearer {key}"));
        }
        if let Some(content_type) = content_type {
            request = request.header("Content-Type", content_type);
        }
        let mut response = self.agent.run(request.body(body).unwrap()).unwrap();
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let text = response.body_mut().read_to_string().unwrap();
        let body = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
        };
        Reply {
            status,
            body,
            headers,
        }
    }

    pub fn root(&self, method: &str, path: &str, body: Option<Value>) -> Reply {
        self.call(method, path, Some(&self.root_key.clone()), body)
    }

    pub fn project_as(&self, key: &str, name: &str) -> u64 {
        let body = json!({"name": name, "language": "en"});
        let reply = self.call("POST", "/projects", Some(key), Some(body));
        assert_eq!(reply.status, 201, "{}", reply.body);
        reply.body["data"]["id"].as_u64().unwrap()
    }

    pub fn project(&self, name: &str) -> u64 {
        self.project_as(&self.root_key.clone(), name)
    }

    /// Mints a key with `issuer`; returns (id, secret).
    pub fn key_as(&self, issuer: &str, body: Value) -> (String, String) {
        let reply = self.call("POST", "/api_keys", Some(issuer), Some(body));
        assert_eq!(reply.status, 201, "{}", reply.body);
        let data = &reply.body["data"];
        (
            data["id"].as_str().unwrap().to_owned(),
            data["key"].as_str().unwrap().to_owned(),
        )
    }

    /// Mints a key with the root key; returns (id, secret).
    pub fn key(&self, body: Value) -> (String, String) {
        self.key_as(&self.root_key.clone(), body)
    }

    pub fn recording_as(&self, key: &str, project: u64) -> u64 {
        let body = json!({"project_id": project, "title": "Call", "transcription": "hello"});
        let reply = self.call("POST", "/recordings", Some(key), Some(body));
        assert_eq!(reply.status, 201, "{}", reply.body);
        reply.body["data"]["id"].as_u64().unwrap()
    }

    pub fn recording(&self, project: u64) -> u64 {
        self.recording_as(&self.root_key.clone(), project)
    }

    /// A raw connection to the server.
    pub fn connect(&self) -> TcpStream {
        let stream = TcpStream::connect(self.addr).unwrap();
        stream.set_nodelay(true).unwrap();
        stream
    }

    /// Sends `head` (request line and headers, without the blank line ending them) on a fresh
    /// connection and reads the response until the server closes it.
    pub fn raw(&self, head: &str) -> RawReply {
        self.raw_with_body(head, &[])
    }

    /// [`Server::raw`] with a body. A server that answers before reading everything may reset
    /// the connection: write errors are ignored, and what was read before a reset is kept.
    pub fn raw_with_body(&self, head: &str, body: &[u8]) -> RawReply {
        let mut stream = self.connect();
        let mut bytes = format!("{head}\r\nConnection: close\r\n\r\n").into_bytes();
        bytes.extend_from_slice(body);
        stream.write_all(&bytes).ok();
        read_reply(&mut stream)
    }

    /// Waits for the server's thread to end (after a shutdown); false if it is still running at
    /// the deadline.
    pub fn wait_stopped(&mut self, within: Duration) -> bool {
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            if self.thread.as_ref().is_none_or(JoinHandle::is_finished) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }
}

/// A response read off a raw socket.
#[derive(Debug)]
pub struct RawReply {
    pub status: u16,
    pub head: String,
    pub body: String,
}

impl RawReply {
    /// The body as JSON, checking that the response says it is.
    pub fn json(&self) -> Value {
        assert!(
            self.head
                .to_ascii_lowercase()
                .contains("content-type: application/json"),
            "{}",
            self.head
        );
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {self:?}"))
    }
}

/// Reads one response until the server closes the connection (requests sent with
/// `Connection: close`), within 10 seconds.
pub fn read_reply(stream: &mut TcpStream) -> RawReply {
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut bytes = Vec::new();
    let mut buf = [0u8; 8192];
    // Bounded by the read timeout and the server closing the connection.
    loop {
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => bytes.extend_from_slice(&buf[..n]),
        }
    }
    parse_reply(&bytes)
}

pub fn parse_reply(bytes: &[u8]) -> RawReply {
    let text = String::from_utf8_lossy(bytes).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status line: {text:?}"));
    RawReply {
        status,
        head: head.to_owned(),
        body: body.to_owned(),
    }
}

/// How long until the server closes `stream` (reads return 0 or fail), up to `limit`; `None`
/// if it is still open then. Sends nothing.
pub fn time_to_close(stream: &mut TcpStream, limit: Duration) -> Option<Duration> {
    let started = Instant::now();
    stream
        .set_read_timeout(Some(Duration::from_millis(50)))
        .unwrap();
    let mut buf = [0u8; 4096];
    while started.elapsed() < limit {
        match stream.read(&mut buf) {
            Ok(0) => return Some(started.elapsed()),
            Ok(_) => {}
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(_) => return Some(started.elapsed()),
        }
    }
    None
}

pub fn error(message: &str) -> Value {
    json!({ "error": message })
}

//! keygate's escalation-fuzzing kit pointed at the reference server over HTTP: a `KeyApi` that
//! speaks the server's public API on 127.0.0.1, and a launcher that starts a fresh server (one
//! bootstrap key, projects 1 and 2) for every fuzzed sequence.
//!
//! Shared by `examples/fuzz_server/main.rs` and `tests/escalation_fuzz.rs`; copy it as the
//! starting point for your own server.

use std::fmt;
use std::time::Duration;

use axum::Router;
use keygate::testing::{Ceiling, CreateKey, KeyApi, NewKey, Observed, Probe, Reply, RootKey};
use keygate::{AccountId, Catalog, ProjectId, Scope, Timestamp};
use keygate_server::{App, AppState, Config};
use serde_json::{Value, json};

/// The reference server's only account, and the projects each fresh server gets.
pub const ACCOUNT: u64 = 1;
pub const PROJECTS: [u64; 2] = [1, 2];

/// A transport failure: the server did not answer as its API documents.
#[derive(Debug)]
pub struct HttpError(pub String);

impl fmt::Display for HttpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for HttpError {}

fn fail(what: impl fmt::Display) -> HttpError {
    HttpError(what.to_string())
}

/// Starts reference servers on ephemeral loopback ports, one at a time: starting the next stops
/// the previous one.
pub struct Launcher {
    runtime: tokio::runtime::Runtime,
    running: Option<tokio::task::JoinHandle<()>>,
    make_router: fn(AppState) -> Router,
}

impl Launcher {
    /// A launcher serving `make_router` (`keygate_server::router`, or a variant).
    pub fn new(make_router: fn(AppState) -> Router) -> Result<Self, HttpError> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .map_err(fail)?;
        Ok(Self {
            runtime,
            running: None,
            make_router,
        })
    }

    /// A fresh server: bootstrap key, projects 1 and 2. Returns the API and its root key.
    pub fn start(&mut self) -> Result<(HttpKeyApi, RootKey), HttpError> {
        if let Some(previous) = self.running.take() {
            previous.abort();
        }
        let (state, tokens) = App::bootstrap(Config::default()).map_err(fail)?;
        let token = tokens
            .first()
            .map(|t| t.expose_secret().to_owned())
            .ok_or_else(|| fail("no bootstrap key"))?;
        let listener = std::net::TcpListener::bind("127.0.0.1:0").map_err(fail)?;
        listener.set_nonblocking(true).map_err(fail)?;
        let addr = listener.local_addr().map_err(fail)?;
        let router = (self.make_router)(state);
        self.running = Some(self.runtime.spawn(async move {
            if let Ok(listener) = tokio::net::TcpListener::from_std(listener) {
                let _ = axum::serve(listener, router).await;
            }
        }));
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(10)))
            .build()
            .into();
        let mut api = HttpKeyApi {
            base: format!("http://{addr}/api/v1/public"),
            agent,
        };
        for id in PROJECTS {
            let (status, body) = api.call(
                "POST",
                "/projects",
                &token,
                Some(json!({"name": format!("Project {id}"), "language": "en"})),
            )?;
            if status != 201 || body.pointer("/data/id") != Some(&json!(id)) {
                return Err(fail(format!("creating project {id}: {status} {body}")));
            }
        }
        let (status, body) = api.call("GET", "/api_keys", &token, None)?;
        let id = body
            .pointer("/data/0/id")
            .and_then(Value::as_str)
            .filter(|_| status == 200)
            .ok_or_else(|| fail(format!("listing keys: {status} {body}")))?
            .to_owned();
        let catalog = Catalog::read_write_delete();
        let root = RootKey {
            id,
            token,
            ceiling: Ceiling {
                account: AccountId::from_u64(ACCOUNT),
                scope: Scope::Account,
                permissions: catalog.all(),
                expires_at: None,
            },
        };
        Ok((api, root))
    }
}

impl Drop for Launcher {
    fn drop(&mut self) {
        if let Some(running) = self.running.take() {
            running.abort();
        }
    }
}

/// The reference server's key API, over HTTP.
pub struct HttpKeyApi {
    base: String,
    agent: ureq::Agent,
}

impl HttpKeyApi {
    fn call(
        &mut self,
        method: &str,
        path: &str,
        token: &str,
        body: Option<Value>,
    ) -> Result<(u16, Value), HttpError> {
        let mut request = ureq::http::Request::builder()
            .method(method)
            .uri(format!("{}{path}", self.base))
            .header("Authorization", format!("Bearer {token}"));
        let bytes = match body {
            Some(body) => {
                // A request with a body gets a connection of its own: the server closes a
                // kept-alive connection after refusing a request whose body it never read (a 401
                // from its authentication layer), and reusing it would read as a transport
                // failure.
                request = request
                    .header("Content-Type", "application/json")
                    .header("Connection", "close");
                serde_json::to_vec(&body).map_err(fail)?
            }
            None => Vec::new(),
        };
        let mut response = self
            .agent
            .run(request.body(bytes).map_err(fail)?)
            .map_err(fail)?;
        let status = response.status().as_u16();
        let text = response.body_mut().read_to_string().map_err(fail)?;
        let body = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).map_err(fail)?
        };
        Ok((status, body))
    }
}

impl KeyApi for HttpKeyApi {
    type Error = HttpError;

    fn create(&mut self, caller: &str, request: &CreateKey) -> Result<Reply<NewKey>, HttpError> {
        let mut body = serde_json::Map::new();
        body.insert("name".into(), json!(request.name));
        if let Some(permissions) = &request.permissions {
            body.insert("permissions".into(), json!(permissions));
        }
        if let Some(Scope::Project(p)) = request.scope {
            body.insert("project_id".into(), json!(p));
        }
        if let Some(ttl) = request.ttl_seconds {
            body.insert("ttl_seconds".into(), json!(ttl));
        }
        // The server has no "account-wide" field: leaving project_id out asks for the caller's
        // scope, which is account-wide for an account-wide caller and refused otherwise by the
        // scope rule anyway; the oracle models the request as asked.
        let (status, reply) = self.call("POST", "/api_keys", caller, Some(Value::Object(body)))?;
        if status != 201 {
            return Ok(Reply::Refused(status));
        }
        let id = reply.pointer("/data/id").and_then(Value::as_str);
        let token = reply.pointer("/data/key").and_then(Value::as_str);
        match (id, token) {
            (Some(id), Some(token)) => Ok(Reply::Done(NewKey {
                id: id.to_owned(),
                token: token.to_owned(),
            })),
            _ => Err(fail(format!("201 without id and key: {reply}"))),
        }
    }

    fn rotate(&mut self, caller: &str, target: &str) -> Result<Reply<String>, HttpError> {
        let (status, reply) = self.call(
            "POST",
            &format!("/api_keys/{target}/regenerate"),
            caller,
            None,
        )?;
        if status != 201 {
            return Ok(Reply::Refused(status));
        }
        reply
            .pointer("/data/key")
            .and_then(Value::as_str)
            .map(|t| Reply::Done(t.to_owned()))
            .ok_or_else(|| fail(format!("201 without key: {reply}")))
    }

    fn revoke(&mut self, caller: &str, target: &str) -> Result<Reply<()>, HttpError> {
        let (status, _) = self.call("DELETE", &format!("/api_keys/{target}"), caller, None)?;
        Ok(if status == 204 {
            Reply::Done(())
        } else {
            Reply::Refused(status)
        })
    }

    /// Each probe as a request with no lasting effect, and how its status reads:
    /// - read on a listing: `GET /projects` (200 allowed);
    /// - read on project p: `GET /projects/p` (200 allowed; the project exists);
    /// - write on project p: `PATCH /projects/p` with `{}` (200 allowed);
    /// - write at account level: `POST /projects` with a blank name (authorization comes before
    ///   validation: 422 means allowed);
    /// - delete at account level: `DELETE /projects/999999` (authorization comes before the
    ///   lookup: 404 means allowed, for the server has one account).
    ///
    /// Anything else is unsupported.
    fn authorize(&mut self, caller: &str, probe: &Probe) -> Result<Observed, HttpError> {
        let project = probe.resource.project().and_then(|p| p.as_u64());
        let account_level = probe.action.is_account_level();
        let listing = probe.resource.is_listing();
        if probe.resource.account_id() != AccountId::from_u64(ACCOUNT) {
            return Ok(Observed::Unsupported);
        }
        let (method, path, body, allowed) = match (probe.permission.as_str(), account_level) {
            ("read", false) if listing => ("GET", "/projects".to_owned(), None, 200),
            ("read", false) => match project {
                Some(p) => ("GET", format!("/projects/{p}"), None, 200),
                None => return Ok(Observed::Unsupported),
            },
            ("write", false) => match project {
                Some(p) => ("PATCH", format!("/projects/{p}"), Some(json!({})), 200),
                None => return Ok(Observed::Unsupported),
            },
            ("write", true) if project.is_none() && !listing => (
                "POST",
                "/projects".to_owned(),
                Some(json!({"name": "", "language": "en"})),
                422,
            ),
            ("delete", true) if project.is_none() && !listing => {
                ("DELETE", "/projects/999999".to_owned(), None, 404)
            }
            _ => return Ok(Observed::Unsupported),
        };
        let (status, _) = self.call(method, &path, caller, body)?;
        Ok(if status == allowed {
            Observed::Allowed
        } else {
            Observed::Denied(status)
        })
    }

    fn now(&mut self) -> Timestamp {
        Timestamp::from_system_time(std::time::SystemTime::now())
    }
}

/// The fuzzer's configuration for the reference server: its catalog, account and projects.
pub fn config() -> keygate::testing::FuzzConfig {
    keygate::testing::FuzzConfig::new(
        Catalog::read_write_delete(),
        AccountId::from_u64(ACCOUNT),
        PROJECTS.iter().map(|p| ProjectId::from_u64(*p)).collect(),
    )
}

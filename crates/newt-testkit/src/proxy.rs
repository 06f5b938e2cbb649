//! A fault-injecting HTTP proxy between a client and Synapse.
//!
//! Rules match requests by path substring (and optionally method) and
//! apply to the next `times` matching requests; everything else is
//! forwarded untouched. Every request is logged, so tests can also count
//! what a client sent. The proxy runs on its own thread and runtime, so it
//! works from any test, sync or async.

use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// What to do with a matching request.
#[derive(Clone)]
#[non_exhaustive]
pub enum Action {
    /// Answer with this status without forwarding; for 429 the body is
    /// `M_LIMIT_EXCEEDED` and `Retry-After` is set when given.
    Status {
        /// HTTP status code (e.g. 502, 503, 504, 429).
        code: u16,
        /// `Retry-After` header, in seconds.
        retry_after_secs: Option<u64>,
        /// `retry_after_ms` in a 429 body.
        retry_after_ms: Option<u64>,
    },
    /// Close the connection without forwarding or answering.
    Reset,
    /// Wait, then forward.
    Delay(Duration),
    /// Forward (the server processes it), then close the connection
    /// without passing the response back.
    DropResponse,
    /// Forward, then never answer: the client hangs as if the process had
    /// stalled before reading the response.
    HoldResponse,
    /// Forward, then keep the response until [`Proxy::release`] is called
    /// (a held `/sync`, for instance).
    HoldUntilReleased,
    /// Forward, then rewrite the JSON response before passing it back (a
    /// lying server).
    Rewrite(Rewriter),
}

/// A function that rewrites a JSON response in place.
pub type Rewriter = Arc<dyn Fn(&mut serde_json::Value) + Send + Sync>;

impl std::fmt::Debug for Action {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Status { code, .. } => write!(f, "Status({code})"),
            Self::Reset => f.write_str("Reset"),
            Self::Delay(d) => write!(f, "Delay({d:?})"),
            Self::DropResponse => f.write_str("DropResponse"),
            Self::HoldResponse => f.write_str("HoldResponse"),
            Self::HoldUntilReleased => f.write_str("HoldUntilReleased"),
            Self::Rewrite(_) => f.write_str("Rewrite"),
        }
    }
}

/// A fault rule.
#[derive(Debug, Clone)]
pub struct Rule {
    /// Matches requests whose path contains this.
    pub path_contains: String,
    /// Matches only this method, if set.
    pub method: Option<String>,
    /// How many matching requests it applies to.
    pub times: usize,
    /// What it does.
    pub action: Action,
}

impl Rule {
    /// A rule for the next `times` requests whose path contains `path`.
    pub fn new(path: &str, times: usize, action: Action) -> Self {
        Self {
            path_contains: path.to_owned(),
            method: None,
            times,
            action,
        }
    }
}

/// One request the proxy saw.
#[derive(Debug, Clone)]
pub struct Record {
    /// HTTP method.
    pub method: String,
    /// Path and query.
    pub path: String,
    /// The fault applied, if any.
    pub action: Option<Action>,
    /// Whether the request reached the server.
    pub forwarded: bool,
    /// The server's status, once it answered.
    pub upstream_status: Option<u16>,
    /// The request body, as text.
    pub body: String,
}

#[derive(Debug, Default)]
struct State {
    rules: Vec<Rule>,
    log: Vec<Record>,
}

/// A running proxy. Dropping it stops it.
#[derive(Debug)]
pub struct Proxy {
    port: u16,
    state: Arc<Mutex<State>>,
    release: Arc<tokio::sync::watch::Sender<u64>>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Proxy {
    /// Starts a proxy on a free 127.0.0.1 port in front of
    /// `127.0.0.1:upstream_port`.
    pub fn start(upstream_port: u16) -> std::io::Result<Self> {
        let std_listener = std::net::TcpListener::bind(("127.0.0.1", 0))?;
        std_listener.set_nonblocking(true)?;
        let port = std_listener.local_addr()?.port();
        let state = Arc::new(Mutex::new(State::default()));
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel();
        let thread_state = state.clone();
        let (release, _) = tokio::sync::watch::channel(0u64);
        let release = Arc::new(release);
        let thread_release = release.clone();
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()?;
        let thread = std::thread::spawn(move || {
            runtime.block_on(serve(
                std_listener,
                upstream_port,
                thread_state,
                thread_release,
                stop_rx,
            ));
        });
        Ok(Self {
            port,
            state,
            release,
            stop: Some(stop_tx),
            thread: Some(thread),
        })
    }

    /// The proxy's port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The URL clients should use as their homeserver.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Adds a rule; rules are tried in the order added.
    pub fn add_rule(&self, rule: Rule) {
        lock(&self.state).rules.push(rule);
    }

    /// Lets every response held by [`Action::HoldUntilReleased`] go.
    pub fn release(&self) {
        self.release.send_modify(|generation| *generation += 1);
    }

    /// Removes every rule.
    pub fn clear_rules(&self) {
        lock(&self.state).rules.clear();
    }

    /// Everything seen so far.
    pub fn log(&self) -> Vec<Record> {
        lock(&self.state).log.clone()
    }

    /// How many requests whose path contains `path` were seen.
    pub fn count(&self, path: &str) -> usize {
        lock(&self.state)
            .log
            .iter()
            .filter(|r| r.path.contains(path))
            .count()
    }

    /// Waits until `pred` holds for some logged request.
    pub fn wait_for(&self, timeout: Duration, pred: impl Fn(&Record) -> bool) -> bool {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if lock(&self.state).log.iter().any(&pred) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn lock(state: &Mutex<State>) -> std::sync::MutexGuard<'_, State> {
    state
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

async fn serve(
    listener: std::net::TcpListener,
    upstream: u16,
    state: Arc<Mutex<State>>,
    release: Arc<tokio::sync::watch::Sender<u64>>,
    mut stop: tokio::sync::oneshot::Receiver<()>,
) {
    let Ok(listener) = tokio::net::TcpListener::from_std(listener) else {
        return;
    };
    let client = reqwest::Client::new();
    loop {
        let accepted = tokio::select! {
            _ = &mut stop => return,
            accepted = listener.accept() => accepted,
        };
        let Ok((stream, _)) = accepted else { continue };
        let state = state.clone();
        let client = client.clone();
        let release = release.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req| {
                handle(
                    req,
                    upstream,
                    state.clone(),
                    client.clone(),
                    release.clone(),
                )
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                .await;
        });
    }
}

type ProxyResult = Result<Response<Full<Bytes>>, std::io::Error>;

async fn handle(
    req: Request<Incoming>,
    upstream: u16,
    state: Arc<Mutex<State>>,
    client: reqwest::Client,
    release: Arc<tokio::sync::watch::Sender<u64>>,
) -> ProxyResult {
    let mut released = release.subscribe();
    let held_at = *released.borrow();
    let method = req.method().to_string();
    let path = req
        .uri()
        .path_and_query()
        .map(|p| p.to_string())
        .unwrap_or_default();
    let headers = req.headers().clone();
    let body = req
        .into_body()
        .collect()
        .await
        .map_err(std::io::Error::other)?
        .to_bytes();
    let (action, index) = {
        let mut s = lock(&state);
        let action = s
            .rules
            .iter_mut()
            .find(|r| {
                r.times > 0
                    && path.contains(&r.path_contains)
                    && r.method.as_deref().is_none_or(|m| m == method)
            })
            .map(|r| {
                r.times -= 1;
                r.action.clone()
            });
        s.log.push(Record {
            method: method.clone(),
            path: path.clone(),
            action: action.clone(),
            forwarded: false,
            upstream_status: None,
            body: String::from_utf8_lossy(&body).into_owned(),
        });
        (action, s.log.len() - 1)
    };
    match &action {
        Some(Action::Status {
            code,
            retry_after_secs,
            retry_after_ms,
        }) => {
            return Ok(canned(*code, *retry_after_secs, *retry_after_ms));
        }
        Some(Action::Reset) => return Err(std::io::Error::other("reset by fault rule")),
        Some(Action::Delay(d)) => tokio::time::sleep(*d).await,
        _ => {}
    }
    let url = format!("http://127.0.0.1:{upstream}{path}");
    let method = reqwest::Method::from_bytes(method.as_bytes()).map_err(std::io::Error::other)?;
    let mut forward = client.request(method, url).body(body.to_vec());
    for (name, value) in &headers {
        if name != hyper::header::HOST && name != hyper::header::CONTENT_LENGTH {
            forward = forward.header(name.as_str(), value.as_bytes());
        }
    }
    lock(&state).log[index].forwarded = true;
    let upstream_resp = forward.send().await.map_err(std::io::Error::other)?;
    let status = upstream_resp.status().as_u16();
    let content_type = upstream_resp.headers().get("content-type").cloned();
    let mut bytes = upstream_resp.bytes().await.map_err(std::io::Error::other)?;
    lock(&state).log[index].upstream_status = Some(status);
    match action {
        Some(Action::DropResponse) => Err(std::io::Error::other("response dropped by fault rule")),
        Some(Action::HoldResponse) => std::future::pending().await,
        Some(Action::HoldUntilReleased) | Some(Action::Rewrite(_)) => {
            if let Some(Action::Rewrite(rewrite)) = &action
                && let Ok(mut json) = serde_json::from_slice::<serde_json::Value>(&bytes)
            {
                rewrite(&mut json);
                bytes = Bytes::from(json.to_string());
            }
            if matches!(action, Some(Action::HoldUntilReleased)) {
                while *released.borrow() == held_at {
                    if released.changed().await.is_err() {
                        break;
                    }
                }
            }
            let mut resp = Response::new(Full::new(bytes));
            *resp.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_GATEWAY);
            if let Some(ct) = content_type {
                resp.headers_mut().insert(hyper::header::CONTENT_TYPE, ct);
            }
            Ok(resp)
        }
        _ => {
            let mut resp = Response::new(Full::new(bytes));
            *resp.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_GATEWAY);
            if let Some(ct) = content_type {
                resp.headers_mut().insert(hyper::header::CONTENT_TYPE, ct);
            }
            Ok(resp)
        }
    }
}

fn canned(
    code: u16,
    retry_after_secs: Option<u64>,
    retry_after_ms: Option<u64>,
) -> Response<Full<Bytes>> {
    let body = if code == 429 {
        let mut body = serde_json::json!({"errcode": "M_LIMIT_EXCEEDED", "error": "Too many requests (injected)"});
        if let Some(ms) = retry_after_ms {
            body["retry_after_ms"] = ms.into();
        }
        body
    } else {
        serde_json::json!({"errcode": "M_UNKNOWN", "error": "Injected failure"})
    };
    let mut resp = Response::new(Full::new(Bytes::from(body.to_string())));
    *resp.status_mut() = StatusCode::from_u16(code).unwrap_or(StatusCode::BAD_GATEWAY);
    resp.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/json"),
    );
    if let Some(secs) = retry_after_secs
        && let Ok(value) = hyper::header::HeaderValue::from_str(&secs.to_string())
    {
        resp.headers_mut().insert(hyper::header::RETRY_AFTER, value);
    }
    resp
}

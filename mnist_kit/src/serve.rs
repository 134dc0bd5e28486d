//! `mnist-kit serve`: a local web page where a model reads your handwriting as you write, and
//! the JSON API behind it, on axum, hyper and tokio. The page (HTML, JS and CSS in one file)
//! is embedded in the binary and needs no network; the server binds to localhost unless told
//! otherwise.
//!
//! API:
//! - `GET /api/models`: the runs the server can use (`results/models/robust`,
//!   `results/models/best` and every finished run with weights in `results/runs/`), and the
//!   default one.
//! - `POST /api/predict[?model=NAME][&saliency=1]` with a PNG, JPEG, BMP, GIF or WebP body:
//!   `{"digit", "probabilities", "confidence", "abstain", "input", "model"}`, after the same
//!   MNIST preprocessing as `mnist-kit predict`; with `"reason"` and `"runner_up"` when the
//!   model abstains (a blank image, ink unlike a digit's, or a confidence under the run's
//!   calibrated floor: see [`crate::analysis::abstain`]), and `"saliency"` when asked for.
//! - Errors are JSON `{"error": ...}`: 400 for a body that is not an image (or a malformed
//!   request), 403 for a `Host` the server does not answer to, 404 for an
//!   unknown model or path, 405 for a wrong method, 408 for a client that is too slow, 413
//!   for a body over [`MAX_BODY`] bytes or an image over [`MAX_PIXELS`] pixels, 503 when
//!   [`ServeConfig::queue`] predictions already wait.
//!
//! It holds up against hostile clients: headers must arrive within
//! [`ServeConfig::header_timeout`] and a request must finish within
//! [`ServeConfig::request_timeout`], so slow or lying clients hold nothing but their own
//! connection; duplicate or invalid `Content-Length` headers get 400; images are measured
//! before they are decoded and decodes run at most [`ServeConfig::threads`] at a time; every
//! connection sets `TCP_NODELAY`, so keep-alive answers do not wait for delayed ACKs; and a
//! request whose `Host` is not the server's own name (a page that rebinds its DNS name to
//! 127.0.0.1) gets 403.
//!
//! ```no_run
//! use mnist_kit::serve::{ServeConfig, Server};
//! let server = Server::bind(&ServeConfig::default())?;
//! println!("open http://{}", server.addr());
//! server.run(); // blocks
//! # Ok::<(), mnist_kit::Error>(())
//! ```

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{DefaultBodyLimit, Query, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};

use serde_json::{Value, json};
use tower::Service;

use crate::analysis::{Answer, Calibration, answer, digit_from_bytes, digit_saliency, image_size};
use crate::models::Network;
use crate::study::ExperimentResult;
use crate::train::Run;
use crate::train::RunDir;
use crate::{Error, Result};

/// Largest request body accepted (2 MB); larger bodies get 413.
pub const MAX_BODY: usize = 2 * 1024 * 1024;
/// Largest image decoded, in pixels (a 12-megapixel phone photo); larger gets 413 before any
/// decoding.
pub const MAX_PIXELS: u64 = 12_000_000;

/// The page, embedded.
const PAGE: &str = include_str!("serve/index.html");

/// Where and what to serve, and how much to put up with.
#[derive(Debug, Clone)]
pub struct ServeConfig {
    /// Interface to bind (`127.0.0.1`: this machine only).
    pub host: String,
    /// Port (0: any free port).
    pub port: u16,
    /// A run directory to serve as the default model (else `results/models/robust`, else
    /// `results/models/best`).
    pub run: Option<PathBuf>,
    /// The study's output directory, whose `models/` and `runs/` are listed.
    pub results: PathBuf,
    /// Predictions (and image decodes) running at once.
    pub threads: usize,
    /// Predictions that may wait for one of them; beyond that, 503.
    pub queue: usize,
    /// Host names answered besides the bound address, `localhost`, `127.0.0.1` and `[::1]`
    /// (`--allow-host`).
    pub allow_hosts: Vec<String>,
    /// Time a client has to send its request line and headers.
    pub header_timeout: Duration,
    /// Time a request may take from its headers to the answer, its body included.
    pub request_timeout: Duration,
}

impl Default for ServeConfig {
    fn default() -> Self {
        ServeConfig {
            host: "127.0.0.1".into(),
            port: 8080,
            run: None,
            results: PathBuf::from("results"),
            threads: 2,
            queue: 64,
            allow_hosts: Vec::new(),
            header_timeout: Duration::from_secs(5),
            request_timeout: Duration::from_secs(10),
        }
    }
}

/// A model the server can use.
#[derive(Debug, Clone)]
struct Entry {
    dir: PathBuf,
    /// The experiment's test accuracy, when its run recorded one.
    test_accuracy: Option<f64>,
}

/// The models, loaded on first use and shared by the requests.
struct Models {
    entries: BTreeMap<String, Entry>,
    default: Option<String>,
    loaded: Mutex<BTreeMap<String, Arc<Served>>>,
}

/// A loaded model: the network (with its input scaling) and its calibration (when the run has
/// one).
pub struct Served {
    /// The network.
    pub net: Network,
    /// Its `calibration.json`, if any: without one the server never abstains on confidence.
    pub calibration: Option<Calibration>,
}

impl Models {
    fn scan(cfg: &ServeConfig) -> Self {
        let mut entries = BTreeMap::new();
        let mut default = None;
        let accuracy = |dir: &Path| -> Option<f64> {
            let text = std::fs::read_to_string(dir.join(RunDir::RESULT)).ok()?;
            serde_json::from_str::<ExperimentResult>(&text)
                .ok()
                .map(|r| r.test_accuracy)
        };
        let mut add = |name: String, dir: PathBuf| {
            entries.insert(
                name,
                Entry {
                    test_accuracy: accuracy(&dir),
                    dir,
                },
            );
        };
        if let Some(run) = &cfg.run {
            let name = run
                .file_name()
                .map_or("run".to_string(), |n| n.to_string_lossy().into_owned());
            add(name.clone(), run.clone());
            default = Some(name);
        }
        for kind in ["robust", "best"] {
            let dir = cfg.results.join("models").join(kind);
            if dir.join(RunDir::WEIGHTS).exists() {
                add(kind.into(), dir);
                default.get_or_insert_with(|| kind.to_string());
            }
        }
        // Every finished run with weights: runs/<experiment>/seed-<s>/.
        if let Ok(exps) = std::fs::read_dir(cfg.results.join("runs")) {
            for exp in exps.flatten() {
                let Ok(seeds) = std::fs::read_dir(exp.path()) else {
                    continue;
                };
                for seed in seeds.flatten() {
                    let dir = seed.path();
                    if dir.join(RunDir::RESULT).exists() && dir.join(RunDir::WEIGHTS).exists() {
                        let name = format!(
                            "{}/{}",
                            exp.file_name().to_string_lossy(),
                            seed.file_name().to_string_lossy()
                        );
                        add(name, dir);
                    }
                }
            }
        }
        if default.is_none() {
            default = entries.keys().next().cloned();
        }
        Models {
            entries,
            default,
            loaded: Mutex::new(BTreeMap::new()),
        }
    }

    fn get(&self, name: Option<&str>) -> std::result::Result<(String, Arc<Served>), Reply> {
        let name = match name.or(self.default.as_deref()) {
            Some(n) => n.to_string(),
            None => {
                return Err(Reply::error(
                    404,
                    "no model to serve: run `cargo study` or pass --run DIR",
                ));
            }
        };
        let Some(entry) = self.entries.get(&name) else {
            return Err(Reply::error(
                404,
                &format!("unknown model {name:?}; see /api/models"),
            ));
        };
        if let Some(m) = self.loaded.lock().ok().and_then(|l| l.get(&name).cloned()) {
            return Ok((name, m));
        }
        let run = Run::open(&entry.dir)
            .map_err(|e| Reply::error(500, &format!("cannot load {name}: {e}")))?;
        let calibration = Calibration::load(&entry.dir)
            .map_err(|e| Reply::error(500, &format!("cannot load {name}: {e}")))?;
        let model = Arc::new(Served {
            net: run.net,
            calibration,
        });
        if let Ok(mut l) = self.loaded.lock() {
            l.insert(name.clone(), model.clone());
        }
        Ok((name, model))
    }

    fn json(&self) -> Value {
        json!({
            "default": self.default,
            "models": self.entries.iter().map(|(name, e)| json!({
                "name": name,
                "test_accuracy": e.test_accuracy,
            })).collect::<Vec<_>>(),
        })
    }
}

/// A JSON reply with its status.
#[derive(Debug, Clone, PartialEq)]
pub struct Reply {
    /// HTTP status.
    pub status: u16,
    /// Body.
    pub body: Value,
}

impl Reply {
    fn ok(body: Value) -> Self {
        Reply { status: 200, body }
    }
    fn error(status: u16, message: &str) -> Self {
        Reply {
            status,
            body: json!({ "error": message }),
        }
    }
}

impl IntoResponse for Reply {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let mut r = Response::new(Body::from(self.body.to_string()));
        *r.status_mut() = status;
        r.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        r
    }
}

/// The answer to one predict request (what `POST /api/predict` returns): `digit`,
/// `probabilities` (calibrated when the run has a calibration), `confidence`, `abstain` and,
/// when abstaining, `reason` and `runner_up`; `input` (the 28x28 image the model saw) and, when
/// `saliency` is asked for, the SmoothGrad map (16 more forward and backward passes).
pub fn predict_reply(model: &Served, name: &str, body: &[u8], saliency: bool) -> Reply {
    match image_size(body, "request body") {
        Ok((w, h)) if u64::from(w) * u64::from(h) > MAX_PIXELS => {
            return Reply::error(
                413,
                &format!("a {w}x{h} image; the server reads at most {MAX_PIXELS} pixels"),
            );
        }
        Ok(_) => {}
        Err(e) => return Reply::error(400, &e.to_string()),
    }
    let digit = match digit_from_bytes(body, "request body") {
        Ok(d) => d,
        Err(Error::Blank { reason, .. }) => {
            return Reply::ok(answer_json(
                &Answer::blank(format!("blank: {reason}")),
                name,
            ));
        }
        Err(e) => return Reply::error(400, &e.to_string()),
    };
    let a = match answer(&model.net, &digit, model.calibration.as_ref()) {
        Ok(a) => a,
        Err(e) => return Reply::error(500, &e.to_string()),
    };
    let mut body = answer_json(&a, name);
    body["input"] = json!(digit.pixels);
    if saliency {
        match digit_saliency(&model.net, &digit) {
            Ok((_, map)) => body["saliency"] = json!(map),
            Err(e) => return Reply::error(500, &e.to_string()),
        }
    }
    Reply::ok(body)
}

/// The JSON of an answer (shared by `/api/predict` and `mnist-kit predict --json`).
pub fn answer_json(a: &Answer, model: &str) -> Value {
    let mut v = json!({
        "digit": a.digit,
        "probabilities": a.probabilities,
        "confidence": a.confidence,
        "abstain": a.abstain,
        "model": model,
    });
    if let Some(r) = &a.reason {
        v["reason"] = json!(r);
        v["runner_up"] = json!(a.runner_up);
    }
    if let Some((d, limit)) = a.distance {
        v["feature_distance"] = json!({ "value": d, "limit": limit });
    }
    v
}

/// What the handlers share.
struct AppState {
    models: Models,
    /// Predictions running at once.
    running: tokio::sync::Semaphore,
    /// Predictions waiting for a place.
    waiting: AtomicUsize,
    queue: usize,
    /// Host names answered (lower case, without port).
    hosts: Vec<String>,
}

async fn page() -> Response {
    let mut r = Response::new(Body::from(PAGE));
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    r
}

async fn models(State(s): State<Arc<AppState>>) -> Reply {
    Reply::ok(s.models.json())
}

async fn predict(
    State(s): State<Arc<AppState>>,
    Query(q): Query<HashMap<String, String>>,
    body: std::result::Result<Bytes, axum::extract::rejection::BytesRejection>,
) -> Reply {
    let body = match body {
        Ok(b) => b,
        Err(e) => {
            let status = e.status().as_u16();
            let message = if status == 413 {
                format!("body over {MAX_BODY} bytes")
            } else {
                format!("cannot read the body: {e}")
            };
            return Reply::error(status, &message);
        }
    };
    // Admission: a bounded queue in front of the workers.
    if s.waiting.fetch_add(1, Ordering::SeqCst) >= s.queue {
        s.waiting.fetch_sub(1, Ordering::SeqCst);
        return Reply::error(503, "too many predictions waiting; try again");
    }
    let permit = s.running.acquire().await;
    s.waiting.fetch_sub(1, Ordering::SeqCst);
    let Ok(_permit) = permit else {
        return Reply::error(503, "the server is shutting down");
    };
    let state = s.clone();
    let work = tokio::task::spawn_blocking(move || {
        match state.models.get(q.get("model").map(String::as_str)) {
            Ok((name, model)) => {
                let saliency = q
                    .get("saliency")
                    .is_some_and(|v| matches!(v.as_str(), "1" | "true" | "yes"));
                predict_reply(&model, &name, &body, saliency)
            }
            Err(reply) => reply,
        }
    });
    work.await
        .unwrap_or_else(|e| Reply::error(500, &format!("the prediction failed: {e}")))
}

async fn not_found(req: Request) -> Reply {
    Reply::error(404, &format!("no such path: {}", req.uri().path()))
}

async fn method_not_allowed(req: Request) -> Reply {
    Reply::error(
        405,
        &format!("{} is not allowed on {}", req.method(), req.uri().path()),
    )
}

/// Refuses what hyper lets through but the server should not: a `Host` it does not answer to
/// (403), a missing `Host` or more than one `Content-Length` (400; hyper folds equal repeats
/// into one, so [`HeadScan`] renames the repeats to [`REPEATED_LENGTH`] on the way in).
async fn guard(State(s): State<Arc<AppState>>, req: Request, next: Next) -> Response {
    let lengths = req.headers().get_all(header::CONTENT_LENGTH).iter().count();
    if lengths > 1 || req.headers().contains_key(REPEATED_LENGTH) {
        return Reply::error(400, "more than one Content-Length header").into_response();
    }
    let Some(host) = req
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
    else {
        return Reply::error(400, "no Host header").into_response();
    };
    if !s.hosts.contains(&host_name(host)) {
        return Reply::error(
            403,
            &format!(
                "this server answers to {} (start it with --allow-host {} to add this name)",
                s.hosts.join(", "),
                host_name(host)
            ),
        )
        .into_response();
    }
    next.run(req).await
}

/// The host part of a `Host` header, lower case: `localhost:8080` gives `localhost`,
/// `[::1]:8080` gives `[::1]`.
fn host_name(host: &str) -> String {
    let h = host.trim().to_ascii_lowercase();
    if h.starts_with('[') {
        return h.split(']').next().map_or(h.clone(), |v| format!("{v}]"));
    }
    h.rsplit_once(':')
        .filter(|(_, port)| port.chars().all(|c| c.is_ascii_digit()))
        .map_or(h.clone(), |(name, _)| name.to_string())
}

/// The name a repeated `Content-Length` header is renamed to (as long as the original).
const REPEATED_LENGTH: &str = "x-repeated-len";
const _: () = assert!(REPEATED_LENGTH.len() == "content-length".len());

/// A connection read through a scanner of its request heads: every `Content-Length` header
/// after the first of a head is renamed to [`REPEATED_LENGTH`], so that [`guard`] sees it.
/// Bodies (by their `Content-Length`) pass untouched; after a chunked body the scanner stops
/// looking (the API takes none).
struct HeadScan<S> {
    io: S,
    /// Bytes ready for hyper.
    ready: Vec<u8>,
    /// The head line being read.
    line: Vec<u8>,
    /// Bytes of the current body still to pass through.
    body_left: u64,
    /// A `Content-Length` seen in this head, and its value.
    length: Option<u64>,
    /// Stop scanning (a chunked body or a line beyond reason).
    opaque: bool,
}

impl<S> HeadScan<S> {
    fn new(io: S) -> Self {
        HeadScan {
            io,
            ready: Vec::new(),
            line: Vec::new(),
            body_left: 0,
            length: None,
            opaque: false,
        }
    }

    fn feed(&mut self, mut data: &[u8]) {
        while !data.is_empty() {
            if self.opaque {
                self.ready.extend_from_slice(data);
                return;
            }
            if self.body_left > 0 {
                let n = (self.body_left as usize).min(data.len());
                self.ready.extend_from_slice(&data[..n]);
                self.body_left -= n as u64;
                data = &data[n..];
                continue;
            }
            let Some(end) = data.iter().position(|&b| b == b'\n') else {
                self.line.extend_from_slice(data);
                if self.line.len() > 64 * 1024 {
                    // hyper refuses a head this long itself.
                    self.ready.append(&mut self.line);
                    self.opaque = true;
                }
                return;
            };
            self.line.extend_from_slice(&data[..=end]);
            data = &data[end + 1..];
            self.end_line();
        }
    }

    fn end_line(&mut self) {
        let text = String::from_utf8_lossy(&self.line).to_ascii_lowercase();
        let trimmed = text.trim_end_matches(['\r', '\n']);
        if trimmed.is_empty() {
            // The end of a head (or a stray empty line before one): the body follows.
            self.body_left = self.length.take().unwrap_or(0);
        } else if let Some(value) = trimmed.strip_prefix("content-length:") {
            if self.length.is_some() {
                self.line[..REPEATED_LENGTH.len()].copy_from_slice(REPEATED_LENGTH.as_bytes());
            } else {
                self.length = Some(value.trim().parse().unwrap_or(0));
            }
        } else if trimmed.starts_with("transfer-encoding:") {
            self.opaque = true;
        }
        self.ready.append(&mut self.line);
    }
}

impl<S: tokio::io::AsyncRead + Unpin> tokio::io::AsyncRead for HeadScan<S> {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        use std::task::Poll;
        let this = &mut *self;
        loop {
            if !this.ready.is_empty() {
                let n = this.ready.len().min(buf.remaining());
                buf.put_slice(&this.ready[..n]);
                this.ready.drain(..n);
                return Poll::Ready(Ok(()));
            }
            let mut chunk = [0u8; 8192];
            let mut rb = tokio::io::ReadBuf::new(&mut chunk);
            match std::pin::Pin::new(&mut this.io).poll_read(cx, &mut rb) {
                Poll::Ready(Ok(())) if rb.filled().is_empty() => {
                    // End of the stream: whatever is held back goes up as it is.
                    let rest = std::mem::take(&mut this.line);
                    buf.put_slice(&rest[..rest.len().min(buf.remaining())]);
                    return Poll::Ready(Ok(()));
                }
                Poll::Ready(Ok(())) => {
                    let filled = rb.filled().to_vec();
                    this.feed(&filled);
                }
                other => return other,
            }
        }
    }
}

impl<S: tokio::io::AsyncWrite + Unpin> tokio::io::AsyncWrite for HeadScan<S> {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        data: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.io).poll_write(cx, data)
    }
    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.io).poll_flush(cx)
    }
    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

fn router(state: Arc<AppState>, cfg: &ServeConfig) -> Router {
    use tower_http::timeout::{RequestBodyTimeoutLayer, TimeoutLayer};
    Router::new()
        .route("/", get(page))
        .route("/index.html", get(page))
        .route("/api/models", get(models))
        .route("/api/predict", post(predict))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .layer(RequestBodyTimeoutLayer::new(cfg.request_timeout))
        .layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            cfg.request_timeout,
        ))
        .layer(middleware::from_fn_with_state(state.clone(), guard))
        .with_state(state)
}

/// The server: a bound socket and the models it serves.
pub struct Server {
    listener: std::net::TcpListener,
    state: Arc<AppState>,
    addr: SocketAddr,
    cfg: ServeConfig,
}

impl Server {
    /// Binds the socket and lists the models (they load on first use).
    pub fn bind(cfg: &ServeConfig) -> Result<Self> {
        let listener = std::net::TcpListener::bind((cfg.host.as_str(), cfg.port)).map_err(|e| {
            Error::invalid(
                "serve",
                format!("cannot listen on {}:{}: {e}", cfg.host, cfg.port),
            )
        })?;
        listener
            .set_nonblocking(true)
            .map_err(|e| Error::invalid("serve", e.to_string()))?;
        let addr = listener
            .local_addr()
            .map_err(|e| Error::invalid("serve", e.to_string()))?;
        let mut hosts: Vec<String> = ["localhost", "127.0.0.1", "[::1]"]
            .iter()
            .map(|h| h.to_string())
            .collect();
        hosts.push(host_name(&match addr {
            SocketAddr::V4(a) => a.ip().to_string(),
            SocketAddr::V6(a) => format!("[{}]", a.ip()),
        }));
        hosts.extend(cfg.allow_hosts.iter().map(|h| host_name(h)));
        hosts.dedup();
        let state = Arc::new(AppState {
            models: Models::scan(cfg),
            running: tokio::sync::Semaphore::new(cfg.threads.max(1)),
            waiting: AtomicUsize::new(0),
            queue: cfg.queue,
            hosts,
        });
        Ok(Server {
            listener,
            state,
            addr,
            cfg: cfg.clone(),
        })
    }

    /// The address it listens on (the port the OS chose for port 0).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The names of the models it serves, and the default.
    pub fn models(&self) -> (Vec<String>, Option<String>) {
        (
            self.state.models.entries.keys().cloned().collect(),
            self.state.models.default.clone(),
        )
    }

    /// Serves on a background thread until [`ServerHandle::stop`].
    pub fn spawn(self) -> ServerHandle {
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let addr = self.addr;
        let thread = std::thread::spawn(move || self.serve(stopped));
        ServerHandle {
            addr,
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    /// Serves until the process ends.
    pub fn run(self) {
        let (_stop, stopped) = tokio::sync::oneshot::channel::<()>();
        self.serve(stopped);
    }

    fn serve(self, mut stopped: tokio::sync::oneshot::Receiver<()>) {
        let Ok(rt) = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_io()
            .enable_time()
            .build()
        else {
            eprintln!("serve: cannot start the async runtime");
            return;
        };
        let app = router(self.state.clone(), &self.cfg);
        let header_timeout = self.cfg.header_timeout;
        rt.block_on(async move {
            let Ok(listener) = tokio::net::TcpListener::from_std(self.listener) else {
                eprintln!("serve: cannot use the socket");
                return;
            };
            loop {
                let accepted = tokio::select! {
                    a = listener.accept() => a,
                    _ = &mut stopped => break,
                };
                let Ok((stream, _)) = accepted else { continue };
                // Answers go out at once, not after a delayed ACK.
                let _ = stream.set_nodelay(true);
                let app = app.clone();
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(
                        move |req: hyper::Request<hyper::body::Incoming>| {
                            app.clone().call(req.map(Body::new))
                        },
                    );
                    let _ = hyper::server::conn::http1::Builder::new()
                        .timer(hyper_util::rt::TokioTimer::new())
                        .header_read_timeout(header_timeout)
                        .max_buf_size(64 * 1024)
                        .serve_connection(
                            hyper_util::rt::TokioIo::new(HeadScan::new(stream)),
                            service,
                        )
                        .await;
                });
            }
        });
        rt.shutdown_background();
    }
}

/// A running server.
pub struct ServerHandle {
    addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl ServerHandle {
    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops accepting connections and waits for the server's thread.
    pub fn stop(mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeated_content_lengths_are_renamed_bodies_are_not() {
        let mut scan = HeadScan::new(());
        let body = b"Content-Length: 5\r\n";
        let head = format!(
            "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\ncontent-length: {}\r\n\r\n",
            body.len(),
            body.len()
        );
        // Fed in small pieces, as a slow client sends it; then a second request.
        let mut all = head.clone().into_bytes();
        all.extend_from_slice(body);
        all.extend_from_slice(b"GET / HTTP/1.1\r\nContent-Length: 0\r\n\r\n");
        for piece in all.chunks(7) {
            scan.feed(piece);
        }
        let out = String::from_utf8(scan.ready.clone()).unwrap();
        assert_eq!(out.matches("\r\nx-repeated-len: ").count(), 1, "{out}");
        assert!(
            out.contains("\r\n\r\nContent-Length: 5\r\n"),
            "the body is untouched: {out}"
        );
        assert!(
            out.ends_with("GET / HTTP/1.1\r\nContent-Length: 0\r\n\r\n"),
            "{out}"
        );
        assert_eq!(out.len(), all.len());
    }

    #[test]
    fn host_names_lose_their_port() {
        assert_eq!(host_name("localhost:8080"), "localhost");
        assert_eq!(host_name("LOCALHOST"), "localhost");
        assert_eq!(host_name("[::1]:8080"), "[::1]");
        assert_eq!(host_name("127.0.0.1:80"), "127.0.0.1");
        assert_eq!(host_name("evil.example:8080"), "evil.example");
    }
}

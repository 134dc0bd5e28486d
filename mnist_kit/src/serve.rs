//! `mnist-kit serve`: a local web page where a model reads your handwriting as you write, and
//! the JSON API behind it. The page (HTML, JS and CSS in one file) is embedded in the binary and
//! needs no network; the server binds to localhost unless told otherwise.
//!
//! API:
//! - `GET /api/models`: the runs the server can use (`results/models/best` and every finished
//!   run in `results/runs/`), and the default one.
//! - `POST /api/predict[?model=NAME]` with a PNG or JPEG body: `{"digit", "probabilities",
//!   "input", "saliency", "model"}`, after the same MNIST preprocessing as `mnist-kit predict`.
//! - Errors are JSON `{"error": ...}`: 400 for a body that is not an image, 413 for a body over
//!   [`MAX_BODY`] bytes, 404 for an unknown model or path, 405 for a wrong method.
//!
//! ```no_run
//! use mnist_kit::serve::{ServeConfig, Server};
//! let server = Server::bind(&ServeConfig::default())?;
//! println!("open http://{}", server.addr());
//! server.run(); // blocks
//! # Ok::<(), mnist_kit::Error>(())
//! ```

use std::collections::BTreeMap;
use std::io::Read;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use candle_core::Device;
use serde_json::{Value, json};
use tiny_http::{Header, Method, Request, Response};

use crate::analysis::{digit_from_bytes, digit_saliency};
use crate::data::Normalization;
use crate::models::Network;
use crate::models::network::WEIGHTS_FILE;
use crate::study::ExperimentResult;
use crate::study::run::RESULT_FILE;
use crate::train::load_run;
use crate::{Error, Result};

/// Largest request body accepted (2 MB); larger bodies get 413.
pub const MAX_BODY: usize = 2 * 1024 * 1024;

/// The page, embedded.
const PAGE: &str = include_str!("serve/index.html");

/// Where and what to serve.
#[derive(Debug, Clone)]
pub struct ServeConfig {
    /// Interface to bind (`127.0.0.1`: this machine only).
    pub host: String,
    /// Port (0: any free port).
    pub port: u16,
    /// A run directory to serve as the default model (else `results/models/best`).
    pub run: Option<PathBuf>,
    /// The study's output directory, whose `models/best` and `runs/` are listed.
    pub results: PathBuf,
    /// Threads answering requests.
    pub threads: usize,
}

impl Default for ServeConfig {
    fn default() -> Self {
        ServeConfig {
            host: "127.0.0.1".into(),
            port: 8080,
            run: None,
            results: PathBuf::from("results"),
            threads: 4,
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

/// The models, loaded on first use and shared by the request threads.
struct Models {
    entries: BTreeMap<String, Entry>,
    default: Option<String>,
    loaded: Mutex<BTreeMap<String, Arc<(Network, Normalization)>>>,
}

impl Models {
    fn scan(cfg: &ServeConfig) -> Self {
        let mut entries = BTreeMap::new();
        let mut default = None;
        let accuracy = |dir: &Path| -> Option<f64> {
            let text = std::fs::read_to_string(dir.join(RESULT_FILE)).ok()?;
            serde_json::from_str::<ExperimentResult>(&text)
                .ok()
                .map(|r| r.test_accuracy)
        };
        if let Some(run) = &cfg.run {
            let name = run
                .file_name()
                .map_or("run".to_string(), |n| n.to_string_lossy().into_owned());
            entries.insert(
                name.clone(),
                Entry {
                    dir: run.clone(),
                    test_accuracy: accuracy(run),
                },
            );
            default = Some(name);
        }
        let best = cfg.results.join("models").join("best");
        if best.join(WEIGHTS_FILE).exists() {
            entries.insert(
                "best".into(),
                Entry {
                    test_accuracy: accuracy(&best),
                    dir: best,
                },
            );
            default.get_or_insert_with(|| "best".to_string());
        }
        // Every finished run: runs/<experiment>/seed-<s>/ with weights and a result.
        if let Ok(exps) = std::fs::read_dir(cfg.results.join("runs")) {
            for exp in exps.flatten() {
                let Ok(seeds) = std::fs::read_dir(exp.path()) else {
                    continue;
                };
                for seed in seeds.flatten() {
                    let dir = seed.path();
                    if dir.join(RESULT_FILE).exists() && dir.join(WEIGHTS_FILE).exists() {
                        let name = format!(
                            "{}/{}",
                            exp.file_name().to_string_lossy(),
                            seed.file_name().to_string_lossy()
                        );
                        entries.insert(
                            name,
                            Entry {
                                test_accuracy: accuracy(&dir),
                                dir,
                            },
                        );
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

    fn get(
        &self,
        name: Option<&str>,
    ) -> std::result::Result<(String, Arc<(Network, Normalization)>), Reply> {
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
        let run = load_run(&entry.dir, &Device::Cpu)
            .map_err(|e| Reply::error(500, &format!("cannot load {name}: {e}")))?;
        let model = Arc::new((run.net, run.train.normalization));
        if let Ok(mut l) = self.loaded.lock() {
            l.insert(name.clone(), model.clone());
        }
        Ok((name, model))
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

/// The server: a bound socket and the models it serves.
pub struct Server {
    http: Arc<tiny_http::Server>,
    models: Arc<Models>,
    addr: SocketAddr,
    threads: usize,
}

impl Server {
    /// Binds the socket and lists the models (they load on first use).
    pub fn bind(cfg: &ServeConfig) -> Result<Self> {
        let http = tiny_http::Server::http((cfg.host.as_str(), cfg.port)).map_err(|e| {
            Error::invalid(
                "serve",
                format!("cannot listen on {}:{}: {e}", cfg.host, cfg.port),
            )
        })?;
        let addr = http
            .server_addr()
            .to_ip()
            .ok_or_else(|| Error::invalid("serve", "not an IP socket"))?;
        Ok(Server {
            http: Arc::new(http),
            models: Arc::new(Models::scan(cfg)),
            addr,
            threads: cfg.threads.max(1),
        })
    }

    /// The address it listens on (the port the OS chose for port 0).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The names of the models it serves, and the default.
    pub fn models(&self) -> (Vec<String>, Option<String>) {
        (
            self.models.entries.keys().cloned().collect(),
            self.models.default.clone(),
        )
    }

    /// Answers requests on `threads` threads until [`ServerHandle::stop`] (never, from
    /// [`Server::run`]).
    pub fn spawn(self) -> ServerHandle {
        let mut workers = Vec::new();
        for _ in 0..self.threads {
            let (http, models) = (self.http.clone(), self.models.clone());
            workers.push(std::thread::spawn(move || {
                while let Ok(req) = http.recv() {
                    respond(req, &models);
                }
            }));
        }
        ServerHandle {
            http: self.http,
            addr: self.addr,
            workers,
        }
    }

    /// Serves until the process ends.
    pub fn run(self) {
        let handle = self.spawn();
        for w in handle.workers {
            let _ = w.join();
        }
    }
}

/// A running server.
pub struct ServerHandle {
    http: Arc<tiny_http::Server>,
    addr: SocketAddr,
    workers: Vec<std::thread::JoinHandle<()>>,
}

impl ServerHandle {
    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops accepting requests and waits for the threads.
    pub fn stop(self) {
        // One unblock wakes one thread blocked in `recv`.
        for _ in &self.workers {
            self.http.unblock();
        }
        for w in self.workers {
            let _ = w.join();
        }
    }
}

fn header(name: &str, value: &str) -> Option<Header> {
    Header::from_bytes(name.as_bytes(), value.as_bytes()).ok()
}

fn respond(mut req: Request, models: &Models) {
    let url = req.url().to_string();
    let (path, query) = url.split_once('?').unwrap_or((url.as_str(), ""));
    let method = req.method().clone();
    let reply = match (&method, path) {
        (Method::Get, "/") | (Method::Get, "/index.html") => {
            let mut r = Response::from_string(PAGE);
            if let Some(h) = header("Content-Type", "text/html; charset=utf-8") {
                r = r.with_header(h);
            }
            let _ = req.respond(r);
            return;
        }
        (Method::Get, "/api/models") => Reply::ok(models_json(models)),
        (Method::Post, "/api/predict") => {
            let declared = req.body_length().unwrap_or(0);
            if declared > MAX_BODY {
                Reply::error(
                    413,
                    &format!("body of {declared} bytes; at most {MAX_BODY}"),
                )
            } else {
                let mut body = Vec::new();
                let read = req
                    .as_reader()
                    .take(MAX_BODY as u64 + 1)
                    .read_to_end(&mut body);
                match read {
                    Err(e) => Reply::error(400, &format!("cannot read the body: {e}")),
                    Ok(_) if body.len() > MAX_BODY => {
                        Reply::error(413, &format!("body over {MAX_BODY} bytes"))
                    }
                    Ok(_) => predict(models, query_param(query, "model").as_deref(), &body),
                }
            }
        }
        (_, "/" | "/index.html" | "/api/models" | "/api/predict") => {
            Reply::error(405, &format!("{method} is not allowed on {path}"))
        }
        _ => Reply::error(404, &format!("no such path: {path}")),
    };
    let mut r = Response::from_string(reply.body.to_string()).with_status_code(reply.status);
    if let Some(h) = header("Content-Type", "application/json") {
        r = r.with_header(h);
    }
    let _ = req.respond(r);
}

fn models_json(models: &Models) -> Value {
    json!({
        "default": models.default,
        "models": models.entries.iter().map(|(name, e)| json!({
            "name": name,
            "test_accuracy": e.test_accuracy,
        })).collect::<Vec<_>>(),
    })
}

/// The answer to one predict request (what `POST /api/predict` returns).
pub fn predict_reply(
    net: &Network,
    normalization: Normalization,
    model: &str,
    body: &[u8],
) -> Reply {
    let digit = match digit_from_bytes(body, "request body") {
        Ok(d) => d,
        Err(e) => return Reply::error(400, &e.to_string()),
    };
    match digit_saliency(net, &digit, normalization) {
        Ok((probs, saliency)) => {
            let best = crate::analysis::most_likely(&probs);
            Reply::ok(json!({
                "digit": best,
                "probabilities": probs,
                "input": digit.pixels,
                "saliency": saliency,
                "model": model,
            }))
        }
        Err(e) => Reply::error(500, &e.to_string()),
    }
}

fn predict(models: &Models, name: Option<&str>, body: &[u8]) -> Reply {
    match models.get(name) {
        Ok((name, model)) => predict_reply(&model.0, model.1, &name, body),
        Err(reply) => reply,
    }
}

/// The value of `key` in a query string, percent-decoded.
fn query_param(query: &str, key: &str) -> Option<String> {
    query.split('&').find_map(|kv| {
        let (k, v) = kv.split_once('=')?;
        (k == key).then(|| percent_decode(v))
    })
}

fn percent_decode(s: &str) -> String {
    let hex = |b: u8| (b as char).to_digit(16).map(|d| d as u8);
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match (
            bytes[i],
            bytes.get(i + 1).and_then(|&b| hex(b)),
            bytes.get(i + 2).and_then(|&b| hex(b)),
        ) {
            (b'%', Some(hi), Some(lo)) => {
                out.push(hi * 16 + lo);
                i += 3;
            }
            (b'+', _, _) => {
                out.push(b' ');
                i += 1;
            }
            (b, _, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_parameters_are_decoded() {
        assert_eq!(
            query_param("a=1&model=lenet5%2Fseed-42", "model").as_deref(),
            Some("lenet5/seed-42")
        );
        assert_eq!(query_param("model=best", "model").as_deref(), Some("best"));
        assert_eq!(query_param("x=1", "model"), None);
        assert_eq!(percent_decode("100%"), "100%");
        assert_eq!(percent_decode("%zz"), "%zz");
    }
}

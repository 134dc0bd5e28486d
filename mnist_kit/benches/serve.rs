//! Latency of `mnist-kit serve` under load: 1,000 predict requests from 16 concurrent clients
//! on loopback, with a LeNet-5 trained for one epoch (every answer with its saliency map),
//! once with a new connection per request and once with keep-alive connections (as a browser
//! keeps one). Prints p50/p90/p99/max latency, throughput and errors for each.
//!
//! `cargo bench --bench serve` (a benchmark, not a test: timings depend on the machine).

#[path = "../tests/support/mod.rs"]
mod support;

use std::time::Instant;

use mnist_kit::data::Mnist;
use mnist_kit::serve::{ServeConfig, Server};

const REQUESTS: usize = 1000;
const CLIENTS: usize = 16;

fn main() -> mnist_kit::Result<()> {
    let mnist = Mnist::load_default()?;
    let dir = std::env::temp_dir().join(format!("mnist_kit-serve-bench-{}", std::process::id()));
    support::trained_lenet(&mnist, &dir)?;
    let handle = Server::bind(&ServeConfig {
        port: 0,
        run: Some(dir.clone()),
        results: dir.join("none"),
        ..Default::default()
    })?
    .spawn();
    let addr = handle.addr();
    // PNGs of real test digits, as a browser would send them.
    let bodies: Vec<Vec<u8>> = (0..32).map(|i| support::png(&mnist, i)).collect();
    let post = |body: &[u8]| support::request(addr, "POST", "/api/predict", body).map(|r| r.0);
    let _ = post(&bodies[0]); // load the model
    for keep_alive in [false, true] {
        let started = Instant::now();
        let per = REQUESTS / CLIENTS;
        let results: Vec<(f64, bool)> = std::thread::scope(|s| {
            let workers: Vec<_> = (0..CLIENTS)
                .map(|c| {
                    let (bodies, post) = (&bodies, &post);
                    s.spawn(move || {
                        let n = per + usize::from(c < REQUESTS % CLIENTS);
                        let mut conn = keep_alive
                            .then(|| support::KeepAlive::connect(addr).ok())
                            .flatten();
                        (0..n)
                            .map(|k| {
                                let body = &bodies[(c + k) % bodies.len()];
                                let t = Instant::now();
                                let status = match conn.as_mut() {
                                    Some(conn) => conn.post("/api/predict", body),
                                    None => post(body),
                                };
                                (
                                    t.elapsed().as_secs_f64() * 1e3,
                                    status.is_ok_and(|s| s == 200),
                                )
                            })
                            .collect::<Vec<_>>()
                    })
                })
                .collect();
            workers
                .into_iter()
                .flat_map(|w| w.join().unwrap_or_default())
                .collect()
        });
        let wall = started.elapsed().as_secs_f64();
        let mut ms: Vec<f64> = results.iter().map(|r| r.0).collect();
        ms.sort_by(|a, b| a.total_cmp(b));
        let q = |p: f64| ms[((ms.len() as f64 * p).ceil() as usize).clamp(1, ms.len()) - 1];
        let errors = results.iter().filter(|r| !r.1).count();
        println!(
            "{} requests, {CLIENTS} clients ({}), {} ({} CPUs, {} kernels): p50 {:.1} ms, p90 \
             {:.1} ms, p99 {:.1} ms, max {:.1} ms, {:.0} requests/s, {errors} errors",
            results.len(),
            if keep_alive {
                "keep-alive"
            } else {
                "a connection per request"
            },
            mnist_kit::bench::cpu_name(),
            std::thread::available_parallelism().map_or(1, |n| n.get()),
            mnist_kit::ops::simd::active().name(),
            q(0.5),
            q(0.9),
            q(0.99),
            ms.last().copied().unwrap_or(0.0),
            results.len() as f64 / wall
        );
    }
    handle.stop();
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

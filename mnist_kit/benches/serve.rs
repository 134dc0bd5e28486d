//! Latency of `mnist-kit serve` under load, on loopback: predict requests of real test digits
//! drawn on the page's 280x280 pad (PNG) against the served default (`results/models/robust` with its calibration when the
//! study's models are there, else a LeNet-5 trained here for one epoch), as
//! - 4 clients over keep-alive connections (as a few open pages keep one each), plain answers;
//! - the same, each answer with its SmoothGrad saliency map (`?saliency=1`, what the page asks
//!   for when "show where it looked" is on);
//! - 16 clients over keep-alive, and 16 with a new connection per request, plain answers.
//!
//! Prints p50/p90/p99/max latency, throughput and errors for each, as text and as a `JSON`
//! line (`benches/compare.py serve` records those).
//!
//! `cargo bench --bench serve` (a benchmark, not a test: timings depend on the machine).

#[path = "../tests/support/mod.rs"]
mod support;

use std::path::PathBuf;
use std::time::Instant;

use mnist_kit::data::Mnist;
use mnist_kit::serve::{ServeConfig, Server};

const REQUESTS: usize = 1000;

/// Test digit `i` drawn on a 280x280 pad (each pixel a 10x10 block, smoothed as a brush
/// stroke would be), as a PNG.
fn pad_png(mnist: &Mnist, i: usize) -> Vec<u8> {
    let pixels = mnist
        .test
        .image(i)
        .map(<[u8]>::to_vec)
        .unwrap_or(vec![0; 784]);
    let small = image::GrayImage::from_raw(28, 28, pixels).unwrap_or_default();
    support::encode_png(image::imageops::resize(
        &small,
        280,
        280,
        image::imageops::FilterType::Triangle,
    ))
}

fn main() -> mnist_kit::Result<()> {
    let mnist = Mnist::load_default()?;
    let scratch =
        std::env::temp_dir().join(format!("mnist_kit-serve-bench-{}", std::process::id()));
    let robust = PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../results/models/robust"
    ));
    let run = if robust.join("weights.safetensors").exists() {
        robust
    } else {
        support::trained_lenet(&mnist, &scratch)?;
        scratch.clone()
    };
    let handle = Server::bind(&ServeConfig {
        port: 0,
        run: Some(run.clone()),
        results: scratch.join("none"),
        ..Default::default()
    })?
    .spawn();
    let addr = handle.addr();
    println!(
        "model {} on {} ({} CPUs, {} kernels)",
        run.display(),
        mnist_kit::bench::cpu_name(),
        std::thread::available_parallelism().map_or(1, |n| n.get()),
        mnist_kit::ops::simd::active().name(),
    );
    // Real test digits as the page sends them: its 280x280 pad, white ink on black, as PNG.
    let bodies: Vec<Vec<u8>> = (0..32).map(|i| pad_png(&mnist, i)).collect();
    let post = |path: &str, body: &[u8]| support::request(addr, "POST", path, body).map(|r| r.0);
    let _ = post("/api/predict", &bodies[0]); // load the model
    for (clients, keep_alive, path) in [
        (4, true, "/api/predict"),
        (4, true, "/api/predict?saliency=1"),
        (16, true, "/api/predict"),
        (16, false, "/api/predict"),
    ] {
        let started = Instant::now();
        let per = REQUESTS / clients;
        let results: Vec<(f64, bool)> = std::thread::scope(|s| {
            let workers: Vec<_> = (0..clients)
                .map(|c| {
                    let (bodies, post) = (&bodies, &post);
                    s.spawn(move || {
                        let n = per + usize::from(c < REQUESTS % clients);
                        let mut conn = keep_alive
                            .then(|| support::KeepAlive::connect(addr).ok())
                            .flatten();
                        (0..n)
                            .map(|k| {
                                let body = &bodies[(c + k) % bodies.len()];
                                let t = Instant::now();
                                let status = match conn.as_mut() {
                                    Some(conn) => conn.post(path, body),
                                    None => post(path, body),
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
            "{} requests {path}, {clients} clients ({}): p50 {:.1} ms, p90 {:.1} ms, p99 {:.1} \
             ms, max {:.1} ms, {:.0} requests/s, {errors} errors",
            results.len(),
            if keep_alive {
                "keep-alive"
            } else {
                "a connection per request"
            },
            q(0.5),
            q(0.9),
            q(0.99),
            ms.last().copied().unwrap_or(0.0),
            results.len() as f64 / wall
        );
        // The same as one JSON line, for `benches/compare.py serve`.
        println!(
            "JSON {}",
            serde_json::json!({
                "model": run.display().to_string(),
                "path": path,
                "clients": clients,
                "keep_alive": keep_alive,
                "requests": results.len(),
                "p50_ms": q(0.5),
                "p90_ms": q(0.9),
                "p99_ms": q(0.99),
                "max_ms": ms.last().copied().unwrap_or(0.0),
                "requests_per_sec": results.len() as f64 / wall,
                "errors": errors,
            })
        );
    }
    handle.stop();
    let _ = std::fs::remove_dir_all(&scratch);
    Ok(())
}

//! `mnist-kit serve` against a server on an ephemeral loopback port: real MNIST digits, rendered
//! to PNG by the test, get their class; every bad input gets its status; concurrent requests
//! agree.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};

use mnist_kit::candle::Device;
use mnist_kit::data::Mnist;
use mnist_kit::models::Network;
use mnist_kit::serve::{ServeConfig, Server};
use mnist_kit::train::{TrainConfig, TrainData, Trainer};

/// One HTTP/1.1 request; the status and the body.
fn http(addr: SocketAddr, method: &str, path: &str, body: &[u8]) -> (u16, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: localhost\r\nContent-Type: image/png\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes()).unwrap();
    // The server may answer (413) and close before reading a large body: not an error here.
    let _ = s.write_all(body);
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    let text = String::from_utf8_lossy(&out).into_owned();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map_or("", |(_, b)| b)
        .to_string();
    (status, body)
}

fn json(body: &str) -> serde_json::Value {
    serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {body}"))
}

/// A test image of `mnist` as a PNG, the way a user's file would arrive.
fn png(mnist: &Mnist, i: usize) -> Vec<u8> {
    let img = image::GrayImage::from_raw(28, 28, mnist.test.image(i).unwrap().to_vec()).unwrap();
    let mut out = Vec::new();
    image::DynamicImage::ImageLuma8(img)
        .write_to(&mut std::io::Cursor::new(&mut out), image::ImageFormat::Png)
        .unwrap();
    out
}

/// A LeNet-5 trained for one epoch on 12,000 images (about 97 % accurate), in a run directory.
fn trained_run(mnist: &Mnist, dir: &std::path::Path) {
    let cfg = TrainConfig {
        epochs: 1,
        train_limit: Some(12_000),
        validation: 500,
        verbose: false,
        ..Default::default()
    };
    let net = Network::preset("lenet5", 3, &Device::Cpu).unwrap();
    Trainer::new(&net, cfg.clone())
        .unwrap()
        .with_run_dir(dir)
        .unwrap()
        .fit(&TrainData::new(mnist, &cfg).unwrap())
        .unwrap();
}

#[test]
fn the_api_reads_digits_and_refuses_bad_input() {
    let mnist = Mnist::load_default().unwrap();
    let root = tempfile::tempdir().unwrap();
    let run = root.path().join("my-lenet");
    trained_run(&mnist, &run);
    let server = Server::bind(&ServeConfig {
        port: 0,
        run: Some(run),
        results: root.path().join("no-results"),
        ..Default::default()
    })
    .unwrap();
    let handle = server.spawn();
    let addr = handle.addr();
    assert!(addr.ip().is_loopback(), "localhost by default");

    let (status, body) = http(addr, "GET", "/api/models", b"");
    assert_eq!(status, 200, "{body}");
    let models = json(&body);
    assert_eq!(models["default"], "my-lenet");
    assert_eq!(models["models"][0]["name"], "my-lenet");

    let (status, page) = http(addr, "GET", "/", b"");
    assert_eq!(status, 200);
    assert!(page.contains("<canvas id=\"pad\"") && page.contains("/api/predict"));

    // Real test digits, rendered to PNG here, get their class.
    let picks = [0usize, 1, 2, 3, 4, 5, 6, 7];
    let mut right = 0;
    for &i in &picks {
        let (status, body) = http(addr, "POST", "/api/predict", &png(&mnist, i));
        assert_eq!(status, 200, "{body}");
        let out = json(&body);
        let probs: Vec<f64> = out["probabilities"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap())
            .collect();
        assert_eq!(probs.len(), 10);
        assert!((probs.iter().sum::<f64>() - 1.0).abs() < 1e-4);
        let input = out["input"].as_array().unwrap();
        let saliency = out["saliency"].as_array().unwrap();
        assert_eq!((input.len(), saliency.len()), (784, 784));
        assert!(
            input
                .iter()
                .all(|v| (0.0..=1.0).contains(&v.as_f64().unwrap()))
        );
        assert_eq!(out["model"], "my-lenet");
        let digit = out["digit"].as_u64().unwrap();
        let best = probs
            .iter()
            .enumerate()
            .max_by(|a, b| a.1.total_cmp(b.1))
            .unwrap()
            .0;
        assert_eq!(digit as usize, best);
        right += usize::from(digit == u64::from(mnist.test.label(i).unwrap()));
    }
    assert!(right >= picks.len() - 1, "{right} of {} right", picks.len());

    // Bad input: not an image, too large, an unknown model, a wrong method or path.
    let (status, body) = http(addr, "POST", "/api/predict", b"hello, not a picture");
    assert_eq!(status, 400, "{body}");
    assert!(
        json(&body)["error"]
            .as_str()
            .unwrap()
            .contains("not a recognized image")
    );
    let (status, body) = http(addr, "POST", "/api/predict", &vec![0u8; 3 * 1024 * 1024]);
    assert_eq!(status, 413, "{body}");
    let (status, body) = http(addr, "POST", "/api/predict?model=nope", &png(&mnist, 0));
    assert_eq!(status, 404, "{body}");
    assert!(json(&body)["error"].as_str().unwrap().contains("nope"));
    assert_eq!(http(addr, "GET", "/api/predict", b"").0, 405);
    assert_eq!(http(addr, "GET", "/nothing", b"").0, 404);
    let (status, body) = http(addr, "POST", "/api/predict", b"");
    assert_eq!(status, 400, "an empty body: {body}");

    // Concurrent clients get the same answers as one client.
    let one = json(&http(addr, "POST", "/api/predict", &png(&mnist, 9)).1);
    let answers: Vec<serde_json::Value> = std::thread::scope(|s| {
        let workers: Vec<_> = (0..8)
            .map(|_| {
                s.spawn(|| {
                    (0..4)
                        .map(|_| json(&http(addr, "POST", "/api/predict", &png(&mnist, 9)).1))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        workers
            .into_iter()
            .flat_map(|w| w.join().unwrap())
            .collect()
    });
    assert_eq!(answers.len(), 32);
    assert!(answers.iter().all(|a| a == &one));
    handle.stop();
}

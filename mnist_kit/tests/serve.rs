//! `mnist-kit serve` against a server on an ephemeral loopback port: real MNIST digits, rendered
//! to PNG by the test, get their class; every bad input gets its status; concurrent requests
//! agree.

mod support;

use mnist_kit::data::Mnist;
use mnist_kit::serve::{ServeConfig, Server};
use support::{png, trained_lenet};

fn http(addr: std::net::SocketAddr, method: &str, path: &str, body: &[u8]) -> (u16, String) {
    support::request(addr, method, path, body).unwrap()
}

fn json(body: &str) -> serde_json::Value {
    serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {body}"))
}

#[test]
fn the_api_reads_digits_and_refuses_bad_input() {
    let mnist = Mnist::load_default().unwrap();
    let root = tempfile::tempdir().unwrap();
    let run = root.path().join("my-lenet");
    trained_lenet(&mnist, &run).unwrap();
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

//! `mnist-kit serve` against a server on an ephemeral loopback port: real MNIST digits, rendered
//! to PNG by the test, get their class; every bad input gets its status; concurrent requests
//! agree.

mod support;

use mnist_kit::data::Mnist;
use mnist_kit::serve::{ServeConfig, Server};
use support::{png, trained_lenet};

/// A 280x280 black pad with nothing drawn on it.
fn blank_png() -> Vec<u8> {
    support::encode_png(image::GrayImage::new(280, 280))
}

/// Seeded noise over a 280x280 pad: ink everywhere, nothing like a digit.
fn noise_png() -> Vec<u8> {
    let mut state = 12345u32;
    support::encode_png(image::GrayImage::from_fn(280, 280, |_, _| {
        state = state.wrapping_mul(1664525).wrapping_add(1013904223);
        image::Luma([(state >> 24) as u8])
    }))
}

#[test]
fn a_calibrated_model_abstains_on_noise_and_answers_digits() {
    use mnist_kit::analysis::Calibration;
    use mnist_kit::train::Run;
    let mnist = Mnist::load_default().unwrap();
    let root = tempfile::tempdir().unwrap();
    let run = root.path().join("calibrated");
    trained_lenet(&mnist, &run).unwrap();
    let loaded = Run::open(&run).unwrap();
    let (_, val) = mnist.train.split_validation(2000, 7).unwrap();
    let cal = Calibration::fit(&loaded.net, &val, &mnist.train, 0.01).unwrap();
    // The floor leaves about the asked share of validation digits under it.
    assert!(cal.fit.abstain_rate <= 0.011, "{:?}", cal.fit);
    assert!(cal.temperature > 0.2 && cal.temperature < 5.0, "{cal:?}");
    assert!(cal.fit.nll.1 <= cal.fit.nll.0 + 1e-9, "{:?}", cal.fit);
    cal.save(&run).unwrap();
    assert_eq!(Calibration::load(&run).unwrap(), Some(cal));

    let handle = Server::bind(&ServeConfig {
        port: 0,
        run: Some(run),
        results: root.path().join("no-results"),
        ..Default::default()
    })
    .unwrap()
    .spawn();
    let addr = handle.addr();
    let (status, body) = http(addr, "POST", "/api/predict", &noise_png());
    assert_eq!(status, 200, "{body}");
    let out = json(&body);
    assert_eq!(out["abstain"], true, "{body}");
    assert!(
        out["reason"].as_str().unwrap().starts_with("not a digit"),
        "{body}"
    );
    assert_eq!(out["probabilities"].as_array().unwrap().len(), 10);
    assert!(out["digit"].is_u64() && out["runner_up"].is_u64(), "{body}");
    // Clear test digits are answered.
    let answered = (0..20)
        .filter(|&i| {
            json(&http(addr, "POST", "/api/predict", &png(&mnist, i)).1)["abstain"] == false
        })
        .count();
    assert!(answered >= 18, "{answered} of 20 test digits answered");
    handle.stop();
}

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
        let (status, body) = http(addr, "POST", "/api/predict?saliency=1", &png(&mnist, i));
        assert_eq!(status, 200, "{body}");
        let out = json(&body);
        assert_eq!(out["abstain"], false, "{body}");
        assert!(out["confidence"].as_f64().unwrap() > 0.1);
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
    // Saliency only when asked for.
    let out = json(&http(addr, "POST", "/api/predict", &png(&mnist, 0)).1);
    assert!(out.get("saliency").is_none(), "{out}");
    // A blank image is an answer, not an error: "not sure", with the reason.
    let (status, body) = http(addr, "POST", "/api/predict", &blank_png());
    assert_eq!(status, 200, "{body}");
    let out = json(&body);
    assert_eq!(out["abstain"], true, "{body}");
    assert!(out["digit"].is_null(), "{body}");
    assert!(
        out["reason"].as_str().unwrap().starts_with("blank"),
        "{body}"
    );

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

/// A small PNG that declares `w x h` pixels: a decompression bomb.
fn png_header_only(w: u32, h: u32) -> Vec<u8> {
    let mut out = b"\x89PNG\r\n\x1a\n".to_vec();
    let mut chunk = |kind: &[u8], data: &[u8]| {
        out.extend((data.len() as u32).to_be_bytes());
        let mut crc = flate2::Crc::new();
        crc.update(kind);
        crc.update(data);
        out.extend(kind);
        out.extend(data);
        out.extend(crc.sum().to_be_bytes());
    };
    let mut ihdr = Vec::new();
    ihdr.extend(w.to_be_bytes());
    ihdr.extend(h.to_be_bytes());
    ihdr.extend([1, 0, 0, 0, 0]); // 1-bit greyscale
    chunk(b"IHDR", &ihdr);
    // The start of the image data: a few kilobytes of zeros that would inflate forever.
    let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::best());
    std::io::Write::write_all(&mut z, &vec![0u8; 1 << 20]).unwrap();
    chunk(b"IDAT", &z.finish().unwrap());
    chunk(b"IEND", &[]);
    out
}

/// Sends `head` (request line and headers, as written) and `body`, returns the status.
fn raw(addr: std::net::SocketAddr, head: &str, body: &[u8]) -> u16 {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(std::time::Duration::from_secs(20)))
        .unwrap();
    s.write_all(head.as_bytes()).unwrap();
    let _ = s.write_all(body);
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    String::from_utf8_lossy(&out)
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0)
}

#[test]
fn hostile_clients_get_nothing_and_block_nothing() {
    use std::io::Write;
    let mnist = Mnist::load_default().unwrap();
    let root = tempfile::tempdir().unwrap();
    let run = root.path().join("lenet");
    trained_lenet(&mnist, &run).unwrap();
    let handle = Server::bind(&ServeConfig {
        port: 0,
        run: Some(run),
        results: root.path().join("no-results"),
        header_timeout: std::time::Duration::from_secs(2),
        request_timeout: std::time::Duration::from_secs(3),
        ..Default::default()
    })
    .unwrap()
    .spawn();
    let addr = handle.addr();

    // 32 slow clients (half a request line) and 32 that promise a body they never send.
    let mut hostile = Vec::new();
    for i in 0..64 {
        let mut s = std::net::TcpStream::connect(addr).unwrap();
        if i % 2 == 0 {
            s.write_all(b"POST /api/predict HTTP/1.1\r\nHost: local")
                .unwrap();
        } else {
            s.write_all(
                b"POST /api/predict HTTP/1.1\r\nHost: localhost\r\nContent-Length: 100000\r\n\r\n0123456789",
            )
            .unwrap();
        }
        hostile.push(s);
    }
    // A normal client is answered meanwhile (a liveness bound, not a speed measurement).
    let t = std::time::Instant::now();
    let (status, _) = http(addr, "GET", "/api/models", b"");
    assert_eq!(status, 200);
    let (status, body) = http(addr, "POST", "/api/predict", &png(&mnist, 0));
    assert_eq!(status, 200, "{body}");
    assert!(t.elapsed().as_secs_f64() < 1.0, "{:?}", t.elapsed());
    drop(hostile);

    // Images measured before they are decoded: a decompression bomb's header and a
    // 36-megapixel PNG are refused with 413.
    let (status, body) = http(
        addr,
        "POST",
        "/api/predict",
        &png_header_only(20_000, 20_000),
    );
    assert_eq!(status, 413, "{body}");
    let big = image::GrayImage::new(6000, 6000);
    let mut bytes = Vec::new();
    image::DynamicImage::ImageLuma8(big)
        .write_to(
            &mut std::io::Cursor::new(&mut bytes),
            image::ImageFormat::Png,
        )
        .unwrap();
    assert!(bytes.len() < 2 * 1024 * 1024);
    let (status, body) = http(addr, "POST", "/api/predict", &bytes);
    assert_eq!(status, 413, "{body}");

    // Lax HTTP is refused: two Content-Length headers, a nonsense one, a foreign Host.
    let png0 = png(&mnist, 0);
    let n = png0.len();
    assert_eq!(
        raw(
            addr,
            &format!(
                "POST /api/predict HTTP/1.1\r\nHost: localhost\r\nContent-Length: {n}\r\n\
                 Content-Length: {n}\r\nConnection: close\r\n\r\n"
            ),
            &png0
        ),
        400
    );
    for bad in ["-1", "99999999999999999999"] {
        assert_eq!(
            raw(
                addr,
                &format!(
                    "POST /api/predict HTTP/1.1\r\nHost: localhost\r\nContent-Length: {bad}\r\n\
                     Connection: close\r\n\r\n"
                ),
                b""
            ),
            400,
            "Content-Length {bad}"
        );
    }
    assert_eq!(
        raw(
            addr,
            "GET /api/models HTTP/1.1\r\nHost: rebound.example:8080\r\nConnection: close\r\n\r\n",
            b""
        ),
        403
    );
    // A client that stops in the middle of its headers is dropped after the header timeout
    // (408, or the connection closed).
    let code = raw(addr, "GET /api/models HTTP/1.1\r\nHost: localh", b"");
    assert!(matches!(code, 0 | 408), "{code}");
    handle.stop();
}

//! What the tests and benchmarks share: a minimal HTTP/1.1 client, real test digits as PNG
//! files and a quickly trained LeNet-5 run (server test and benchmark), and the kernels' bit
//! patterns and random inputs ([`bits`]). (`mod support;` in tests, a `#[path]` module in the
//! benchmark.)

#![allow(dead_code)]

pub mod bits;
pub mod markdown;
pub mod shapes;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};

use mnist_kit::candle::Device;
use mnist_kit::data::Mnist;
use mnist_kit::models::Network;
use mnist_kit::train::{TrainConfig, Trainer};

/// Every `.rs` file under `dir`, recursively (the tests that read the crate's own sources).
pub fn rust_files(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                todo.push(p);
            } else if p.extension().is_some_and(|x| x == "rs") {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

/// A grayscale image as PNG bytes.
pub fn encode_png(img: image::GrayImage) -> Vec<u8> {
    let mut out = Vec::new();
    let _ = image::DynamicImage::ImageLuma8(img)
        .write_to(&mut std::io::Cursor::new(&mut out), image::ImageFormat::Png);
    out
}

/// One request with `Connection: close`; the status and the body. A server that answers (413)
/// and closes before reading a large body is not an error here.
pub fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: &[u8],
) -> std::io::Result<(u16, String)> {
    let mut s = TcpStream::connect(addr)?;
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: localhost\r\nContent-Type: image/png\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes())?;
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
    Ok((status, body))
}

/// A client that keeps its connection open between requests (HTTP/1.1 keep-alive), as a
/// browser does.
pub struct KeepAlive {
    stream: std::io::BufReader<TcpStream>,
}

impl KeepAlive {
    /// Connects to `addr`.
    pub fn connect(addr: SocketAddr) -> std::io::Result<Self> {
        let s = TcpStream::connect(addr)?;
        s.set_nodelay(true)?;
        Ok(KeepAlive {
            stream: std::io::BufReader::new(s),
        })
    }

    /// One POST on the open connection; the status.
    pub fn post(&mut self, path: &str, body: &[u8]) -> std::io::Result<u16> {
        use std::io::BufRead;
        let head = format!(
            "POST {path} HTTP/1.1\r\nHost: localhost\r\nContent-Type: image/png\r\n\
             Content-Length: {}\r\n\r\n",
            body.len()
        );
        let mut msg = head.into_bytes();
        msg.extend_from_slice(body);
        self.stream.get_mut().write_all(&msg)?;
        let mut line = String::new();
        self.stream.read_line(&mut line)?;
        let status = line
            .split_whitespace()
            .nth(1)
            .and_then(|c| c.parse().ok())
            .unwrap_or(0);
        let mut length = 0usize;
        loop {
            line.clear();
            self.stream.read_line(&mut line)?;
            let l = line.trim_end();
            if l.is_empty() {
                break;
            }
            if let Some((k, v)) = l.split_once(':')
                && k.eq_ignore_ascii_case("content-length")
            {
                length = v.trim().parse().unwrap_or(0);
            }
        }
        let mut rest = vec![0u8; length];
        self.stream.read_exact(&mut rest)?;
        Ok(status)
    }
}

/// Test image `i` as a PNG file's bytes, the way a user's file would arrive.
pub fn png(mnist: &Mnist, i: usize) -> Vec<u8> {
    let pixels = mnist
        .test
        .image(i)
        .map(<[u8]>::to_vec)
        .unwrap_or(vec![0; 784]);
    encode_png(image::GrayImage::from_raw(28, 28, pixels).unwrap_or_default())
}

/// A LeNet-5 trained for one epoch on 12,000 images (about 97 % accurate), in run directory
/// `dir`.
pub fn trained_lenet(mnist: &Mnist, dir: &std::path::Path) -> mnist_kit::Result<()> {
    let cfg = TrainConfig {
        epochs: 1,
        train_limit: Some(12_000),
        validation: 500,
        verbose: false,
        ..Default::default()
    };
    let mut net = Network::preset("lenet5", 3, &Device::Cpu)?;
    Trainer::new(cfg).run_dir(dir).fit(&mut net, mnist)?;
    Ok(())
}

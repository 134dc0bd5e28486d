//! Kernel and training-step timings (median of repeated runs): the kit's GEMM against the
//! `gemm` crate (candle's) on the zoo's products, one thread; the fast convolution path
//! against candle's ops; whole training steps.
//! `cargo bench --bench kernels` (set RAYON_NUM_THREADS to fix the thread count).

#[path = "../tests/support/shapes.rs"]
mod shapes;

use std::time::Instant;

use candle_core::{Device, Tensor, Var};
use mnist_kit::data::{BatchOptions, Mnist};
use mnist_kit::models::{Model, Network};
use mnist_kit::ops;

fn median_ms(mut f: impl FnMut(), reps: usize) -> f64 {
    f();
    let mut times: Vec<f64> = (0..reps)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed().as_secs_f64() * 1e3
        })
        .collect();
    times.sort_by(|a, b| a.total_cmp(b));
    times[reps / 2]
}

/// GFLOP/s of `f` computing an `m x n x k` product.
fn gflops(c: &shapes::Case, f: impl FnMut()) -> f64 {
    let reps = (200_000_000 / (c.m * c.n * c.k).max(1)).clamp(5, 20001);
    2.0 * (c.m * c.n * c.k) as f64 / median_ms(f, reps) / 1e6
}

/// The kit's GEMM and the `gemm` crate on every product of the zoo, one thread each.
fn gemm_table(only: Option<&str>) -> mnist_kit::Result<()> {
    println!(
        "{:<26} {:>5} {:>5} {:>5}   kit GFLOP/s   gemm GFLOP/s   kit/gemm  ({}, {})",
        "product",
        "m",
        "n",
        "k",
        mnist_kit::bench::cpu_name(),
        mnist_kit::ops::simd::active().name()
    );
    let mut ratios = Vec::new();
    for c in shapes::ZOO {
        if only.is_some_and(|o| !c.name.contains(o)) {
            continue;
        }
        let a: Vec<f32> = (0..c.m * c.k)
            .map(|i| (i % 13) as f32 * 0.1 - 0.6)
            .collect();
        let b: Vec<f32> = (0..c.k * c.n).map(|i| (i % 7) as f32 * 0.1 - 0.3).collect();
        let (av, bv) = (c.a.view(&a, c.m, c.k), c.b.view(&b, c.k, c.n));
        let mut out = vec![0f32; c.m * c.n];
        let kit = gflops(c, || {
            mnist_kit::ops::gemm::matmul(&mut out, c.m, c.n, c.k, av, bv).unwrap();
        });
        let theirs = gflops(c, || {
            // SAFETY: the views cover (m x k) and (k x n); `out` holds m x n floats.
            unsafe {
                gemm::gemm(
                    c.m,
                    c.n,
                    c.k,
                    out.as_mut_ptr(),
                    1,
                    c.n as isize,
                    false,
                    av.data.as_ptr(),
                    av.cs as isize,
                    av.rs as isize,
                    bv.data.as_ptr(),
                    bv.cs as isize,
                    bv.rs as isize,
                    1.0,
                    1.0,
                    false,
                    false,
                    false,
                    gemm::Parallelism::None,
                )
            }
        });
        ratios.push(kit / theirs);
        println!(
            "{:<26} {:>5} {:>5} {:>5}   {kit:11.1}   {theirs:12.1}   {:8.2}",
            c.name,
            c.m,
            c.n,
            c.k,
            kit / theirs
        );
    }
    let geo = (ratios.iter().map(|r| r.ln()).sum::<f64>() / ratios.len() as f64).exp();
    println!("geometric mean kit/gemm: {geo:.2}\n");
    Ok(())
}

fn main() -> mnist_kit::Result<()> {
    // `-- --gemm-only [NAME]`: only the GEMM table, or only its products whose name holds NAME.
    let args: Vec<String> = std::env::args().collect();
    let gemm_only = args.iter().position(|a| a == "--gemm-only");
    let only = gemm_only
        .and_then(|i| args.get(i + 1))
        .filter(|a| !a.starts_with("--"));
    if !args.iter().any(|a| a == "--conv") {
        gemm_table(only.map(String::as_str))?;
    }
    if gemm_only.is_some() {
        return Ok(());
    }
    // `-- --conv NAME`: only the convolutions whose name holds NAME (for a profiler).
    let only = args
        .iter()
        .position(|a| a == "--conv")
        .and_then(|i| args.get(i + 1))
        .map(String::as_str);
    let dev = Device::Cpu;
    // LeNet-5's three convolutions and the ResNet's 3x3 ones at batch 64: forward and backward.
    for (name, x_shape, w_shape, pad) in [
        ("conv1 1->6 32x32", [64, 1, 32, 32], [6, 1, 5, 5], 0),
        ("conv2 6->16 14x14", [64, 6, 14, 14], [16, 6, 5, 5], 0),
        ("conv3 16->120 5x5", [64, 16, 5, 5], [120, 16, 5, 5], 0),
        ("res 16->16 14x14", [64, 16, 14, 14], [16, 16, 3, 3], 1),
        ("res 32->32 7x7", [64, 32, 7, 7], [32, 32, 3, 3], 1),
        ("res 64->64 4x4", [64, 64, 4, 4], [64, 64, 3, 3], 1),
    ] {
        if only.is_some_and(|o| !name.contains(o)) {
            continue;
        }
        let x = Var::from_tensor(&Tensor::randn(0f32, 1.0, &x_shape[..], &dev)?)?;
        let w = Var::from_tensor(&Tensor::randn(0f32, 0.1, &w_shape[..], &dev)?)?;
        for (path, f) in [
            (
                "fast",
                ops::conv2d
                    as fn(
                        &Tensor,
                        &Tensor,
                        Option<&Tensor>,
                        usize,
                        usize,
                    ) -> mnist_kit::Result<Tensor>,
            ),
            ("candle", ops::reference::conv2d),
        ] {
            let fwd = median_ms(
                || drop(f(x.as_tensor(), w.as_tensor(), None, 1, pad).unwrap()),
                21,
            );
            let fb = median_ms(
                || {
                    let y = f(x.as_tensor(), w.as_tensor(), None, 1, pad).unwrap();
                    drop(y.sum_all().unwrap().backward().unwrap());
                },
                21,
            );
            println!("{name:<20} {path:<7} forward {fwd:7.3} ms   forward+backward {fb:7.3} ms");
        }
    }
    // Whole training step (forward, loss, backward) per model.
    let mnist = Mnist::load_default()?;
    for model in ["lenet5", "mlp-61k"] {
        let net = Network::preset(model, 0, &dev)?;
        let opts = BatchOptions {
            batch_size: 64,
            ..Default::default()
        };
        let batch = mnist
            .train
            .batches(net.input_spec(), opts, 0, &dev)?
            .next()
            .unwrap()?;
        let fwd = median_ms(|| drop(net.forward_t(&batch.images, true).unwrap()), 31);
        let step = median_ms(
            || {
                let logits = net.forward_t(&batch.images, true).unwrap();
                let loss = candle_nn::loss::cross_entropy(&logits, &batch.labels).unwrap();
                drop(loss.backward().unwrap());
            },
            31,
        );
        println!(
            "{model:<20} batch 64: forward {fwd:.3} ms, forward+loss+backward {step:.3} ms ({:.0} img/s)",
            64.0 / step * 1e3
        );
    }
    Ok(())
}

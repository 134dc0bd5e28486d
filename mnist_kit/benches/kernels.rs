//! Kernel and training-step timings (median of repeated runs), fast path vs candle's ops.
//! `cargo bench --bench kernels` (set RAYON_NUM_THREADS to fix the thread count).

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

fn main() -> mnist_kit::Result<()> {
    let dev = Device::Cpu;
    // LeNet-5's three convolutions at batch 64: forward and backward.
    for (name, x_shape, w_shape) in [
        ("conv1 1->6 32x32", [64, 1, 32, 32], [6, 1, 5, 5]),
        ("conv2 6->16 14x14", [64, 6, 14, 14], [16, 6, 5, 5]),
        ("conv3 16->120 5x5", [64, 16, 5, 5], [120, 16, 5, 5]),
    ] {
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
                || drop(f(x.as_tensor(), w.as_tensor(), None, 1, 0).unwrap()),
                21,
            );
            let fb = median_ms(
                || {
                    let y = f(x.as_tensor(), w.as_tensor(), None, 1, 0).unwrap();
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

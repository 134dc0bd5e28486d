//! The fast CPU kernels against candle's reference ops: forward values and gradients for
//! several shapes, strides, paddings and odd sizes.

mod support;

use candle_core::{Device, Tensor, Var};
use mnist_kit::ops;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use support::bits::rand_tensor;

fn max_diff(a: &Tensor, b: &Tensor) -> f32 {
    assert_eq!(a.dims(), b.dims());
    let a: Vec<f32> = a.flatten_all().unwrap().to_vec1().unwrap();
    let b: Vec<f32> = b.flatten_all().unwrap().to_vec1().unwrap();
    a.iter()
        .zip(&b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

type ConvFn = fn(&Tensor, &Tensor, Option<&Tensor>, usize, usize) -> mnist_kit::Result<Tensor>;

/// Output and gradients (x, w, b) of `sum(conv(x, w, b) * r)`.
fn conv_with_grads(
    f: ConvFn,
    x: &Tensor,
    w: &Tensor,
    b: &Tensor,
    r: &Tensor,
    s: usize,
    p: usize,
) -> [Tensor; 4] {
    let (xv, wv, bv) = (
        Var::from_tensor(x).unwrap(),
        Var::from_tensor(w).unwrap(),
        Var::from_tensor(b).unwrap(),
    );
    let y = f(xv.as_tensor(), wv.as_tensor(), Some(bv.as_tensor()), s, p).unwrap();
    let grads = (&y * r).unwrap().sum_all().unwrap().backward().unwrap();
    let g = |v: &Var| grads.get(v.as_tensor()).unwrap().clone();
    [y, g(&xv), g(&wv), g(&bv)]
}

/// A training forward: the kernel keeps its unfolded input for the backward.
fn train_conv(
    x: &Tensor,
    w: &Tensor,
    b: Option<&Tensor>,
    stride: usize,
    padding: usize,
) -> mnist_kit::Result<Tensor> {
    let opts = ops::ConvOptions {
        stride,
        padding,
        ..Default::default()
    };
    ops::conv2d_with(x, w, b, opts)
}

fn train_conv_relu(
    x: &Tensor,
    w: &Tensor,
    b: Option<&Tensor>,
    stride: usize,
    padding: usize,
) -> mnist_kit::Result<Tensor> {
    let opts = ops::ConvOptions {
        stride,
        padding,
        relu: true,
    };
    ops::conv2d_with(x, w, b, opts)
}

#[test]
fn conv2d_matches_candle_forward_and_backward() {
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    // (n, c, h, w, o, k, stride, pad)
    for (n, c, h, w, o, k, s, p) in [
        (3, 1, 32, 32, 6, 5, 1, 0),
        (2, 6, 14, 14, 16, 5, 1, 0),
        (2, 16, 5, 5, 120, 5, 1, 0),
        (2, 3, 7, 9, 4, 3, 2, 1),
        (1, 4, 5, 5, 8, 1, 2, 0),
        (5, 2, 28, 28, 3, 7, 1, 3),
        (3, 8, 11, 13, 5, 3, 1, 1),
        // One output map, stride 1: the direct convolution (spatial attention).
        (5, 2, 28, 28, 1, 7, 1, 3),
        (3, 2, 10, 10, 1, 7, 1, 3),
        (2, 3, 4, 6, 1, 5, 1, 4),
        (2, 1, 9, 7, 1, 3, 1, 0),
        (1, 2, 5, 5, 1, 7, 1, 1),
    ] {
        let x = rand_tensor(&mut rng, &[n, c, h, w]);
        let wt = rand_tensor(&mut rng, &[o, c, k, k]);
        let b = rand_tensor(&mut rng, &[o]);
        let (oh, ow) = ((h + 2 * p - k) / s + 1, (w + 2 * p - k) / s + 1);
        let r = rand_tensor(&mut rng, &[n, o, oh, ow]);
        let reference = conv_with_grads(ops::reference::conv2d, &x, &wt, &b, &r, s, p);
        for (path, f) in [("eval", ops::conv2d as ConvFn), ("train", train_conv)] {
            let fast = conv_with_grads(f, &x, &wt, &b, &r, s, p);
            for (what, a, b) in ["output", "grad x", "grad w", "grad b"]
                .iter()
                .zip(&fast)
                .zip(&reference)
                .map(|((w, a), b)| (w, a, b))
            {
                let d = max_diff(a, b);
                assert!(
                    d < 1e-4,
                    "{path} {what} of conv {n}x{c}x{h}x{w} k{k} s{s} p{p}: max diff {d}"
                );
            }
        }
    }
}

#[test]
fn a_second_backward_through_a_training_conv_unfolds_again() {
    // The kept columns are handed to the first backward; the second must not reuse them.
    let mut rng = ChaCha8Rng::seed_from_u64(6);
    let x = Var::from_tensor(&rand_tensor(&mut rng, &[3, 2, 9, 9])).unwrap();
    let w = Var::from_tensor(&rand_tensor(&mut rng, &[4, 2, 3, 3])).unwrap();
    let y = train_conv_relu(x.as_tensor(), w.as_tensor(), None, 1, 1).unwrap();
    let loss = y.sqr().unwrap().sum_all().unwrap();
    let first = loss.backward().unwrap();
    // Another training forward in between takes the column buffer the first backward gave back.
    let other = rand_tensor(&mut rng, &[3, 2, 9, 9]);
    let _ = train_conv_relu(&other, w.as_tensor(), None, 1, 1).unwrap();
    let second = loss.backward().unwrap();
    for v in [&x, &w] {
        let (a, b) = (
            first.get(v.as_tensor()).unwrap(),
            second.get(v.as_tensor()).unwrap(),
        );
        assert_eq!(max_diff(a, b), 0.0);
    }
}

#[test]
fn data_batches_get_no_input_gradient() {
    let mut rng = ChaCha8Rng::seed_from_u64(2);
    let x = rand_tensor(&mut rng, &[2, 1, 8, 8]);
    let w = Var::from_tensor(&rand_tensor(&mut rng, &[2, 1, 3, 3])).unwrap();
    let y = ops::conv2d(&x, w.as_tensor(), None, 1, 0).unwrap();
    let grads = y.sum_all().unwrap().backward().unwrap();
    assert!(grads.get(&x).is_none());
    assert!(grads.get(w.as_tensor()).is_some());
}

/// PyTorch's max-pool gradient: each output's gradient goes to the first maximum of its
/// `k` x `k` window.
fn naive_max_pool_grad(x: &Tensor, r: &Tensor, k: usize) -> Vec<f32> {
    let (n, c, h, w) = x.dims4().unwrap();
    let xv: Vec<f32> = x.flatten_all().unwrap().to_vec1().unwrap();
    let rv: Vec<f32> = r.flatten_all().unwrap().to_vec1().unwrap();
    let (oh, ow) = (h / k, w / k);
    let mut g = vec![0f32; xv.len()];
    for plane in 0..n * c {
        for oy in 0..oh {
            for ox in 0..ow {
                let idx = |dy: usize, dx: usize| plane * h * w + (k * oy + dy) * w + k * ox + dx;
                let mut best = idx(0, 0);
                for dy in 0..k {
                    for dx in 0..k {
                        if xv[idx(dy, dx)] > xv[best] {
                            best = idx(dy, dx);
                        }
                    }
                }
                g[best] += rv[plane * oh * ow + oy * ow + ox];
            }
        }
    }
    g
}

#[test]
fn max_pool_matches_candle_forward_and_pytorch_backward() {
    // candle 0.11's own max-pool backward multiplies the gradient by (number of maxima)/k^2,
    // i.e. by 1/4 for a unique maximum in a 2x2 window, so the gradient is checked against
    // PyTorch's rule computed naively.
    let mut rng = ChaCha8Rng::seed_from_u64(3);
    let ties = Tensor::ones((1, 2, 4, 6), candle_core::DType::F32, &Device::Cpu).unwrap();
    for (k, x) in [
        (2, rand_tensor(&mut rng, &[2, 3, 28, 28])),
        (2, rand_tensor(&mut rng, &[1, 2, 7, 9])),
        (2, rand_tensor(&mut rng, &[4, 16, 10, 10])),
        (2, rand_tensor(&mut rng, &[1, 1, 3, 3])),
        (2, ties.clone()),
        (3, rand_tensor(&mut rng, &[2, 3, 10, 8])),
        (3, ties),
    ] {
        let shape = x.dims().to_vec();
        let x = Var::from_tensor(&x).unwrap();
        let y_fast = ops::max_pool2d(x.as_tensor(), k).unwrap();
        let y_ref = ops::reference::max_pool2d(x.as_tensor(), k).unwrap();
        assert_eq!(max_diff(&y_fast, &y_ref), 0.0, "{shape:?}");
        let r = rand_tensor(&mut rng, y_fast.dims());
        let g_fast = (&y_fast * &r)
            .unwrap()
            .sum_all()
            .unwrap()
            .backward()
            .unwrap();
        let got: Vec<f32> = g_fast
            .get(x.as_tensor())
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap();
        assert_eq!(
            got,
            naive_max_pool_grad(x.as_tensor(), &r, k),
            "{shape:?} k={k}"
        );
    }
}

fn reference_conv_relu(
    x: &Tensor,
    w: &Tensor,
    b: Option<&Tensor>,
    s: usize,
    p: usize,
) -> mnist_kit::Result<Tensor> {
    Ok(ops::reference::conv2d(x, w, b, s, p)?.relu()?)
}

#[test]
fn fused_conv_relu_matches_conv_then_relu() {
    let mut rng = ChaCha8Rng::seed_from_u64(4);
    for (n, c, h, w, o, k, s, p) in [
        (4, 1, 32, 32, 6, 5, 1, 0),
        (3, 6, 14, 14, 16, 5, 1, 0),
        (2, 3, 9, 9, 5, 3, 2, 1),
    ] {
        let x = rand_tensor(&mut rng, &[n, c, h, w]);
        let wt = rand_tensor(&mut rng, &[o, c, k, k]);
        let b = rand_tensor(&mut rng, &[o]);
        let (oh, ow) = ((h + 2 * p - k) / s + 1, (w + 2 * p - k) / s + 1);
        let r = rand_tensor(&mut rng, &[n, o, oh, ow]);
        let reference = conv_with_grads(reference_conv_relu, &x, &wt, &b, &r, s, p);
        for f in [ops::conv2d_relu as ConvFn, train_conv_relu] {
            let fast = conv_with_grads(f, &x, &wt, &b, &r, s, p);
            for (a, b) in fast.iter().zip(&reference) {
                assert!(
                    max_diff(a, b) < 1e-4,
                    "conv+relu {n}x{c}x{h}x{w}: {}",
                    max_diff(a, b)
                );
            }
        }
    }
}

#[test]
fn fused_batch_norm_matches_candle_values_statistics_and_gradients() {
    let mut rng = ChaCha8Rng::seed_from_u64(5);
    for shape in [
        vec![8, 6, 5, 7],
        vec![3, 16, 10, 10],
        vec![32, 48],
        vec![64, 64, 4, 4],
    ] {
        for relu in [false, true] {
            let c = shape[1];
            let x = Var::from_tensor(
                &(rand_tensor(&mut rng, &shape) * 3.0)
                    .unwrap()
                    .affine(1.0, 0.5)
                    .unwrap(),
            )
            .unwrap();
            let gamma = Var::from_tensor(&rand_tensor(&mut rng, &[c])).unwrap();
            let beta = Var::from_tensor(&rand_tensor(&mut rng, &[c])).unwrap();
            let r = rand_tensor(&mut rng, &shape);
            let (yf, mf, vf) = ops::batch_norm_train(
                x.as_tensor(),
                gamma.as_tensor(),
                beta.as_tensor(),
                1e-5,
                relu,
            )
            .unwrap()
            .unwrap();
            let (yr, mr, vr) = ops::reference::batch_norm_train(
                x.as_tensor(),
                gamma.as_tensor(),
                beta.as_tensor(),
                1e-5,
            )
            .unwrap();
            let yr = if relu { yr.relu().unwrap() } else { yr };
            for (what, a, b) in [("y", &yf, &yr), ("mean", &mf, &mr), ("var", &vf, &vr)] {
                assert!(
                    max_diff(a, b) < 1e-4,
                    "{what} {shape:?} relu={relu}: {}",
                    max_diff(a, b)
                );
            }
            let gf = (&yf * &r).unwrap().sum_all().unwrap().backward().unwrap();
            let gr = (&yr * &r).unwrap().sum_all().unwrap().backward().unwrap();
            for (what, v) in [("x", &x), ("gamma", &gamma), ("beta", &beta)] {
                let d = max_diff(
                    gf.get(v.as_tensor()).unwrap(),
                    gr.get(v.as_tensor()).unwrap(),
                );
                assert!(d < 1e-3, "grad {what} {shape:?} relu={relu}: {d}");
            }

            // Evaluation mode with running statistics: value and input gradient.
            let (mean, var) = (mr.detach(), (vr.detach() + 0.3).unwrap());
            let ye = ops::batch_norm_eval(
                x.as_tensor(),
                &mean,
                &var,
                gamma.as_tensor(),
                beta.as_tensor(),
                1e-5,
                relu,
            )
            .unwrap();
            let ye_ref = ops::reference::normalize(
                x.as_tensor(),
                &mean,
                &var,
                gamma.as_tensor(),
                beta.as_tensor(),
                1e-5,
            )
            .unwrap();
            let ye_ref = if relu { ye_ref.relu().unwrap() } else { ye_ref };
            assert!(max_diff(&ye, &ye_ref) < 1e-4, "eval {shape:?} relu={relu}");
            let ge = (&ye * &r).unwrap().sum_all().unwrap().backward().unwrap();
            let ge_ref = (&ye_ref * &r)
                .unwrap()
                .sum_all()
                .unwrap()
                .backward()
                .unwrap();
            let d = max_diff(
                ge.get(x.as_tensor()).unwrap(),
                ge_ref.get(x.as_tensor()).unwrap(),
            );
            assert!(d < 1e-4, "eval grad {shape:?} relu={relu}: {d}");
        }
    }
}

#[test]
fn fused_add_relu_matches_candle() {
    let mut rng = ChaCha8Rng::seed_from_u64(11);
    let shape = [5, 8, 7, 7];
    let a = Var::from_tensor(&rand_tensor(&mut rng, &shape)).unwrap();
    let b = Var::from_tensor(&rand_tensor(&mut rng, &shape)).unwrap();
    let r = rand_tensor(&mut rng, &shape);
    let y = ops::add_relu(a.as_tensor(), b.as_tensor()).unwrap();
    let y_ref = (a.as_tensor() + b.as_tensor()).unwrap().relu().unwrap();
    assert_eq!(max_diff(&y, &y_ref), 0.0);
    let g = (&y * &r).unwrap().sum_all().unwrap().backward().unwrap();
    let g_ref = (&y_ref * &r)
        .unwrap()
        .sum_all()
        .unwrap()
        .backward()
        .unwrap();
    for v in [&a, &b] {
        assert_eq!(
            max_diff(
                g.get(v.as_tensor()).unwrap(),
                g_ref.get(v.as_tensor()).unwrap()
            ),
            0.0
        );
    }
}

#[test]
fn fused_linear_matches_candle_forward_and_backward() {
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    // (n, inputs, outputs): tiny, odd, and large enough to split over threads.
    for (n, i, o) in [(1, 3, 2), (5, 17, 9), (64, 1024, 48), (300, 120, 84)] {
        let x = Var::from_tensor(&rand_tensor(&mut rng, &[n, i])).unwrap();
        let w = Var::from_tensor(&rand_tensor(&mut rng, &[o, i])).unwrap();
        let b = Var::from_tensor(&rand_tensor(&mut rng, &[o])).unwrap();
        let r = rand_tensor(&mut rng, &[n, o]);
        let reference =
            ops::reference::linear(x.as_tensor(), w.as_tensor(), b.as_tensor()).unwrap();
        for relu in [false, true] {
            let y = ops::linear(x.as_tensor(), w.as_tensor(), b.as_tensor(), relu).unwrap();
            let y_ref = if relu {
                reference.relu().unwrap()
            } else {
                reference.clone()
            };
            assert!(
                max_diff(&y, &y_ref) < 1e-4,
                "forward {n}x{i}x{o} relu={relu}"
            );
            let grads = (&y * &r).unwrap().sum_all().unwrap().backward().unwrap();
            let grads_ref = (&y_ref * &r)
                .unwrap()
                .sum_all()
                .unwrap()
                .backward()
                .unwrap();
            for (what, v) in [("x", &x), ("w", &w), ("b", &b)] {
                let d = max_diff(
                    grads.get(v.as_tensor()).unwrap(),
                    grads_ref.get(v.as_tensor()).unwrap(),
                );
                assert!(d < 1e-3, "grad {what} {n}x{i}x{o} relu={relu}: {d}");
            }
        }
    }
}

/// Output and input gradients of `sum(f(inputs) * r)`.
fn grads_of(f: impl Fn(&[&Tensor]) -> Tensor, inputs: &[&Tensor], r: &Tensor) -> Vec<Tensor> {
    let vars: Vec<Var> = inputs
        .iter()
        .map(|t| Var::from_tensor(t).unwrap())
        .collect();
    let ts: Vec<&Tensor> = vars.iter().map(|v| v.as_tensor()).collect();
    let y = f(&ts);
    let grads = (&y * r).unwrap().sum_all().unwrap().backward().unwrap();
    let mut out = vec![y];
    out.extend(
        vars.iter()
            .map(|v| grads.get(v.as_tensor()).unwrap().clone()),
    );
    out
}

#[test]
fn spatial_attention_ops_match_candle() {
    let mut rng = ChaCha8Rng::seed_from_u64(9);
    // Random values have no ties, where the max's gradient conventions differ.
    for shape in [[3, 6, 28, 28], [2, 16, 10, 10], [1, 1, 5, 3]] {
        let x = rand_tensor(&mut rng, &shape);
        let r = rand_tensor(&mut rng, &[shape[0], 2, shape[2], shape[3]]);
        let fast = grads_of(|t| ops::channel_mean_max(t[0]).unwrap(), &[&x], &r);
        let slow = grads_of(
            |t| ops::reference::channel_mean_max(t[0]).unwrap(),
            &[&x],
            &r,
        );
        for (a, b) in fast.iter().zip(&slow) {
            assert!(max_diff(a, b) < 1e-5, "channel mean/max {shape:?}");
        }

        let map = rand_tensor(&mut rng, &[shape[0], 1, shape[2], shape[3]]);
        let r = rand_tensor(&mut rng, &shape);
        let f = |t: &[&Tensor]| ops::scale_pixels(t[0], t[1]).unwrap();
        let g = |t: &[&Tensor]| ops::reference::scale_pixels(t[0], t[1]).unwrap();
        let fast = grads_of(f, &[&x, &map], &r);
        let slow = grads_of(g, &[&x, &map], &r);
        for (a, b) in fast.iter().zip(&slow) {
            assert!(max_diff(a, b) < 1e-4, "scale pixels {shape:?}");
        }
    }
    // Ties: the whole gradient of the max goes to one channel (candle gives it to each tie).
    let x = Tensor::zeros((1, 4, 2, 2), candle_core::DType::F32, &Device::Cpu).unwrap();
    let r = Tensor::ones((1, 2, 2, 2), candle_core::DType::F32, &Device::Cpu).unwrap();
    let g = &grads_of(|t| ops::channel_mean_max(t[0]).unwrap(), &[&x], &r)[1];
    let total: f32 = g.sum_all().unwrap().to_scalar().unwrap();
    assert!(
        (total - 8.0).abs() < 1e-5,
        "mean 4 x 1 + max 4 x 1, got {total}"
    );
    let bad = Tensor::zeros((1, 0, 2, 2), candle_core::DType::F32, &Device::Cpu).unwrap();
    assert!(ops::channel_mean_max(&bad).is_err());
}

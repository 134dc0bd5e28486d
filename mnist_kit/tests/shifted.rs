//! The convolutions (forward, weight gradient, input gradient) against their definition
//! written as plain loops, bit for bit, on every instruction-set path and on one, two and
//! three threads. The definition is the im2col path's: each output one fused multiply-add
//! chain over `(ci, ky, kx)` from zero (the padding's zeros included), then the bias and the
//! ReLU; each weight gradient one chain over the pixels of each half of the batch in order,
//! the halves then added to zero in order; each input-gradient pixel, per tap in order, a
//! chain over the output channels from zero added to a running sum from zero. The shapes are
//! every convolution of the ResNet (so every path of the kit: shifted loads, pixel rows,
//! lanes over the output channels, im2col), LeNet-5's and odd ones (no padding, 5x5 kernels, a
//! non-square map, batches that do not halve evenly). One test in its own binary: it
//! switches the process-wide instruction set.

mod support;

use candle_core::{Tensor, Var};
use mnist_kit::ops;
use mnist_kit::ops::simd;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use support::bits::{bits, rand_tensor};

/// A convolution's shape: batch, channels in, height, width, channels out, kernel, padding,
/// stride.
#[derive(Debug, Clone, Copy)]
struct Shape {
    n: usize,
    c: usize,
    h: usize,
    w: usize,
    o: usize,
    k: usize,
    pad: usize,
    s: usize,
}

impl Shape {
    fn out(&self) -> (usize, usize) {
        (
            (self.h + 2 * self.pad - self.k) / self.s + 1,
            (self.w + 2 * self.pad - self.k) / self.s + 1,
        )
    }

    /// The output position that tap `t` of input position `i` comes from, if any.
    fn source(&self, i: usize, t: usize, len: usize) -> Option<usize> {
        let at = (i + self.pad).checked_sub(t)?;
        (at % self.s == 0 && at / self.s < len).then_some(at / self.s)
    }

    /// `x[i, ci, y, x]` with zeros outside the image.
    fn at(&self, x: &[f32], i: usize, ci: usize, y: isize, xx: isize) -> f32 {
        if y < 0 || xx < 0 || y >= self.h as isize || xx >= self.w as isize {
            return 0.0;
        }
        x[((i * self.c + ci) * self.h + y as usize) * self.w + xx as usize]
    }
}

/// The definition: `(y, dx, dw)` of `sum(act(conv(x, w) + b) * r)`.
fn definition(s: Shape, [x, wt, b, r]: [&[f32]; 4], relu: bool) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
    let (oh, ow) = s.out();
    let (taps, pad) = (s.k * s.k, s.pad as isize);
    let widx = |oc: usize, ci: usize, ky: usize, kx: usize| ((oc * s.c + ci) * s.k + ky) * s.k + kx;
    let mut y = vec![0f32; s.n * s.o * oh * ow];
    for i in 0..s.n {
        for oc in 0..s.o {
            for oy in 0..oh {
                for ox in 0..ow {
                    let mut acc = 0f32;
                    for ci in 0..s.c {
                        for ky in 0..s.k {
                            for kx in 0..s.k {
                                let (iy, ix) = (
                                    (oy * s.s + ky) as isize - pad,
                                    (ox * s.s + kx) as isize - pad,
                                );
                                acc = wt[widx(oc, ci, ky, kx)].mul_add(s.at(x, i, ci, iy, ix), acc);
                            }
                        }
                    }
                    let v = acc + b[oc];
                    y[((i * s.o + oc) * oh + oy) * ow + ox] = if relu { v.max(0.0) } else { v };
                }
            }
        }
    }
    // The gradient reaching the convolution: r, masked by the ReLU.
    let dy: Vec<f32> = r
        .iter()
        .zip(&y)
        .map(|(&g, &v)| if !relu || v > 0.0 { g } else { 0.0 })
        .collect();
    let dyi = |i: usize, oc: usize, oy: usize, ox: usize| dy[((i * s.o + oc) * oh + oy) * ow + ox];
    // Weight gradient: one chain per half of the batch, the halves added to zero in order.
    let per = s.n.div_ceil(2).max(1);
    let mut dw = vec![0f32; s.o * s.c * taps];
    for start in (0..s.n).step_by(per) {
        for oc in 0..s.o {
            for ci in 0..s.c {
                for ky in 0..s.k {
                    for kx in 0..s.k {
                        let mut acc = 0f32;
                        for i in start..(start + per).min(s.n) {
                            for oy in 0..oh {
                                for ox in 0..ow {
                                    let (iy, ix) = (
                                        (oy * s.s + ky) as isize - pad,
                                        (ox * s.s + kx) as isize - pad,
                                    );
                                    acc = dyi(i, oc, oy, ox).mul_add(s.at(x, i, ci, iy, ix), acc);
                                }
                            }
                        }
                        dw[widx(oc, ci, ky, kx)] += acc;
                    }
                }
            }
        }
    }
    // Input gradient: per tap in order, a chain over the output channels, added to a sum.
    let mut dx = vec![0f32; s.n * s.c * s.h * s.w];
    for i in 0..s.n {
        for ci in 0..s.c {
            for iy in 0..s.h {
                for ix in 0..s.w {
                    let mut total = 0f32;
                    for ky in 0..s.k {
                        for kx in 0..s.k {
                            let (Some(oy), Some(ox)) = (s.source(iy, ky, oh), s.source(ix, kx, ow))
                            else {
                                continue;
                            };
                            let mut chain = 0f32;
                            for oc in 0..s.o {
                                chain = wt[widx(oc, ci, ky, kx)].mul_add(dyi(i, oc, oy, ox), chain);
                            }
                            total += chain;
                        }
                    }
                    dx[((i * s.c + ci) * s.h + iy) * s.w + ix] = 0.0 + total;
                }
            }
        }
    }
    (y, dx, dw)
}

fn values(t: &Tensor) -> Vec<f32> {
    t.flatten_all().unwrap().to_vec1().unwrap()
}

/// `(y, dx, dw)` of the kit's convolution on the current instruction set and thread pool.
fn kit(s: Shape, [x, w, b, r]: [&Tensor; 4], relu: bool) -> [Vec<u32>; 3] {
    let (xv, wv, bv) = (
        Var::from_tensor(x).unwrap(),
        Var::from_tensor(w).unwrap(),
        Var::from_tensor(b).unwrap(),
    );
    let opts = ops::ConvOptions {
        stride: s.s,
        padding: s.pad,
        relu,
    };
    let y = ops::conv2d_with(xv.as_tensor(), wv.as_tensor(), Some(bv.as_tensor()), opts).unwrap();
    let g = (&y * r).unwrap().sum_all().unwrap().backward().unwrap();
    let grad = |v: &Var| bits(g.get(v.as_tensor()).unwrap());
    [bits(&y), grad(&xv), grad(&wv)]
}

#[test]
fn convolutions_give_the_bits_of_the_definition_on_every_path() {
    let shape = |n, c, h, o, k, pad, s| Shape {
        n,
        c,
        h,
        w: h,
        o,
        k,
        pad,
        s,
    };
    let shapes = [
        // The ResNet's convolutions: the stem, the three stages, the 1x1 projections.
        shape(3, 1, 28, 16, 3, 1, 2),
        shape(6, 16, 14, 16, 3, 1, 1),
        shape(5, 16, 14, 32, 3, 1, 2),
        shape(5, 32, 7, 32, 3, 1, 1),
        shape(4, 32, 7, 64, 3, 1, 2),
        shape(3, 64, 4, 64, 3, 1, 1),
        shape(4, 16, 14, 32, 1, 0, 2),
        shape(4, 32, 7, 64, 1, 0, 2),
        // LeNet-5's convolutions (28x28 padded and 32x32 inputs): 6 channels by shifted
        // loads and eight-lane weight gradients, 16 by pixel rows, 120 by im2col.
        shape(3, 1, 28, 6, 5, 2, 1),
        shape(2, 1, 32, 6, 5, 0, 1),
        shape(4, 6, 14, 16, 5, 0, 1),
        shape(3, 16, 5, 120, 5, 0, 1),
        shape(3, 8, 9, 8, 3, 1, 1),
        // Two and three output channels under 7x7 and 3x3 kernels: a partial transpose block
        // on every path (one channel at stride 1 is `direct.rs`'s single-map op).
        shape(2, 2, 10, 2, 7, 3, 1),
        shape(2, 4, 9, 3, 3, 1, 1),
        // Odd channel counts, no padding, 5x5 kernels, one image, a non-square map.
        shape(3, 3, 11, 5, 3, 1, 1),
        shape(4, 6, 16, 7, 3, 0, 1),
        // The simple CNN's unpadded layers (shifted loads, in-place gradients).
        shape(3, 1, 16, 32, 3, 0, 1),
        shape(2, 32, 12, 64, 3, 0, 1),
        shape(2, 4, 20, 20, 5, 2, 1),
        shape(1, 9, 9, 64, 3, 1, 2),
        Shape {
            w: 10,
            ..shape(2, 9, 12, 17, 3, 1, 1)
        },
    ];
    let best = simd::detected();
    let paths: Vec<simd::Isa> = simd::Isa::ALL.into_iter().filter(|i| *i <= best).collect();
    let mut rng = ChaCha8Rng::seed_from_u64(11);
    for s in shapes {
        let (oh, ow) = s.out();
        let x = rand_tensor(&mut rng, &[s.n, s.c, s.h, s.w]);
        let w = rand_tensor(&mut rng, &[s.o, s.c, s.k, s.k]);
        let b = rand_tensor(&mut rng, &[s.o]);
        let r = rand_tensor(&mut rng, &[s.n, s.o, oh, ow]);
        for relu in [false, true] {
            let host = [&x, &w, &b, &r].map(values);
            let (y, dx, dw) = definition(s, [&host[0], &host[1], &host[2], &host[3]], relu);
            let want = [&y, &dx, &dw].map(|v| v.iter().map(|f| f.to_bits()).collect::<Vec<_>>());
            for &isa in &paths {
                simd::force(Some(isa));
                for threads in [1, 2, 3] {
                    let pool = rayon::ThreadPoolBuilder::new()
                        .num_threads(threads)
                        .build()
                        .unwrap();
                    let got = pool.install(|| kit(s, [&x, &w, &b, &r], relu));
                    for (name, (g, want)) in ["y", "dx", "dw"].iter().zip(got.iter().zip(&want)) {
                        let wrong = g.iter().zip(want).filter(|(a, b)| a != b).count();
                        assert_eq!(
                            wrong,
                            0,
                            "{s:?} relu={relu}: {name} differs from the definition in {wrong} \
                             of {} values on {} with {threads} threads",
                            want.len(),
                            isa.name()
                        );
                    }
                }
            }
        }
    }
    simd::force(None);
}

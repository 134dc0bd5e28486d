//! The machine's f32 multiply-add peak: what no kernel can beat. Each thread runs independent
//! chains of fused multiply-adds (enough chains to hide the FMA latency), so the loop is bound
//! by FMA throughput alone. Gives the ceiling the Speed section of the README compares
//! training and inference rates to.
//!
//! `cargo bench --bench peak` (x86-64; prints AVX2 and, where present, AVX-512 figures, for one
//! thread and for every logical CPU).

use std::time::Instant;

/// Multiply-adds per chain and call: long enough to dwarf the call, short enough to repeat.
const ITERS: usize = 1 << 22;

/// 12 independent chains of vector multiply-adds, `iters` steps each: 2 x 12 x lanes x
/// `iters` flops.
#[cfg(target_arch = "x86_64")]
mod fma {
    use std::arch::x86_64::*;

    #[target_feature(enable = "avx2,fma")]
    pub fn avx2(iters: usize) -> f32 {
        let (a, b) = (_mm256_set1_ps(0.999_999), _mm256_set1_ps(1e-7));
        let mut acc = [_mm256_set1_ps(1.0); 12];
        for _ in 0..iters {
            for x in &mut acc {
                *x = _mm256_fmadd_ps(*x, a, b);
            }
        }
        let s = acc
            .iter()
            .fold(_mm256_setzero_ps(), |s, &x| _mm256_add_ps(s, x));
        let mut out = [0f32; 8];
        // SAFETY: `out` holds the 8 floats the unaligned store writes.
        unsafe { _mm256_storeu_ps(out.as_mut_ptr(), s) };
        out.iter().sum()
    }

    #[target_feature(enable = "avx512f")]
    pub fn avx512(iters: usize) -> f32 {
        let (a, b) = (_mm512_set1_ps(0.999_999), _mm512_set1_ps(1e-7));
        let mut acc = [_mm512_set1_ps(1.0); 12];
        for _ in 0..iters {
            for x in &mut acc {
                *x = _mm512_fmadd_ps(*x, a, b);
            }
        }
        let s = acc
            .iter()
            .fold(_mm512_setzero_ps(), |s, &x| _mm512_add_ps(s, x));
        _mm512_reduce_add_ps(s)
    }
}

/// GFLOP/s of `threads` threads each running `kernel` once.
fn gflops(threads: usize, lanes: usize, kernel: fn(usize) -> f32) -> f64 {
    kernel(ITERS / 16); // warm up (clock ramp)
    let t = Instant::now();
    let sink: f32 = std::thread::scope(|s| {
        let hs: Vec<_> = (0..threads).map(|_| s.spawn(|| kernel(ITERS))).collect();
        hs.into_iter().map(|h| h.join().unwrap_or(0.0)).sum()
    });
    let secs = t.elapsed().as_secs_f64();
    std::hint::black_box(sink);
    (2 * 12 * lanes * ITERS * threads) as f64 / secs / 1e9
}

fn main() {
    let cpu = mnist_kit::bench::cpu_name();
    let all = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!("f32 FMA peak, {cpu}, {all} logical CPUs");
    #[cfg(target_arch = "x86_64")]
    {
        type Kernel = fn(usize) -> f32;
        let mut paths: Vec<(&str, usize, Kernel)> = Vec::new();
        if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") {
            // SAFETY: the features were detected just above.
            paths.push(("avx2", 8, |n| unsafe { fma::avx2(n) }));
        }
        if is_x86_feature_detected!("avx512f") {
            // SAFETY: the feature was detected just above.
            paths.push(("avx512", 16, |n| unsafe { fma::avx512(n) }));
        }
        for (name, lanes, kernel) in paths {
            let best = |threads| {
                (0..3)
                    .map(|_| gflops(threads, lanes, kernel))
                    .fold(0.0, f64::max)
            };
            println!(
                "{name:>7}: 1 thread {:7.1} GFLOP/s, {all} threads {:7.1} GFLOP/s",
                best(1),
                best(all)
            );
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    println!("no x86-64 SIMD path on this architecture");
}

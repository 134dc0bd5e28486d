//! The kit's GEMM against its definition (`gemm::reference`: one fused multiply-add chain per
//! output, over the depth in order), bit for bit, on every instruction-set path this CPU has
//! and on one, two and three threads: the products of every layer of the zoo (forward and both
//! backward products, training batch and inference batch) and odd shapes that cross every
//! block edge. The definition involves no machine parameter, so a path that passes here gives
//! the same bits on any x86-64 CPU. One test in its own binary: it switches the process-wide
//! instruction set.

mod support;

use mnist_kit::ops::gemm::{KC, Mat, matmul, matmul_par, reference};
use mnist_kit::ops::simd;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use support::shapes::{Case, R, T, ZOO, case};

/// Shapes that cross the tile, panel and depth-pass edges, and degenerate ones.
const ODD: &[Case] = &[
    case("1x1x1", 1, 1, 1, R, R),
    case("row", 1, 37, 5, R, R),
    case("column", 29, 1, 13, R, T),
    case("two depth passes", 7, 9, KC + 1, R, R),
    case("many passes", 13, 17, 3 * KC + 7, T, T),
    case("wide", 5, 2049, 11, T, R),
    case("tall", 211, 3, 19, R, T),
    case("ragged", 97, 65, 385, T, T),
    case("prime", 101, 103, 107, R, R),
];

fn random(len: usize, rng: &mut ChaCha8Rng) -> Vec<f32> {
    (0..len).map(|_| rng.random_range(-1.0..1.0)).collect()
}

fn bits(v: &[f32]) -> Vec<u32> {
    v.iter().map(|x| x.to_bits()).collect()
}

#[test]
fn every_path_and_thread_count_gives_the_bits_of_the_definition() {
    let best = simd::detected();
    let paths: Vec<simd::Isa> = simd::Isa::ALL.into_iter().filter(|i| *i <= best).collect();
    let pools: Vec<rayon::ThreadPool> = [1, 2, 3]
        .map(|t| {
            rayon::ThreadPoolBuilder::new()
                .num_threads(t)
                .build()
                .unwrap()
        })
        .into();
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    for c in ZOO.iter().chain(ODD) {
        let (a, b) = (random(c.m * c.k, &mut rng), random(c.k * c.n, &mut rng));
        let (av, bv) = (c.a.view(&a, c.m, c.k), c.b.view(&b, c.k, c.n));
        let mut want = vec![0f32; c.m * c.n];
        reference(&mut want, c.m, c.n, c.k, av, bv).unwrap();
        let want = bits(&want);
        for isa in &paths {
            simd::force(Some(*isa));
            // Stale values in the output must not leak into the product.
            let mut got = vec![f32::NAN; c.m * c.n];
            matmul(&mut got, c.m, c.n, c.k, av, bv).unwrap();
            assert!(bits(&got) == want, "{}: {} differs", c.name, isa.name());
            for pool in &pools {
                let mut got = vec![f32::NAN; c.m * c.n];
                pool.install(|| matmul_par(&mut got, c.m, c.n, c.k, av, bv))
                    .unwrap();
                assert!(
                    bits(&got) == want,
                    "{}: {} on {} threads differs",
                    c.name,
                    isa.name(),
                    pool.current_num_threads()
                );
            }
        }
    }
    simd::force(None);
}

/// The test above can fail: a product summed in another order (separate multiply and add,
/// or the depth in two halves added at the end) differs from the definition in the last bits.
#[test]
fn another_summation_order_gives_other_bits() {
    let (m, n, k) = (16, 150, 3200);
    let mut rng = ChaCha8Rng::seed_from_u64(8);
    let (a, b) = (random(m * k, &mut rng), random(k * n, &mut rng));
    let mut want = vec![0f32; m * n];
    reference(&mut want, m, n, k, Mat::rows(&a, k), Mat::rows(&b, n)).unwrap();
    let unfused: Vec<f32> = (0..m * n)
        .map(|o| {
            let (i, j) = (o / n, o % n);
            (0..k).fold(0f32, |s, p| s + a[i * k + p] * b[p * n + j])
        })
        .collect();
    let halves: Vec<f32> = (0..m * n)
        .map(|o| {
            let (i, j) = (o / n, o % n);
            let chain = |ps: std::ops::Range<usize>| {
                ps.fold(0f32, |s, p| a[i * k + p].mul_add(b[p * n + j], s))
            };
            chain(0..k / 2) + chain(k / 2..k)
        })
        .collect();
    assert!(bits(&unfused) != bits(&want));
    assert!(bits(&halves) != bits(&want));
}

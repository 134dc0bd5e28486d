//! The kernels split work over threads only where the split cannot change a sum: every fast
//! op and a few training steps give the same bits on one thread, two or three (so the study
//! trains runs side by side on one thread each and matches runs made on all cores).

mod support;

use mnist_kit::data::Mnist;
use support::bits::{all_bits, assert_same_bits};

#[test]
fn one_two_or_three_threads_give_the_same_bits() {
    let mnist = Mnist::load_default().unwrap();
    let run = |threads: usize| {
        rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap()
            .install(|| all_bits(&mnist))
    };
    let reference = run(1);
    for threads in [2, 3] {
        assert_same_bits(
            &run(threads),
            &reference,
            &format!("{threads} threads differ from one"),
        );
    }
}

//! The kernels split work over threads only where the split cannot change a sum: every fast
//! op and a few training steps give the same bits on one thread, two or three (so the study
//! trains runs side by side on one thread each and matches runs made on all cores).

mod common;

use common::{op_bits, training_bits};
use mnist_kit::data::Mnist;

#[test]
fn one_two_or_three_threads_give_the_same_bits() {
    let mnist = Mnist::load_default().unwrap();
    let run = |threads: usize| {
        rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap()
            .install(|| (op_bits(), training_bits(&mnist)))
    };
    let (ops_ref, train_ref) = run(1);
    for threads in [2, 3] {
        let (ops, train) = run(threads);
        for ((name, a), (_, b)) in ops.iter().zip(&ops_ref) {
            assert!(a == b, "{name}: {threads} threads differ from one");
        }
        for ((name, a), (_, b)) in train.iter().zip(&train_ref) {
            assert!(a == b, "{name}: {threads} threads differ from one");
        }
    }
}

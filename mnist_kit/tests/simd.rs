//! Every instruction-set path of the kit's kernels against the portable path, bit for bit:
//! the committed study reproduces to the last digit on an AVX-512 Xeon, an AVX2 EPYC or a
//! baseline x86-64. One test in its own binary: it switches the process-wide instruction set.

mod support;

use mnist_kit::data::Mnist;
use mnist_kit::ops::simd;
use support::bits::{all_bits, assert_same_bits};

#[test]
fn every_instruction_set_gives_the_portable_bits() {
    let mnist = Mnist::load_default().unwrap();
    let best = simd::detected();
    let paths: Vec<simd::Isa> = simd::Isa::ALL.into_iter().filter(|i| *i <= best).collect();
    let mut reference = None;
    for isa in &paths {
        assert_eq!(simd::force(Some(*isa)), *isa);
        let got = all_bits(&mnist);
        match &reference {
            None => reference = Some(got),
            Some(r) => assert_same_bits(&got, r, &format!("{} differs from portable", isa.name())),
        }
    }
    simd::force(None);
    eprintln!(
        "compared {} against portable",
        paths
            .iter()
            .map(|i| i.name())
            .collect::<Vec<_>>()
            .join(", ")
    );
}

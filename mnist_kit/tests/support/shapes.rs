//! The matrix products of the model zoo, as the kernels call the GEMM (shared by
//! `tests/gemm.rs` and `benches/kernels.rs`).

use mnist_kit::ops::gemm::Mat;

/// How an operand is stored: row-major, or the transpose of a row-major matrix.
#[derive(Clone, Copy, Debug)]
pub enum Layout {
    Rows,
    Transposed,
}

pub struct Case {
    pub name: &'static str,
    pub m: usize,
    pub n: usize,
    pub k: usize,
    pub a: Layout,
    pub b: Layout,
}

pub const fn case(name: &'static str, m: usize, n: usize, k: usize, a: Layout, b: Layout) -> Case {
    Case {
        name,
        m,
        n,
        k,
        a,
        b,
    }
}

pub use Layout::{Rows as R, Transposed as T};

/// Convolutions as the kernels call them (batch 64 cut into two halves of image blocks):
/// forward `W (O x CKK) * cols (CKK x ld)`, weight gradient `dy (O x ld) * cols^T`, column
/// gradient `W^T * dy`. Linear layers: forward `x W^T`, weight gradient `g^T x`, input
/// gradient `g W`.
pub const ZOO: &[Case] = &[
    case("lenet5 conv1 fwd", 6, 7840, 25, R, R),
    case("lenet5 conv1 dW", 6, 25, 7840, R, T),
    case("lenet5 conv2 fwd", 16, 3200, 150, R, R),
    case("lenet5 conv2 dW", 16, 150, 3200, R, T),
    case("lenet5 conv2 dcol", 150, 3200, 16, T, R),
    case("lenet5 conv3 fwd", 120, 32, 400, R, R),
    case("lenet5 conv3 dW", 120, 400, 32, R, T),
    case("lenet5 conv3 dcol", 400, 32, 120, T, R),
    case("lenet5 fc1 fwd", 64, 84, 120, R, T),
    case("lenet5 fc1 dW", 84, 120, 64, T, R),
    case("lenet5 fc1 dx", 64, 120, 84, R, R),
    case("resnet stem fwd", 16, 6272, 9, R, R),
    case("resnet stem dW", 16, 9, 6272, R, T),
    case("resnet 14x14 fwd", 16, 6272, 144, R, R),
    case("resnet 14x14 dW", 16, 144, 6272, R, T),
    case("resnet 14x14 dcol", 144, 6272, 16, T, R),
    case("resnet 7x7 fwd", 32, 1568, 288, R, R),
    case("resnet 7x7 dW", 32, 288, 1568, R, T),
    case("resnet 7x7 dcol", 288, 1568, 32, T, R),
    case("resnet 4x4 fwd", 64, 512, 576, R, R),
    case("resnet 4x4 dW", 64, 576, 512, R, T),
    case("resnet 4x4 dcol", 576, 512, 64, T, R),
    case("mlp-500-150 fc1 fwd", 64, 500, 784, R, T),
    case("mlp-500-150 fc1 dW", 500, 784, 64, T, R),
    case("mlp-500-150 fc2 dx", 64, 500, 150, R, R),
    case("mlp-61k fc1 fwd", 64, 48, 1024, R, T),
    case("mlp-61k fc1 dW", 48, 1024, 64, T, R),
    case("mlp-61k fc2 dx", 64, 48, 48, R, R),
    case("dense128 fc1 fwd b1000", 1000, 128, 784, R, T),
    case("dense128 fc2 fwd b1000", 1000, 10, 128, R, T),
    case("mlp-61k fc2 fwd b1000", 1000, 48, 48, R, T),
    case("mlp-500-150 fc1 fwd b1000", 1000, 500, 784, R, T),
];

impl Layout {
    /// A `rows x cols` view of `data` stored this way.
    pub fn view(self, data: &[f32], rows: usize, cols: usize) -> Mat<'_> {
        match self {
            Layout::Rows => Mat::rows(data, cols),
            // The stored matrix is (cols x rows), row-major.
            Layout::Transposed => Mat::transposed(data, rows),
        }
    }
}

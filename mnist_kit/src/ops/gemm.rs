//! A bounds-checked wrapper around the `gemm` crate (the kernel candle's CPU matmul uses).

use crate::{Error, Result};

/// A strided read-only matrix view: element `(r, c)` is `data[r * rs + c * cs]`.
#[derive(Clone, Copy)]
pub(crate) struct Mat<'a> {
    pub data: &'a [f32],
    pub rs: usize,
    pub cs: usize,
}

impl<'a> Mat<'a> {
    /// Row-major `rows x cols`.
    pub fn rows(data: &'a [f32], cols: usize) -> Self {
        Mat {
            data,
            rs: cols,
            cs: 1,
        }
    }
    /// The transpose of a row-major matrix with `cols` columns.
    pub fn transposed(data: &'a [f32], cols: usize) -> Self {
        Mat {
            data,
            rs: 1,
            cs: cols,
        }
    }
    fn fits(&self, rows: usize, cols: usize) -> bool {
        rows == 0 || cols == 0 || (rows - 1) * self.rs + (cols - 1) * self.cs < self.data.len()
    }
}

/// Whether gemm sums every output of a `pm x pn` piece of an `m x n` product of depth `k` in
/// the same order as the whole product does, so that splitting a product over threads does
/// not change a bit.
///
/// gemm 0.19 sums each output over the depth in chunks, one after the other. The chunk length
/// depends on `k` and the L1 cache alone, except that products with both sides at most 64 take
/// a shortcut with chunks of 512. Depths up to 512 are one chunk on either path; deeper ones
/// keep their chunks when the piece takes the path of the whole. Products with a side of 1 go
/// to gemv kernels with orders of their own, so pieces keep at least two rows and columns.
pub(crate) fn same_sum_order((m, n): (usize, usize), (pm, pn): (usize, usize), k: usize) -> bool {
    if (pm, pn) == (m, n) {
        return true;
    }
    let small = |a: usize, b: usize| a <= 64 && b <= 64;
    pm >= 2 && pn >= 2 && m >= 2 && n >= 2 && (k <= 512 || small(m, n) == small(pm, pn))
}

/// `dst (m x n, row-major) = [dst +] a (m x k) * b (k x n)`, single-threaded (callers
/// parallelize over images, which keeps results independent of scheduling).
pub(crate) fn matmul(
    dst: &mut [f32],
    m: usize,
    n: usize,
    k: usize,
    a: Mat,
    b: Mat,
    accumulate: bool,
) -> Result<()> {
    if dst.len() < m * n || !a.fits(m, k) || !b.fits(k, n) {
        return Err(Error::invalid(
            "gemm",
            format!("operands too small for {m}x{k} * {k}x{n}"),
        ));
    }
    if m == 0 || n == 0 {
        return Ok(());
    }
    if k == 0 {
        if !accumulate {
            dst[..m * n].fill(0.0);
        }
        return Ok(());
    }
    // SAFETY: every index the kernel touches, (m-1, n-1) in dst and the (m-1, k-1) / (k-1, n-1)
    // corners of a and b, was checked to lie inside its slice above; dst is borrowed mutably.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst.as_mut_ptr(),
            1,
            n as isize,
            accumulate,
            a.data.as_ptr(),
            a.cs as isize,
            a.rs as isize,
            b.data.as_ptr(),
            b.cs as isize,
            b.rs as isize,
            1.0,
            1.0,
            false,
            false,
            false,
            gemm::Parallelism::None,
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    fn random(len: usize, seed: u64) -> Vec<f32> {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        (0..len).map(|_| rng.random_range(-1.0..1.0)).collect()
    }

    /// `a * b` as one product, and as products over row ranges of `rows` and column ranges of
    /// `cols` put side by side.
    fn whole_and_pieces(m: usize, n: usize, k: usize, rows: usize, cols: usize) -> [Vec<u32>; 2] {
        let (a, b) = (random(m * k, 1), random(k * n, 2));
        let mut whole = vec![0f32; m * n];
        matmul(
            &mut whole,
            m,
            n,
            k,
            Mat::rows(&a, k),
            Mat::rows(&b, n),
            false,
        )
        .unwrap();
        let mut pieced = vec![0f32; m * n];
        for r0 in (0..m).step_by(rows) {
            let pm = rows.min(m - r0);
            for c0 in (0..n).step_by(cols) {
                let pn = cols.min(n - c0);
                let mut piece = vec![0f32; pm * pn];
                let b_cols = Mat {
                    data: &b[c0..],
                    rs: n,
                    cs: 1,
                };
                matmul(
                    &mut piece,
                    pm,
                    pn,
                    k,
                    Mat::rows(&a[r0 * k..], k),
                    b_cols,
                    false,
                )
                .unwrap();
                for (i, row) in piece.chunks_exact(pn).enumerate() {
                    pieced[(r0 + i) * n + c0..][..pn].copy_from_slice(row);
                }
            }
        }
        [whole, pieced].map(|v| v.iter().map(|x| x.to_bits()).collect())
    }

    #[test]
    fn pieces_that_keep_the_sum_order_give_the_bits_of_the_whole_product() {
        // (m, n, k, rows per piece, columns per piece): an MLP forward split over units and
        // over rows, a weight gradient split over units, a shallow product.
        for (m, n, k, pm, pn) in [
            (64, 500, 784, 64, 250),
            (64, 48, 1024, 32, 48),
            (500, 784, 64, 250, 784),
            (150, 500, 640, 75, 500),
            (7, 9, 300, 3, 9),
        ] {
            assert!(same_sum_order((m, n), (pm, pn), k), "{m}x{n}x{k}");
            let [whole, pieced] = whole_and_pieces(m, n, k, pm, pn);
            assert!(whole == pieced, "{m}x{n}x{k} in {pm}x{pn} pieces");
        }
    }

    #[test]
    fn pieces_that_change_paths_are_refused_and_would_round_differently() {
        // 128 rows of 48 outputs at depth 784: the halves take gemm's small-product path
        // (chunks of 512 + 272), the whole its general one.
        assert!(!same_sum_order((128, 48), (64, 48), 784));
        let [whole, pieced] = whole_and_pieces(128, 48, 784, 64, 48);
        assert!(whole != pieced);
        assert!(!same_sum_order((64, 8), (1, 8), 3));
        assert!(same_sum_order((128, 48), (64, 48), 512));
    }
}

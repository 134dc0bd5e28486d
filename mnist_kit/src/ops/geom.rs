//! A convolution's geometry and the short copies its kernels move rows with; shared by the
//! im2col path (`cpu.rs`) and the in-place kernels (`shifted.rs`).

/// Geometry of one convolution.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ConvGeom {
    pub c: usize,
    pub h: usize,
    pub w: usize,
    pub o: usize,
    pub k: usize,
    pub stride: usize,
    pub pad: usize,
    pub oh: usize,
    pub ow: usize,
}

impl ConvGeom {
    pub(crate) fn new(
        x: [usize; 4],
        wt: [usize; 4],
        stride: usize,
        pad: usize,
    ) -> candle_core::Result<Self> {
        let [_, c, h, w] = x;
        let [o, ci, k, k2] = wt;
        if ci != c || k != k2 || stride == 0 {
            candle_core::bail!(
                "conv2d: input {x:?} and kernel {wt:?} do not match (stride {stride})"
            );
        }
        if k == 0 || c == 0 || h == 0 || w == 0 || o == 0 {
            candle_core::bail!("conv2d: empty input {x:?} or kernel {wt:?}");
        }
        if h + 2 * pad < k || w + 2 * pad < k {
            candle_core::bail!("conv2d: kernel {k} larger than padded input {h}x{w}");
        }
        Ok(ConvGeom {
            c,
            h,
            w,
            o,
            k,
            stride,
            pad,
            oh: (h + 2 * pad - k) / stride + 1,
            ow: (w + 2 * pad - k) / stride + 1,
        })
    }
    /// Whether the kernel covers the whole unpadded image (one output pixel): its unfolded
    /// columns are then the images themselves, transposed (LeNet-5's third layer).
    pub(crate) fn whole(&self) -> bool {
        self.pad == 0 && self.k == self.h && self.k == self.w
    }

    #[inline(always)]
    pub(crate) fn ckk(&self) -> usize {
        self.c * self.k * self.k
    }
    #[inline(always)]
    pub(crate) fn p(&self) -> usize {
        self.oh * self.ow
    }
    pub(crate) fn image(&self) -> usize {
        self.c * self.h * self.w
    }
}

/// Copies `N` floats with fixed-size moves (no `memcpy` call for a handful of floats).
#[inline(always)]
pub(crate) fn copy_n<const N: usize>(dst: &mut [f32], src: &[f32]) {
    if let (Some(d), Some(s)) = (dst.first_chunk_mut::<N>(), src.first_chunk::<N>()) {
        *d = *s;
    }
}

/// `dst.copy_from_slice(&src[..dst.len()])` with fixed-size moves of 8 floats and a fixed-size
/// tail: rows of an image are tens of bytes, where a `memcpy` call costs more than the copy.
#[inline(always)]
pub(crate) fn copy_short(dst: &mut [f32], src: &[f32]) {
    let n = dst.len();
    let mut i = 0;
    while i + 8 <= n {
        copy_n::<8>(&mut dst[i..], &src[i..]);
        i += 8;
    }
    let (d, s) = (&mut dst[i..], &src[i..]);
    match n - i {
        1 => copy_n::<1>(d, s),
        2 => copy_n::<2>(d, s),
        3 => copy_n::<3>(d, s),
        4 => copy_n::<4>(d, s),
        5 => copy_n::<5>(d, s),
        6 => copy_n::<6>(d, s),
        7 => copy_n::<7>(d, s),
        _ => {}
    }
}

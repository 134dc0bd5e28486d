//! Convolutions computed from the zero-padded image where it lies: no unfolded columns.
//!
//! The im2col path copies every input pixel `K²` times into columns (in short row pieces) and
//! then multiplies. The kernels here read the padded image (or the output gradient) in place:
//!
//! - **Forward by shifted loads** (stride 1, 6 or more output channels, wide maps). The
//!   output is computed on a grid as wide as the padded image: pixel `q = oy * Wp + ox`, for
//!   `ox` over the whole padded width, reads tap `(ky, kx)` of channel `ci` at
//!   `padded[ci][q + ky * Wp + kx]`, so a vector of consecutive `q` is one unaligned load per
//!   tap; the `Wp - OW` columns past each row are computed and dropped.
//! - **Forward by pixel rows** (layers of 16, 32, 64... channels, any stride and size): lanes
//!   over the output channels, one broadcast input value per output pixel and depth step.
//! - **Weight gradient** ([`weight_grad_applies`]): lanes over the output channels, one chain
//!   per weight over every pixel of every image, in registers throughout.
//! - **Input gradient** ([`input_grad_applies`]): tap by tap from the output gradient in a
//!   zero-bordered plane (see [`input_grad_on`]).
//!
//! **Same bits as the im2col path.** Each output is one fused multiply-add chain over the
//! depth `(ci, ky, kx)` in order, from zero, then the bias added and the ReLU applied; each
//! weight gradient one chain over the pixels in order; each input-gradient pixel the taps'
//! chains over the output channels added in tap order: the operations of [`super::gemm`]'s
//! definition, `bias_act` and the fold, in their order. The register tiles (picked per
//! instruction set) only group outputs. `tests/shifted.rs` checks every path against the
//! definition written as plain loops, bit for bit, on every instruction set and thread count.

use std::cell::RefCell;

#[cfg(target_arch = "x86_64")]
use super::gemm::x86::{Avx2, Avx512};
use super::gemm::{Lanes, Portable};
use super::geom::{ConvGeom, copy_short};
#[cfg(target_arch = "x86_64")]
use super::simd::{Isa, active};

/// Whether the forward runs by shifted loads: stride 1, a kernel wider than one pixel, at
/// least 6 output channels (fewer leave most rows of the register tile empty), and the
/// dropped columns at most 30 % of a row (the ResNet's 14- and 7-pixel maps and LeNet-5's
/// first layer; not the ResNet's 4-pixel map nor LeNet-5's 10-pixel maps under 5x5 kernels).
fn shifts(g: &ConvGeom) -> bool {
    g.stride == 1 && g.k > 1 && g.o >= 6 && (g.w + 2 * g.pad) * 10 <= g.ow * 13
}

/// Whether [`forward`] computes the convolution: by shifted loads where that pays, else by
/// [`rows`] where the output channels come in whole groups of 64 (any stride or size), or of
/// 16 at stride 1 under a kernel wider than one pixel (LeNet-5's second layer). Fewer
/// channels leave the vectors part empty; the ResNet's 32-channel stride-2 layers measured
/// faster by im2col.
pub(crate) fn forward_applies(g: &ConvGeom) -> bool {
    let narrow = g.o.is_multiple_of(16) && g.k > 1 && g.stride == 1;
    shifts(g) || g.o.is_multiple_of(64) || narrow
}

/// Whether [`input_grad`] computes the input gradient: stride 1, a kernel wider than one
/// pixel, at least 16 input channels (its register tile's rows run over them; LeNet-5's 6
/// left a quarter of them empty and measured slower than the im2col path), and the dropped
/// columns of its grid (`K - 1` per row) at most 30 % of a row.
pub(crate) fn input_grad_applies(g: &ConvGeom) -> bool {
    g.stride == 1 && g.k > 1 && g.c >= 16 && (g.w + g.k - 1) * 10 <= g.w * 13
}

/// Scratch per thread: packed weights and the zero-padded planes of one image.
#[derive(Default)]
struct Bufs {
    w: Vec<f32>,
    x: Vec<f32>,
    offsets: Vec<usize>,
    bases: Vec<usize>,
}

thread_local! {
    static BUFS: RefCell<Bufs> = RefCell::new(Bufs::default());
}

/// The grid: padded width `wp` and plane size, and the `q_len` grid pixels of the output.
#[derive(Clone, Copy)]
struct Grid {
    wp: usize,
    plane: usize,
    q_len: usize,
}

impl Grid {
    fn new(g: &ConvGeom) -> Self {
        let wp = g.w + 2 * g.pad;
        Grid {
            wp,
            plane: (g.h + 2 * g.pad) * wp,
            q_len: g.oh * wp,
        }
    }
}

/// The forward of a convolution ([`forward_applies`]): `out (n, O, OH, OW) = act(conv(x, wt) +
/// bias)` for the `n` images of `x (n, C, H, W)`. Every element of `out` is written.
pub(crate) fn forward(
    g: &ConvGeom,
    x: &[f32],
    wt: &[f32],
    bias: &[f32],
    relu: bool,
    out: &mut [f32],
) {
    let args = Args {
        g,
        x,
        wt,
        bias,
        relu,
    };
    with_bufs(|bufs| dispatch(args, out, bufs));
}

/// The operands of [`forward`].
#[derive(Clone, Copy)]
struct Args<'a> {
    g: &'a ConvGeom,
    x: &'a [f32],
    wt: &'a [f32],
    bias: &'a [f32],
    relu: bool,
}

/// Defines `$name($args)`, which runs `$portable`, or `$avx2` / `$avx512` compiled for those
/// instruction sets, by the path [`active`] picks (each an expression over the arguments).
macro_rules! by_isa {
    (fn $name:ident($($arg:ident: $ty:ty),*) {
        portable: $portable:expr,
        avx2: $avx2:expr,
        avx512: $avx512:expr $(,)?
    }) => {
        fn $name($($arg: $ty),*) {
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx2,fma")]
                fn avx2($($arg: $ty),*) {
                    $avx2
                }
                #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx2,fma")]
                fn avx512($($arg: $ty),*) {
                    $avx512
                }
                match active() {
                    // SAFETY: `active` only returns an instruction set the CPU supports.
                    Isa::Avx512 => return unsafe { avx512($($arg),*) },
                    // SAFETY: as above.
                    Isa::Avx2 => return unsafe { avx2($($arg),*) },
                    Isa::Portable => {}
                }
            }
            $portable
        }
    };
}

by_isa! {
    fn dispatch(a: Args, out: &mut [f32], bufs: &mut Bufs) {
        portable: if shifts(a.g) {
            run::<Portable, 4, 2>(a, out, bufs)
        } else {
            rows::<Portable, 4, 4>(a, out, bufs)
        },
        avx2: if shifts(a.g) {
            run::<Avx2, 6, 2>(a, out, bufs)
        } else {
            rows::<Avx2, 6, 2>(a, out, bufs)
        },
        avx512: if shifts(a.g) {
            run::<Avx512, 8, 2>(a, out, bufs)
        } else if a.g.o.is_multiple_of(64) {
            rows::<Avx512, 6, 4>(a, out, bufs)
        } else {
            rows::<Avx512, 12, 1>(a, out, bufs)
        },
    }
}

/// Packs `wt (O, C*K*K)` into `MR`-channel panels: depth step `r` of panel `t` holds the `MR`
/// weights of output channels `t * MR ..` at `(t * CKK + r) * MR` (zeros past the last).
fn pack_weights<const MR: usize>(o: usize, ckk: usize, wt: &[f32], out: &mut Vec<f32>) {
    out.clear();
    out.resize(o.div_ceil(MR) * ckk * MR, 0.0);
    for (oc, w_o) in wt.chunks_exact(ckk).enumerate().take(o) {
        for (r, &v) in w_o.iter().enumerate() {
            out[(oc / MR * ckk + r) * MR + oc % MR] = v;
        }
    }
}

/// Copies image `(C, H, W)` into the interiors of the zero-bordered planes of `buf`.
#[inline(always)]
fn pad_into(g: &ConvGeom, grid: Grid, img: &[f32], buf: &mut [f32]) {
    for (ci, plane) in img.chunks_exact(g.h * g.w).enumerate() {
        for (y, row) in plane.chunks_exact(g.w).enumerate() {
            let at = ci * grid.plane + (y + g.pad) * grid.wp + g.pad;
            copy_short(&mut buf[at..at + g.w], row);
        }
    }
}

#[inline(always)]
fn run<V: Lanes, const MR: usize, const NV: usize>(a: Args, out: &mut [f32], bufs: &mut Bufs) {
    let (g, grid) = (a.g, Grid::new(a.g));
    let (ckk, p) = (g.c * g.k * g.k, g.oh * g.ow);
    let nr = NV * V::L;
    pack_weights::<MR>(g.o, ckk, a.wt, &mut bufs.w);
    depth_offsets(g, grid, 1, &mut bufs.offsets);
    // Reads run past the last plane by less than a tile and a kernel row.
    let slack = grid.q_len.div_ceil(nr) * nr - grid.q_len + g.k;
    bufs.x.clear();
    bufs.x.resize(g.c * grid.plane + slack, 0.0);
    let image = g.c * g.h * g.w;
    for (img, out_j) in a.x.chunks_exact(image).zip(out.chunks_exact_mut(g.o * p)) {
        // The interiors are overwritten image by image; the borders stay zero.
        pad_into(g, grid, img, &mut bufs.x);
        for q0 in (0..grid.q_len).step_by(nr) {
            for (panel, w_p) in bufs.w.chunks_exact(ckk * MR).enumerate() {
                let acc = tile::<V, MR, NV>(&bufs.x, &bufs.offsets, w_p, q0);
                store::<V, MR, NV>(a, grid, &acc, panel * MR, q0, out_j);
            }
        }
    }
}

/// The chains of `MR` output channels at grid pixels `q0..q0 + NV * L`, over the depth in
/// order: step `r` reads the padded planes at `offsets[r] + q`.
#[inline(always)]
fn tile<V: Lanes, const MR: usize, const NV: usize>(
    x: &[f32],
    offsets: &[usize],
    w_panel: &[f32],
    q0: usize,
) -> [[V; NV]; MR] {
    let mut acc = [[V::zero(); NV]; MR];
    let (w_rows, _) = w_panel.as_chunks::<MR>();
    for (&off, w_r) in offsets.iter().zip(w_rows) {
        let src = &x[off + q0..][..NV * V::L];
        let mut b = [V::zero(); NV];
        for (v, bv) in b.iter_mut().enumerate() {
            *bv = V::load(&src[v * V::L..]);
        }
        for (acc_m, &w) in acc.iter_mut().zip(w_r) {
            let s = V::splat(w);
            for (c, &bv) in acc_m.iter_mut().zip(&b) {
                *c = c.fma(s, bv);
            }
        }
    }
    acc
}

/// Writes a tile's outputs that lie inside the image (not the dropped columns), bias added
/// and the ReLU applied as `bias_act` does.
#[inline(always)]
fn store<V: Lanes, const MR: usize, const NV: usize>(
    a: Args,
    grid: Grid,
    acc: &[[V; NV]; MR],
    o0: usize,
    q0: usize,
    out: &mut [f32],
) {
    let g = a.g;
    let p = g.oh * g.ow;
    let lanes = (NV * V::L).min(grid.q_len - q0);
    for (m, acc_m) in acc.iter().enumerate().take(g.o.saturating_sub(o0)) {
        let mut row = [0f32; 128];
        for (v, c) in acc_m.iter().enumerate() {
            c.store(&mut row[v * V::L..]);
        }
        let bias = a.bias[o0 + m];
        let plane = &mut out[(o0 + m) * p..][..p];
        valid_runs(q0, lanes, grid.wp, g.ow, |l, y, x, n| {
            let dst = &mut plane[y * g.ow + x..][..n];
            for (d, &s) in dst.iter_mut().zip(&row[l..l + n]) {
                let v = s + bias;
                *d = if a.relu { v.max(0.0) } else { v };
            }
        });
    }
}

/// Calls `f(lane, y, x, n)` for each run of a tile's lanes (grid pixels `q0..q0 + lanes` of a
/// grid `wd` wide) that lies in the first `w` columns of a row: `n` lanes from `lane`, at row
/// `y`, column `x`. The other columns are the ones computed and dropped.
#[inline(always)]
fn valid_runs(
    q0: usize,
    lanes: usize,
    wd: usize,
    w: usize,
    mut f: impl FnMut(usize, usize, usize, usize),
) {
    let mut l = 0;
    while l < lanes {
        let (y, x) = ((q0 + l) / wd, (q0 + l) % wd);
        let run = (wd - x).min(lanes - l);
        if x < w {
            f(l, y, x, run.min(w - x));
        }
        l += run;
    }
}

/// The forward with lanes over the output channels: a register tile of `MR` output pixels by
/// `NV` vectors of channels, each output a chain over the depth `(ci, ky, kx)` in order whose
/// input value is read where it lies in the padded image (`offsets[r] + bases[pixel]`, any
/// stride, any map size, no dropped columns). The weights are transposed to `(C*K*K, O)`.
#[inline(always)]
fn rows<V: Lanes, const MR: usize, const NV: usize>(a: Args, out: &mut [f32], bufs: &mut Bufs) {
    let (g, grid) = (a.g, Grid::new(a.g));
    let (ckk, p, image) = (g.c * g.k * g.k, g.oh * g.ow, g.c * g.h * g.w);
    bufs.w.clear();
    bufs.w.resize(ckk * g.o, 0.0);
    for (oc, w_o) in a.wt.chunks_exact(ckk).enumerate().take(g.o) {
        for (r, &v) in w_o.iter().enumerate() {
            bufs.w[r * g.o + oc] = v;
        }
    }
    depth_offsets(g, grid, 1, &mut bufs.offsets);
    pixel_bases(g, grid, &mut bufs.bases);
    let span = bufs.bases.last().map_or(0, |b| b + 1);
    // The last tile repeats the last pixel (computed, not stored).
    let tiles = p.div_ceil(MR);
    bufs.bases.resize(tiles * MR, span.saturating_sub(1));
    bufs.x.clear();
    bufs.x.resize(g.c * grid.plane, 0.0);
    for (img, out_j) in a.x.chunks_exact(image).zip(out.chunks_exact_mut(g.o * p)) {
        // The interiors are overwritten image by image; the borders stay zero.
        pad_into(g, grid, img, &mut bufs.x);
        for (t, bases) in bufs.bases.chunks_exact(MR).enumerate() {
            let bases: [usize; MR] = std::array::from_fn(|m| bases[m]);
            for o0 in (0..g.o).step_by(NV * V::L) {
                let mut acc = [[V::zero(); NV]; MR];
                for (&off, w_r) in bufs.offsets.iter().zip(bufs.w.chunks_exact(g.o)) {
                    let xr = &bufs.x[off..][..span];
                    let w_v: [V; NV] = std::array::from_fn(|v| V::load(&w_r[o0 + v * V::L..]));
                    for (acc_m, &base) in acc.iter_mut().zip(&bases) {
                        let s = V::splat(xr[base]);
                        for (c, &wv) in acc_m.iter_mut().zip(&w_v) {
                            *c = c.fma(s, wv);
                        }
                    }
                }
                store_rows::<V, MR, NV>(a, &acc, (t * MR, o0), out_j);
            }
        }
    }
}

/// Writes a [`rows`] tile: pixels `q0..` (those below `OH * OW`) of channels `o0..`, bias
/// added and the ReLU applied as `bias_act` does.
#[inline(always)]
fn store_rows<V: Lanes, const MR: usize, const NV: usize>(
    a: Args,
    acc: &[[V; NV]; MR],
    (q0, o0): (usize, usize),
    out: &mut [f32],
) {
    let p = a.g.oh * a.g.ow;
    for (m, acc_m) in acc.iter().enumerate().take(p.saturating_sub(q0)) {
        let mut lanes = [0f32; 128];
        for (v, c) in acc_m.iter().enumerate() {
            c.store(&mut lanes[v * V::L..]);
        }
        for (l, &s) in lanes[..NV * V::L].iter().enumerate() {
            let v = s + a.bias[o0 + l];
            out[(o0 + l) * p + q0 + m] = if a.relu { v.max(0.0) } else { v };
        }
    }
}

/// Whether [`weight_grad`] computes the convolution's weight gradient: output channels in
/// whole vectors of 16 (every convolution of the ResNet) or at most 8 (LeNet-5's first
/// layer, in vectors of 8); its lanes run over them.
pub(crate) fn weight_grad_applies(g: &ConvGeom) -> bool {
    g.o.is_multiple_of(16) || g.o <= 8
}

/// Runs `f` with this thread's scratch (fresh buffers if it is in use).
fn with_bufs<R>(f: impl FnOnce(&mut Bufs) -> R) -> R {
    BUFS.with(|cell| match cell.try_borrow_mut() {
        Ok(mut b) => f(&mut b),
        Err(_) => f(&mut Bufs::default()),
    })
}

/// The weight gradient `dw (O, C*K*K)` of a convolution ([`weight_grad_applies`]) over the
/// images `x (n, C, H, W)`, from their output gradient `dyc (O, n * OH * OW)` (image `j`'s
/// values of channel `o` at `dyc[o * n * OH * OW + j * OH * OW]`). Every element is written.
pub(crate) fn weight_grad(g: &ConvGeom, x: &[f32], dyc: &[f32], dw: &mut [f32]) {
    with_bufs(|bufs| dispatch_weight_grad(g, x, dyc, dyc.len() / g.o, dw, bufs));
}

/// The input gradient `dx (n, C, H, W)` of a convolution ([`input_grad_applies`]), from the
/// output gradient `dyc` laid out as for [`weight_grad`]. Every element is written.
pub(crate) fn input_grad(g: &ConvGeom, wt: &[f32], dyc: &[f32], dx: &mut [f32]) {
    with_bufs(|bufs| dispatch_input_grad(g, wt, dyc, dyc.len() / g.o, dx, bufs));
}

by_isa! {
    fn dispatch_weight_grad(g: &ConvGeom, x: &[f32], dyc: &[f32], ld: usize, dw: &mut [f32], bufs: &mut Bufs) {
        portable: weight_grad_on::<Portable, 8>(g, x, dyc, ld, dw, bufs),
        avx2: weight_grad_on::<Avx2, 12>(g, x, dyc, ld, dw, bufs),
        // Eight lanes where there are at most eight channels, with the 32 registers of
        // AVX-512 for a taller tile.
        avx512: if g.o <= 8 {
            weight_grad_on::<Avx2, 13>(g, x, dyc, ld, dw, bufs)
        } else {
            weight_grad_on::<Avx512, 12>(g, x, dyc, ld, dw, bufs)
        },
    }
}

/// The weight gradient: for each `MR` depth rows `(ci, ky, kx)` and `L` output channels, one
/// chain per weight over the output pixels of every image in order, kept in registers from
/// the first image to the last. Row `(ci, ky, kx)` of pixel `(oy, ox)` is the padded image's
/// value at `ci * plane + ky * Wp + kx + (oy * S) * Wp + ox * S`, read where it lies (any
/// stride, any map size); the output gradient is transposed to `(image, pixel, O)`. Each
/// chain has the terms of the im2col path's, in its order: the same bits.
#[inline(always)]
fn weight_grad_on<V: Lanes, const MR: usize>(
    g: &ConvGeom,
    x: &[f32],
    dyc: &[f32],
    ld: usize,
    dw: &mut [f32],
    bufs: &mut Bufs,
) {
    let grid = Grid::new(g);
    let (ckk, p, image) = (g.c * g.k * g.k, g.oh * g.ow, g.c * g.h * g.w);
    let n = x.len() / image;
    // Whole vectors, and whole 8-channel blocks for the transpose.
    let opad = g.o.next_multiple_of(V::L.max(8));
    // The padded images side by side, and the transposed output gradient.
    bufs.x.clear();
    bufs.x.resize(n * g.c * grid.plane, 0.0);
    for (img, buf) in x
        .chunks_exact(image)
        .zip(bufs.x.chunks_exact_mut(g.c * grid.plane))
    {
        pad_into(g, grid, img, buf);
    }
    bufs.w.clear();
    bufs.w.resize(n * p * opad, 0.0);
    for (j, dyt) in bufs.w.chunks_exact_mut(p * opad).enumerate() {
        transpose_grad::<V>(&dyc[j * p..], ld, (g.o, p), opad, dyt);
    }
    depth_offsets(g, grid, MR, &mut bufs.offsets);
    pixel_bases(g, grid, &mut bufs.bases);
    let span = bufs.bases.last().map_or(0, |b| b + 1);
    debug_assert!(bufs.bases.is_sorted());
    for o0 in (0..g.o).step_by(V::L) {
        for (r0, offs) in bufs.offsets.chunks_exact(MR).enumerate() {
            let mut acc = [V::zero(); MR];
            let planes = bufs.x.chunks_exact(g.c * grid.plane);
            for (xj, dyt) in planes.zip(bufs.w.chunks_exact(p * opad)) {
                let rows: [&[f32]; MR] = std::array::from_fn(|m| &xj[offs[m]..][..span]);
                for (&base, dy_q) in bufs.bases.iter().zip(dyt.chunks_exact(opad)) {
                    let b = V::load(&dy_q[o0..]);
                    for (a, row) in acc.iter_mut().zip(&rows) {
                        // SAFETY: `span` is the last base plus one and the bases increase, so
                        // every base indexes each row (all `span` long). Checked accesses here
                        // cost a compare per multiply-add where the rows outnumber registers.
                        let v = unsafe { *row.get_unchecked(base) };
                        *a = a.fma(V::splat(v), b);
                    }
                }
            }
            for (m, a) in acc.iter().enumerate() {
                let r = r0 * MR + m;
                if r >= ckk {
                    break;
                }
                let mut lanes = [0f32; 16];
                a.store(&mut lanes);
                for (l, &v) in lanes[..V::L].iter().enumerate().take(g.o - o0) {
                    dw[(o0 + l) * ckk + r] = v;
                }
            }
        }
    }
}

/// Writes the `o x p` block of `src` (row `oc` at `src[oc * ld]`) transposed into `dst` (row
/// `q` at `dst[q * ld_t]`, `ld_t` a multiple of 8 at least `o`): in 8 x 8 blocks transposed in
/// registers (the last rows of channels padded with zeros), the pixels past the last whole
/// block one by one.
#[inline(always)]
fn transpose_grad<V: Lanes>(
    src: &[f32],
    ld: usize,
    (o, p): (usize, usize),
    ld_t: usize,
    dst: &mut [f32],
) {
    let full_p = p / 8 * 8;
    for oc in (0..o).step_by(8) {
        let rows = (o - oc).min(8);
        for q in (0..full_p).step_by(8) {
            let dst = &mut dst[q * ld_t + oc..];
            if rows == 8 {
                V::transpose8(&src[oc * ld + q..], ld, dst, ld_t);
                continue;
            }
            let mut block = [0f32; 64];
            for (r, b) in block.chunks_exact_mut(8).enumerate().take(rows) {
                b.copy_from_slice(&src[(oc + r) * ld + q..][..8]);
            }
            V::transpose8(&block, 8, dst, ld_t);
        }
    }
    for (q, row) in dst.chunks_exact_mut(ld_t).enumerate().take(p).skip(full_p) {
        for (oc, d) in row.iter_mut().enumerate().take(o) {
            *d = src[oc * ld + q];
        }
    }
}

/// The offset of each depth step `(ci, ky, kx)` in the padded planes, padded with zeros to a
/// multiple of `mr` (rows computed and dropped).
fn depth_offsets(g: &ConvGeom, grid: Grid, mr: usize, out: &mut Vec<usize>) {
    out.clear();
    for ci in 0..g.c {
        for ky in 0..g.k {
            for kx in 0..g.k {
                out.push(ci * grid.plane + ky * grid.wp + kx);
            }
        }
    }
    out.resize(out.len().div_ceil(mr) * mr, 0);
}

/// The offset of each output pixel's first tap in a padded plane, pixels in order.
fn pixel_bases(g: &ConvGeom, grid: Grid, out: &mut Vec<usize>) {
    out.clear();
    for oy in 0..g.oh {
        for ox in 0..g.ow {
            out.push(oy * g.stride * grid.wp + ox * g.stride);
        }
    }
}

by_isa! {
    fn dispatch_input_grad(g: &ConvGeom, wt: &[f32], dyc: &[f32], ld: usize, dx: &mut [f32], bufs: &mut Bufs) {
        portable: input_grad_on::<Portable, 4>(g, wt, dyc, ld, dx, bufs),
        avx2: input_grad_on::<Avx2, 6>(g, wt, dyc, ld, dx, bufs),
        avx512: input_grad_on::<Avx512, 8>(g, wt, dyc, ld, dx, bufs),
    }
}

/// The grid of the input gradient: the input's pixels `q = y * wd + x` with rows as wide as
/// the output gradient's plane bordered by `K - 1 - pad`, and that plane's size.
#[derive(Clone, Copy)]
struct InGrid {
    wd: usize,
    plane: usize,
    border: usize,
    q_len: usize,
}

impl InGrid {
    fn new(g: &ConvGeom) -> Self {
        let wd = g.w + g.k - 1;
        InGrid {
            wd,
            plane: (g.h + g.k - 1) * wd,
            border: g.k - 1 - g.pad,
            q_len: g.h * wd,
        }
    }
}

/// Packs `wt (O, C, K, K)` for the input gradient into `MR`-channel panels: value
/// `(panel, tap, o, r)` at `((panel * K² + tap) * O + o) * MR + r` is the weight of output
/// channel `o`, input channel `panel * MR + r` (zero past the last), tap `tap`.
fn pack_transposed<const MR: usize>(g: &ConvGeom, wt: &[f32], out: &mut Vec<f32>) {
    let taps = g.k * g.k;
    out.clear();
    out.resize(g.c.div_ceil(MR) * taps * g.o * MR, 0.0);
    for (oc, w_o) in wt.chunks_exact(g.c * taps).enumerate().take(g.o) {
        for (ci, w_c) in w_o.chunks_exact(taps).enumerate() {
            for (t, &v) in w_c.iter().enumerate() {
                out[((ci / MR * taps + t) * g.o + oc) * MR + ci % MR] = v;
            }
        }
    }
}

/// The input gradient, tap by tap. The im2col path computes `dcol = Wᵀ dy` (a chain over the
/// output channels per tap) and folds the columns into a zero image, adding the taps' chains
/// in the order `(ky, kx)`. Here each input pixel does the same in registers: for each tap in
/// order, a chain over the output channels from zero, added to the pixel's running sum. The
/// output gradient sits in a plane bordered with `K - 1 - pad` zeros, so tap `(ky, kx)` of
/// grid pixel `q` reads `plane[q + (K-1-ky) * wd + (K-1-kx)]`; a tap that falls on the border
/// reads zeros, its chain is +0, and adding +0 to a sum that started at +0 (and so is never
/// -0) changes no bit: the same bits as the fold, which skips those taps.
#[inline(always)]
fn input_grad_on<V: Lanes, const MR: usize>(
    g: &ConvGeom,
    wt: &[f32],
    dyc: &[f32],
    ld: usize,
    dx: &mut [f32],
    bufs: &mut Bufs,
) {
    let pl = InGrid::new(g);
    let (image, p) = (g.c * g.h * g.w, g.oh * g.ow);
    pack_transposed::<MR>(g, wt, &mut bufs.w);
    // Reads run past the last plane by less than a vector and a kernel row.
    let slack = pl.q_len.div_ceil(V::L) * V::L - pl.q_len + g.k;
    bufs.x.clear();
    bufs.x.resize(g.o * pl.plane + slack, 0.0);
    for (j, dx_j) in dx.chunks_exact_mut(image).enumerate() {
        // The interiors are overwritten image by image; the borders stay zero.
        for oc in 0..g.o {
            let src = &dyc[oc * ld + j * p..][..p];
            let dst = &mut bufs.x[oc * pl.plane..][..pl.plane];
            for (u, row) in src.chunks_exact(g.ow).enumerate() {
                copy_short(&mut dst[(u + pl.border) * pl.wd + pl.border..][..g.ow], row);
            }
        }
        for q0 in (0..pl.q_len).step_by(V::L) {
            for (panel, w_p) in bufs.w.chunks_exact(g.k * g.k * g.o * MR).enumerate() {
                let total = tap_sums::<V, MR>(g, pl, &bufs.x, w_p, q0);
                store_input_grad::<V, MR>(g, pl, &total, panel * MR, q0, dx_j);
            }
        }
    }
}

/// The running sums of `MR` input channels at grid pixels `q0..q0 + L`: per tap, a chain over
/// the output channels from zero, added in tap order.
#[inline(always)]
fn tap_sums<V: Lanes, const MR: usize>(
    g: &ConvGeom,
    pl: InGrid,
    dy: &[f32],
    w_panel: &[f32],
    q0: usize,
) -> [V; MR] {
    let mut total = [V::zero(); MR];
    let k = g.k;
    for (t, w_t) in w_panel.chunks_exact(g.o * MR).enumerate() {
        let (ky, kx) = (t / k, t % k);
        let at = q0 + (k - 1 - ky) * pl.wd + (k - 1 - kx);
        let (w_rows, _) = w_t.as_chunks::<MR>();
        let mut acc = [V::zero(); MR];
        for (oc, w_o) in w_rows.iter().enumerate() {
            let b = V::load(&dy[oc * pl.plane + at..]);
            for (a, &w) in acc.iter_mut().zip(w_o) {
                *a = a.fma(V::splat(w), b);
            }
        }
        for (s, a) in total.iter_mut().zip(acc) {
            *s = s.add(a);
        }
    }
    total
}

/// Writes the input-gradient pixels of a tile that lie inside the image.
#[inline(always)]
fn store_input_grad<V: Lanes, const MR: usize>(
    g: &ConvGeom,
    pl: InGrid,
    total: &[V; MR],
    c0: usize,
    q0: usize,
    dx: &mut [f32],
) {
    let lanes = V::L.min(pl.q_len - q0);
    for (r, v) in total.iter().enumerate().take(g.c.saturating_sub(c0)) {
        let mut row = [0f32; 16];
        v.store(&mut row);
        let plane = &mut dx[(c0 + r) * g.h * g.w..][..g.h * g.w];
        valid_runs(q0, lanes, pl.wd, g.w, |l, y, x, n| {
            copy_short(&mut plane[y * g.w + x..][..n], &row[l..l + n]);
        });
    }
}

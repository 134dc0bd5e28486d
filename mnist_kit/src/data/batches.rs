//! Mini-batches as candle tensors, made on demand from `u8` pixels: seeded sample-level
//! shuffling per epoch, normalization, optional zero padding to 32x32, flat or NCHW layout.
//! The last partial batch is always kept, so evaluation never drops a sample.

use candle_core::{Device, Tensor};
use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use super::mnist::Split;
use crate::{Error, Result};

/// MNIST training-set pixel mean (of x/255), the usual normalization constant.
pub const MNIST_MEAN: f32 = 0.1307;
/// MNIST training-set pixel standard deviation (of x/255).
pub const MNIST_STD: f32 = 0.3081;

/// How raw pixels 0-255 become model inputs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Normalization {
    /// `(x/255 - 0.1307) / 0.3081`: zero mean, unit variance on MNIST.
    #[default]
    Standard,
    /// `x/255` in `[0, 1]`.
    UnitRange,
    /// The raw intensities `x` in `[0, 255]`, unscaled (what seed study 002 compares scaling
    /// against).
    Raw,
}

impl Normalization {
    /// Maps a pixel intensity in `[0, 1]` to the model's input scale.
    #[inline]
    pub fn apply(self, unit: f32) -> f32 {
        match self {
            Normalization::Standard => (unit - MNIST_MEAN) / MNIST_STD,
            Normalization::UnitRange => unit,
            Normalization::Raw => unit * 255.0,
        }
    }
    /// The input value of a background (zero) pixel.
    pub fn background(self) -> f32 {
        self.apply(0.0)
    }
}

/// Tensor layout of a batch of images.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Layout {
    /// `(N, side*side)`: for MLPs.
    Flat,
    /// `(N, 1, side, side)`: for convolutional models.
    #[default]
    Nchw,
}

/// The input a model expects: side length (28, or 32 = zero-padded by 2 pixels), layout and
/// pixel normalization. A [`crate::models::Network`] carries its own, set when it is trained and
/// saved with it, so every batch made for it is scaled as in training.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct InputSpec {
    /// Side of the square input; larger than the images means centred zero padding.
    pub side: usize,
    /// Flat or NCHW.
    pub layout: Layout,
    /// How pixels are scaled.
    #[serde(default)]
    pub normalization: Normalization,
}

impl InputSpec {
    /// Values per image.
    pub fn len(&self) -> usize {
        self.side * self.side
    }
    /// Always false; present for clippy's `len_without_is_empty`.
    pub fn is_empty(&self) -> bool {
        self.side == 0
    }
    /// Shape of a batch of `n` inputs.
    pub fn batch_shape(&self, n: usize) -> Vec<usize> {
        match self.layout {
            Layout::Flat => vec![n, self.len()],
            Layout::Nchw => vec![n, 1, self.side, self.side],
        }
    }
}

/// One batch: inputs, `u32` labels and the positions (in the split view) it was made from.
#[derive(Debug, Clone)]
pub struct Batch {
    /// Inputs in the [`InputSpec`]'s shape, f32.
    pub images: Tensor,
    /// Labels, shape `(N,)`, u32.
    pub labels: Tensor,
    /// Positions of the samples in the split view.
    pub positions: Vec<usize>,
}

/// A function applied to each image (28x28 in `[0,1]`, row-major) before padding and
/// normalization: the training loop's augmentation hook. It receives the sample's RNG.
pub type ImageTransform<'a> = &'a (dyn Fn(&mut [f32], usize, &mut ChaCha8Rng) + Sync);

/// How to cut a split into batches.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct BatchOptions {
    /// Samples per batch (the last batch may be smaller).
    pub batch_size: usize,
    /// Shuffle sample order (seeded by `seed` and the epoch).
    pub shuffle: bool,
    /// Seed of the shuffle.
    pub seed: u64,
}

impl Default for BatchOptions {
    fn default() -> Self {
        BatchOptions {
            batch_size: 64,
            shuffle: false,
            seed: 0,
        }
    }
}

/// Sample order of one epoch: identity, or a permutation seeded by `(seed, epoch)`.
pub fn epoch_order(len: usize, shuffle: bool, seed: u64, epoch: usize) -> Vec<usize> {
    let mut order: Vec<usize> = (0..len).collect();
    if shuffle {
        order.shuffle(&mut ChaCha8Rng::seed_from_u64(mix(seed, epoch as u64)));
    }
    order
}

/// Derives an independent stream seed from a base seed and a counter (SplitMix64 finalizer).
pub fn mix(seed: u64, n: u64) -> u64 {
    let mut z = seed ^ n.wrapping_add(1).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Iterator over the batches of one epoch.
pub struct Batches<'a> {
    split: &'a Split,
    spec: InputSpec,
    opts: BatchOptions,
    order: Vec<usize>,
    next: usize,
    device: Device,
    transform: Option<(ImageTransform<'a>, u64)>,
}

impl<'a> Batches<'a> {
    /// Batches of `split` for `epoch` in the given input format.
    pub fn new(
        split: &'a Split,
        spec: InputSpec,
        opts: BatchOptions,
        epoch: usize,
        device: &Device,
    ) -> Result<Self> {
        if opts.batch_size == 0 {
            return Err(Error::invalid("batch size", "must be at least 1"));
        }
        if spec.side < split.rows() || spec.side < split.cols() {
            return Err(Error::invalid(
                "input spec",
                format!(
                    "side {} is smaller than the {}x{} images",
                    spec.side,
                    split.rows(),
                    split.cols()
                ),
            ));
        }
        Ok(Batches {
            order: epoch_order(split.len(), opts.shuffle, opts.seed, epoch),
            split,
            spec,
            opts,
            next: 0,
            device: device.clone(),
            transform: None,
        })
    }

    /// Applies `transform` to every image (training augmentation); `seed` makes it repeatable.
    pub fn with_transform(mut self, transform: ImageTransform<'a>, seed: u64) -> Self {
        self.transform = Some((transform, seed));
        self
    }

    /// Number of batches in the epoch.
    pub fn num_batches(&self) -> usize {
        self.order.len().div_ceil(self.opts.batch_size)
    }

    fn make(&self, positions: Vec<usize>) -> Result<Batch> {
        let n = positions.len();
        let mut data = vec![0f32; n * self.spec.len()];
        let (rows, cols) = (self.split.rows(), self.split.cols());
        let (top, left) = ((self.spec.side - rows) / 2, (self.spec.side - cols) / 2);
        let norm = self.spec.normalization;
        let bg = norm.background();
        let side = self.spec.side;
        let fill = |(k, out): (usize, &mut [f32])| {
            let pos = positions[k];
            let Some(pixels) = self.split.image(pos) else {
                return;
            };
            let mut unit = super::mnist::unit_pixels(pixels);
            if let Some((t, seed)) = self.transform {
                let mut rng = ChaCha8Rng::seed_from_u64(mix(seed, pos as u64));
                t(&mut unit, cols, &mut rng);
            }
            out.fill(bg);
            for r in 0..rows {
                let dst = &mut out[(top + r) * side + left..(top + r) * side + left + cols];
                for (d, &u) in dst.iter_mut().zip(&unit[r * cols..(r + 1) * cols]) {
                    *d = norm.apply(u);
                }
            }
        };
        // A copy is not worth a rayon task below 256 images; a bilinear warp is, from 32.
        if n >= 256 || (self.transform.is_some() && n >= 32) {
            use rayon::prelude::*;
            data.par_chunks_mut(self.spec.len())
                .enumerate()
                .for_each(fill);
        } else {
            data.chunks_mut(self.spec.len()).enumerate().for_each(fill);
        }
        let labels: Vec<u32> = positions
            .iter()
            .map(|&p| self.split.label(p).map(u32::from).unwrap_or(0))
            .collect();
        let images = Tensor::from_vec(data, self.spec.batch_shape(n), &self.device)?;
        let labels = Tensor::from_vec(labels, n, &self.device)?;
        Ok(Batch {
            images,
            labels,
            positions,
        })
    }
}

impl Iterator for Batches<'_> {
    type Item = Result<Batch>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.next >= self.order.len() {
            return None;
        }
        let end = (self.next + self.opts.batch_size).min(self.order.len());
        let positions = self.order[self.next..end].to_vec();
        self.next = end;
        Some(self.make(positions))
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let left = (self.order.len() - self.next).div_ceil(self.opts.batch_size);
        (left, Some(left))
    }
}

impl Split {
    /// Batches of this split for one epoch (see [`Batches`]).
    ///
    /// ```no_run
    /// use mnist_kit::data::{BatchOptions, InputSpec, Layout, Mnist, Normalization};
    /// let mnist = Mnist::load_default()?;
    /// let spec = InputSpec { side: 32, layout: Layout::Nchw, normalization: Normalization::Standard };
    /// let opts = BatchOptions { batch_size: 1000, ..Default::default() };
    /// for batch in mnist.test.batches(spec, opts, 0, &candle_core::Device::Cpu)? {
    ///     assert_eq!(batch?.images.dims()[1..], [1, 32, 32]);
    /// }
    /// # Ok::<(), mnist_kit::Error>(())
    /// ```
    pub fn batches(
        &self,
        spec: InputSpec,
        opts: BatchOptions,
        epoch: usize,
        device: &Device,
    ) -> Result<Batches<'_>> {
        Batches::new(self, spec, opts, epoch, device)
    }
}

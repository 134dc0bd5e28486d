//! MNIST-format datasets: locating the files, loading both splits, and index views for
//! train/validation splits. Pixels stay `u8` (47 MB for the training set, not 188 MB of f32).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;

use super::idx::read_idx;
use crate::{Error, Result};

/// Environment variable that overrides where the dataset is looked for.
pub const DATA_DIR_ENV: &str = "MNIST_DATA_DIR";
/// Number of classes (digits 0-9).
pub const NUM_CLASSES: usize = 10;

/// Images and labels of one split, shared cheaply between views.
#[derive(Debug)]
struct Store {
    images: Vec<u8>,
    labels: Vec<u8>,
    rows: usize,
    cols: usize,
}

/// A view on a set of images with labels: a whole file pair, or a subset of one (train and
/// validation are two views on the same 60k images). Cloning is cheap.
#[derive(Debug, Clone)]
pub struct Split {
    store: Arc<Store>,
    indices: Arc<[u32]>,
    name: String,
}

impl Split {
    /// Builds a split from raw pixels (`count*rows*cols` bytes) and labels (0..=9).
    pub fn from_raw(
        name: impl Into<String>,
        images: Vec<u8>,
        labels: Vec<u8>,
        rows: usize,
        cols: usize,
    ) -> Result<Self> {
        let name = name.into();
        let per = rows
            .checked_mul(cols)
            .filter(|&p| p > 0)
            .ok_or_else(|| Error::invalid("split", format!("{name}: image size {rows}x{cols}")))?;
        if images.len() != per * labels.len() {
            return Err(Error::invalid(
                "split",
                format!(
                    "{name}: {} labels need {} pixel bytes, got {}",
                    labels.len(),
                    per * labels.len(),
                    images.len()
                ),
            ));
        }
        if let Some(i) = labels.iter().position(|&l| l as usize >= NUM_CLASSES) {
            return Err(Error::invalid(
                "split",
                format!(
                    "{name}: label {} at index {i} is not a digit 0-9",
                    labels[i]
                ),
            ));
        }
        let n = u32::try_from(labels.len())
            .map_err(|_| Error::invalid("split", format!("{name}: too many samples")))?;
        Ok(Split {
            indices: (0..n).collect(),
            store: Arc::new(Store {
                images,
                labels,
                rows,
                cols,
            }),
            name,
        })
    }

    /// Name of the split (`"train"`, `"validation"`, `"test"`, ...).
    pub fn name(&self) -> &str {
        &self.name
    }
    /// Number of samples in this view.
    pub fn len(&self) -> usize {
        self.indices.len()
    }
    /// True when the view holds no sample.
    pub fn is_empty(&self) -> bool {
        self.indices.is_empty()
    }
    /// Image height in pixels.
    pub fn rows(&self) -> usize {
        self.store.rows
    }
    /// Image width in pixels.
    pub fn cols(&self) -> usize {
        self.store.cols
    }
    /// Pixels per image.
    pub fn image_len(&self) -> usize {
        self.store.rows * self.store.cols
    }
    /// Pixels (row-major, 0-255) of the `i`-th sample of this view, or `None` past the end.
    pub fn image(&self, i: usize) -> Option<&[u8]> {
        let j = *self.indices.get(i)? as usize;
        let n = self.image_len();
        self.store.images.get(j * n..(j + 1) * n)
    }
    /// Label of the `i`-th sample of this view, or `None` past the end.
    pub fn label(&self, i: usize) -> Option<u8> {
        let j = *self.indices.get(i)? as usize;
        self.store.labels.get(j).copied()
    }
    /// Iterator over `(pixels, label)` in view order.
    pub fn iter(&self) -> impl Iterator<Item = (&[u8], u8)> + '_ {
        let n = self.image_len();
        self.indices.iter().map(move |&j| {
            let j = j as usize;
            (&self.store.images[j * n..(j + 1) * n], self.store.labels[j])
        })
    }
    /// All labels in view order.
    pub fn labels(&self) -> Vec<u8> {
        self.iter().map(|(_, l)| l).collect()
    }

    /// A 64-bit FNV-1a digest of the images and labels in view order: whether two views hold
    /// the same samples, without keeping them.
    ///
    /// ```
    /// let mnist = mnist_kit::data::Mnist::load_default()?;
    /// assert_eq!(mnist.test.take(5).digest(), mnist.test.take(5).digest());
    /// assert_ne!(mnist.test.take(5).digest(), mnist.test.take(6).digest());
    /// # Ok::<(), mnist_kit::Error>(())
    /// ```
    pub fn digest(&self) -> u64 {
        fnv1a(
            self.iter()
                .flat_map(|(img, label)| img.iter().copied().chain([label])),
        )
    }

    /// A view on the given positions of this view (positions past the end are an error).
    pub fn subset(&self, name: impl Into<String>, positions: &[usize]) -> Result<Split> {
        let indices = positions
            .iter()
            .map(|&p| {
                self.indices.get(p).copied().ok_or_else(|| {
                    Error::invalid(
                        "subset",
                        format!(
                            "position {p} outside {} ({} samples)",
                            self.name,
                            self.len()
                        ),
                    )
                })
            })
            .collect::<Result<Arc<[u32]>>>()?;
        Ok(Split {
            store: self.store.clone(),
            indices,
            name: name.into(),
        })
    }

    /// The first `n` samples (all when `n >= len`): quick runs and tests.
    pub fn take(&self, n: usize) -> Split {
        Split {
            store: self.store.clone(),
            indices: self.indices[..n.min(self.len())].into(),
            name: self.name.clone(),
        }
    }

    /// Splits off `val_count` samples chosen by a seeded shuffle: `(train, validation)`.
    /// `val_count = 0` gives an empty validation view.
    pub fn split_validation(&self, val_count: usize, seed: u64) -> Result<(Split, Split)> {
        if val_count > self.len() {
            return Err(Error::invalid(
                "validation split",
                format!(
                    "{val_count} validation samples from {} available",
                    self.len()
                ),
            ));
        }
        let mut order: Vec<usize> = (0..self.len()).collect();
        order.shuffle(&mut ChaCha8Rng::seed_from_u64(seed));
        let (val, train) = order.split_at(val_count);
        let mut train = train.to_vec();
        let mut val = val.to_vec();
        // Keep file order inside each part: deterministic and easy to inspect.
        train.sort_unstable();
        val.sort_unstable();
        Ok((
            self.subset("train", &train)?,
            self.subset("validation", &val)?,
        ))
    }
}

/// Both splits of an MNIST-format dataset.
#[derive(Debug, Clone)]
pub struct Mnist {
    /// The 60,000 training images (for MNIST).
    pub train: Split,
    /// The 10,000 test images (for MNIST).
    pub test: Split,
    /// Directory the files were read from.
    pub dir: PathBuf,
}

const FILES: [(&str, &str); 2] = [
    ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
];

impl Mnist {
    /// Loads the four MNIST files from `dir` (each `.gz` or raw).
    ///
    /// ```no_run
    /// let mnist = mnist_kit::data::Mnist::load("data/mnist")?;
    /// assert_eq!(mnist.train.len(), 60_000);
    /// # Ok::<(), mnist_kit::Error>(())
    /// ```
    pub fn load(dir: impl AsRef<Path>) -> Result<Self> {
        let dir = dir.as_ref();
        if !dir.is_dir() {
            return Err(Error::DataNotFound {
                tried: vec![dir.to_path_buf()],
            });
        }
        let train = load_split(dir, "train", FILES[0])?;
        let test = load_split(dir, "test", FILES[1])?;
        if (train.rows(), train.cols()) != (test.rows(), test.cols()) {
            return Err(Error::Dataset {
                path: dir.to_path_buf(),
                reason: format!(
                    "train images are {}x{} but test images {}x{}",
                    train.rows(),
                    train.cols(),
                    test.rows(),
                    test.cols()
                ),
            });
        }
        Ok(Mnist {
            train,
            test,
            dir: dir.to_path_buf(),
        })
    }

    /// Loads from [`locate`]: `$MNIST_DATA_DIR`, else the bundled `data/mnist`.
    pub fn load_default() -> Result<Self> {
        Self::load(locate()?)
    }

    /// Loads from `dir` when given, else [`Mnist::load_default`].
    pub fn load_from(dir: Option<&Path>) -> Result<Self> {
        match dir {
            Some(d) => Self::load(d),
            None => Self::load_default(),
        }
    }
}

/// Finds the dataset directory: `$MNIST_DATA_DIR` if set, else `data/mnist` in the current
/// directory or any ancestor (so notebooks in `notebooks/` and tests in `mnist_kit/` find it),
/// else the copy next to this crate's sources. The error lists every path tried.
pub fn locate() -> Result<PathBuf> {
    let mut tried = Vec::new();
    if let Some(dir) = std::env::var_os(DATA_DIR_ENV) {
        let dir = PathBuf::from(dir);
        if has_files(&dir) {
            return Ok(dir);
        }
        tried.push(dir);
        return Err(Error::DataNotFound { tried });
    }
    let mut candidates: Vec<PathBuf> = Vec::new();
    if let Ok(cwd) = std::env::current_dir() {
        candidates.extend(cwd.ancestors().map(|a| a.join("data").join("mnist")));
    }
    candidates.push(Path::new(env!("CARGO_MANIFEST_DIR")).join("../data/mnist"));
    for dir in candidates {
        if has_files(&dir) {
            return Ok(dir);
        }
        tried.push(dir);
    }
    Err(Error::DataNotFound { tried })
}

/// A bundled data directory: `$env` if set, else `rel` (for example `data/real-digits`) in the
/// current directory or any ancestor, else beside this crate's sources. The error lists every
/// path tried.
pub(crate) fn find_up(env: &str, rel: &str) -> Result<PathBuf> {
    if let Some(dir) = std::env::var_os(env) {
        return Ok(PathBuf::from(dir));
    }
    let mut candidates: Vec<PathBuf> = Vec::new();
    if let Ok(cwd) = std::env::current_dir() {
        candidates.extend(cwd.ancestors().map(|a| a.join(rel)));
    }
    candidates.push(Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(rel));
    let mut tried = Vec::new();
    for dir in candidates {
        if dir.is_dir() {
            return Ok(dir);
        }
        tried.push(dir);
    }
    Err(Error::DataNotFound { tried })
}

fn has_files(dir: &Path) -> bool {
    FILES
        .iter()
        .flat_map(|(i, l)| [i, l])
        .all(|name| find_file(dir, name).is_some())
}

fn find_file(dir: &Path, stem: &str) -> Option<PathBuf> {
    [format!("{stem}.gz"), stem.to_string()]
        .into_iter()
        .map(|n| dir.join(n))
        .find(|p| p.is_file())
}

fn load_split(dir: &Path, name: &str, (images, labels): (&str, &str)) -> Result<Split> {
    let missing = |stem: &str| Error::Dataset {
        path: dir.join(stem),
        reason: format!("missing: expected {stem}.gz or {stem}"),
    };
    let image_path = find_file(dir, images).ok_or_else(|| missing(images))?;
    let label_path = find_file(dir, labels).ok_or_else(|| missing(labels))?;
    let img = read_idx(&image_path, 3)?;
    let lab = read_idx(&label_path, 1)?;
    let (count, rows, cols) = (img.dims[0], img.dims[1], img.dims[2]);
    if rows == 0 || cols == 0 {
        return Err(Error::Idx {
            path: image_path,
            reason: format!("image size {rows}x{cols}"),
        });
    }
    if lab.dims[0] != count {
        return Err(Error::Dataset {
            path: label_path,
            reason: format!(
                "{} labels but {} holds {count} images",
                lab.dims[0],
                image_path.display()
            ),
        });
    }
    if let Some(i) = lab.data.iter().position(|&l| l as usize >= NUM_CLASSES) {
        return Err(Error::Dataset {
            path: label_path,
            reason: format!("label {} at index {i} is not a digit 0-9", lab.data[i]),
        });
    }
    Split::from_raw(name, img.data, lab.data, rows, cols)
}

/// The 64-bit FNV-1a hash of `bytes`.
pub(crate) fn fnv1a(bytes: impl IntoIterator<Item = u8>) -> u64 {
    bytes.into_iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// The pixels of a raw MNIST image in `[0, 1]`.
pub(crate) fn unit_pixels(img: &[u8]) -> Vec<f32> {
    img.iter().map(|&v| f32::from(v) / 255.0).collect()
}

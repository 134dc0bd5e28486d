//! Data: the IDX format, the MNIST splits, batches as tensors, augmentation, the MNIST-C
//! corruptions and exploration statistics.

pub mod augment;
pub mod batches;
pub mod corrupt;
pub mod explore;
pub mod idx;
pub mod mnist;

pub use batches::{Batch, BatchOptions, Batches, InputSpec, Layout, Normalization};
pub use explore::{DataStats, SplitStats};
pub(crate) use mnist::find_up;
pub use mnist::{Mnist, NUM_CLASSES, Split};

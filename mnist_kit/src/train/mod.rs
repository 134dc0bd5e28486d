//! Training: config, optimizers, schedules, the loop with early stopping and checkpoints, the
//! History it returns, and evaluation.

pub mod config;
pub mod evaluate;
pub mod history;
pub mod optim;
pub mod run;
pub mod run_dir;
pub mod schedule;
pub mod step;
pub mod trainer;

pub use config::{EarlyStopping, Mode, Monitor, TrainConfig};
pub(crate) use evaluate::evaluate_in_batches;
pub use evaluate::{Evaluation, evaluate};
pub use history::{EpochRecord, History, StopReason};
pub use optim::{OptimizerConfig, OptimizerKind, OptimizerState};
pub use run::{Predictions, Run};
pub use run_dir::RunDir;
pub use schedule::Schedule;
pub use step::{GradStats, Optimizer};
pub use trainer::{TrainData, Trainer};

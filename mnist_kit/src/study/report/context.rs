//! What every section of the report reads, and the one JSON helper they share.

use std::path::PathBuf;

use serde_json::{Value, json};

use super::super::ExperimentResult;
use super::super::StudyConfig;
use super::super::aggregate::Replicates;
use super::super::evidence::Evidence;
use super::super::plan::Group;
use super::figures::FigureSink;
use crate::Result;
use crate::data::Mnist;
use crate::fsutil::write_bytes_atomic;

/// What every section reads: the data, the config, every finished run grouped by experiment,
/// their per-image evidence, and where figures and tables go.
pub(crate) struct Ctx<'a> {
    pub mnist: &'a Mnist,
    pub cfg: &'a StudyConfig,
    pub all: &'a [ExperimentResult],
    pub reps: Vec<Replicates>,
    pub evidence: Evidence,
    pub sink: FigureSink,
    pub tables: PathBuf,
}

impl Ctx<'_> {
    /// The experiment called `name`, when it finished.
    pub fn find(&self, name: &str) -> Option<&Replicates> {
        self.reps.iter().find(|r| r.name() == name)
    }

    /// The finished members of `g`.
    pub fn members(&self, g: &Group) -> Vec<&Replicates> {
        g.members.iter().filter_map(|m| self.find(m)).collect()
    }

    /// Writes a CSV table.
    pub fn table(&self, name: &str, text: &str) -> Result<()> {
        write_bytes_atomic(&self.tables.join(name), text.as_bytes())
    }
}

/// `null` for NaN and infinities (JSON has no such numbers).
pub(crate) fn finite(v: f64) -> Value {
    if v.is_finite() { json!(v) } else { Value::Null }
}

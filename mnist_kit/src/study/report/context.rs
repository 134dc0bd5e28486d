//! What every section of the report reads, and the one JSON helper they share.

use std::path::PathBuf;

use serde_json::{Value, json};

use super::super::ExperimentResult;
use super::super::StudyConfig;
use super::super::aggregate::Replicates;
use super::super::evidence::Evidence;
use super::super::plan::Group;
use super::super::probes::{Machine, Probes};
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
    /// What the report measures on the networks themselves: read from `probes.json` when it
    /// holds it, else measured now (the weights must be there) and kept.
    pub probes: std::sync::Mutex<Probes>,
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

    /// A probe of the trained networks: what `read` finds in the probes, else what `measure`
    /// gives (from the weights), kept with `keep`.
    pub fn probe<T: Clone>(
        &self,
        read: impl Fn(&Probes) -> Option<T>,
        measure: impl FnOnce() -> Result<T>,
        keep: impl FnOnce(&mut Probes, T),
    ) -> Result<T> {
        if let Some(v) = self.probes.lock().ok().and_then(|p| read(&p)) {
            return Ok(v);
        }
        let v = measure()?;
        if let Ok(mut p) = self.probes.lock() {
            keep(&mut p, v.clone());
        }
        Ok(v)
    }

    /// The machine the report states: the recorded study's when only the report is
    /// rewritten, else this one (its wall time filled in at the end).
    pub fn machine(&self) -> Machine {
        let recorded = self.probes.lock().ok().and_then(|p| p.machine.clone());
        match recorded {
            Some(m) if self.cfg.report_only => m,
            _ => Machine {
                cpu: crate::bench::cpu_name(),
                logical_cpus: std::thread::available_parallelism().map_or(1, |n| n.get()),
                jobs: self.cfg.jobs,
                invocation_seconds: f64::NAN,
            },
        }
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

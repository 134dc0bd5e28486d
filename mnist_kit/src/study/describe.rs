//! What the runs were: the model and training configuration of each experiment as a table, so
//! a notebook shows the reader every learning rate, schedule and epoch count it rests on.

use std::borrow::Borrow;

use polars::prelude::*;

use super::ExperimentResult;
use super::aggregate::by_experiment;
use crate::Result;
use crate::data::augment::AugmentConfig;
use crate::display::Table;
use crate::models::ModelConfig;
use crate::train::Schedule;

/// One row per experiment of `results` (in order of first appearance): model and its
/// overrides, parameters, epochs, batch size, optimizer, learning rate, schedule, L2, weight
/// decay, augmentation and the seeds it ran with.
///
/// ```no_run
/// # use mnist_kit::prelude::*;
/// # let (mnist, cfg) = (Mnist::load_default()?, StudyConfig::for_notebooks());
/// let runs = study::run(&mnist, &cfg, "part2-dropout")?;
/// study::configs(&runs)?.evcxr_display();
/// # Ok::<(), mnist_kit::Error>(())
/// ```
pub fn configs<R: Borrow<ExperimentResult>>(results: &[R]) -> Result<Table> {
    let reps = by_experiment(results);
    let mut cols: [Vec<String>; 11] = Default::default();
    let mut params = Vec::new();
    let mut epochs = Vec::new();
    let mut batch = Vec::new();
    let mut lr = Vec::new();
    for r in &reps {
        let first = &r.runs[0];
        let (e, t) = (&first.experiment, &first.experiment.train);
        let seeds: Vec<String> = r.runs.iter().map(|x| x.seed().to_string()).collect();
        let row = [
            e.name.clone(),
            model_text(&e.model, &e.config),
            t.optimizer.kind.name().to_string(),
            schedule_text(t.schedule),
            format!("{}", t.optimizer.l2),
            format!("{}", t.optimizer.weight_decay),
            augment_text(t.augment.as_ref()),
            format!("{}", t.label_smoothing),
            t.validation.to_string(),
            seeds.join(" "),
            e.group.clone(),
        ];
        for (c, v) in cols.iter_mut().zip(row) {
            c.push(v);
        }
        params.push(first.params as u64);
        epochs.push(t.epochs as u64);
        batch.push(t.batch_size as u64);
        lr.push(t.lr);
    }
    let [
        name,
        model,
        opt,
        schedule,
        l2,
        wd,
        augment,
        smoothing,
        validation,
        seeds,
        group,
    ] = cols;
    let frame = df!(
        "experiment" => name,
        "model" => model,
        "params" => params,
        "epochs" => epochs,
        "batch" => batch,
        "optimizer" => opt,
        "lr" => lr,
        "schedule" => schedule,
        "l2" => l2,
        "weight decay" => wd,
        "augmentation" => augment,
        "label smoothing" => smoothing,
        "validation" => validation,
        "seeds" => seeds,
        "group" => group,
    )?;
    Ok(Table::new("what each experiment ran", frame))
}

fn model_text(preset: &str, c: &ModelConfig) -> String {
    let Ok(base) = ModelConfig::preset(preset) else {
        return preset.to_string();
    };
    if &base == c {
        return preset.to_string();
    }
    // The fields that differ from the preset, as JSON.
    let (a, b) = (
        serde_json::to_value(&base).unwrap_or_default(),
        serde_json::to_value(c).unwrap_or_default(),
    );
    let diffs: Vec<String> = b
        .as_object()
        .into_iter()
        .flatten()
        .filter(|(k, v)| a.get(k.as_str()) != Some(v))
        .map(|(k, v)| format!("{k}={}", json_text(v)))
        .collect();
    format!("{preset} ({})", diffs.join(", "))
}

/// A config value as a person writes it: floats at single precision (the configs hold `f32`s,
/// so `0.1`, not `0.10000000149011612`).
fn json_text(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::Number(n) if n.is_f64() => n
            .as_f64()
            .map_or_else(|| n.to_string(), |x| (x as f32).to_string()),
        serde_json::Value::Array(items) => format!(
            "[{}]",
            items.iter().map(json_text).collect::<Vec<_>>().join(", ")
        ),
        other => other.to_string(),
    }
}

fn schedule_text(s: Schedule) -> String {
    match s {
        Schedule::Constant => "constant".into(),
        Schedule::Step { step_size, gamma } => format!("step x{gamma} every {step_size}"),
        Schedule::Cosine { min_factor } => format!("cosine to x{min_factor}"),
        Schedule::WarmupCosine {
            warmup_epochs,
            min_factor,
        } => format!("warm-up {warmup_epochs}, cosine to x{min_factor}"),
        Schedule::OneCycle { pct_start, .. } => format!("one-cycle ({pct_start} up)"),
    }
}

/// An augmentation config in words (`none` without one), as the config tables show it.
pub fn augment_text(a: Option<&AugmentConfig>) -> String {
    let Some(a) = a else {
        return "none".into();
    };
    let mut parts = vec![format!(
        "rot {}°, shift {} px, scale {}, shear {}°",
        a.rotation_deg, a.translate_px, a.scale, a.shear_deg
    )];
    if a.elastic.is_some() {
        parts.push("elastic".into());
    }
    if a.appearance.is_some() {
        parts.push("appearance (stroke width, blur, contrast, brightness, background, noise, salt and pepper, erasing)".into());
    }
    parts.join(" + ")
}

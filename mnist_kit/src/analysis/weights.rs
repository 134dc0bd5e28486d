//! Weight inspection and capacity: per-parameter statistics, histograms and each layer's share
//! of the parameters.

use serde::{Deserialize, Serialize};

use crate::Result;
use crate::display::Table;
use crate::models::Network;

/// Statistics of one parameter tensor.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WeightStats {
    /// Parameter name (`conv1.weight`).
    pub name: String,
    /// Shape.
    pub shape: Vec<usize>,
    /// Number of values.
    pub count: usize,
    /// Share of all parameters of the network.
    pub share: f64,
    /// Mean.
    pub mean: f64,
    /// Standard deviation.
    pub std: f64,
    /// Minimum.
    pub min: f64,
    /// Maximum.
    pub max: f64,
    /// L2 norm.
    pub l2_norm: f64,
    /// Fraction with `|w| < 1e-3`.
    pub near_zero: f64,
}

/// Statistics of every parameter of `net` (BatchNorm running statistics included).
pub fn weight_stats(net: &Network) -> Result<Vec<WeightStats>> {
    let total: usize = net.params().iter().map(|p| p.var.elem_count()).sum();
    net.params()
        .iter()
        .map(|p| {
            let v: Vec<f32> = p.var.flatten_all()?.to_vec1()?;
            let n = v.len().max(1) as f64;
            let mean = v.iter().map(|&x| f64::from(x)).sum::<f64>() / n;
            let var = v
                .iter()
                .map(|&x| (f64::from(x) - mean).powi(2))
                .sum::<f64>()
                / n;
            Ok(WeightStats {
                name: p.name.clone(),
                shape: p.var.dims().to_vec(),
                count: v.len(),
                share: v.len() as f64 / total.max(1) as f64,
                mean,
                std: var.sqrt(),
                min: v.iter().cloned().fold(f32::INFINITY, f32::min).into(),
                max: v.iter().cloned().fold(f32::NEG_INFINITY, f32::max).into(),
                l2_norm: v.iter().map(|&x| f64::from(x).powi(2)).sum::<f64>().sqrt(),
                near_zero: v.iter().filter(|x| x.abs() < 1e-3).count() as f64 / n,
            })
        })
        .collect()
}

/// Histogram of the values of parameter `name` in `bins` equal bins over its range:
/// `(bin lower edges, counts)`.
pub fn weight_histogram(net: &Network, name: &str, bins: usize) -> Result<(Vec<f64>, Vec<u64>)> {
    let p = net
        .params()
        .iter()
        .find(|p| p.name == name)
        .ok_or_else(|| {
            crate::Error::invalid(
                "parameter",
                format!("{name:?} is not a parameter of {}", net.name()),
            )
        })?;
    let v: Vec<f32> = p.var.flatten_all()?.to_vec1()?;
    let bins = bins.max(1);
    let (lo, hi) = v
        .iter()
        .fold((f32::INFINITY, f32::NEG_INFINITY), |(a, b), &x| {
            (a.min(x), b.max(x))
        });
    let width = ((hi - lo) / bins as f32).max(f32::EPSILON);
    let mut counts = vec![0u64; bins];
    for &x in &v {
        let b = (((x - lo) / width) as usize).min(bins - 1);
        counts[b] += 1;
    }
    let edges = (0..bins)
        .map(|i| f64::from(lo + width * i as f32))
        .collect();
    Ok((edges, counts))
}

/// [`weight_stats`] as a table (one row per parameter tensor) for notebooks and the report.
pub fn weight_table(net: &Network) -> Result<Table> {
    let stats = weight_stats(net)?;
    let col = |f: fn(&WeightStats) -> f64| stats.iter().map(f).collect::<Vec<_>>();
    let df = polars::df!(
        "parameter" => stats.iter().map(|s| s.name.clone()).collect::<Vec<_>>(),
        "shape" => stats.iter().map(|s| format!("{:?}", s.shape)).collect::<Vec<_>>(),
        "count" => stats.iter().map(|s| s.count as u64).collect::<Vec<_>>(),
        "share" => col(|s| s.share),
        "mean" => col(|s| s.mean),
        "std" => col(|s| s.std),
        "min" => col(|s| s.min),
        "max" => col(|s| s.max),
        "l2_norm" => col(|s| s.l2_norm),
        "near_zero" => col(|s| s.near_zero),
    )?;
    Ok(Table::new(format!("weights of {}", net.name()), df))
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn stats_cover_every_parameter() {
        let net = Network::preset("lenet5", 0, &Device::Cpu).unwrap();
        let stats = weight_stats(&net).unwrap();
        assert_eq!(stats.iter().map(|s| s.count).sum::<usize>(), 61_706);
        assert!((stats.iter().map(|s| s.share).sum::<f64>() - 1.0).abs() < 1e-9);
        let c1 = &stats[0];
        assert_eq!(c1.name, "conv1.weight");
        // PyTorch-style init: U(-1/5, 1/5) for a 5x5x1 kernel.
        assert!(c1.min >= -0.2 && c1.max <= 0.2 && c1.std > 0.05);
        let (edges, counts) = weight_histogram(&net, "fc1.weight", 10).unwrap();
        assert_eq!((edges.len(), counts.iter().sum::<u64>()), (10, 84 * 120));
        assert!(weight_histogram(&net, "nope", 10).is_err());
    }
}

//! Where a model looks: SmoothGrad saliency for any model (the input gradient averaged over
//! noisy copies of the input, which keeps the digit's strokes and drops the speckle a single
//! gradient scatters over the background), and the spatial attention maps of
//! `lenet5-attention`.

use candle_core::{D, Tensor, Var};

use crate::data::{BatchOptions, Split};
use crate::models::{Model, Network};
use crate::{Error, Result};

fn input(net: &Network, split: &Split, index: usize) -> Result<Tensor> {
    let one = split.subset("sample", &[index])?;
    let opts = BatchOptions {
        batch_size: 1,
        ..Default::default()
    };
    one.batches(net.input_spec(), opts, 0, net.device())?
        .next()
        .ok_or_else(|| Error::invalid("sample", format!("no sample {index}")))?
        .map(|b| b.images)
}

/// Noisy copies SmoothGrad averages over.
pub const SMOOTHGRAD_SAMPLES: usize = 16;
/// Their noise, as a fraction of the input's range (SmoothGrad's recommended 10-20 %).
pub const SMOOTHGRAD_NOISE: f32 = 0.15;

/// SmoothGrad (Smilkov et al. 2017) of `logit[class]` at input `x` `(1, ...)`: the mean over
/// [`SMOOTHGRAD_SAMPLES`] copies with Gaussian noise of `sigma` (seeded, so the map is the
/// same every time) of `|d logit / d input|`, flattened in the input's layout. One batch, one
/// backward pass.
fn smooth_grad(net: &Network, x: &Tensor, class: usize, sigma: f32) -> Result<Vec<f32>> {
    use rand::SeedableRng;
    use rand_distr::Distribution;
    let n = x.elem_count();
    let base: Vec<f32> = x.flatten_all()?.to_vec1()?;
    let normal = rand_distr::Normal::new(0.0f32, sigma.max(1e-6))
        .map_err(|e| Error::invalid("saliency", e.to_string()))?;
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(17);
    let mut noisy = Vec::with_capacity(n * SMOOTHGRAD_SAMPLES);
    for _ in 0..SMOOTHGRAD_SAMPLES {
        noisy.extend(base.iter().map(|v| v + normal.sample(&mut rng)));
    }
    let mut shape = x.dims().to_vec();
    shape[0] = SMOOTHGRAD_SAMPLES;
    let xs = Var::from_tensor(&Tensor::from_vec(noisy, shape, x.device())?)?;
    let logits = net.forward_t(xs.as_tensor(), false)?;
    let target = logits.narrow(1, class.min(9), 1)?.sum_all()?;
    let grads = target.backward()?;
    let g: Vec<f32> = grads
        .get(xs.as_tensor())
        .ok_or_else(|| Error::invalid("saliency", "no gradient reached the input"))?
        .abs()?
        .flatten_all()?
        .to_vec1()?;
    let mut mean = vec![0f32; n];
    for chunk in g.chunks_exact(n) {
        for (m, v) in mean.iter_mut().zip(chunk) {
            *m += v / SMOOTHGRAD_SAMPLES as f32;
        }
    }
    Ok(mean)
}

/// The noise of [`smooth_grad`] in `net`'s input units.
fn noise_for(net: &Network) -> f32 {
    let n = net.input_spec().normalization;
    SMOOTHGRAD_NOISE * (n.apply(1.0) - n.apply(0.0))
}

/// SmoothGrad saliency of `class` (the prediction when `None`) for sample `index` of `split`,
/// as a `side x side` map in the model's input geometry.
pub fn saliency(net: &Network, split: &Split, index: usize, class: Option<u8>) -> Result<Vec<f32>> {
    // Differentiate a copy made by the running code (see `Network::rebuilt`).
    let net = &net.rebuilt()?;
    let x = input(net, split, index)?;
    let class = match class {
        Some(c) => c as usize,
        None => net
            .forward_t(&x, false)?
            .argmax(D::Minus1)?
            .flatten_all()?
            .to_vec1::<u32>()?[0] as usize,
    };
    smooth_grad(net, &x, class, noise_for(net))
}

/// What a model makes of one preprocessed digit: its class probabilities and the SmoothGrad
/// saliency of the predicted class on the digit's 28x28 pixels (the padding of a 32x32 model
/// cropped), scaled to a maximum of 1.
pub fn digit_saliency(
    net: &Network,
    digit: &crate::analysis::Digit,
) -> Result<(Vec<f32>, Vec<f32>)> {
    use crate::analysis::custom_digit::{SIDE, digit_input, most_likely};
    let net = &net.rebuilt()?;
    let side = net.input_spec().side;
    let pad = side.saturating_sub(SIDE) / 2;
    let x = digit_input(net, digit)?;
    let logits = net.forward_t(&x, false)?;
    let probs: Vec<f32> = candle_nn::ops::softmax(&logits, D::Minus1)?
        .flatten_all()?
        .to_vec1()?;
    let class = most_likely(&probs);
    let g = smooth_grad(net, &x, class, noise_for(net))?;
    let mut map = Vec::with_capacity(SIDE * SIDE);
    for r in 0..SIDE {
        for c in 0..SIDE {
            map.push(g.get((r + pad) * side + c + pad).copied().unwrap_or(0.0));
        }
    }
    let top = map.iter().cloned().fold(0f32, f32::max);
    if top > 0.0 {
        map.iter_mut().for_each(|v| *v /= top);
    }
    Ok((probs, map))
}

/// The attention maps of sample `index`: `(side, values in [0, 1])` per attention module;
/// empty for models without attention.
pub fn attention_maps(
    net: &Network,
    split: &Split,
    index: usize,
) -> Result<Vec<(usize, Vec<f32>)>> {
    let x = input(net, split, index)?;
    let (_, maps) = net.forward_with_attention(&x)?;
    maps.iter()
        .map(|m| Ok((m.dim(D::Minus1)?, m.flatten_all()?.to_vec1()?)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn saliency_and_attention_have_input_shapes() {
        let mut img = vec![0u8; 28 * 28];
        img[14 * 28 + 10..14 * 28 + 18].fill(255);
        let split = Split::from_raw("t", img, vec![1], 28, 28).unwrap();
        let net = Network::preset("lenet5-attention", 0, &Device::Cpu).unwrap();
        let s = saliency(&net, &split, 0, Some(1)).unwrap();
        assert_eq!(s.len(), 32 * 32);
        assert!(s.iter().any(|&v| v > 0.0) && s.iter().all(|v| v.is_finite()));
        let maps = attention_maps(&net, &split, 0).unwrap();
        assert_eq!(maps.iter().map(|m| m.0).collect::<Vec<_>>(), vec![28, 10]);
        assert!(maps[0].1.iter().all(|&v| (0.0..=1.0).contains(&v)));
        let mlp = Network::preset("dense128", 0, &Device::Cpu).unwrap();
        assert_eq!(saliency(&mlp, &split, 0, None).unwrap().len(), 784);
        assert!(attention_maps(&mlp, &split, 0).unwrap().is_empty());
        assert!(saliency(&mlp, &split, 5, None).is_err());
    }
}

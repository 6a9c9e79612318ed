//! Seeded initialisation of a detector trained from scratch (candle's CPU generator cannot be
//! seeded): PyTorch's defaults (uniform ±1/√fan_in for convolutions and linears, norms at 1 and
//! 0), the seed backbone's Kaiming-normal convolutions, and RTDETRDecoder's `_reset_parameters`
//! (class-bias prior, zero last box layers, zero attention weights, the sampling-offset grid).

use candle::{Result, Tensor};
use candle_nn::VarMap;

use crate::data::mix_seed;

fn uniform_fn(seed: u64, name: &str) -> impl FnMut() -> f64 {
    let h = name.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ b as u64).wrapping_mul(0x100_0000_01b3)
    });
    let rng = rtdetr_ops::SplitMix64::new(mix_seed(&[seed, h]));
    move || rng.uniform()
}

/// Initialises every variable of `varmap` from `seed`, for `nc` classes.
pub fn initialize(varmap: &VarMap, nc: usize, seed: u64) -> Result<()> {
    let vars = varmap
        .data()
        .lock()
        .map_err(|_| candle::Error::Msg("poisoned variable map".into()))?;
    let prior = -((1.0f64 - 0.01) / 0.01).ln() / 80.0 * nc as f64;
    for (name, var) in vars.iter() {
        let dims = var.dims().to_vec();
        let n: usize = dims.iter().product();
        let mut u = uniform_fn(seed, name);
        let fan_in: usize = dims.iter().skip(1).product::<usize>().max(1);
        let fan_out = dims[0] * dims.iter().skip(2).product::<usize>();
        let values: Vec<f64> =
            if name.ends_with("running_var") || (dims.len() == 1 && !name.contains("bias")) {
                vec![1.0; n]
            } else if name.ends_with("running_mean") {
                vec![0.0; n]
            } else if name.contains("score_head") && name.ends_with("bias") {
                vec![prior; n]
            } else if (name.contains("bbox_head") && name.contains("layers.2"))
                || name.contains("attention_weights")
                || name.ends_with("sampling_offsets.weight")
            {
                vec![0.0; n]
            } else if name.ends_with("sampling_offsets.bias") {
                // [heads, levels, points, 2]: head h points along angle h·2π/heads, scaled to the
                // box of its largest coordinate, times the point index + 1.
                let (heads, per_head) = (8usize.min(n / 2).max(1), n / 8usize.min(n / 2).max(1));
                let points = 4usize.min(per_head / 2).max(1);
                (0..n)
                    .map(|i| {
                        let (h, rest) = (i / per_head, i % per_head);
                        let (p, xy) = ((rest / 2) % points, rest % 2);
                        let theta = h as f64 * 2.0 * std::f64::consts::PI / heads as f64;
                        let (c, s) = (theta.cos(), theta.sin());
                        let g = c.abs().max(s.abs());
                        (if xy == 0 { c } else { s }) / g * (p + 1) as f64
                    })
                    .collect()
            } else if name.contains("bias") {
                vec![0.0; n]
            } else if name.contains("denoising_class_embed") {
                (0..n).map(|_| normal(&mut u)).collect()
            } else if name.starts_with("model.0.") && dims.len() == 4 {
                let std = (2.0 / fan_out as f64).sqrt();
                (0..n).map(|_| normal(&mut u) * std).collect()
            } else {
                let bound = 1.0 / (fan_in as f64).sqrt();
                (0..n).map(|_| (u() * 2.0 - 1.0) * bound).collect()
            };
        var.set(&Tensor::from_vec(values, dims, var.device())?.to_dtype(var.dtype())?)?;
    }
    Ok(())
}

/// A standard normal sample (Box-Muller).
fn normal(u: &mut impl FnMut() -> f64) -> f64 {
    let (a, b) = (u().max(1e-300), u());
    (-2.0 * a.ln()).sqrt() * (2.0 * std::f64::consts::PI * b).cos()
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle::{DType, Device};
    use candle_nn::Init;

    #[test]
    fn deterministic() {
        let make = || {
            let vm = VarMap::new();
            vm.get(
                (4, 3, 3, 3),
                "model.0.stem.0.weight",
                Init::Randn {
                    mean: 0.,
                    stdev: 1.,
                },
                DType::F32,
                &Device::Cpu,
            )
            .unwrap();
            vm.get(
                (5, 4),
                "model.19.enc_output.0.weight",
                Init::Randn {
                    mean: 0.,
                    stdev: 1.,
                },
                DType::F32,
                &Device::Cpu,
            )
            .unwrap();
            initialize(&vm, 2, 7).unwrap();
            let d = vm.data().lock().unwrap();
            (
                d["model.0.stem.0.weight"]
                    .as_tensor()
                    .flatten_all()
                    .unwrap()
                    .to_vec1::<f32>()
                    .unwrap(),
                d["model.19.enc_output.0.weight"]
                    .as_tensor()
                    .flatten_all()
                    .unwrap()
                    .to_vec1::<f32>()
                    .unwrap(),
            )
        };
        assert_eq!(make(), make());
    }
}

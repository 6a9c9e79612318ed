use candle::{Result, Tensor};

/// `nn.Upsample(scale_factor=2, mode='nearest')` as a broadcast: candle's `upsample_nearest2d`
/// backward overwrites the gradient already accumulated for its input instead of adding to it,
/// which breaks any input read twice (the neck's Y4 and Y5 are).
///
/// # Shapes
/// `xs: [B, C, H, W]` → `[B, C, 2H, 2W]`
pub fn upsample_nearest2x(xs: &Tensor) -> Result<Tensor> {
    let (b, c, h, w) = xs.dims4()?;
    xs.reshape((b, c, h, 1, w, 1))?
        .broadcast_as((b, c, h, 2, w, 2))?
        .reshape((b, c, 2 * h, 2 * w))
}

#[cfg(test)]
mod tests {
    use super::upsample_nearest2x;
    use candle::{Device, Tensor, Var};

    #[test]
    fn upsample_equals_nearest_and_accumulates_gradients() {
        let xs = Tensor::randn(0f64, 1., (2, 3, 4, 5), &Device::Cpu).unwrap();
        let ours = upsample_nearest2x(&xs).unwrap();
        let nearest = xs.upsample_nearest2d(8, 10).unwrap();
        assert_eq!(
            (ours - nearest)
                .unwrap()
                .abs()
                .unwrap()
                .max_all()
                .unwrap()
                .to_scalar::<f64>()
                .unwrap(),
            0.0
        );
        // The input is read twice, as the neck reads Y4 and Y5: both gradients must add up.
        let var = Var::from_tensor(&xs).unwrap();
        let twice = |x: &Tensor| {
            (upsample_nearest2x(x).unwrap().sum_all().unwrap()
                + (x * 3.0).unwrap().sum_all().unwrap())
            .unwrap()
        };
        let grads = twice(&var).backward().unwrap();
        let g: Vec<f64> = grads
            .get(&var)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap();
        assert!(
            g.iter().all(|&v| (v - 7.0).abs() < 1e-12),
            "4 copies + 3 = 7, got {:?}",
            &g[..3]
        );
    }
}

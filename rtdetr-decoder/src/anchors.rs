use candle::{Device, Result, Tensor};

/// Anchors of every level in logit space and their validity.
#[derive(Debug, Clone)]
pub struct Anchors {
    /// `log(a / (1 − a))` of `[cx, cy, w, h]`, `+inf` where invalid. `[1, S, 4]`
    pub logits: Tensor,
    /// 1 where all four coordinates lie in (0.01, 0.99), else 0. `[1, S, 1]`
    pub valid: Tensor,
}

/// `RTDETRDecoder._generate_anchors(shapes, grid_size=0.05, eps=0.01)`: one anchor per cell of each
/// level, row-major, centred on the cell, of side `0.05·2^level`.
pub fn generate_anchors(shapes: &[(usize, usize)], device: &Device) -> Result<Anchors> {
    const GRID: f32 = 0.05;
    const EPS: f32 = 0.01;
    let mut logits = Vec::new();
    let mut valid = Vec::new();
    for (level, &(h, w)) in shapes.iter().enumerate() {
        let side = GRID * 2f32.powi(level as i32);
        for y in 0..h {
            for x in 0..w {
                let a = [
                    (x as f32 + 0.5) / w as f32,
                    (y as f32 + 0.5) / h as f32,
                    side,
                    side,
                ];
                let ok = a.iter().all(|&v| v > EPS && v < 1.0 - EPS);
                valid.push(if ok { 1f32 } else { 0f32 });
                logits.extend(a.map(|v| {
                    if ok {
                        (v / (1.0 - v)).ln()
                    } else {
                        f32::INFINITY
                    }
                }));
            }
        }
    }
    let n = valid.len();
    Ok(Anchors {
        logits: Tensor::from_vec(logits, (1, n, 4), device)?,
        valid: Tensor::from_vec(valid, (1, n, 1), device)?,
    })
}

/// ultralytics `inverse_sigmoid(x, eps=1e-5)`: `log(max(x, eps) / max(1 − x, eps))` with x
/// clamped to [0, 1].
pub fn inverse_sigmoid(xs: &Tensor) -> Result<Tensor> {
    let xs = xs.clamp(0f32, 1f32)?;
    let num = xs.clamp(1e-5f32, f32::MAX)?;
    let den = xs.affine(-1.0, 1.0)?.clamp(1e-5f32, f32::MAX)?;
    (num / den)?.log()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outer_ring_of_an_80_grid_is_invalid() {
        // spec §2.2: at 80×80 the outer ring is invalid (0.5/80 < 0.01): 316 anchors.
        let a = generate_anchors(&[(80, 80), (40, 40), (20, 20)], &Device::Cpu).unwrap();
        let valid: Vec<f32> = a.valid.flatten_all().unwrap().to_vec1().unwrap();
        assert_eq!(valid.len(), 8400);
        assert_eq!(valid.iter().filter(|&&v| v == 0.0).count(), 316);
        let logits: Vec<f32> = a.logits.flatten_all().unwrap().to_vec1().unwrap();
        assert!(logits[..4].iter().all(|v| v.is_infinite() && *v > 0.0));
        // cell (1, 1) of level 0: cx = cy = 1.5/80
        let cx = 1.5f32 / 80.0;
        assert!((logits[(80 + 1) * 4] - (cx / (1.0 - cx)).ln()).abs() < 1e-6);
    }

    #[test]
    fn inverse_sigmoid_clamps() {
        let xs = Tensor::new(&[0f32, 0.5, 1.0, 2.0], &Device::Cpu).unwrap();
        let ys: Vec<f32> = inverse_sigmoid(&xs).unwrap().to_vec1().unwrap();
        let big = (1f32 / 1e-5).ln();
        assert!((ys[0] + big).abs() < 1e-4 && ys[1].abs() < 1e-7);
        assert!((ys[2] - big).abs() < 1e-4 && (ys[3] - big).abs() < 1e-4);
    }
}

use candle::{Result, Tensor};
use candle_nn::{Init, ModuleT, VarBuilder};
use rtdetr_onnx::GraphBuilder;
use rtdetr_ops::BatchNorm2d;

/// ultralytics `Conv(c1, c2, k, s)`: `conv` (no bias, padding k/2), `bn`, then SiLU or nothing.
#[derive(Debug, Clone)]
pub struct Conv {
    weight: Tensor,
    bn: BatchNorm2d,
    stride: usize,
    silu: bool,
    fused: Option<(Tensor, Tensor)>,
}

impl Conv {
    /// A `k×k` convolution from `c_in` to `c_out` channels; `silu: false` is `act=False`.
    pub fn new(
        c_in: usize,
        c_out: usize,
        k: usize,
        stride: usize,
        silu: bool,
        vb: VarBuilder,
    ) -> Result<Self> {
        let bound = 1.0 / ((c_in * k * k) as f64).sqrt();
        let init = Init::Uniform {
            lo: -bound,
            up: bound,
        };
        let weight = vb
            .pp("conv")
            .get_with_hints((c_out, c_in, k, k), "weight", init)?;
        let bn = BatchNorm2d::new(c_out, vb.pp("bn"))?;
        Ok(Self {
            weight,
            bn,
            stride,
            silu,
            fused: None,
        })
    }

    /// The convolution with the evaluation-mode batch norm folded in: `(weight, bias)`.
    pub fn folded(&self) -> Result<(Tensor, Tensor)> {
        let (scale, shift) = self.bn.scale_shift()?;
        let weight = self.weight.broadcast_mul(&scale.reshape(((), 1, 1, 1))?)?;
        Ok((weight, shift))
    }

    /// Folds the batch norm into the convolution for evaluation (`true`), or goes back to running
    /// it (`false`). Training always runs it; fold again after training.
    pub fn set_fused(&mut self, fused: bool) -> Result<()> {
        self.fused = if fused { Some(self.folded()?) } else { None };
        Ok(())
    }

    /// The evaluation-mode layer as ONNX nodes (batch norm folded; SiLU as `Sigmoid`, `Mul`).
    pub fn to_onnx(&self, g: &mut GraphBuilder, scope: &str, xs: &str) -> Result<String> {
        let (weight, bias) = self.folded()?;
        let pad = weight.dim(3)? / 2;
        let ys = g.conv(scope, xs, (&weight, &bias), self.stride, pad, 1)?;
        Ok(if self.silu { g.silu(scope, &ys) } else { ys })
    }

    /// The convolution alone, before the batch norm.
    pub fn conv(&self, xs: &Tensor) -> Result<Tensor> {
        let padding = self.weight.dim(3)? / 2;
        rtdetr_ops::conv2d(xs, &self.weight, self.stride, padding, 1)
    }
}

impl ModuleT for Conv {
    /// # Shapes
    /// `xs: [B, c_in, H, W]` → `[B, c_out, ⌈H/s⌉, ⌈W/s⌉]`
    fn forward_t(&self, xs: &Tensor, train: bool) -> Result<Tensor> {
        if let (Some((weight, bias)), false) = (&self.fused, train) {
            let padding = weight.dim(3)? / 2;
            let geometry = (self.stride, padding, 1);
            return rtdetr_ops::conv2d_bias_act(xs, weight, bias, geometry, self.silu);
        }
        self.bn.forward_act(&self.conv(xs)?, train, self.silu)
    }
}

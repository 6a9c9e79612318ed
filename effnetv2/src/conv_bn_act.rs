use candle::{Result, Tensor};
use candle_nn::{Init, ModuleT, VarBuilder};

use rtdetr_onnx::GraphBuilder;
use rtdetr_ops::{conv2d, conv2d_bias_act, pointwise_gated, pointwise_gated_bias_act, BatchNorm2d};

/// The seed's `ConvBNAct`, an `nn.Sequential` of `0` conv (no bias, padding `(k−1)/2`), `1` batch
/// norm and `2` SiLU or identity.
#[derive(Debug, Clone)]
pub struct ConvBnAct {
    weight: Tensor,
    bn: BatchNorm2d,
    stride: usize,
    groups: usize,
    silu: bool,
    folded: Option<(Tensor, Tensor)>,
}

impl ConvBnAct {
    /// A `k×k` convolution from `c_in` to `c_out` channels in `groups` groups.
    pub fn new(
        c_in: usize,
        c_out: usize,
        k: usize,
        stride: usize,
        groups: usize,
        silu: bool,
        vb: VarBuilder,
    ) -> Result<Self> {
        if groups == 0 || !c_in.is_multiple_of(groups) || !c_out.is_multiple_of(groups) {
            candle::bail!(
                "ConvBnAct {}: {c_in}→{c_out} channels do not split into {groups} groups",
                vb.prefix()
            )
        }
        let fan_out = (c_out * k * k) as f64;
        let init = Init::Randn {
            mean: 0.,
            stdev: (2. / fan_out).sqrt(),
        };
        let weight = vb
            .pp(0)
            .get_with_hints((c_out, c_in / groups, k, k), "weight", init)?;
        let bn = BatchNorm2d::new(c_out, vb.pp(1))?;
        Ok(Self {
            weight,
            bn,
            stride,
            groups,
            silu,
            folded: None,
        })
    }

    fn padding(&self) -> usize {
        (self.weight.dim(3).unwrap_or(1) - 1) / 2
    }

    /// The batch norm (`1`).
    pub fn bn(&self) -> &BatchNorm2d {
        &self.bn
    }

    /// The convolution with the evaluation-mode batch norm folded in: `(weight, bias)`.
    pub fn folded(&self) -> Result<(Tensor, Tensor)> {
        let (scale, shift) = self.bn.scale_shift()?;
        Ok((
            self.weight.broadcast_mul(&scale.reshape(((), 1, 1, 1))?)?,
            shift,
        ))
    }

    /// Evaluation of a folded 1×1 convolution on `xs` scaled per image and input channel by
    /// `gate`, without materialising the scaled input ([`pointwise_gated_bias_act`]). `None` when
    /// the layer is not a folded 1×1 convolution.
    ///
    /// # Shapes
    /// `xs: [B, C_in, H, W]`, `gate: [B, C_in]` → `[B, C_out, H, W]`
    pub fn forward_gated(&self, xs: &Tensor, gate: &Tensor) -> Result<Option<Tensor>> {
        let Some((weight, bias)) = &self.folded else {
            return Ok(None);
        };
        let (_, _, kh, kw) = weight.dims4()?;
        if (kh, kw, self.stride, self.groups) != (1, 1, 1, 1) {
            return Ok(None);
        }
        pointwise_gated_bias_act(xs, weight, gate, bias, self.silu).map(Some)
    }

    /// [`Self::forward_gated`] in evaluation; in training (or unfolded) [`pointwise_gated`] and
    /// the batch norm, so that the gated input, as large as the block's expanded activation, is
    /// never stored. `None` when the layer is not 1×1.
    ///
    /// # Shapes
    /// `xs: [B, C_in, H, W]`, `gate: [B, C_in]` → `[B, C_out, H, W]`
    pub fn forward_gated_t(
        &self,
        xs: &Tensor,
        gate: &Tensor,
        train: bool,
    ) -> Result<Option<Tensor>> {
        if !train && self.folded.is_some() {
            return self.forward_gated(xs, gate);
        }
        let (_, _, kh, kw) = self.weight.dims4()?;
        if (kh, kw, self.stride, self.groups) != (1, 1, 1, 1) {
            return Ok(None);
        }
        let ys = pointwise_gated(xs, &self.weight, gate)?;
        self.bn.forward_act(&ys, train, self.silu).map(Some)
    }

    /// The stride.
    pub fn stride(&self) -> usize {
        self.stride
    }

    /// The evaluation-mode layer as ONNX nodes (the batch norm folded): `Conv` and, with SiLU,
    /// `Sigmoid` and `Mul`.
    pub fn to_onnx(&self, g: &mut GraphBuilder, scope: &str, xs: &str) -> Result<String> {
        let (weight, bias) = self.folded()?;
        let geometry = (self.stride, self.padding(), self.groups);
        let ys = g.conv(
            scope,
            xs,
            (&weight, &bias),
            geometry.0,
            geometry.1,
            geometry.2,
        )?;
        Ok(if self.silu { g.silu(scope, &ys) } else { ys })
    }

    /// Folds the batch norm into the convolution for evaluation (`true`), or goes back to
    /// running it (`false`). Training always runs it; fold again after training.
    pub fn set_fused(&mut self, fused: bool) -> Result<()> {
        self.folded = if fused { Some(self.folded()?) } else { None };
        Ok(())
    }
}

impl ModuleT for ConvBnAct {
    /// # Shapes
    /// `xs: [B, c_in, H, W]` → `[B, c_out, ⌈H/stride⌉, ⌈W/stride⌉]` (odd kernels)
    fn forward_t(&self, xs: &Tensor, train: bool) -> Result<Tensor> {
        if let (Some((weight, bias)), false) = (&self.folded, train) {
            let geometry = (self.stride, self.padding(), self.groups);
            return conv2d_bias_act(xs, weight, bias, geometry, self.silu);
        }
        let ys = conv2d(xs, &self.weight, self.stride, self.padding(), self.groups)?;
        self.bn.forward_act(&ys, train, self.silu)
    }
}

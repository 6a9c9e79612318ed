use candle::{Result, Tensor};
use candle_nn::{ModuleT, VarBuilder};
use rtdetr_onnx::GraphBuilder;

use crate::Conv;

/// ultralytics `RepConv(c, c)` as RepC3 builds it: `SiLU(conv1(x) + conv2(x))` with `conv1` a
/// 3×3 Conv and `conv2` a 1×1 Conv, both with batch norm and no activation.
///
/// [`RepConv::fuse`] folds both branches into one 3×3 convolution with bias, which evaluation
/// then uses; training always runs the two branches.
#[derive(Debug, Clone)]
pub struct RepConv {
    conv1: Conv,
    conv2: Conv,
    fused: Option<(Tensor, Tensor)>,
}

impl RepConv {
    /// `RepConv(c_in, c_out)` with stride 1.
    pub fn new(c_in: usize, c_out: usize, vb: VarBuilder) -> Result<Self> {
        let conv1 = Conv::new(c_in, c_out, 3, 1, false, vb.pp("conv1"))?;
        let conv2 = Conv::new(c_in, c_out, 1, 1, false, vb.pp("conv2"))?;
        Ok(Self {
            conv1,
            conv2,
            fused: None,
        })
    }

    /// The single 3×3 kernel and bias equal to both branches in evaluation mode
    /// (`RepConv.get_equivalent_kernel_bias`).
    pub fn equivalent_kernel_bias(&self) -> Result<(Tensor, Tensor)> {
        let (k3, b3) = self.conv1.folded()?;
        let (k1, b1) = self.conv2.folded()?;
        let k1 = k1.pad_with_zeros(2, 1, 1)?.pad_with_zeros(3, 1, 1)?;
        Ok(((k3 + k1)?, (b3 + b1)?))
    }

    /// Replaces the two branches by their equivalent 3×3 convolution for evaluation (call again
    /// after training changes the weights or running statistics).
    pub fn fuse(&mut self) -> Result<()> {
        self.fused = Some(self.equivalent_kernel_bias()?);
        Ok(())
    }

    /// As ONNX nodes: the fused 3×3 `Conv` and SiLU.
    pub fn to_onnx(&self, g: &mut GraphBuilder, scope: &str, xs: &str) -> Result<String> {
        let (weight, bias) = self.equivalent_kernel_bias()?;
        let ys = g.conv(scope, xs, (&weight, &bias), 1, 1, 1)?;
        Ok(g.silu(scope, &ys))
    }

    /// Back to running both branches in evaluation too.
    pub fn unfuse(&mut self) {
        self.fused = None;
    }
}

impl ModuleT for RepConv {
    /// # Shapes
    /// `xs: [B, c_in, H, W]` → `[B, c_out, H, W]`
    fn forward_t(&self, xs: &Tensor, train: bool) -> Result<Tensor> {
        match (&self.fused, train) {
            (Some((weight, bias)), false) => {
                rtdetr_ops::conv2d_bias_act(xs, weight, bias, (1, 1, 1), true)
            }
            _ => (self.conv1.forward_t(xs, train)? + self.conv2.forward_t(xs, train)?)?.silu(),
        }
    }
}

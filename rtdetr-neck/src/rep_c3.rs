use candle::{Result, Tensor};
use candle_nn::{ModuleT, VarBuilder};
use rtdetr_onnx::GraphBuilder;

use crate::{Conv, RepConv};

/// ultralytics `RepC3(c1, c2, n, e=1.0)`: `m(cv1(x)) + cv2(x)`; with e = 1 the `cv3` projection is
/// the identity and has no weights.
#[derive(Debug, Clone)]
pub struct RepC3 {
    cv1: Conv,
    cv2: Conv,
    m: Vec<RepConv>,
}

impl RepC3 {
    /// `RepC3(c_in, c_out, n)`.
    pub fn new(c_in: usize, c_out: usize, n: usize, vb: VarBuilder) -> Result<Self> {
        let cv1 = Conv::new(c_in, c_out, 1, 1, true, vb.pp("cv1"))?;
        let cv2 = Conv::new(c_in, c_out, 1, 1, true, vb.pp("cv2"))?;
        let m = (0..n)
            .map(|i| RepConv::new(c_out, c_out, vb.pp("m").pp(i)))
            .collect::<Result<_>>()?;
        Ok(Self { cv1, cv2, m })
    }

    /// Fuses (or unfuses) every RepConv and folds every batch norm for evaluation.
    pub fn set_fused(&mut self, fused: bool) -> Result<()> {
        self.cv1.set_fused(fused)?;
        self.cv2.set_fused(fused)?;
        for rep in &mut self.m {
            if fused {
                rep.fuse()?
            } else {
                rep.unfuse()
            }
        }
        Ok(())
    }
}

impl RepC3 {
    /// The evaluation-mode block as ONNX nodes (RepConvs fused).
    pub fn to_onnx(&self, g: &mut GraphBuilder, scope: &str, xs: &str) -> Result<String> {
        let mut ys = self.cv1.to_onnx(g, &format!("{scope}.cv1"), xs)?;
        for (i, rep) in self.m.iter().enumerate() {
            ys = rep.to_onnx(g, &format!("{scope}.m.{i}"), &ys)?;
        }
        let side = self.cv2.to_onnx(g, &format!("{scope}.cv2"), xs)?;
        Ok(g.node(scope, "Add", &[&ys, &side], vec![]))
    }
}

impl ModuleT for RepC3 {
    /// # Shapes
    /// `xs: [B, c_in, H, W]` → `[B, c_out, H, W]`
    fn forward_t(&self, xs: &Tensor, train: bool) -> Result<Tensor> {
        let mut ys = self.cv1.forward_t(xs, train)?;
        for rep in &self.m {
            ys = rep.forward_t(&ys, train)?;
        }
        ys + self.cv2.forward_t(xs, train)?
    }
}

use candle::{Result, Tensor};
use candle_nn::{Init, Module, VarBuilder};
use rtdetr_onnx::GraphBuilder;
use rtdetr_ops::Linear;

/// `nn.MultiheadAttention(dim, heads, batch_first=True)` with PyTorch's packed `in_proj_weight`
/// (rows: query, key, value) and `in_proj_bias`, and `out_proj`.
#[derive(Debug, Clone)]
pub struct MultiheadAttention {
    q: Linear,
    k: Linear,
    v: Linear,
    out_proj: Linear,
    heads: usize,
}

impl MultiheadAttention {
    /// Loads `in_proj_weight` `[3·dim, dim]`, `in_proj_bias`, `out_proj.{weight,bias}`.
    pub fn new(dim: usize, heads: usize, vb: VarBuilder) -> Result<Self> {
        if heads == 0 || !dim.is_multiple_of(heads) {
            candle::bail!(
                "MultiheadAttention {}: {dim} channels do not split into {heads} heads",
                vb.prefix()
            )
        }
        let bound = (6.0 / (dim + 3 * dim) as f64).sqrt();
        let init = Init::Uniform {
            lo: -bound,
            up: bound,
        };
        let in_w = vb.get_with_hints((3 * dim, dim), "in_proj_weight", init)?;
        let in_b = vb.get_with_hints(3 * dim, "in_proj_bias", Init::Const(0.))?;
        let part = |i: usize| -> Result<Linear> {
            Ok(Linear::new(
                in_w.narrow(0, i * dim, dim)?,
                Some(in_b.narrow(0, i * dim, dim)?),
            ))
        };
        let out_w = vb
            .pp("out_proj")
            .get_with_hints((dim, dim), "weight", init)?;
        let out_b = vb
            .pp("out_proj")
            .get_with_hints(dim, "bias", Init::Const(0.))?;
        Ok(Self {
            q: part(0)?,
            k: part(1)?,
            v: part(2)?,
            out_proj: Linear::new(out_w, Some(out_b)),
            heads,
        })
    }

    /// Attention without a mask as ONNX nodes, for sequences of fixed lengths `lq` and `lk`.
    ///
    /// # Shapes
    /// `q: [N, lq, dim]`, `k, v: [N, lk, dim]` → `[N, lq, dim]`
    #[allow(clippy::too_many_arguments)]
    pub fn to_onnx(
        &self,
        g: &mut GraphBuilder,
        scope: &str,
        q: &str,
        k: &str,
        v: &str,
        lq: usize,
        lk: usize,
    ) -> Result<String> {
        let dim = self.q.weight().dim(0)?;
        let (heads, dh) = (self.heads as i64, (dim / self.heads) as i64);
        let project =
            |g: &mut GraphBuilder, name: &str, x: &str, layer: &Linear, l: usize, perm: &[i64]| {
                let y = g.linear(&format!("{scope}.{name}"), x, layer.weight(), layer.bias())?;
                let y = g.reshape(scope, &y, &[0, l as i64, heads, dh]);
                Ok::<_, candle::Error>(g.transpose(scope, &y, perm))
            };
        let q = project(g, "in_proj_q", q, &self.q, lq, &[0, 2, 1, 3])?;
        let k = project(g, "in_proj_k", k, &self.k, lk, &[0, 2, 3, 1])?;
        let v = project(g, "in_proj_v", v, &self.v, lk, &[0, 2, 1, 3])?;
        let scores = g.node(scope, "MatMul", &[&q, &k], vec![]);
        let root = g.scalar(&format!("{scope}.sqrt_head_dim"), (dh as f32).sqrt());
        let scores = g.node(scope, "Div", &[&scores, &root], vec![]);
        let attn = g.softmax(scope, &scores, -1);
        let ys = g.node(scope, "MatMul", &[&attn, &v], vec![]);
        let ys = g.transpose(scope, &ys, &[0, 2, 1, 3]);
        let ys = g.reshape(scope, &ys, &[0, lq as i64, dim as i64]);
        let out = &self.out_proj;
        g.linear(&format!("{scope}.out_proj"), &ys, out.weight(), out.bias())
    }

    /// Scaled dot-product attention of every head; `blocked` (`[Lq, Lk]`, 1 = masked, as PyTorch's
    /// boolean `attn_mask`) keeps a query from attending to a key.
    ///
    /// # Shapes
    /// `q: [B, Lq, dim]`, `k, v: [B, Lk, dim]` → `[B, Lq, dim]`
    pub fn forward(
        &self,
        q: &Tensor,
        k: &Tensor,
        v: &Tensor,
        blocked: Option<&Tensor>,
    ) -> Result<Tensor> {
        // candle 0.11's CPU matmul is wrong for a transposed batched lhs against the stride-0
        // (broadcast) weight that Linear uses, so views are made contiguous first.
        let (q, k, v) = (q.contiguous()?, k.contiguous()?, v.contiguous()?);
        let (b, lq, dim) = q.dims3()?;
        let lk = k.dim(1)?;
        let dh = dim / self.heads;
        // [B, L, dim] -> [B, heads, L, dh]
        let split = |xs: Tensor, l: usize| {
            xs.reshape((b, l, self.heads, dh))?
                .transpose(1, 2)?
                .contiguous()
        };
        let q = split(self.q.forward(&q)?, lq)?;
        let k = split(self.k.forward(&k)?, lk)?;
        let v = split(self.v.forward(&v)?, lk)?;
        let ys = rtdetr_ops::attention(&q, &k, &v, blocked)?
            .transpose(1, 2)?
            .reshape((b, lq, dim))?;
        self.out_proj.forward(&ys)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle::{DType, Device};
    use candle_nn::VarMap;

    #[test]
    fn transposed_inputs_give_the_same_result() {
        let varmap = VarMap::new();
        let vb = VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu);
        let mha = MultiheadAttention::new(32, 4, vb).unwrap();
        let xs = Tensor::randn(0f32, 1., (2, 32, 80), &Device::Cpu)
            .unwrap()
            .transpose(1, 2)
            .unwrap();
        let view = mha.forward(&xs, &xs, &xs, None).unwrap();
        let copy = xs.contiguous().unwrap();
        let contiguous = mha.forward(&copy, &copy, &copy, None).unwrap();
        let diff = (view - contiguous)
            .unwrap()
            .abs()
            .unwrap()
            .max_all()
            .unwrap();
        assert_eq!(diff.to_scalar::<f32>().unwrap(), 0.0);
    }
}

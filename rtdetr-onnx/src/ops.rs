//! The layers a detector is made of, each as the ONNX nodes that compute it.

use candle::{Result, Tensor};

use crate::graph::{attr_float, attr_int, attr_ints, attr_string, GraphBuilder};

/// How the deformable attention samples its value maps.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Sampler {
    /// `GridSample` (opset ≥ 16): ONNX Runtime, OpenVINO 2022.1+, TensorRT 8.5+.
    #[default]
    GridSample,
    /// The same bilinear sampling from `GatherElements`, for runtimes without `GridSample`
    /// (TensorRT ≤ 8.4, many NPU compilers).
    Gather,
}

impl GraphBuilder {
    /// `x · w` + `b` for `w` of PyTorch's `[out, in]` layout (stored transposed).
    pub fn linear(
        &mut self,
        scope: &str,
        x: &str,
        weight: &Tensor,
        bias: Option<&Tensor>,
    ) -> Result<String> {
        let w = self.weight(&format!("{scope}.weight.T"), &weight.t()?.contiguous()?)?;
        let y = self.node(scope, "MatMul", &[x, &w], vec![]);
        match bias {
            Some(bias) => {
                let b = self.weight(&format!("{scope}.bias"), bias)?;
                Ok(self.node(scope, "Add", &[&y, &b], vec![]))
            }
            None => Ok(y),
        }
    }

    /// A 2-D convolution with bias, padding `pad` on every side.
    pub fn conv(
        &mut self,
        scope: &str,
        x: &str,
        (weight, bias): (&Tensor, &Tensor),
        stride: usize,
        pad: usize,
        groups: usize,
    ) -> Result<String> {
        let (_, _, kh, kw) = weight.dims4()?;
        let w = self.weight(&format!("{scope}.weight"), weight)?;
        let b = self.weight(&format!("{scope}.bias"), bias)?;
        let (s, p) = (stride as i64, pad as i64);
        let attributes = vec![
            attr_ints("dilations", &[1, 1]),
            attr_int("group", groups as i64),
            attr_ints("kernel_shape", &[kh as i64, kw as i64]),
            attr_ints("pads", &[p, p, p, p]),
            attr_ints("strides", &[s, s]),
        ];
        Ok(self.node(scope, "Conv", &[x, &w, &b], attributes))
    }

    /// `x · sigmoid(x)`.
    pub fn silu(&mut self, scope: &str, x: &str) -> String {
        let s = self.node(scope, "Sigmoid", &[x], vec![]);
        self.node(scope, "Mul", &[x, &s], vec![])
    }

    /// `0.5 · x · (1 + erf(x / √2))` (PyTorch's exact GELU).
    pub fn gelu_erf(&mut self, scope: &str, x: &str) -> String {
        let r = self.scalar(
            &format!("{scope}.gelu.rsqrt2"),
            std::f32::consts::FRAC_1_SQRT_2,
        );
        let half = self.scalar(&format!("{scope}.gelu.half"), 0.5);
        let one = self.scalar(&format!("{scope}.gelu.one"), 1.0);
        let scaled = self.node(scope, "Mul", &[x, &r], vec![]);
        let erf = self.node(scope, "Erf", &[&scaled], vec![]);
        let plus = self.node(scope, "Add", &[&erf, &one], vec![]);
        let xh = self.node(scope, "Mul", &[x, &half], vec![]);
        self.node(scope, "Mul", &[&xh, &plus], vec![])
    }

    /// Layer normalisation over the last axis.
    pub fn layer_norm(
        &mut self,
        scope: &str,
        x: &str,
        weight: &Tensor,
        bias: &Tensor,
        eps: f64,
    ) -> Result<String> {
        let w = self.weight(&format!("{scope}.weight"), weight)?;
        let b = self.weight(&format!("{scope}.bias"), bias)?;
        if self.opset() >= 17 {
            let attributes = vec![attr_int("axis", -1), attr_float("epsilon", eps as f32)];
            return Ok(self.node(scope, "LayerNormalization", &[x, &w, &b], attributes));
        }
        let mean = self.reduce(scope, "ReduceMean", x, &[-1], true);
        let centred = self.node(scope, "Sub", &[x, &mean], vec![]);
        let sq = self.node(scope, "Mul", &[&centred, &centred], vec![]);
        let var = self.reduce(scope, "ReduceMean", &sq, &[-1], true);
        let e = self.scalar(&format!("{scope}.eps"), eps as f32);
        let var = self.node(scope, "Add", &[&var, &e], vec![]);
        let std = self.node(scope, "Sqrt", &[&var], vec![]);
        let normed = self.node(scope, "Div", &[&centred, &std], vec![]);
        let scaled = self.node(scope, "Mul", &[&normed, &w], vec![]);
        Ok(self.node(scope, "Add", &[&scaled, &b], vec![]))
    }

    /// A reduction over `axes` (`ReduceMean`, `ReduceMax`, `ReduceSum`), axes given the way the
    /// operator set wants them (an input from opset 18, and always for `ReduceSum`).
    pub fn reduce(
        &mut self,
        scope: &str,
        op: &str,
        x: &str,
        axes: &[i64],
        keepdims: bool,
    ) -> String {
        let keep = attr_int("keepdims", keepdims as i64);
        if op == "ReduceSum" || self.opset() >= 18 {
            let a = self.ints(axes);
            self.node(scope, op, &[x, &a], vec![keep])
        } else {
            self.node(scope, op, &[x], vec![keep, attr_ints("axes", axes)])
        }
    }

    /// `Reshape` to `shape` (0 keeps a dimension, −1 infers one).
    pub fn reshape(&mut self, scope: &str, x: &str, shape: &[i64]) -> String {
        let s = self.ints(shape);
        self.node(scope, "Reshape", &[x, &s], vec![])
    }

    /// `Transpose` by `perm`.
    pub fn transpose(&mut self, scope: &str, x: &str, perm: &[i64]) -> String {
        self.node(scope, "Transpose", &[x], vec![attr_ints("perm", perm)])
    }

    /// `Concat` along `axis`.
    pub fn concat(&mut self, scope: &str, xs: &[&str], axis: i64) -> String {
        self.node(scope, "Concat", xs, vec![attr_int("axis", axis)])
    }

    /// Elements `start..end` along `axis`.
    pub fn slice(&mut self, scope: &str, x: &str, axis: i64, start: i64, end: i64) -> String {
        let (s, e, a) = (self.ints(&[start]), self.ints(&[end]), self.ints(&[axis]));
        self.node(scope, "Slice", &[x, &s, &e, &a], vec![])
    }

    /// `Unsqueeze` at `axes`.
    pub fn unsqueeze(&mut self, scope: &str, x: &str, axes: &[i64]) -> String {
        let a = self.ints(axes);
        self.node(scope, "Unsqueeze", &[x, &a], vec![])
    }

    /// Softmax along `axis`.
    pub fn softmax(&mut self, scope: &str, x: &str, axis: i64) -> String {
        self.node(scope, "Softmax", &[x], vec![attr_int("axis", axis)])
    }

    /// The `k` largest along `axis`, sorted: `(values, indices)`.
    pub fn topk(&mut self, scope: &str, x: &str, k: usize, axis: i64) -> (String, String) {
        let k = self.ints(&[k as i64]);
        let attributes = vec![
            attr_int("axis", axis),
            attr_int("largest", 1),
            attr_int("sorted", 1),
        ];
        let mut out = self.node_outputs(scope, "TopK", &[x, &k], 2, attributes);
        let indices = out.pop().expect("two outputs");
        (out.pop().expect("two outputs"), indices)
    }

    /// Rows `index[b, k]` of `x[b]` for `x: [B, S, C]`, `index: [B, K]` (i64) → `[B, K, C]`.
    pub fn gather_rows(&mut self, scope: &str, x: &str, index: &str, channels: usize) -> String {
        let idx = self.unsqueeze(scope, index, &[2]);
        let shape = self.ints(&[1, 1, channels as i64]);
        let idx = self.node(scope, "Expand", &[&idx, &shape], vec![]);
        self.node(
            scope,
            "GatherElements",
            &[x, &idx],
            vec![attr_int("axis", 1)],
        )
    }

    /// Bilinear `GridSample` with zero padding and `align_corners=False`.
    pub fn grid_sample(&mut self, scope: &str, x: &str, grid: &str) -> String {
        let mode = if self.opset() >= 20 {
            "linear"
        } else {
            "bilinear"
        };
        let attributes = vec![
            attr_int("align_corners", 0),
            attr_string("mode", mode),
            attr_string("padding_mode", "zeros"),
        ];
        self.node(scope, "GridSample", &[x, grid], attributes)
    }
}

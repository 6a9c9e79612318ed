use candle::{Result, Tensor};
use candle_nn::{Module, VarBuilder};
use rtdetr_onnx::GraphBuilder;
use rtdetr_ops::Linear;

/// ultralytics `MLP(input_dim, hidden_dim, output_dim, num_layers)`: `layers.i` linears with ReLU
/// between them.
#[derive(Debug, Clone)]
pub struct Mlp {
    layers: Vec<Linear>,
}

impl Mlp {
    /// `num_layers` linears `input → hidden → … → output`.
    pub fn new(
        input: usize,
        hidden: usize,
        output: usize,
        num_layers: usize,
        vb: VarBuilder,
    ) -> Result<Self> {
        let layers = (0..num_layers)
            .map(|i| {
                let c_in = if i == 0 { input } else { hidden };
                let c_out = if i + 1 == num_layers { output } else { hidden };
                rtdetr_ops::linear(c_in, c_out, vb.pp("layers").pp(i))
            })
            .collect::<Result<_>>()?;
        Ok(Self { layers })
    }
}

impl Mlp {
    /// As ONNX nodes: `MatMul`, `Add` per layer with `Relu` between.
    pub fn to_onnx(&self, g: &mut GraphBuilder, scope: &str, xs: &str) -> Result<String> {
        let mut xs = xs.to_string();
        for (i, layer) in self.layers.iter().enumerate() {
            let at = format!("{scope}.layers.{i}");
            xs = g.linear(&at, &xs, layer.weight(), layer.bias())?;
            if i + 1 < self.layers.len() {
                xs = g.node(&at, "Relu", &[&xs], vec![]);
            }
        }
        Ok(xs)
    }
}

impl Module for Mlp {
    /// # Shapes
    /// `xs: [..., input]` → `[..., output]`
    fn forward(&self, xs: &Tensor) -> Result<Tensor> {
        let mut xs = xs.clone();
        for (i, layer) in self.layers.iter().enumerate() {
            xs = layer.forward(&xs)?;
            if i + 1 < self.layers.len() {
                xs = xs.relu()?;
            }
        }
        Ok(xs)
    }
}

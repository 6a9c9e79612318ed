//! ONNX export in ultralytics' RT-DETR contract, written from the module tree (no tracing).

use rtdetr_onnx::proto::ModelProto;
use rtdetr_onnx::{Dim, GraphBuilder, Sampler};

use crate::{Error, Result, RtDetr};

/// The batch dimension of an exported graph.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Batch {
    /// A fixed batch size.
    Fixed(usize),
    /// Any batch size (the input's first dimension is named `batch`).
    Dynamic,
}

/// How to export.
#[derive(Debug, Clone, PartialEq)]
pub struct ExportOptions {
    /// Input `(height, width)`, multiples of 32. Anchors and position embeddings are constants of
    /// this size, so the graph takes only this size.
    pub imgsz: (usize, usize),
    /// Batch size.
    pub batch: Batch,
    /// f16 weights, input, activations and output.
    pub half: bool,
    /// ONNX operator set (16 to 21).
    pub opset: i64,
    /// How the deformable attention samples its maps.
    pub sampler: Sampler,
    /// ultralytics 8.4's output instead: the top-k (query, class) pairs as `[N, K, 6]`
    /// (cx, cy, w, h, score, class), what its `RTDETRDecoder.postprocess` returns in export mode.
    pub topk: bool,
    /// Class names for the `names` metadata (index strings where missing).
    pub names: Vec<String>,
}

impl Default for ExportOptions {
    /// 640×640, batch 1, f32, opset 17, `GridSample`.
    fn default() -> Self {
        Self {
            imgsz: (640, 640),
            batch: Batch::Fixed(1),
            half: false,
            opset: 17,
            sampler: Sampler::GridSample,
            topk: false,
            names: Vec::new(),
        }
    }
}

/// A Python string literal as `repr()` writes it, so that `ast.literal_eval` reads the metadata.
fn py_str(s: &str) -> String {
    let quote = if s.contains('\'') && !s.contains('"') {
        '"'
    } else {
        '\''
    };
    let mut out = String::from(quote);
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c == quote => {
                out.push('\\');
                out.push(c)
            }
            c if c.is_control() => out.push_str(&format!("\\x{:02x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push(quote);
    out
}

impl ExportOptions {
    fn check(&self) -> Result<()> {
        let (h, w) = self.imgsz;
        if h == 0 || w == 0 || !h.is_multiple_of(32) || !w.is_multiple_of(32) {
            return Err(Error::Options(format!(
                "export size {h}×{w}: height and width must be positive multiples of 32"
            )));
        }
        if self.batch == Batch::Fixed(0) {
            return Err(Error::Options(
                "export batch size must be at least 1".into(),
            ));
        }
        Ok(())
    }

    /// ultralytics' `metadata_props` (values as Python literals, as its exporter writes them).
    fn metadata(&self, nc: usize) -> Vec<(String, String)> {
        let (h, w) = self.imgsz;
        let names: Vec<String> = (0..nc)
            .map(|i| {
                let name = self.names.get(i).cloned().unwrap_or_else(|| i.to_string());
                format!("{i}: {}", py_str(&name))
            })
            .collect();
        let (batch, dynamic) = match self.batch {
            Batch::Fixed(n) => (n, "False"),
            Batch::Dynamic => (1, "True"),
        };
        let half = if self.half { "True" } else { "False" };
        let version = env!("CARGO_PKG_VERSION");
        [
            ("description", "rtdetr-rs RT-DETR-EfficientNetV2 model".to_string()),
            ("author", "rtdetr-rs".into()),
            ("version", version.into()),
            ("license", "AGPL-3.0".into()),
            ("stride", "32".into()),
            ("task", "detect".into()),
            ("batch", batch.to_string()),
            ("imgsz", format!("[{h}, {w}]")),
            ("names", format!("{{{}}}", names.join(", "))),
            ("channels", "3".into()),
            (
                "args",
                format!(
                    "{{'batch': {batch}, 'half': {half}, 'dynamic': {dynamic}, 'opset': {}, 'topk': {}, 'sampler': '{}'}}",
                    self.opset,
                    if self.topk { "True" } else { "False" },
                    match self.sampler {
                        Sampler::GridSample => "grid_sample",
                        Sampler::Gather => "gather",
                    }
                ),
            ),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect()
    }
}

impl RtDetr {
    /// The evaluation-mode detector as an ONNX model in ultralytics' RT-DETR export contract:
    /// input `images` `[N, 3, H, W]` (RGB in [0, 1], stretched to the size), output `output0`
    /// `[N, queries, 4 + nc]` (the last decoder layer's cx, cy, w, h normalised to [0, 1], then
    /// sigmoid class scores; with [`ExportOptions::topk`] ultralytics 8.4's `[N, K, 6]` top-k
    /// detections instead), batch norms folded and RepConvs fused, ultralytics' metadata.
    pub fn to_onnx(&self, options: &ExportOptions) -> Result<ModelProto> {
        options.check()?;
        let (h, w) = options.imgsz;
        let mut g = GraphBuilder::new(options.opset, options.half)?;
        let batch = match options.batch {
            Batch::Fixed(n) => Dim::Fixed(n),
            Batch::Dynamic => Dim::Named("batch".into()),
        };
        let input = g.input(
            "images",
            &[batch.clone(), Dim::Fixed(3), Dim::Fixed(h), Dim::Fixed(w)],
        );
        let maps = self.backbone().to_onnx(&mut g, "model.0", &input, (h, w))?;
        let [_, p3, p4, p5] = maps.as_slice() else {
            return Err(Error::Options(format!(
                "export size {h}×{w} gives the backbone {} distinct map sizes, not 4",
                maps.len()
            )));
        };
        let (h32, w32) = (h / 32, w / 32);
        let [x3, f4, f5] = self.neck().to_onnx(&mut g, [p3, p4, p5], (h32, w32))?;
        let shapes = [(h / 8, w / 8), (h / 16, w / 16), (h32, w32)];
        let decoder = self.decoder();
        let (boxes, scores) = decoder.to_onnx(
            &mut g,
            "model.19",
            &[&x3, &f4, &f5],
            &shapes,
            options.sampler,
        )?;
        let dec = decoder.config();
        let queries = dec.queries.min(shapes.iter().map(|(h, w)| h * w).sum());
        let (out, dims) = if options.topk {
            let out = decoder.postprocess_onnx(&mut g, "model.19", &boxes, &scores, queries);
            let k = queries.min(queries * dec.nc);
            (out, vec![batch, Dim::Fixed(k), Dim::Fixed(6)])
        } else {
            let out = g.concat("model.19", &[&boxes, &scores], 2);
            (
                out,
                vec![batch, Dim::Fixed(queries), Dim::Fixed(4 + dec.nc)],
            )
        };
        let metadata = options.metadata(dec.nc);
        Ok(g.finish(
            &[(&out, "output0", dims)],
            &metadata,
            env!("CARGO_PKG_VERSION"),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::py_str;

    #[test]
    fn names_are_python_literals() {
        assert_eq!(py_str("traffic light"), "'traffic light'");
        assert_eq!(py_str("it's"), "\"it's\"");
        assert_eq!(py_str("a'b\"c"), "'a\\'b\"c'");
        assert_eq!(py_str("back\\slash\n"), "'back\\\\slash\\n'");
    }
}

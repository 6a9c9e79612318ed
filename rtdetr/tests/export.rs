//! ONNX export of the reduced detector fixture, checked on the graph itself: every value defined
//! before use, batch norms folded and RepConvs fused (one `Conv` per convolution of the model),
//! the sampler and opset choices, ultralytics' metadata, and a file that reads back unchanged.
//! ONNX Runtime runs these graphs against the reference in `scripts/check-onnx.sh`.

use std::collections::{BTreeMap, HashSet};

use candle::Device;
use rtdetr::onnx::proto::{DataType, ModelProto};
use rtdetr::onnx::{read_model, write_model, Summary};
use rtdetr::{Batch, Error, ExportOptions, RtDetr, Sampler};

fn tiny() -> RtDetr {
    let path = fixtures::data_dir().join("detector_tiny.weights.safetensors");
    RtDetr::load(path, &Device::Cpu, None, None).unwrap()
}

fn options() -> ExportOptions {
    ExportOptions {
        imgsz: (256, 320),
        names: vec!["cat".into(), "dog".into(), "traffic light".into()],
        ..ExportOptions::default()
    }
}

fn ops(model: &ModelProto) -> BTreeMap<String, usize> {
    Summary::of(model).ops
}

/// Every node input is a graph input, a weight or an earlier node's output, and no value is
/// defined twice.
fn assert_well_formed(model: &ModelProto) {
    let graph = model.graph.as_ref().unwrap();
    let mut defined: HashSet<String> = graph
        .input
        .iter()
        .map(|v| v.name.clone().unwrap())
        .collect();
    for t in &graph.initializer {
        assert!(
            defined.insert(t.name.clone().unwrap()),
            "weight {:?} defined twice",
            t.name
        );
    }
    let mut names = HashSet::new();
    for node in &graph.node {
        assert!(
            names.insert(node.name.clone().unwrap()),
            "node {:?} twice",
            node.name
        );
        for input in node.input.iter().filter(|i| !i.is_empty()) {
            assert!(
                defined.contains(input),
                "{:?} reads {input} before it exists",
                node.name
            );
        }
        for output in &node.output {
            assert!(defined.insert(output.clone()), "{output} defined twice");
        }
    }
    for output in &graph.output {
        assert!(defined.contains(output.name.as_ref().unwrap()));
    }
}

/// Convolutions of the model with batch norms folded and each RepConv one 3×3 kernel: the stem,
/// 1, 2 or 5 per backbone block (expand-1, fused, MBConv with its two SE convolutions), 7 neck
/// convolutions, 2 + n per RepC3, and the decoder's 3 input projections.
fn expected_convs(model: &RtDetr) -> usize {
    let cfg = model.config();
    let backbone: usize = cfg
        .backbone
        .blocks()
        .iter()
        .map(|b| match (b.expand_ratio, b.fused) {
            (1, _) => 1,
            (_, true) => 2,
            _ => 5,
        })
        .sum();
    1 + backbone + 7 + 4 * (2 + cfg.neck.blocks) + cfg.decoder.in_channels.len()
}

#[test]
fn every_form_is_well_formed() {
    let model = tiny();
    for sampler in [Sampler::GridSample, Sampler::Gather] {
        for batch in [Batch::Fixed(1), Batch::Fixed(3), Batch::Dynamic] {
            for opset in [16, 17, 21] {
                for half in [false, true] {
                    let opts = ExportOptions {
                        sampler,
                        batch,
                        opset,
                        half,
                        ..options()
                    };
                    assert_well_formed(&model.to_onnx(&opts).unwrap());
                }
            }
        }
    }
}

#[test]
fn batch_norms_are_folded_and_repconvs_fused() {
    let model = tiny();
    let counts = ops(&model.to_onnx(&options()).unwrap());
    assert_eq!(counts["Conv"], expected_convs(&model), "{counts:?}");
    assert!(!counts.contains_key("BatchNormalization"), "{counts:?}");
}

#[test]
fn sampler_and_opset_choose_the_operators() {
    let model = tiny();
    let dec = &model.config().decoder;
    let samples = dec.layers * dec.levels();
    let grid = ops(&model.to_onnx(&options()).unwrap());
    assert_eq!(grid["GridSample"], samples);
    // AIFI's two norms, the encoder output's and three per decoder layer.
    assert_eq!(grid["LayerNormalization"], 3 + 3 * dec.layers);
    let gather = ops(&model
        .to_onnx(&ExportOptions {
            sampler: Sampler::Gather,
            ..options()
        })
        .unwrap());
    assert!(!gather.contains_key("GridSample"));
    // The query selection's gather and four corners per level and layer.
    assert_eq!(gather["GatherElements"], 1 + 4 * samples);
    let opset16 = ops(&model
        .to_onnx(&ExportOptions {
            opset: 16,
            ..options()
        })
        .unwrap());
    assert!(
        !opset16.contains_key("LayerNormalization"),
        "LayerNormalization is opset 17"
    );
}

#[test]
fn ports_and_metadata_follow_ultralytics() {
    let model = tiny();
    let summary = Summary::of(
        &model
            .to_onnx(&ExportOptions {
                batch: Batch::Dynamic,
                ..options()
            })
            .unwrap(),
    );
    assert_eq!(summary.inputs.len(), 1);
    assert_eq!(summary.inputs[0].name, "images");
    assert_eq!(summary.inputs[0].elem, "float32");
    assert_eq!(summary.inputs[0].dims, ["batch", "3", "256", "320"]);
    assert_eq!(summary.outputs[0].name, "output0");
    // 20 queries, 4 box coordinates and 3 class scores.
    assert_eq!(summary.outputs[0].dims, ["batch", "20", "7"]);
    let meta: BTreeMap<_, _> = summary.metadata.into_iter().collect();
    assert_eq!(meta["names"], "{0: 'cat', 1: 'dog', 2: 'traffic light'}");
    assert_eq!(meta["imgsz"], "[256, 320]");
    assert_eq!(meta["stride"], "32");
    assert_eq!(meta["task"], "detect");
    assert_eq!(meta["batch"], "1");
    assert!(meta["args"].contains("'dynamic': True"), "{}", meta["args"]);
    assert_eq!((summary.ir_version, summary.opset), (8, 17));
    let topk = tiny()
        .to_onnx(&ExportOptions {
            topk: true,
            ..options()
        })
        .unwrap();
    assert_eq!(Summary::of(&topk).outputs[0].dims, ["1", "20", "6"]);
    assert_well_formed(&topk);
}

#[test]
fn half_stores_f16() {
    let model = tiny()
        .to_onnx(&ExportOptions {
            half: true,
            ..options()
        })
        .unwrap();
    let graph = model.graph.as_ref().unwrap();
    let types: HashSet<i32> = graph
        .initializer
        .iter()
        .map(|t| t.data_type.unwrap())
        .collect();
    // f16 weights; i64 shapes and indices; f32 only for Resize scales, which the operator requires.
    assert_eq!(
        types,
        HashSet::from([
            DataType::Float16 as i32,
            DataType::Int64 as i32,
            DataType::Float as i32
        ])
    );
    let f32_weights: Vec<_> = graph
        .initializer
        .iter()
        .filter(|t| t.data_type == Some(DataType::Float as i32))
        .map(|t| t.name.clone().unwrap())
        .collect();
    assert!(
        f32_weights.iter().all(|n| n.ends_with(".scales")),
        "{f32_weights:?}"
    );
    assert_eq!(Summary::of(&model).inputs[0].elem, "float16");
}

#[test]
fn the_file_reads_back_unchanged() {
    let model = tiny().to_onnx(&options()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tiny.onnx");
    write_model(&path, &model).unwrap();
    assert_eq!(read_model(&path).unwrap(), model);
    let left: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
    assert_eq!(left.len(), 1, "only the model is left");
}

#[test]
fn a_file_that_is_not_onnx_is_refused_with_its_name() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("notes.onnx");
    std::fs::write(&path, b"not a protobuf \xff\xff").unwrap();
    let err = read_model(&path).unwrap_err().to_string();
    assert!(
        err.contains("notes.onnx") && err.contains("not an ONNX model"),
        "{err}"
    );
}

#[test]
fn impossible_options_are_refused() {
    let model = tiny();
    for (opts, want) in [
        (
            ExportOptions {
                imgsz: (250, 320),
                ..options()
            },
            "multiples of 32",
        ),
        (
            ExportOptions {
                batch: Batch::Fixed(0),
                ..options()
            },
            "at least 1",
        ),
        (
            ExportOptions {
                opset: 15,
                ..options()
            },
            "GridSample needs 16",
        ),
        (
            ExportOptions {
                opset: 22,
                ..options()
            },
            "choose 16 to 21",
        ),
    ] {
        let err = model.to_onnx(&opts).unwrap_err();
        assert!(err.to_string().contains(want), "{err}");
        if opts.opset == 17 {
            assert!(matches!(err, Error::Options(_)), "{err:?}");
        }
    }
}

//! Forward time of whole backbones (batch norms folded, as for inference) on random input with
//! random weights. Run: `cargo bench -p effnetv2` (the kernels' own benchmarks are in
//! `rtdetr-ops`).

use candle::{DType, Device, Tensor};
use candle_nn::{VarBuilder, VarMap};
use criterion::{criterion_group, criterion_main, Criterion};
use effnetv2::{Config, EfficientNetV2};

fn backbone(c: &mut Criterion) {
    let dev = Device::Cpu;
    let mut group = c.benchmark_group("backbone");
    group.sample_size(10);
    for (name, cfg, size) in [("s", Config::s(), 640), ("s", Config::s(), 320)] {
        let varmap = VarMap::new();
        let mut model =
            EfficientNetV2::new(&cfg, VarBuilder::from_varmap(&varmap, DType::F32, &dev)).unwrap();
        model.set_fused(true).unwrap();
        let xs = Tensor::rand(0f32, 1., (1, 3, size, size), &dev).unwrap();
        group.bench_function(format!("{name}_eval_f32_b1_{size}x{size}"), |b| {
            b.iter(|| model.forward_t(&xs, false).unwrap())
        });
    }
    group.finish();
}

criterion_group!(benches, backbone);
criterion_main!(benches);

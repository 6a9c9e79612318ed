//! Eval forward time of the whole detector (RepConv fused) on random input with seeded random
//! weights, to set beside `../shared/reference/bench_torch.py`. Run: `cargo bench -p rtdetr`.

use candle::{DType, Device, Tensor};
use candle_nn::{VarBuilder, VarMap};
use criterion::{criterion_group, criterion_main, Criterion};
use rtdetr::{ModelConfig, RtDetr, Variant};

fn detector(c: &mut Criterion) {
    let dev = Device::Cpu;
    let mut group = c.benchmark_group("detector");
    group.sample_size(10);
    for size in [640, 320] {
        let varmap = VarMap::new();
        let vb = VarBuilder::from_varmap(&varmap, DType::F32, &dev);
        let mut model = RtDetr::new(&ModelConfig::new(Variant::S, 80), vb).unwrap();
        model.set_fused(true).unwrap();
        let xs = Tensor::rand(0f32, 1., (1, 3, size, size), &dev).unwrap();
        group.bench_function(format!("s_nc80_eval_f32_b1_{size}x{size}"), |b| {
            b.iter(|| model.forward_t(&xs, false).unwrap())
        });
    }
    group.finish();
}

criterion_group!(benches, detector);
criterion_main!(benches);

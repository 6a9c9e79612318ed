//! Forward and forward+backward time of the attention op at the training step's shapes:
//! the decoder's self-attention (batch 4, 8 heads, 300 + 200 denoising queries, head width 32)
//! and AIFI's (400 tokens of the stride-32 map). Run: `cargo bench -p rtdetr-ops --bench attention`.

use candle::{Device, Tensor, Var};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use rtdetr_ops::attention;

fn shapes(c: &mut Criterion) {
    let dev = Device::Cpu;
    let mut group = c.benchmark_group("attention");
    group.sample_size(10);
    for (name, tokens) in [("decoder", 500), ("aifi", 400)] {
        let qkv = || Tensor::randn(0f32, 1., (4, 8, tokens, 32), &dev).unwrap();
        let (q, k, v) = (qkv(), qkv(), qkv());
        group.bench_function(BenchmarkId::new("fwd", name), |b| {
            b.iter(|| attention(&q, &k, &v, None).unwrap())
        });
        let [q, k, v] = [&q, &k, &v].map(|t| Var::from_tensor(t).unwrap());
        group.bench_function(BenchmarkId::new("fwd_bwd", name), |b| {
            b.iter_with_large_drop(|| {
                attention(&q, &k, &v, None)
                    .unwrap()
                    .sum_all()
                    .unwrap()
                    .backward()
                    .unwrap()
            })
        });
    }
    group.finish();
}

criterion_group!(benches, shapes);
criterion_main!(benches);

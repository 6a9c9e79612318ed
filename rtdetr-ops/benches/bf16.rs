//! bf16 against f32 for the layers that dominate a bf16 pass: the decoder's linear layers
//! (8400 encoder tokens, 300 queries) and a 3×3 convolution of the neck, on random input, with
//! whichever bf16 kernel this CPU runs. Run: `cargo bench -p rtdetr-ops --bench bf16`.

use candle::{Device, Module, Tensor};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use rtdetr_ops::{conv2d_bias_act, with_precision, Linear, Precision};

fn linear(c: &mut Criterion) {
    let dev = Device::Cpu;
    let mut group = c.benchmark_group("linear");
    group.sample_size(20);
    for (rows, in_dim, out_dim) in [(8400, 256, 256), (300, 256, 256), (300, 256, 1024)] {
        let xs = Tensor::randn(0f32, 1., (1, rows, in_dim), &dev).unwrap();
        let w = Tensor::randn(0f32, 0.1, (out_dim, in_dim), &dev).unwrap();
        let b = Tensor::randn(0f32, 0.1, out_dim, &dev).unwrap();
        let layer = Linear::new(w, Some(b));
        let id = format!("{rows}x{in_dim}_to_{out_dim}");
        for precision in [Precision::F32, Precision::Bf16] {
            let name = format!("{precision:?}").to_lowercase();
            group.bench_function(BenchmarkId::new(name, &id), |bench| {
                bench.iter(|| with_precision(precision, || layer.forward(&xs)).unwrap())
            });
        }
    }
    group.finish();
}

fn conv3x3(c: &mut Criterion) {
    let dev = Device::Cpu;
    let mut group = c.benchmark_group("conv3x3");
    group.sample_size(10);
    for (channels, size) in [(256, 80), (256, 40)] {
        let xs = Tensor::randn(0f32, 1., (1, channels, size, size), &dev).unwrap();
        let w = Tensor::randn(0f32, 0.05, (channels, channels, 3, 3), &dev).unwrap();
        let b = Tensor::zeros(channels, candle::DType::F32, &dev).unwrap();
        let id = format!("c{channels}_{size}x{size}");
        for precision in [Precision::F32, Precision::Bf16] {
            let name = format!("{precision:?}").to_lowercase();
            group.bench_function(BenchmarkId::new(name, &id), |bench| {
                bench.iter(|| {
                    with_precision(precision, || conv2d_bias_act(&xs, &w, &b, (1, 1, 1), true))
                        .unwrap()
                })
            });
        }
    }
    group.finish();
}

criterion_group!(benches, linear, conv3x3);
criterion_main!(benches);

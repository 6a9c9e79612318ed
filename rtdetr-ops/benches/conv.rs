//! Forward (and forward+backward) time of the depthwise kernel against candle's grouped
//! convolution, and of the banded 3×3 convolution at EfficientNetV2-S's training shapes (batch 4,
//! 640×640), on random input. Run: `cargo bench -p rtdetr-ops --bench conv`.

use candle::{Device, Tensor, Var};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use rtdetr_ops::{conv2d, depthwise_conv2d};

fn depthwise(c: &mut Criterion) {
    let dev = Device::Cpu;
    let mut group = c.benchmark_group("depthwise3x3");
    group.sample_size(20);
    for (channels, size, stride) in [(256, 80, 1), (256, 80, 2), (960, 40, 1)] {
        let xs = Tensor::randn(0f32, 1., (1, channels, size, size), &dev).unwrap();
        let w = Tensor::randn(0f32, 1., (channels, 1, 3, 3), &dev).unwrap();
        let id = format!("f32_b1_c{channels}_{size}x{size}_s{stride}");
        group.bench_function(BenchmarkId::new("direct_fwd", &id), |b| {
            b.iter(|| depthwise_conv2d(&xs, &w, stride, 1).unwrap())
        });
        group.bench_function(BenchmarkId::new("candle_grouped_fwd", &id), |b| {
            b.iter(|| xs.conv2d(&w, 1, stride, 1, channels).unwrap())
        });
        let xv = Var::from_tensor(&xs).unwrap();
        let wv = Var::from_tensor(&w).unwrap();
        group.bench_function(BenchmarkId::new("direct_fwd_bwd", &id), |b| {
            b.iter_with_large_drop(|| {
                depthwise_conv2d(&xv, &wv, stride, 1)
                    .unwrap()
                    .sum_all()
                    .unwrap()
                    .backward()
                    .unwrap()
            })
        });
        group.bench_function(BenchmarkId::new("candle_grouped_fwd_bwd", &id), |b| {
            b.iter_with_large_drop(|| {
                xv.conv2d(&wv, 1, stride, 1, channels)
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

fn full3x3(c: &mut Criterion) {
    let dev = Device::Cpu;
    let mut group = c.benchmark_group("full3x3");
    group.sample_size(10);
    for (c_in, c_out, size, stride) in [(24, 24, 320, 1), (48, 192, 160, 2), (256, 256, 80, 1)] {
        let xs = Var::randn(0f32, 1., (4, c_in, size, size), &dev).unwrap();
        let w = Var::randn(0f32, 1., (c_out, c_in, 3, 3), &dev).unwrap();
        let id = format!("f32_b4_{c_in}to{c_out}_{size}x{size}_s{stride}");
        group.bench_function(BenchmarkId::new("fwd", &id), |b| {
            b.iter_with_large_drop(|| conv2d(&xs, &w, stride, 1, 1).unwrap())
        });
        let out = conv2d(&xs, &w, stride, 1, 1).unwrap();
        let probe = Tensor::randn(0f32, 1., out.shape(), &dev).unwrap();
        group.bench_function(BenchmarkId::new("fwd_bwd", &id), |b| {
            b.iter_with_large_drop(|| {
                (conv2d(&xs, &w, stride, 1, 1).unwrap() * &probe)
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

criterion_group!(benches, depthwise, full3x3);
criterion_main!(benches);

//! Milliseconds per backbone block (eval, batch norms folded) on random input and weights.
//! Run: `cargo run --release -p effnetv2 --example profile_blocks -- s 640`.

use std::time::Instant;

use candle::{DType, Device, Tensor};
use candle_nn::{ModuleT, VarBuilder, VarMap};
use effnetv2::{Config, ConvBnAct, MbConv};
use rtdetr_ops::SplitMix64;

fn main() -> candle::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let variant = args.get(1).map_or("s", String::as_str);
    let size: usize = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(640);
    let cfg = Config::variant(variant).expect("variant s, m, l or xl");
    let dev = Device::Cpu;
    let map = VarMap::new();
    let vb = VarBuilder::from_varmap(&map, DType::F32, &dev);
    let mut stem = ConvBnAct::new(3, cfg.stem_ch(), 3, 2, 1, true, vb.pp("stem"))?;
    stem.set_fused(true)?;
    let mut blocks = Vec::new();
    for (i, block) in cfg.blocks().iter().enumerate() {
        let mut b = MbConv::new(block, 0.0, SplitMix64::default(), vb.pp("blocks").pp(i))?;
        b.set_fused(true)?;
        blocks.push((*block, b));
    }
    let xs = Tensor::rand(0f32, 1., (1, 3, size, size), &dev)?;
    let mut total = 0.0;
    let time = |f: &dyn Fn() -> candle::Result<Tensor>| -> candle::Result<(f64, Tensor)> {
        let mut best = f64::MAX;
        let mut out = f()?;
        for _ in 0..3 {
            let start = Instant::now();
            out = f()?;
            best = best.min(start.elapsed().as_secs_f64() * 1e3);
        }
        Ok((best, out))
    };
    let (ms, mut xs) = time(&|| stem.forward_t(&xs, false))?;
    println!("stem {:?} {ms:.1} ms", xs.dims());
    total += ms;
    for (i, (cfg, block)) in blocks.iter().enumerate() {
        let input = xs.clone();
        let (ms, out) = time(&|| block.forward_t(&input, false))?;
        println!(
            "block {i} e{} k{} s{} {}->{} se{} fused{} {:?} {ms:.1} ms",
            cfg.expand_ratio,
            cfg.kernel,
            cfg.stride,
            cfg.in_ch,
            cfg.out_ch,
            cfg.use_se,
            cfg.fused,
            out.dims()
        );
        total += ms;
        xs = out;
    }
    println!("total {total:.1} ms");
    Ok(())
}

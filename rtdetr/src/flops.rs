use crate::ModelConfig;

/// Operation count of one forward pass as `thop.profile` 2.0.14 reports it for the PyTorch model in
/// eval mode (multiply-accumulates of Conv2d and Linear, 4 per element of BatchNorm and LayerNorm,
/// one per output element of nearest upsampling, `(k+1)` per output of adaptive average pooling;
/// attention products, activations and `nn.MultiheadAttention` count zero). GFLOPs, as ultralytics
/// prints them, are `2 · ops / 1e9`.
pub fn thop_ops(cfg: &ModelConfig, height: usize, width: usize) -> u64 {
    thop_ops_by_part(cfg, height, width).iter().sum()
}

/// [`thop_ops`] of the backbone, the neck and the decoder.
pub fn thop_ops_by_part(cfg: &ModelConfig, height: usize, width: usize) -> [u64; 3] {
    let mut parts = [0u64; 3];
    let mut add = |n: usize, part: usize| parts[part] += n as u64;
    let half = |(h, w): (usize, usize)| (h.div_ceil(2), w.div_ceil(2));
    let area = |(h, w): (usize, usize)| h * w;

    // Backbone: ConvBNAct = conv + BN.
    let mut conv_bn = |c_in: usize, c_out: usize, k: usize, groups: usize, out: (usize, usize)| {
        add(area(out) * c_out * (c_in / groups) * k * k, 0);
        add(4 * area(out) * c_out, 0);
    };
    let mut size = half((height, width));
    conv_bn(3, cfg.backbone.stem_ch(), 3, 1, size);
    let mut se_ops = 0;
    for block in cfg.backbone.blocks() {
        let input = size;
        if block.stride == 2 {
            size = half(size);
        }
        let inter = block.inter_ch();
        let k = block.kernel;
        if block.expand_ratio == 1 {
            conv_bn(block.in_ch, inter, k, 1, size);
        } else if block.fused {
            conv_bn(block.in_ch, inter, k, 1, size);
            conv_bn(inter, block.out_ch, 1, 1, size);
        } else {
            conv_bn(block.in_ch, inter, 1, 1, input);
            conv_bn(inter, inter, k, inter, size);
            let hidden = inter / (4 * block.expand_ratio);
            se_ops += (area(size) + 1) * inter + 2 * hidden * inter;
            conv_bn(inter, block.out_ch, 1, 1, size);
        }
    }
    add(se_ops, 0);

    // Neck: ultralytics Conv = conv + BN; RepC3 unfused, as profiled.
    let hd = cfg.neck.hidden;
    let [p3, p4, p5] = cfg.neck.in_channels;
    let s8 = (height / 8, width / 8);
    let s16 = (height / 16, width / 16);
    let s32 = (height / 32, width / 32);
    let conv = |c_in: usize, k: usize, out: (usize, usize)| {
        area(out) * hd * c_in * k * k + 4 * area(out) * hd
    };
    let rep_c3 = |at: (usize, usize)| {
        2 * conv(2 * hd, 1, at) + cfg.neck.blocks * (conv(hd, 3, at) + conv(hd, 1, at))
    };
    let n32 = area(s32);
    add(conv(p5, 1, s32), 1);
    add(2 * n32 * hd * cfg.neck.ffn + 2 * 4 * n32 * hd, 1);
    add(conv(hd, 1, s32) + hd * area(s16), 1);
    add(
        conv(p4, 1, s16) + rep_c3(s16) + conv(hd, 1, s16) + hd * area(s8),
        1,
    );
    add(conv(p3, 1, s8) + rep_c3(s8), 1);
    add(
        conv(hd, 3, s16) + rep_c3(s16) + conv(hd, 3, s32) + rep_c3(s32),
        1,
    );

    // Decoder in eval: every layer runs, only the last layer's score head.
    let d = &cfg.decoder;
    let dh = d.hidden;
    let s = area(s8) + area(s16) + n32;
    let k = d.queries.min(s);
    let samples = d.heads * d.levels() * d.points;
    let mlp3 = |n: usize| 2 * dh * n * dh + dh * n * 4;
    add(
        d.in_channels
            .iter()
            .zip([s8, s16, s32])
            .map(|(&c, at)| area(at) * dh * c + 4 * area(at) * dh)
            .sum(),
        2,
    );
    add(dh * s * dh + 4 * s * dh + dh * s * d.nc + mlp3(k), 2);
    let per_layer = 4 * k * 2 * dh
        + 2 * dh * k * dh
        + 3 * 4 * k * dh
        + dh * k * samples * 3
        + dh * s * dh
        + dh * k * dh
        + 2 * dh * k * d.ffn
        + mlp3(k);
    add(d.layers * per_layer + dh * k * d.nc, 2);
    parts
}

/// GFLOPs as ultralytics prints them (`2 · thop ops / 1e9`).
pub fn gflops(cfg: &ModelConfig, height: usize, width: usize) -> f64 {
    2.0 * thop_ops(cfg, height, width) as f64 / 1e9
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Variant;

    #[test]
    fn s_at_640_is_the_published_figure() {
        // spec §0.2: thop 2.0.14 on SeedRTDETR('s', nc=1) at 640: 107.51 GFLOPs (the seed's 107.5).
        let g = gflops(&ModelConfig::new(Variant::S, 1), 640, 640);
        assert!((g - 107.5).abs() / 107.5 < 0.02, "{g}");
    }
}

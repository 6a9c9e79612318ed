use candle::{DType, Result, Tensor};

/// `torch.topk(xs, k, dim=-1)` (largest first) of each row; candle has no top-k and its arg-sort
/// fails on long rows on CUDA, so the scores go through the host. Equal values keep index order.
///
/// # Shapes
/// `xs: [B, N]` → `(values [B, k], indices [B, k] u32)`
pub fn topk(xs: &Tensor, k: usize) -> Result<(Tensor, Tensor)> {
    let (b, n) = xs.dims2()?;
    if k > n {
        candle::bail!("topk: k = {k} exceeds the row length {n}")
    }
    let rows: Vec<Vec<f32>> = xs.to_dtype(DType::F32)?.to_vec2()?;
    let mut indices = Vec::with_capacity(b * k);
    for row in &rows {
        let mut order: Vec<u32> = (0..n as u32).collect();
        let descending = |a: &u32, b: &u32| row[*b as usize].total_cmp(&row[*a as usize]);
        if k < n {
            order.select_nth_unstable_by(k, |a, b| descending(a, b).then(a.cmp(b)));
            order.truncate(k);
        }
        order.sort_by(|a, b| descending(a, b).then(a.cmp(b)));
        indices.extend(order);
    }
    let indices = Tensor::from_vec(indices, (b, k), xs.device())?;
    let values = xs.gather(&indices, 1)?;
    Ok((values, indices))
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle::Device;

    #[test]
    fn largest_first_ties_in_index_order() {
        let xs = Tensor::new(
            &[[0.1f32, 0.9, 0.5, 0.9, -1.0], [3.0, 2.0, 1.0, 0.0, -1.0]],
            &Device::Cpu,
        )
        .unwrap();
        let (values, indices) = topk(&xs, 3).unwrap();
        assert_eq!(indices.to_vec2::<u32>().unwrap(), [[1, 3, 2], [0, 1, 2]]);
        assert_eq!(
            values.to_vec2::<f32>().unwrap(),
            [[0.9, 0.9, 0.5], [3.0, 2.0, 1.0]]
        );
        assert!(topk(&xs, 6).is_err());
    }

    #[test]
    fn rows_longer_than_8192() {
        let n = 20_000;
        let row: Vec<f32> = (0..n).map(|i| ((i * 7919) % n) as f32).collect();
        let xs = Tensor::from_vec(row, (1, n), &Device::Cpu).unwrap();
        let (values, _) = topk(&xs, 3).unwrap();
        assert_eq!(
            values.to_vec2::<f32>().unwrap(),
            [[19_999.0, 19_998.0, 19_997.0]]
        );
    }
}

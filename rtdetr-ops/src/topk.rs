use candle::{DType, Result, Tensor};

/// `torch.topk(xs, k, dim=-1)` (largest first) of each row, compared as f32; equal values keep
/// index order. candle has no top-k and its arg-sort fails on rows longer than 8192 on CUDA, so
/// CUDA runs `kernels/topk.cu` (any row length, same order) and other devices sort on the host.
///
/// # Shapes
/// `xs: [B, N]` → `(values [B, k], indices [B, k] u32)`
pub fn topk(xs: &Tensor, k: usize) -> Result<(Tensor, Tensor)> {
    let (b, n) = xs.dims2()?;
    if k > n {
        candle::bail!("topk: k = {k} exceeds the row length {n}")
    }
    if cfg!(feature = "cuda") && xs.device().is_cuda() {
        let indices = xs
            .to_dtype(DType::F32)?
            .contiguous()?
            .apply_op1_no_bwd(&TopK { k })?;
        let values = xs.gather(&indices, 1)?;
        return Ok((values, indices));
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

/// The top-k indices of `[B, N]` f32 scores on CUDA (`kernels/topk.cu`).
struct TopK {
    #[cfg_attr(not(feature = "cuda"), allow(dead_code))]
    k: usize,
}

impl candle::CustomOp1 for TopK {
    fn name(&self) -> &'static str {
        "topk"
    }

    fn cpu_fwd(
        &self,
        _: &candle::CpuStorage,
        _: &candle::Layout,
    ) -> Result<(candle::CpuStorage, candle::Shape)> {
        candle::bail!("topk: the CUDA kernel op runs on CUDA only (the CPU sorts on the host)")
    }

    #[cfg(feature = "cuda")]
    fn cuda_fwd(
        &self,
        storage: &candle::CudaStorage,
        layout: &candle::Layout,
    ) -> Result<(candle::CudaStorage, candle::Shape)> {
        use candle::backend::BackendStorage;
        use candle::cuda_backend::cudarc::driver::{CudaSlice, LaunchConfig};
        let (rows, n) = layout.shape().dims2()?;
        let dev = storage.device();
        let cfg = LaunchConfig {
            grid_dim: (n.div_ceil(256) as u32, rows as u32, 1),
            block_dim: (256, 1, 1),
            shared_mem_bytes: 0,
        };
        // Ranks are a permutation of 0..n, so each of the k ≤ n slots of a row is written once.
        let indices: CudaSlice<u32> = crate::cuda::launch(
            dev,
            crate::cuda::TOPK,
            "topk",
            &[(storage.as_cuda_slice::<f32>()?, layout)],
            crate::cuda::Out::Written(rows * self.k),
            cfg,
            &[n, self.k],
        )?;
        Ok((
            candle::CudaStorage::wrap_cuda_slice(indices, dev.clone()),
            (rows, self.k).into(),
        ))
    }
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

    /// `kernels/topk.cu`'s ranking, mirrored: each element's rank is the number of larger
    /// (total-order bits, complemented index) keys, and must give the host's order.
    #[test]
    fn cuda_kernel_ranking_equals_the_host_order() {
        fn rank_key(v: f32, index: u32) -> u64 {
            let bits = v.to_bits();
            let key = if bits & 0x8000_0000 != 0 {
                !bits
            } else {
                bits | 0x8000_0000
            };
            ((key as u64) << 32) | (0xFFFF_FFFF - index) as u64
        }
        let specials = [f32::INFINITY, f32::NEG_INFINITY, 0.0, -0.0, 1.0, -1.0, 0.5];
        let row: Vec<f32> = (0..500)
            .map(|i| match (i * 37) % 23 {
                j if j < specials.len() => specials[j],
                j => j as f32 / 4.0 - 3.0,
            })
            .collect();
        let keys: Vec<u64> = (0..row.len()).map(|i| rank_key(row[i], i as u32)).collect();
        let k = 120;
        let mut ranked = vec![u32::MAX; k];
        for (i, &mine) in keys.iter().enumerate() {
            let rank = keys.iter().filter(|&&other| other > mine).count();
            if rank < k {
                ranked[rank] = i as u32;
            }
        }
        let xs = Tensor::from_vec(row.clone(), (1, row.len()), &Device::Cpu).unwrap();
        let (_, indices) = topk(&xs, k).unwrap();
        assert_eq!(indices.to_vec2::<u32>().unwrap()[0], ranked);
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

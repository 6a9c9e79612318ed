//! Training-mode batch normalisation as one CPU op with its own backward.
//!
//! The composite of candle ops (mean, subtract, square, mean, divide, scale, shift) keeps five
//! full-size intermediates alive for backward and reduces over (N, H, W) with candle's strided,
//! single-threaded reduction, forward and backward: a fifth of a training step's time. Here the
//! statistics come from one parallel pass per channel (accumulated in f64) and backward needs only
//! the input. f32 tensors run the vectorised plane loops of `batch_norm_f32`; f64 tensors (the
//! gradient checks) the generic code here.

use candle::backend::BackendStorage;
use candle::{
    CpuStorage, CustomOp1, CustomOp2, CustomOp3, Layout, Result, Shape, Tensor, WithDType,
};
use rayon::prelude::*;

use super::batch_norm_f32::{
    input_grad_plane, normalize_plane, plane_squared_deviation, plane_sum,
    pre_activation_grad_plane, Channel,
};
use crate::cpu::cpu_slice;

/// Per-channel mean and biased variance of a contiguous `[B, C, H, W]`.
struct Moments;

/// The planes `(b, c)` of channel `c`, in batch order.
fn channel_planes<T>(
    xs: &[T],
    channels: usize,
    plane: usize,
    c: usize,
) -> impl Iterator<Item = &[T]> {
    xs.chunks_exact(plane).skip(c).step_by(channels)
}

fn moments<T: WithDType>(xs: &[T], channels: usize, plane: usize) -> Vec<f64> {
    let n = (xs.len() / channels) as f64;
    let per_channel: Vec<(f64, f64)> = (0..channels)
        .into_par_iter()
        .map(|c| {
            let sum: f64 = channel_planes(xs, channels, plane, c)
                .flat_map(|p| p.iter())
                .map(|v| v.to_f64())
                .sum();
            let mean = sum / n;
            let sq: f64 = channel_planes(xs, channels, plane, c)
                .flat_map(|p| p.iter())
                .map(|v| (v.to_f64() - mean).powi(2))
                .sum();
            (mean, sq / n)
        })
        .collect();
    let (means, vars): (Vec<f64>, Vec<f64>) = per_channel.into_iter().unzip();
    means.into_iter().chain(vars).collect()
}

fn moments_f32(xs: &[f32], channels: usize, plane: usize) -> Vec<f64> {
    let n = (xs.len() / channels) as f64;
    let per_channel: Vec<(f64, f64)> = (0..channels)
        .into_par_iter()
        .map(|c| {
            let sum: f64 = channel_planes(xs, channels, plane, c).map(plane_sum).sum();
            let mean = sum / n;
            let sq: f64 = channel_planes(xs, channels, plane, c)
                .map(|p| plane_squared_deviation(p, mean as f32))
                .sum();
            (mean, sq / n)
        })
        .collect();
    let (means, vars): (Vec<f64>, Vec<f64>) = per_channel.into_iter().unzip();
    means.into_iter().chain(vars).collect()
}

impl CustomOp1 for Moments {
    fn name(&self) -> &'static str {
        "bn-moments"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let (_, c, h, w) = l.shape().dims4()?;
        let out = match s {
            CpuStorage::F32(_) => moments_f32(cpu_slice::<f32>(s, l)?, c, h * w),
            CpuStorage::F64(_) => moments(cpu_slice::<f64>(s, l)?, c, h * w),
            s => candle::bail!("batch norm: unsupported dtype {:?} (f32 or f64)", s.dtype()),
        };
        Ok((CpuStorage::F64(out), (2, c).into()))
    }
}

/// `(x − mean) / sqrt(var + eps) · weight + bias` with the batch's own statistics, then SiLU
/// when `silu` (fused so that the pre-activation is never stored: backward recomputes it).
struct Normalize {
    mean: Vec<f64>,
    var: Vec<f64>,
    eps: f64,
    silu: bool,
}

/// Per-plane `(Σ dz, Σ dz·x̂)` of `[B, C]` planes, in order, summed per channel.
fn per_channel(planes: &[(f64, f64)], channels: usize) -> Vec<(f64, f64)> {
    let mut sums = vec![(0.0, 0.0); channels];
    for (i, &(s, sx)) in planes.iter().enumerate() {
        sums[i % channels].0 += s;
        sums[i % channels].1 += sx;
    }
    sums
}

fn silu(z: f64) -> f64 {
    z / (1.0 + (-z).exp())
}

/// d silu(z) / dz.
fn silu_grad(z: f64) -> f64 {
    let s = 1.0 / (1.0 + (-z).exp());
    s * (1.0 + z * (1.0 - s))
}

impl Normalize {
    fn inv_std(&self, c: usize) -> f64 {
        1.0 / (self.var[c] + self.eps).sqrt()
    }

    fn forward<T: WithDType>(&self, xs: &[T], weight: &[T], bias: &[T], plane: usize) -> Vec<T> {
        let channels = self.mean.len();
        let mut out = vec![T::zero(); xs.len()];
        out.par_chunks_mut(plane)
            .zip(xs.par_chunks(plane))
            .enumerate()
            .for_each(|(i, (out, xs))| {
                let c = i % channels;
                let scale = weight[c].to_f64() * self.inv_std(c);
                let shift = bias[c].to_f64() - self.mean[c] * scale;
                for (o, &x) in out.iter_mut().zip(xs) {
                    let z = x.to_f64() * scale + shift;
                    *o = T::from_f64(if self.silu { silu(z) } else { z });
                }
            });
        out
    }

    fn channel_f32(&self, c: usize, weight: f64, bias: f64) -> Channel {
        Channel {
            mean: self.mean[c] as f32,
            inv_std: self.inv_std(c) as f32,
            weight: weight as f32,
            bias: bias as f32,
        }
    }

    fn forward_f32(&self, xs: &[f32], weight: &[f32], bias: &[f32], plane: usize) -> Vec<f32> {
        let channels = self.mean.len();
        let mut out = vec![0f32; xs.len()];
        out.par_chunks_mut(plane)
            .zip(xs.par_chunks(plane))
            .enumerate()
            .for_each(|(i, (out, xs))| {
                let c = i % channels;
                let scale = weight[c] as f64 * self.inv_std(c);
                let shift = bias[c] as f64 - self.mean[c] * scale;
                normalize_plane(out, xs, scale as f32, shift as f32, self.silu);
            });
        out
    }

    /// [`Self::backward`] for f32, through the vectorised plane loops.
    fn backward_f32(
        &self,
        xs: &[f32],
        grad: &[f32],
        (weight, bias): (&[f64], &[f64]),
        plane: usize,
    ) -> Vec<f32> {
        let channels = self.mean.len();
        let n = (xs.len() / channels) as f64;
        let mut out = vec![0f32; xs.len() + 2 * channels];
        let (dx, params) = out.split_at_mut(xs.len());
        let partial: Vec<(f64, f64)> = dx
            .par_chunks_mut(plane)
            .zip(xs.par_chunks(plane).zip(grad.par_chunks(plane)))
            .enumerate()
            .map(|(i, (dx, (xs, grad)))| {
                let c = i % channels;
                let ch = self.channel_f32(c, weight[c], bias[c]);
                pre_activation_grad_plane(dx, xs, grad, ch, self.silu)
            })
            .collect();
        let sums = per_channel(&partial, channels);
        dx.par_chunks_mut(plane)
            .zip(xs.par_chunks(plane))
            .enumerate()
            .for_each(|(i, (dx, xs))| {
                let c = i % channels;
                let ch = self.channel_f32(c, weight[c], bias[c]);
                let (sum, sum_xhat) = (sums[c].0 / n, sums[c].1 / n);
                input_grad_plane(dx, xs, ch, sum as f32, sum_xhat as f32);
            });
        for (c, &(sum, sum_xhat)) in sums.iter().enumerate() {
            params[c] = sum_xhat as f32;
            params[channels + c] = sum as f32;
        }
        out
    }

    /// `[dx (B·C·H·W), d weight (C), d bias (C)]`, flat, for the output gradient `grad`.
    fn backward<T: WithDType>(
        &self,
        xs: &[T],
        grad: &[T],
        (weight, bias): (&[f64], &[f64]),
        plane: usize,
    ) -> Vec<T> {
        let channels = self.mean.len();
        let n = (xs.len() / channels) as f64;
        // The gradient at the normalised-and-scaled value z (before the activation).
        let dz = |c: usize, xhat: f64, g: f64| {
            if self.silu {
                g * silu_grad(xhat * weight[c] + bias[c])
            } else {
                g
            }
        };
        let mut out = vec![T::zero(); xs.len() + 2 * channels];
        let (dx, params) = out.split_at_mut(xs.len());
        // First pass, plane by plane: dz into dx, and the plane's Σ dz and Σ dz·x̂.
        let partial: Vec<(f64, f64)> = dx
            .par_chunks_mut(plane)
            .zip(xs.par_chunks(plane).zip(grad.par_chunks(plane)))
            .enumerate()
            .map(|(i, (dx, (xs, grad)))| {
                let c = i % channels;
                let (mean, inv_std) = (self.mean[c], self.inv_std(c));
                let (mut sum, mut sum_xhat) = (0.0, 0.0);
                for ((d, &x), &g) in dx.iter_mut().zip(xs).zip(grad) {
                    let xhat = (x.to_f64() - mean) * inv_std;
                    let z = dz(c, xhat, g.to_f64());
                    *d = T::from_f64(z);
                    sum += z;
                    sum_xhat += z * xhat;
                }
                (sum, sum_xhat)
            })
            .collect();
        let sums = per_channel(&partial, channels);
        // Second pass: dx = weight·inv_std·(dz − mean(dz) − x̂·mean(dz·x̂)).
        dx.par_chunks_mut(plane)
            .zip(xs.par_chunks(plane))
            .enumerate()
            .for_each(|(i, (dx, xs))| {
                let c = i % channels;
                let (mean, inv_std) = (self.mean[c], self.inv_std(c));
                let (sum, sum_xhat) = (sums[c].0 / n, sums[c].1 / n);
                let k = weight[c] * inv_std;
                for (d, &x) in dx.iter_mut().zip(xs) {
                    let xhat = (x.to_f64() - mean) * inv_std;
                    *d = T::from_f64(k * (d.to_f64() - sum - xhat * sum_xhat));
                }
            });
        for (c, &(sum, sum_xhat)) in sums.iter().enumerate() {
            params[c] = T::from_f64(sum_xhat);
            params[channels + c] = T::from_f64(sum);
        }
        out
    }
}

impl CustomOp3 for Normalize {
    fn name(&self) -> &'static str {
        "bn-train"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (_, _, h, w) = l1.shape().dims4()?;
        let (xs, weight, bias) = (s1, s2, s3);
        let out = match s1.dtype() {
            candle::DType::F32 => CpuStorage::F32(self.forward_f32(
                cpu_slice(xs, l1)?,
                cpu_slice(weight, l2)?,
                cpu_slice(bias, l3)?,
                h * w,
            )),
            _ => float_dispatch!("batch norm", s1.dtype(), CpuStorage, |T| {
                self.forward::<T>(cpu_slice(xs, l1)?, cpu_slice(weight, l2)?, cpu_slice(bias, l3)?, h * w)
            }, F64: f64),
        };
        Ok((out, l1.shape().clone()))
    }

    fn bwd(
        &self,
        xs: &Tensor,
        weight: &Tensor,
        bias: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let host = |t: &Tensor| t.to_dtype(candle::DType::F64)?.to_vec1::<f64>();
        let op = NormalizeBackward {
            forward: Normalize {
                mean: self.mean.clone(),
                var: self.var.clone(),
                eps: self.eps,
                silu: self.silu,
            },
            weight: host(weight)?,
            bias: host(bias)?,
        };
        let packed = xs.apply_op2_no_bwd(&grad.contiguous()?, &op)?;
        let (len, c) = (xs.elem_count(), self.mean.len());
        Ok((
            Some(packed.narrow(0, 0, len)?.reshape(xs.shape())?),
            Some(packed.narrow(0, len, c)?),
            Some(packed.narrow(0, len + c, c)?),
        ))
    }
}

/// The backward of [`Normalize`] as an op on (x, dy).
struct NormalizeBackward {
    forward: Normalize,
    weight: Vec<f64>,
    bias: Vec<f64>,
}

impl CustomOp2 for NormalizeBackward {
    fn name(&self) -> &'static str {
        "bn-train-bwd"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (b, c, h, w) = l1.shape().dims4()?;
        let params = (self.weight.as_slice(), self.bias.as_slice());
        let out = match s1.dtype() {
            candle::DType::F32 => CpuStorage::F32(self.forward.backward_f32(
                cpu_slice(s1, l1)?,
                cpu_slice(s2, l2)?,
                params,
                h * w,
            )),
            _ => float_dispatch!("batch norm backward", s1.dtype(), CpuStorage, |T| {
                self.forward
                    .backward::<T>(cpu_slice(s1, l1)?, cpu_slice(s2, l2)?, params, h * w)
            }, F64: f64),
        };
        Ok((out, (b * c * h * w + 2 * c).into()))
    }
}

/// Training-mode batch norm of a CPU f32/f64 `[B, C, H, W]`, followed by SiLU when `silu`: the
/// output (differentiable in `xs`, `weight` and `bias`) and the batch's per-channel mean and
/// biased variance.
pub fn batch_norm_train(
    xs: &Tensor,
    weight: &Tensor,
    bias: &Tensor,
    eps: f64,
    silu: bool,
) -> Result<(Tensor, Vec<f64>, Vec<f64>)> {
    let xs = xs.contiguous()?;
    let moments = xs.apply_op1_no_bwd(&Moments)?.to_vec2::<f64>()?;
    let [mean, var] = <[Vec<f64>; 2]>::try_from(moments)
        .map_err(|_| candle::Error::Msg("batch norm: moments are not two rows".into()))?;
    let op = Normalize {
        mean: mean.clone(),
        var: var.clone(),
        eps,
        silu,
    };
    let ys = xs.apply_op3(&weight.contiguous()?, &bias.contiguous()?, op)?;
    Ok((ys, mean, var))
}

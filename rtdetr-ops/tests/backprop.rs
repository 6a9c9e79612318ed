//! The backprop of the vendored candle-core (`vendor/candle-core/PATCHED.md`): first gradients are
//! stored as they are, later ones added, subtracting rules negate the first, and a first gradient
//! that is a small view of a large buffer is compacted.

use candle::{CpuStorage, CustomOp1, Device, Layout, Result, Shape, Storage, Tensor, Var};

fn values(t: &Tensor) -> Vec<f32> {
    t.flatten_all().unwrap().to_vec1().unwrap()
}

#[test]
fn contributions_are_summed_and_subtractions_negated() -> Result<()> {
    let dev = Device::Cpu;
    let a = Var::new(&[1f32, 2., 3.], &dev)?;
    let b = Var::new(&[4f32, 5., 6.], &dev)?;
    // a reaches the loss three times, b only through subtractions.
    let loss = ((a.as_tensor() + (a.as_tensor() * 3.)?)? - b.as_tensor())?
        .sub(&(b.as_tensor() * a.as_tensor())?)?
        .sum_all()?;
    let grads = loss.backward()?;
    assert_eq!(values(grads.get(&a).unwrap()), [0., -1., -2.]);
    assert_eq!(values(grads.get(&b).unwrap()), [-2., -3., -4.]);
    Ok(())
}

/// Identity forward; backward returns its gradient as the head of a buffer ten times its size, as
/// ops that pack several gradients into one buffer do.
struct PackedBackward;

impl CustomOp1 for PackedBackward {
    fn name(&self) -> &'static str {
        "packed-backward"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> Result<(CpuStorage, Shape)> {
        let xs = storage.as_slice::<f32>()?;
        let xs = &xs[layout.start_offset()..layout.start_offset() + layout.shape().elem_count()];
        Ok((CpuStorage::F32(xs.to_vec()), layout.shape().clone()))
    }

    fn bwd(&self, arg: &Tensor, _res: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        let n = arg.elem_count();
        let padding = Tensor::zeros(9 * n, grad.dtype(), grad.device())?;
        let packed = Tensor::cat(&[grad.flatten_all()?, padding], 0)?;
        Ok(Some(packed.narrow(0, 0, n)?.reshape(arg.shape())?))
    }
}

#[test]
fn a_small_view_of_a_packed_buffer_is_stored_compacted() -> Result<()> {
    let w = Var::new(&[1f32, 2., 3., 4.], &Device::Cpu)?;
    let loss = (w.as_tensor().apply_op1(PackedBackward)? * 2.)?.sum_all()?;
    let grads = loss.backward()?;
    let grad = grads.get(&w).unwrap();
    assert_eq!(values(grad), [2., 2., 2., 2.]);
    let (storage, layout) = grad.storage_and_layout();
    let Storage::Cpu(CpuStorage::F32(buffer)) = &*storage else {
        panic!("expected an f32 CPU gradient")
    };
    assert_eq!((buffer.len(), layout.start_offset()), (4, 0));
    Ok(())
}

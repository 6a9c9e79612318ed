//! Gradients of the neck's modules against central finite differences in f64.

use candle::{DType, Device, Module, Tensor, Var};
use candle_nn::{VarBuilder, VarMap};
use rtdetr_neck::Aifi;

fn numeric_vs_analytic(f: impl Fn(&Tensor) -> Tensor, xs: &Tensor) -> f64 {
    let var = Var::from_tensor(xs).unwrap();
    let probe = Tensor::randn(0f64, 1., f(xs).dims(), &Device::Cpu).unwrap();
    let loss = |t: &Tensor| (f(t) * &probe).unwrap().sum_all().unwrap();
    let grads = loss(&var).backward().unwrap();
    let analytic: Vec<f64> = grads
        .get(&var)
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1()
        .unwrap();
    let base: Vec<f64> = xs.flatten_all().unwrap().to_vec1().unwrap();
    let eps = 1e-6;
    let mut worst = 0f64;
    for (i, &g) in analytic.iter().enumerate().step_by(7) {
        let at = |d: f64| {
            let mut v = base.clone();
            v[i] += d;
            Tensor::from_vec(v, xs.shape(), &Device::Cpu).unwrap()
        };
        let numeric = (loss(&at(eps)).to_scalar::<f64>().unwrap()
            - loss(&at(-eps)).to_scalar::<f64>().unwrap())
            / (2.0 * eps);
        worst = worst.max((numeric - g).abs() / (1.0 + g.abs()));
    }
    worst
}

#[test]
fn aifi_input_gradient() {
    let varmap = VarMap::new();
    let vb = VarBuilder::from_varmap(&varmap, DType::F64, &Device::Cpu);
    let aifi = Aifi::new(16, 32, 4, vb).unwrap();
    let xs = Tensor::randn(0f64, 1., (2, 16, 3, 4), &Device::Cpu).unwrap();
    let worst = numeric_vs_analytic(|x| aifi.forward(x).unwrap(), &xs);
    assert!(worst < 1e-6, "{worst}");
}

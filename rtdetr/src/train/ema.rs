use std::collections::BTreeMap;

use candle::{Result, Tensor};
use candle_nn::VarMap;

/// ultralytics' `ModelEMA`: an exponential moving average of every floating-point state entry
/// (parameters and batch-norm running statistics) with decay `0.9999·(1 − exp(−updates/2000))`.
#[derive(Debug, Clone)]
pub struct Ema {
    /// The averaged tensors, by state_dict key.
    pub shadow: BTreeMap<String, Tensor>,
    /// Number of updates so far.
    pub updates: u64,
    /// Maximum decay (0.9999).
    pub decay: f64,
    /// Ramp time constant in updates (2000).
    pub tau: f64,
}

impl Ema {
    /// Starts from a copy of the model's current state.
    pub fn new(varmap: &VarMap) -> Result<Self> {
        let shadow = snapshot(varmap)?;
        Ok(Self {
            shadow,
            updates: 0,
            decay: 0.9999,
            tau: 2000.0,
        })
    }

    /// The decay after `updates` updates.
    pub fn decay_at(&self, updates: u64) -> f64 {
        self.decay * (1.0 - (-(updates as f64) / self.tau).exp())
    }

    /// `ema = d·ema + (1 − d)·model`.
    pub fn update(&mut self, varmap: &VarMap) -> Result<()> {
        self.updates += 1;
        let d = self.decay_at(self.updates);
        let current = snapshot(varmap)?;
        for (key, value) in current {
            let averaged = match self.shadow.get(&key) {
                Some(old) => ((old * d)? + (value * (1.0 - d))?)?,
                None => value,
            };
            self.shadow.insert(key, averaged);
        }
        Ok(())
    }
}

fn snapshot(varmap: &VarMap) -> Result<BTreeMap<String, Tensor>> {
    let vars = varmap
        .data()
        .lock()
        .map_err(|_| candle::Error::Msg("the variable map's lock is poisoned".into()))?;
    vars.iter()
        .filter(|(_, v)| v.dtype().is_float())
        .map(|(k, v)| Ok((k.clone(), v.as_tensor().detach().copy()?)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle::{DType, Device};
    use candle_nn::Init;

    #[test]
    fn follows_the_reference_ramp() {
        let varmap = VarMap::new();
        let w = varmap
            .get(2, "w", Init::Const(1.0), DType::F64, &Device::Cpu)
            .unwrap();
        let mut ema = Ema::new(&varmap).unwrap();
        // python: d = 0.9999 * (1 - math.exp(-1 / 2000))
        let d1 = 0.9999 * (1.0 - (-1.0f64 / 2000.0).exp());
        let var = varmap.data().lock().unwrap()["w"].clone();
        var.set(&(w.ones_like().unwrap() * 3.0).unwrap()).unwrap();
        ema.update(&varmap).unwrap();
        let got: Vec<f64> = ema.shadow["w"].to_vec1().unwrap();
        assert!((got[0] - (d1 * 1.0 + (1.0 - d1) * 3.0)).abs() < 1e-15);
        assert!((ema.decay_at(1_000_000) - 0.9999).abs() < 1e-12);
    }
}

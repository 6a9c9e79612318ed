//! ultralytics `KalmanFilterXYAH`: constant velocity in (cx, cy, aspect, height) and their speeds,
//! noise proportional to the height, in f64 like its numpy arrays.

// Small fixed-size matrices read best indexed as the formulas are written.
#![allow(clippy::needless_range_loop)]

/// State mean `[cx, cy, a, h, vx, vy, va, vh]`.
pub type Mean = [f64; 8];
/// State covariance.
pub type Covariance = [[f64; 8]; 8];

const STD_POSITION: f64 = 1.0 / 20.0;
const STD_VELOCITY: f64 = 1.0 / 160.0;

fn diagonal(std: [f64; 8]) -> Covariance {
    let mut c = [[0.0; 8]; 8];
    for (i, s) in std.iter().enumerate() {
        c[i][i] = s * s;
    }
    c
}

/// The track's first state from a measurement `[cx, cy, a, h]`.
pub fn initiate(measurement: [f64; 4]) -> (Mean, Covariance) {
    let h = measurement[3];
    let mut mean = [0.0; 8];
    mean[..4].copy_from_slice(&measurement);
    let p = 2.0 * STD_POSITION * h;
    let v = 10.0 * STD_VELOCITY * h;
    (mean, diagonal([p, p, 1e-2, p, v, v, 1e-5, v]))
}

/// One step of the motion model.
pub fn predict(mean: &Mean, cov: &Covariance) -> (Mean, Covariance) {
    let h = mean[3];
    let (p, v) = (STD_POSITION * h, STD_VELOCITY * h);
    let motion = diagonal([p, p, 1e-2, p, v, v, 1e-5, v]);
    let mut next = *mean;
    for i in 0..4 {
        next[i] += mean[i + 4];
    }
    // F·P·Fᵀ with F = [[I, I], [0, I]], as numpy's multi_dot computes it: (F·P)·Fᵀ.
    let mut fp = [[0.0; 8]; 8];
    for i in 0..8 {
        for j in 0..8 {
            fp[i][j] = if i < 4 {
                cov[i][j] + cov[i + 4][j]
            } else {
                cov[i][j]
            };
        }
    }
    let mut out = [[0.0; 8]; 8];
    for i in 0..8 {
        for j in 0..8 {
            let fpft = if j < 4 {
                fp[i][j] + fp[i][j + 4]
            } else {
                fp[i][j]
            };
            out[i][j] = fpft + motion[i][j];
        }
    }
    (next, out)
}

/// Solves `a · x = b` for the 4×4 symmetric positive definite `a` and 8 right-hand sides (the
/// columns of `b`), by Gaussian elimination with partial pivoting as LAPACK's gesv.
fn solve4(a: [[f64; 4]; 4], b: [[f64; 8]; 4]) -> [[f64; 8]; 4] {
    let (mut a, mut b) = (a, b);
    for col in 0..4 {
        let pivot = (col..4)
            .max_by(|&x, &y| a[x][col].abs().total_cmp(&a[y][col].abs()))
            .unwrap_or(col);
        a.swap(col, pivot);
        b.swap(col, pivot);
        for row in col + 1..4 {
            let f = a[row][col] / a[col][col];
            for k in col..4 {
                a[row][k] -= f * a[col][k];
            }
            for k in 0..8 {
                b[row][k] -= f * b[col][k];
            }
        }
    }
    let mut x = [[0.0; 8]; 4];
    for row in (0..4).rev() {
        for k in 0..8 {
            let mut s = b[row][k];
            for j in row + 1..4 {
                s -= a[row][j] * x[j][k];
            }
            x[row][k] = s / a[row][row];
        }
    }
    x
}

/// The correction by a measurement `[cx, cy, a, h]`.
pub fn update(mean: &Mean, cov: &Covariance, measurement: [f64; 4]) -> (Mean, Covariance) {
    let h = mean[3];
    let p = STD_POSITION * h;
    let noise = [p, p, 1e-1, p];
    let mut s = [[0.0; 4]; 4];
    for i in 0..4 {
        for j in 0..4 {
            s[i][j] = cov[i][j];
        }
        s[i][i] += noise[i] * noise[i];
    }
    // K = (S⁻¹ · (P·Hᵀ)ᵀ)ᵀ, P·Hᵀ being P's first four columns.
    let mut rhs = [[0.0; 8]; 4];
    for i in 0..4 {
        for j in 0..8 {
            rhs[i][j] = cov[j][i];
        }
    }
    let kt = solve4(s, rhs);
    let mut gain = [[0.0; 4]; 8];
    for i in 0..8 {
        for j in 0..4 {
            gain[i][j] = kt[j][i];
        }
    }
    let innovation: Vec<f64> = (0..4).map(|i| measurement[i] - mean[i]).collect();
    let mut next = *mean;
    for i in 0..8 {
        next[i] += (0..4).map(|j| innovation[j] * gain[i][j]).sum::<f64>();
    }
    // P − K·S·Kᵀ, as multi_dot((K, S, Kᵀ)) groups it: (K·S)·Kᵀ.
    let mut ks = [[0.0; 4]; 8];
    for i in 0..8 {
        for j in 0..4 {
            ks[i][j] = (0..4).map(|k| gain[i][k] * s[k][j]).sum();
        }
    }
    let mut out = *cov;
    for i in 0..8 {
        for j in 0..8 {
            out[i][j] -= (0..4).map(|k| ks[i][k] * gain[j][k]).sum::<f64>();
        }
    }
    (next, out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn solve_inverts() {
        let a = [
            [4.0, 1.0, 0.5, 0.0],
            [1.0, 3.0, 0.0, 0.2],
            [0.5, 0.0, 2.0, 0.1],
            [0.0, 0.2, 0.1, 1.0],
        ];
        let mut b = [[0.0; 8]; 4];
        for (i, row) in b.iter_mut().enumerate() {
            for (k, v) in row.iter_mut().enumerate() {
                *v = (i * 8 + k) as f64 - 10.0;
            }
        }
        let x = solve4(a, b);
        for i in 0..4 {
            for k in 0..8 {
                let got: f64 = (0..4).map(|j| a[i][j] * x[j][k]).sum();
                assert!((got - b[i][k]).abs() < 1e-12);
            }
        }
    }

    #[test]
    fn a_still_box_keeps_its_place() {
        let (mean, cov) = initiate([50.0, 40.0, 0.5, 20.0]);
        let (mean, cov) = predict(&mean, &cov);
        let (mean, _) = update(&mean, &cov, [50.0, 40.0, 0.5, 20.0]);
        assert!(mean[..4]
            .iter()
            .zip([50.0, 40.0, 0.5, 20.0])
            .all(|(a, b)| (a - b).abs() < 1e-12));
    }
}

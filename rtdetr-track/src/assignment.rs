//! Association costs and the thresholded assignment of ultralytics' `trackers/utils/matching.py`.

/// `1 − IoU` of every pair (`bbox_ioa(..., iou=True)` in f32 with eps 1e-7), row-major.
pub fn iou_distance(a: &[[f32; 4]], b: &[[f32; 4]]) -> Vec<f32> {
    let mut out = Vec::with_capacity(a.len() * b.len());
    for p in a {
        for q in b {
            let w = (p[2].min(q[2]) - p[0].max(q[0])).max(0.0);
            let h = (p[3].min(q[3]) - p[1].max(q[1])).max(0.0);
            let inter = w * h;
            let area = (q[2] - q[0]) * (q[3] - q[1]) + (p[2] - p[0]) * (p[3] - p[1]) - inter;
            out.push(1.0 - inter / (area + 1e-7));
        }
    }
    out
}

/// `fuse_score`: the IoU similarity scaled by each detection's score, as a cost.
pub fn fuse_score(costs: &mut [f32], scores: &[f32]) {
    if scores.is_empty() {
        return;
    }
    for (i, c) in costs.iter_mut().enumerate() {
        *c = 1.0 - (1.0 - *c) * scores[i % scores.len()];
    }
}

/// `lap.lapjv(cost, extend_cost=True, cost_limit=limit)`: the minimum-cost matching in which a
/// pair is worth making only below `limit` (each side may instead pay `limit / 2` to stay
/// unmatched). Returns the matched `(row, col)` pairs by row, and the unmatched rows and columns.
pub fn linear_assignment(
    costs: &[f32],
    rows: usize,
    cols: usize,
    limit: f64,
) -> (Vec<(usize, usize)>, Vec<usize>, Vec<usize>) {
    if rows == 0 || cols == 0 {
        return (Vec::new(), (0..rows).collect(), (0..cols).collect());
    }
    let n = rows + cols;
    let half = limit / 2.0;
    let mut extended = vec![half; n * n];
    for i in rows..n {
        for j in cols..n {
            extended[i * n + j] = 0.0;
        }
    }
    for i in 0..rows {
        for j in 0..cols {
            extended[i * n + j] = costs[i * cols + j] as f64;
        }
    }
    let (row_of, col_of) = match lsap::solve(n, n, &extended, false) {
        Ok(solution) => solution,
        // Only non-finite costs can make the solver fail; such pairs match nothing.
        Err(_) => return (Vec::new(), (0..rows).collect(), (0..cols).collect()),
    };
    let mut matched_col = vec![None; rows];
    for (&r, &c) in row_of.iter().zip(&col_of) {
        if r < rows && c < cols {
            matched_col[r] = Some(c);
        }
    }
    let matches: Vec<(usize, usize)> = matched_col
        .iter()
        .enumerate()
        .filter_map(|(r, c)| c.map(|c| (r, c)))
        .collect();
    let unmatched_rows = (0..rows).filter(|&r| matched_col[r].is_none()).collect();
    let taken: Vec<bool> = (0..cols)
        .map(|c| matches.iter().any(|m| m.1 == c))
        .collect();
    let unmatched_cols = (0..cols).filter(|&c| !taken[c]).collect();
    (matches, unmatched_rows, unmatched_cols)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pairs_at_or_above_the_limit_stay_unmatched() {
        // Row 0 fits column 1 well; row 1's only option costs more than the limit.
        let costs = [0.9, 0.1, 0.95, 0.85];
        let (m, ur, uc) = linear_assignment(&costs, 2, 2, 0.8);
        assert_eq!(m, vec![(0, 1)]);
        assert_eq!((ur, uc), (vec![1], vec![0]));
    }

    #[test]
    fn iou_of_identical_boxes_is_one() {
        let d = iou_distance(
            &[[0.0, 0.0, 10.0, 10.0]],
            &[[0.0, 0.0, 10.0, 10.0], [20.0, 20.0, 30.0, 30.0]],
        );
        assert!(d[0].abs() < 1e-6 && (d[1] - 1.0).abs() < 1e-6);
    }
}

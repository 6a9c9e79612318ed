//! Property tests: the assignment against brute force, GIoU's range, box format round trips.

use candle::{Device, Tensor};
use detr_loss::{assign, box_iou_giou, cxcywh_to_xyxy, iou_giou, xyxy_to_cxcywh};
use proptest::prelude::*;

/// Minimum total cost over all injective assignments of the smaller side.
fn brute_force(costs: &[f64], rows: usize, cols: usize) -> f64 {
    fn go(
        costs: &[f64],
        cols: usize,
        r: usize,
        rows_left: usize,
        used: &mut [bool],
        left: usize,
    ) -> f64 {
        if left == 0 {
            return 0.0;
        }
        if rows_left < left {
            return f64::INFINITY;
        }
        // Row r stays unassigned, or takes any free column.
        let mut best = go(costs, cols, r + 1, rows_left - 1, used, left);
        for c in 0..cols {
            if !used[c] {
                used[c] = true;
                best = best.min(
                    costs[r * cols + c] + go(costs, cols, r + 1, rows_left - 1, used, left - 1),
                );
                used[c] = false;
            }
        }
        best
    }
    go(costs, cols, 0, rows, &mut vec![false; cols], rows.min(cols))
}

fn matrix() -> impl Strategy<Value = (usize, usize, Vec<f64>)> {
    (1usize..=6, 1usize..=6).prop_flat_map(|(r, c)| {
        (
            Just(r),
            Just(c),
            prop::collection::vec(-10.0f64..10.0, r * c),
        )
    })
}

proptest! {
    #[test]
    fn assignment_is_optimal((rows, cols, costs) in matrix()) {
        let (r, c) = assign(&costs, rows, cols).unwrap();
        prop_assert_eq!(r.len(), rows.min(cols));
        prop_assert!(r.windows(2).all(|w| w[0] < w[1]), "rows ascending");
        let mut seen = c.clone();
        seen.sort();
        seen.dedup();
        prop_assert_eq!(seen.len(), c.len(), "columns used once");
        let total: f64 = r.iter().zip(&c).map(|(&i, &j)| costs[i * cols + j]).sum();
        prop_assert!((total - brute_force(&costs, rows, cols)).abs() < 1e-9);
    }

    #[test]
    fn non_finite_costs_never_panic((rows, cols, mut costs) in matrix(), poison in 0usize..36, kind in 0usize..3) {
        let at = poison % costs.len();
        costs[at] = [f64::NAN, f64::INFINITY, f64::NEG_INFINITY][kind];
        let (r, _) = assign(&costs, rows, cols).unwrap();
        prop_assert_eq!(r.len(), rows.min(cols));
    }

    #[test]
    fn giou_lies_in_minus_one_one(a in prop::array::uniform4(0.01f32..1.0), b in prop::array::uniform4(0.01f32..1.0)) {
        let (iou, giou) = box_iou_giou(a, b);
        prop_assert!((0.0..=1.0).contains(&iou), "iou {iou}");
        prop_assert!((-1.0..=1.0).contains(&giou), "giou {giou}");
        prop_assert!(giou <= iou + 1e-6);
        let ta = Tensor::new(&[a], &Device::Cpu).unwrap();
        let tb = Tensor::new(&[b], &Device::Cpu).unwrap();
        let (ti, tg) = iou_giou(&ta, &tb).unwrap();
        prop_assert!((ti.to_vec1::<f32>().unwrap()[0] - iou).abs() < 1e-6);
        prop_assert!((tg.to_vec1::<f32>().unwrap()[0] - giou).abs() < 1e-6);
    }

    #[test]
    fn box_formats_round_trip(b in prop::array::uniform4(0.0f64..1.0)) {
        let t = Tensor::new(&[b], &Device::Cpu).unwrap();
        let back: Vec<f64> = xyxy_to_cxcywh(&cxcywh_to_xyxy(&t).unwrap()).unwrap().flatten_all().unwrap().to_vec1().unwrap();
        for (x, y) in back.iter().zip(b) {
            prop_assert!((x - y).abs() < 1e-12);
        }
    }
}

#[test]
fn identical_boxes_have_iou_one() {
    let (iou, giou) = box_iou_giou([0.5, 0.5, 0.2, 0.3], [0.5, 0.5, 0.2, 0.3]);
    assert!((iou - 1.0).abs() < 1e-5 && (giou - 1.0).abs() < 1e-5);
    let (iou, giou) = box_iou_giou([0.1, 0.1, 0.1, 0.1], [0.9, 0.9, 0.1, 0.1]);
    assert_eq!(iou, 0.0);
    assert!(giou < -0.9);
}

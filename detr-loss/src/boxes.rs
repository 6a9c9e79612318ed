use candle::{Result, Tensor, D};

/// The `eps` of ultralytics' `bbox_iou`.
const EPS: f64 = 1e-7;

/// `[cx, cy, w, h]` → `[x1, y1, x2, y2]` on the last axis.
pub fn cxcywh_to_xyxy(boxes: &Tensor) -> Result<Tensor> {
    let centre = boxes.narrow(D::Minus1, 0, 2)?;
    let half = (boxes.narrow(D::Minus1, 2, 2)? / 2.0)?;
    Tensor::cat(&[(&centre - &half)?, (&centre + &half)?], D::Minus1)
}

/// `[x1, y1, x2, y2]` → `[cx, cy, w, h]` on the last axis.
pub fn xyxy_to_cxcywh(boxes: &Tensor) -> Result<Tensor> {
    let lo = boxes.narrow(D::Minus1, 0, 2)?;
    let hi = boxes.narrow(D::Minus1, 2, 2)?;
    Tensor::cat(&[((&lo + &hi)? / 2.0)?, (&hi - &lo)?], D::Minus1)
}

/// IoU and GIoU of paired `[cx, cy, w, h]` boxes, as ultralytics' `bbox_iou(xywh=True)`
/// (eps 1e-7; the union uses the given widths and heights). Differentiable.
///
/// # Shapes
/// `a, b: [N, 4]` → `([N], [N])`
pub fn iou_giou(a: &Tensor, b: &Tensor) -> Result<(Tensor, Tensor)> {
    let col = |t: &Tensor, i: usize| t.narrow(D::Minus1, i, 1)?.squeeze(D::Minus1);
    let (x1, y1, w1, h1) = (col(a, 0)?, col(a, 1)?, col(a, 2)?, col(a, 3)?);
    let (x2, y2, w2, h2) = (col(b, 0)?, col(b, 1)?, col(b, 2)?, col(b, 3)?);
    let (w1h, h1h, w2h, h2h) = ((&w1 / 2.0)?, (&h1 / 2.0)?, (&w2 / 2.0)?, (&h2 / 2.0)?);
    let (ax1, ax2, ay1, ay2) = ((&x1 - &w1h)?, (&x1 + &w1h)?, (&y1 - &h1h)?, (&y1 + &h1h)?);
    let (bx1, bx2, by1, by2) = ((&x2 - &w2h)?, (&x2 + &w2h)?, (&y2 - &h2h)?, (&y2 + &h2h)?);
    let iw = (ax2.minimum(&bx2)? - ax1.maximum(&bx1)?)?.relu()?;
    let ih = (ay2.minimum(&by2)? - ay1.maximum(&by1)?)?.relu()?;
    let inter = (iw * ih)?;
    let union = (((&w1 * &h1)? + (&w2 * &h2)?)? - &inter)?.affine(1.0, EPS)?;
    let iou = (&inter / &union)?;
    let cw = (ax2.maximum(&bx2)? - ax1.minimum(&bx1)?)?;
    let ch = (ay2.maximum(&by2)? - ay1.minimum(&by1)?)?;
    let c_area = (cw * ch)?.affine(1.0, EPS)?;
    let giou = (&iou - ((&c_area - &union)? / &c_area)?)?;
    Ok((iou, giou))
}

/// [`iou_giou`] of two boxes in f32 on the host, for matching.
pub fn box_iou_giou(a: [f32; 4], b: [f32; 4]) -> (f32, f32) {
    let eps = EPS as f32;
    let (ax1, ax2, ay1, ay2) = (
        a[0] - a[2] / 2.0,
        a[0] + a[2] / 2.0,
        a[1] - a[3] / 2.0,
        a[1] + a[3] / 2.0,
    );
    let (bx1, bx2, by1, by2) = (
        b[0] - b[2] / 2.0,
        b[0] + b[2] / 2.0,
        b[1] - b[3] / 2.0,
        b[1] + b[3] / 2.0,
    );
    let inter = (ax2.min(bx2) - ax1.max(bx1)).max(0.0) * (ay2.min(by2) - ay1.max(by1)).max(0.0);
    let union = a[2] * a[3] + b[2] * b[3] - inter + eps;
    let iou = inter / union;
    let c_area = (ax2.max(bx2) - ax1.min(bx1)) * (ay2.max(by2) - ay1.min(by1)) + eps;
    (iou, iou - (c_area - union) / c_area)
}

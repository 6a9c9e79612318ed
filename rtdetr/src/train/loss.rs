use candle::{DType, Result, Tensor};
use detr_loss::{DetrLoss, Targets};
use rtdetr_decoder::{GroundTruth, TrainOutput};

/// The training loss of one batch as `RTDETRDetectionModel.loss` computes it: the encoder's and
/// every decoder layer's matched queries, plus the denoising queries when there are any.
/// Returns the total and the last layer's (GIoU, class, L1) terms.
pub fn detection_loss(
    loss: &DetrLoss,
    out: &TrainOutput,
    gt: &GroundTruth,
) -> Result<(Tensor, [f64; 3])> {
    let device = out.boxes.device();
    let k = out.queries.embed.dim(1)?;
    let ndn = out.boxes.dim(2)? - k;
    let stack =
        |dec: &Tensor, enc: &Tensor| Tensor::cat(&[&enc.unsqueeze(0)?, &dec.narrow(2, ndn, k)?], 0);
    let boxes = stack(&out.boxes, &out.queries.enc_boxes)?;
    let logits = stack(&out.logits, &out.queries.enc_logits)?;
    let flat: Vec<f32> = gt.boxes.iter().flatten().copied().collect();
    let targets = Targets {
        cls: gt.cls.clone(),
        boxes: Tensor::from_vec(flat, (gt.cls.len(), 4), device)?,
        groups: gt.groups.clone(),
    };
    let dn = match &out.dn {
        Some(meta) => Some((
            out.boxes.narrow(2, 0, ndn)?,
            out.logits.narrow(2, 0, ndn)?,
            meta,
        )),
        None => None,
    };
    let terms = loss.forward(
        &boxes,
        &logits,
        dn.as_ref().map(|(b, l, m)| (b, l, *m)),
        &targets,
    )?;
    let scalar = |t: &Tensor| -> Result<f64> { t.to_dtype(DType::F64)?.to_scalar::<f64>() };
    let main = [
        scalar(&terms.main.giou)?,
        scalar(&terms.main.class)?,
        scalar(&terms.main.bbox)?,
    ];
    Ok((terms.total()?, main))
}

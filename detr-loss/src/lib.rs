//! The RT-DETR training loss of ultralytics 8.4.190 (`RTDETRDetectionLoss` with `use_vfl=True`):
//! per-layer Hungarian matching, varifocal classification loss with IoU targets (focal loss when
//! a batch has no boxes), L1 and GIoU box losses, auxiliary terms for the encoder output and the
//! earlier decoder layers, and denoising terms with fixed matches.
//!
//! Boxes are normalised `[cx, cy, w, h]` throughout. Everything built from tensors is
//! differentiable; matching works on detached host copies, as in the reference.

mod boxes;
mod loss;
mod matcher;

pub use boxes::{box_iou_giou, cxcywh_to_xyxy, iou_giou, xyxy_to_cxcywh};
pub use loss::{DetrLoss, LayerLoss, LossTerms, Targets};
pub use matcher::{assign, HungarianMatcher, Matches};
pub use rtdetr_decoder::DnMeta;

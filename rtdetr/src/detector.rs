//! The front door: load weights once, then detect in decoded images, with class names, the
//! training image size, preprocessing and postprocessing handled.

use std::collections::HashMap;
use std::path::Path;

use candle::{DType, Device};
use image::DynamicImage;
use serde::{Deserialize, Serialize};

use crate::postprocess::{postprocess, Filter};
use crate::{preprocess, read_metadata, Error, Precision, Result, RtDetr, Variant};

/// The image size when neither the options nor the weights give one.
pub const DEFAULT_IMGSZ: usize = 640;

/// The largest image size accepted anywhere (detection, validation, training): activations
/// grow with its square, and at 8192 one pass of the S model takes tens of GB.
pub const MAX_IMGSZ: usize = 8192;

/// The most classes a dataset or model may have (LVIS has 1203): a `names` table or a COCO
/// file that claims more is refused rather than sized into a model.
pub const MAX_CLASSES: usize = 10_000;

/// How a [`Detector`] loads and filters.
#[derive(Debug, Clone)]
pub struct DetectorOptions {
    /// Keep detections scoring above this, in [0, 1] (ultralytics `conf`, 0.25).
    pub conf: f32,
    /// Keep at most this many per image (300).
    pub max_det: usize,
    /// Keep only these class ids (all when `None`); each must be below the class count.
    pub classes: Option<Vec<usize>>,
    /// Inference size (images are stretched to `imgsz × imgsz`, a multiple of 32); `None`: the
    /// weights' `imgsz` metadata, else [`DEFAULT_IMGSZ`].
    pub imgsz: Option<usize>,
    /// Where the model runs.
    pub device: Device,
    /// The float type to run in: f32, or bf16. On the CPU, bf16 keeps the weights in f32 and
    /// multiplies the full convolutions with bf16 operands (AMX tiles or AVX512-BF16; where the CPU
    /// has neither it
    /// runs, slower than f32, and says so once); on CUDA the weights are bf16 (see
    /// [`crate::execution`]).
    pub dtype: DType,
    /// The variant, when the weights do not tell it; an error when they tell another.
    pub variant: Option<Variant>,
    /// Class names, replacing the weights' `names` metadata.
    pub names: Option<Vec<String>>,
}

impl DetectorOptions {
    /// What validation keeps, as ultralytics' `val`: conf 0.001, up to 300 per image.
    pub fn validation() -> Self {
        Self {
            conf: 0.001,
            ..Self::default()
        }
    }
}

impl Default for DetectorOptions {
    fn default() -> Self {
        Self {
            conf: 0.25,
            max_det: 300,
            classes: None,
            imgsz: None,
            device: Device::Cpu,
            dtype: DType::F32,
            variant: None,
            names: None,
        }
    }
}

/// One detected object.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Detection {
    /// `[x1, y1, x2, y2]` in the image's pixels.
    #[serde(rename = "box")]
    pub bbox: [f32; 4],
    /// Sigmoid class score.
    pub score: f32,
    /// Class index.
    pub class_id: usize,
    /// Class name (the number when the weights name none).
    pub class_name: String,
}

/// A loaded detector.
///
/// ```no_run
/// use rtdetr::{Detection, Detector, DetectorOptions};
///
/// let options = DetectorOptions { conf: 0.25, imgsz: None, ..Default::default() };
/// let detector = Detector::from_file("best.safetensors", options)?;
/// let detections: Vec<Detection> = detector.detect(&image::open("bus.jpg")?)?;
/// for d in &detections {
///     println!("{} {:.2} {:?}", d.class_name, d.score, d.bbox);
/// }
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct Detector {
    model: RtDetr,
    names: Vec<String>,
    imgsz: usize,
    stored_imgsz: Option<usize>,
    filter: Filter,
    device: Device,
    dtype: DType,
    precision: Precision,
}

impl Detector {
    /// Loads safetensors weights (see [`RtDetr::load`]) and checks `options` against them.
    pub fn from_file(path: impl AsRef<Path>, options: DetectorOptions) -> Result<Self> {
        let path = path.as_ref();
        let meta = read_metadata(path)?;
        let (stored, _) = crate::execution(&options.device, options.dtype);
        let model = RtDetr::load_as(path, &options.device, stored, options.variant, None)?;
        let names = match &options.names {
            Some(_) => None,
            None => names_from_metadata(&meta).map_err(|e| e.in_file(path))?,
        };
        let stored_imgsz = imgsz_from_metadata(&meta).map_err(|e| e.in_file(path))?;
        Self::build(model, names, stored_imgsz, options)
    }

    /// A detector around a model already built (e.g. the EMA weights during training), with
    /// `names` unless the options give them; `options.device` must be the model's and
    /// `options.dtype` run on the model's float type ([`crate::execution`]: f32 weights for bf16
    /// on the CPU), and `options.imgsz` defaults to [`DEFAULT_IMGSZ`].
    pub fn from_model(model: RtDetr, names: Vec<String>, options: DetectorOptions) -> Result<Self> {
        Self::build(model, Some(names), None, options)
    }

    fn build(
        model: RtDetr,
        names: Option<Vec<String>>,
        stored_imgsz: Option<usize>,
        options: DetectorOptions,
    ) -> Result<Self> {
        let nc = model.config().nc();
        let names = options.names.or(names).unwrap_or_default();
        let names = (0..nc)
            .map(|i| names.get(i).cloned().unwrap_or_else(|| i.to_string()))
            .collect();
        let imgsz = options.imgsz.or(stored_imgsz).unwrap_or(DEFAULT_IMGSZ);
        check_imgsz(imgsz)?;
        let filter = Filter {
            conf: options.conf,
            max_det: options.max_det,
            classes: options.classes,
        };
        check_filter(&filter, nc)?;
        let (dtype, precision) = crate::execution(&options.device, options.dtype);
        crate::warn_if_emulated(precision);
        Ok(Self {
            model,
            names,
            imgsz,
            stored_imgsz,
            filter,
            device: options.device,
            dtype,
            precision,
        })
    }

    /// Detections in one image, best first.
    pub fn detect(&self, image: &DynamicImage) -> Result<Vec<Detection>> {
        Ok(self
            .detect_batch(std::slice::from_ref(image))?
            .pop()
            .unwrap_or_default())
    }

    /// Detections in each image, in one forward pass.
    pub fn detect_batch(&self, images: &[DynamicImage]) -> Result<Vec<Vec<Detection>>> {
        let rgb: Vec<image::RgbImage> = images.iter().map(|i| i.to_rgb8()).collect();
        let raw: Vec<(&[u8], usize, usize)> = rgb
            .iter()
            .map(|i| {
                (
                    i.as_raw().as_slice(),
                    i.height() as usize,
                    i.width() as usize,
                )
            })
            .collect();
        self.detect_rgb(&raw)
    }

    /// Detections in interleaved RGB uint8 images given as `(pixels, height, width)`.
    pub fn detect_rgb(&self, images: &[(&[u8], usize, usize)]) -> Result<Vec<Vec<Detection>>> {
        if images.is_empty() {
            return Ok(vec![]);
        }
        let batch = preprocess::to_batch(images, self.imgsz, &self.device)?.to_dtype(self.dtype)?;
        // On candle's pool, as `Trainer::run_epoch`: the ops fork there instead of waking it.
        let rows = self
            .device
            .with_context(|| {
                rtdetr_ops::with_precision(self.precision, || self.model.forward_t(&batch, false))
            })?
            .decoder
            .detections
            .to_device(&Device::Cpu)?;
        let sizes: Vec<(usize, usize)> = images.iter().map(|&(_, h, w)| (h, w)).collect();
        Ok(postprocess(&rows, &sizes, &self.filter)?
            .into_iter()
            .map(|dets| {
                dets.into_iter()
                    .map(|d| Detection {
                        bbox: d.bbox,
                        score: d.score,
                        class_name: self.names[d.class_id].clone(),
                        class_id: d.class_id,
                    })
                    .collect()
            })
            .collect())
    }

    /// Class names by id.
    pub fn names(&self) -> &[String] {
        &self.names
    }

    /// The inference size in use.
    pub fn imgsz(&self) -> usize {
        self.imgsz
    }

    /// The image size the weights were trained at, when they say.
    pub fn stored_imgsz(&self) -> Option<usize> {
        self.stored_imgsz
    }

    /// The underlying model.
    pub fn model(&self) -> &RtDetr {
        &self.model
    }
}

/// Class names of the `names` metadata: a JSON list, or an object `{"0": "person", ...}`.
pub fn names_from_metadata(meta: &HashMap<String, String>) -> Result<Option<Vec<String>>> {
    let Some(text) = meta.get("names") else {
        return Ok(None);
    };
    let bad = |why: &str| Error::Weights(format!("metadata `names` {why}"));
    let value: serde_json::Value = serde_json::from_str(text).map_err(|_| bad("is not JSON"))?;
    let mut names = Vec::new();
    match value {
        serde_json::Value::Array(list) => {
            for v in list {
                names.push(
                    v.as_str()
                        .ok_or_else(|| bad("holds a non-string"))?
                        .to_string(),
                );
            }
        }
        serde_json::Value::Object(map) => {
            let mut by_id = Vec::with_capacity(map.len());
            for (k, v) in map {
                let id: usize = k.parse().map_err(|_| bad("has a non-numeric key"))?;
                let name = v.as_str().ok_or_else(|| bad("holds a non-string"))?;
                by_id.push((id, name.to_string()));
            }
            by_id.sort();
            for (id, name) in by_id {
                if id >= 1 << 16 {
                    return Err(bad("has a class id above 65535"));
                }
                names.resize(names.len().max(id + 1), String::new());
                names[id] = name;
            }
            for (i, n) in names.iter_mut().enumerate() {
                if n.is_empty() {
                    *n = i.to_string();
                }
            }
        }
        _ => return Err(bad("is neither a list nor an object")),
    }
    Ok(Some(names))
}

/// The `imgsz` metadata (training image size), when present.
pub fn imgsz_from_metadata(meta: &HashMap<String, String>) -> Result<Option<usize>> {
    match meta.get("imgsz") {
        None => Ok(None),
        Some(text) => text
            .trim()
            .parse()
            .map(Some)
            .map_err(|_| Error::Weights(format!("metadata `imgsz` {text:?} is not a size"))),
    }
}

/// A positive multiple of 32, at most [`MAX_IMGSZ`].
fn check_imgsz(imgsz: usize) -> Result<()> {
    if imgsz == 0 || !imgsz.is_multiple_of(32) || imgsz > MAX_IMGSZ {
        return Err(Error::Options(format!(
            "imgsz {imgsz} is not a positive multiple of 32 up to {MAX_IMGSZ}"
        )));
    }
    Ok(())
}

/// `conf` in [0, 1] and class ids below `nc`.
fn check_filter(filter: &Filter, nc: usize) -> Result<()> {
    if !(0.0..=1.0).contains(&filter.conf) {
        return Err(Error::Options(format!(
            "conf {} is outside [0, 1]",
            filter.conf
        )));
    }
    if let Some(bad) = filter.classes.iter().flatten().find(|&&c| c >= nc) {
        return Err(Error::Options(format!(
            "class {bad} does not exist: the model has {nc} classes (0..={})",
            nc.saturating_sub(1)
        )));
    }
    Ok(())
}

//! Reading images upright, as `cv2.imread` does: the EXIF orientation (a phone photo's
//! `Orientation=6`) is applied, so boxes and sizes refer to the image a person sees.

use std::path::Path;

use image::metadata::Orientation;
use image::{DynamicImage, ImageDecoder, ImageReader};

use crate::{Error, Result};

/// Decodes the image at `path` (format told from its content) and applies its EXIF orientation.
pub fn open_upright(path: impl AsRef<Path>) -> Result<DynamicImage> {
    let path = path.as_ref();
    let (decoder, orientation) = decoder(path)?;
    let mut image = DynamicImage::from_decoder(decoder).map_err(|e| bad(path, e))?;
    image.apply_orientation(orientation);
    Ok(image)
}

/// The (width, height) of the image at `path` as [`open_upright`] returns it, read from its
/// header without decoding the pixels.
pub fn upright_dimensions(path: impl AsRef<Path>) -> Result<(u32, u32)> {
    let (decoder, orientation) = decoder(path.as_ref())?;
    let (w, h) = decoder.dimensions();
    Ok(match orientation {
        Orientation::Rotate90
        | Orientation::Rotate270
        | Orientation::Rotate90FlipH
        | Orientation::Rotate270FlipH => (h, w),
        _ => (w, h),
    })
}

fn bad(path: &Path, e: image::ImageError) -> Error {
    Error::Data(format!("cannot read image: {e}")).in_file(path)
}

fn decoder(path: &Path) -> Result<(impl ImageDecoder, Orientation)> {
    let reader = ImageReader::open(path)
        .map_err(|e| Error::from(e).in_file(path))?
        .with_guessed_format()
        .map_err(|e| Error::from(e).in_file(path))?;
    let mut decoder = reader.into_decoder().map_err(|e| bad(path, e))?;
    let orientation = decoder.orientation().map_err(|e| bad(path, e))?;
    Ok((decoder, orientation))
}

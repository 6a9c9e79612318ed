//! Reading images upright, as `cv2.imread` does: the EXIF orientation (a phone photo's
//! `Orientation=6`) is applied, so boxes and sizes refer to the image a person sees.

use std::path::Path;

use image::{DynamicImage, ImageDecoder, ImageReader};

use crate::{Error, Result};

/// Decodes the image at `path` (format told from its content) and applies its EXIF orientation.
pub fn open_upright(path: impl AsRef<Path>) -> Result<DynamicImage> {
    let path = path.as_ref();
    let bad = |e: image::ImageError| Error::Data(format!("cannot read image: {e}")).in_file(path);
    let reader = ImageReader::open(path)
        .map_err(|e| Error::from(e).in_file(path))?
        .with_guessed_format()
        .map_err(|e| Error::from(e).in_file(path))?;
    let mut decoder = reader.into_decoder().map_err(bad)?;
    let orientation = decoder.orientation().map_err(bad)?;
    let mut image = DynamicImage::from_decoder(decoder).map_err(bad)?;
    image.apply_orientation(orientation);
    Ok(image)
}

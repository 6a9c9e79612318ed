//! Reading images upright, as `cv2.imread` does: the EXIF orientation (a phone photo's
//! `Orientation=6`) is applied, so boxes and sizes refer to the image a person sees.

use std::path::Path;

use image::metadata::Orientation;
use image::{DynamicImage, ImageDecoder, ImageReader};

use crate::{Error, Result};

mod verify;
mod walk;

pub use verify::verify_image;
pub use walk::{find_files, find_images, has_image_extension, IMAGE_EXTENSIONS};

/// The most pixels an image may have (2^28, e.g. 16384 × 16384): decoding takes up to 8 bytes a
/// pixel (16-bit RGBA) before it is resized, and the header says the size before any of it is
/// allocated. OpenCV's own default cap is 2^30.
pub const MAX_IMAGE_PIXELS: u64 = 1 << 28;

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
    bounded_decoder(reader, path)
}

/// The decoder of `reader` (its format already told), within [`MAX_IMAGE_PIXELS`], and the EXIF
/// orientation; `path` names the file in errors.
fn bounded_decoder<R: std::io::BufRead + std::io::Seek + 'static>(
    mut reader: ImageReader<R>,
    path: &Path,
) -> Result<(impl ImageDecoder, Orientation)> {
    let mut limits = image::Limits::no_limits();
    limits.max_alloc = Some(MAX_IMAGE_PIXELS * 8);
    reader.limits(limits);
    let mut decoder = reader.into_decoder().map_err(|e| bad(path, e))?;
    let (w, h) = decoder.dimensions();
    if u64::from(w) * u64::from(h) > MAX_IMAGE_PIXELS {
        return Err(Error::Data(format!(
            "the image is {w}×{h}, {} M pixels; at most {} M are read (MAX_IMAGE_PIXELS)",
            (u64::from(w) * u64::from(h)) >> 20,
            MAX_IMAGE_PIXELS >> 20
        ))
        .in_file(path));
    }
    let orientation = decoder.orientation().map_err(|e| bad(path, e))?;
    Ok((decoder, orientation))
}

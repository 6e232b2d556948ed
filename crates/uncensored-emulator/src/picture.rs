//! The emulator's images: real JPEGs of the requested size, the same bytes for
//! the same prompt and seed, visibly different for different prompts.

use image::codecs::jpeg::JpegEncoder;
use image::{ExtendedColorType, ImageEncoder};

use crate::rng::{Rng, hash_bytes};

/// Renders a JPEG: a two-colour gradient with a handful of discs, all chosen by
/// a hash of the prompt and the seed.
pub fn render_jpeg(prompt: &str, seed: u64, width: u32, height: u32) -> Vec<u8> {
    let mut rng = Rng::new(hash_bytes(prompt.as_bytes()) ^ seed.rotate_left(17));
    let mut colour = || {
        [
            rng.next_u64() as u8,
            rng.next_u64() as u8,
            rng.next_u64() as u8,
        ]
    };
    let (top, bottom) = (colour(), colour());
    let discs: Vec<([u8; 3], f64, f64, f64)> = (0..6)
        .map(|_| {
            let c = colour();
            let mut r = Rng::new(u64::from(c[0]) << 16 | u64::from(c[1]) << 8 | u64::from(c[2]));
            let x = r.between(0.0, f64::from(width));
            let y = r.between(0.0, f64::from(height));
            let radius = r.between(0.05, 0.25) * f64::from(width.min(height));
            (c, x, y, radius * radius)
        })
        .collect();
    let mut pixels = Vec::with_capacity(width as usize * height as usize * 3);
    for y in 0..height {
        let t = f64::from(y) / f64::from(height.max(2) - 1);
        let row: [u8; 3] = std::array::from_fn(|i| {
            (f64::from(top[i]) * (1.0 - t) + f64::from(bottom[i]) * t) as u8
        });
        for x in 0..width {
            let mut pixel = row;
            for (c, cx, cy, r2) in &discs {
                let (dx, dy) = (f64::from(x) - cx, f64::from(y) - cy);
                if dx * dx + dy * dy < *r2 {
                    pixel = *c;
                }
            }
            pixels.extend_from_slice(&pixel);
        }
    }
    let mut out = Vec::new();
    JpegEncoder::new_with_quality(&mut out, 85)
        .write_image(&pixels, width, height, ExtendedColorType::Rgb8)
        .expect("encoding an in-memory RGB buffer cannot fail");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_prompt_same_bytes_other_prompt_other_bytes() {
        let a = render_jpeg("a lighthouse", 0, 256, 256);
        assert_eq!(a, render_jpeg("a lighthouse", 0, 256, 256));
        assert_ne!(a, render_jpeg("a lighthouse", 1, 256, 256));
        assert_ne!(a, render_jpeg("a forest", 0, 256, 256));
        assert_eq!(&a[..3], &[0xFF, 0xD8, 0xFF], "JPEG magic");
    }

    #[test]
    fn has_the_requested_size() {
        let bytes = render_jpeg("size", 0, 512, 264);
        let decoded =
            image::load_from_memory_with_format(&bytes, image::ImageFormat::Jpeg).unwrap();
        assert_eq!((decoded.width(), decoded.height()), (512, 264));
    }
}

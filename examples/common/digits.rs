//! The handwritten-digits data set that scikit-learn ships (`load_digits`): 1,797 images of
//! 8 × 8 pixels with values 0..=16 and their labels 0..=9, kept gzip-compressed in
//! `examples/data/digits.csv.gz` (57 KiB). The images are the test set of the UCI "Optical
//! Recognition of Handwritten Digits" data (E. Alpaydin and C. Kaynak, 1998): 32 × 32 bitmaps
//! whose on-pixels were counted in 4 × 4 blocks. Each line of the file is 64 pixel counts, row by
//! row, then the label.

use super::{AnyResult, Rng};
use flate2::read::GzDecoder;
use std::io::Read;

/// The compressed file, embedded so the examples run from any directory.
const COMPRESSED: &[u8] = include_bytes!("../data/digits.csv.gz");

/// Side of the square images.
pub const SIDE: usize = 8;
/// Pixels per image.
pub const PIXELS: usize = SIDE * SIDE;
/// Number of classes.
pub const CLASSES: usize = 10;

/// Labelled images: `images[i * PIXELS..][..PIXELS]` is image `i`, scaled to [0, 1].
#[derive(Clone, Debug, Default)]
pub struct Digits {
    /// Pixel intensities, image after image, row by row, in [0, 1].
    pub images: Vec<f32>,
    /// The digit each image shows.
    pub labels: Vec<i32>,
}

impl Digits {
    /// The number of images.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// Whether there are no images.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// The pixels of image `i`.
    pub fn image(&self, i: usize) -> &[f32] {
        &self.images[i * PIXELS..(i + 1) * PIXELS]
    }

    /// The images at `rows`, in that order.
    pub fn select(&self, rows: &[usize]) -> Digits {
        let mut out = Digits::default();
        for &i in rows {
            out.images.extend_from_slice(self.image(i));
            out.labels.push(self.labels[i]);
        }
        out
    }

    /// A fixed split: the images shuffled with `seed`, the first `test` of them for testing and
    /// the rest for training. Returns `(train, test)`.
    pub fn split(&self, test: usize, seed: u64) -> (Digits, Digits) {
        let mut order: Vec<usize> = (0..self.len()).collect();
        let mut rng = Rng::new(seed);
        // Fisher–Yates.
        for i in (1..order.len()).rev() {
            let j = (rng.next_u64() % (i as u64 + 1)) as usize;
            order.swap(i, j);
        }
        let test = test.min(order.len());
        (self.select(&order[test..]), self.select(&order[..test]))
    }
}

/// Decompresses and parses the data set, checking every line.
pub fn load() -> AnyResult<Digits> {
    let mut text = String::new();
    GzDecoder::new(COMPRESSED).read_to_string(&mut text)?;
    let mut out = Digits::default();
    for (n, line) in text.lines().enumerate() {
        let fields: Vec<&str> = line.trim().split(',').collect();
        if fields.len() != PIXELS + 1 {
            return Err(format!(
                "digits.csv line {}: expected {} fields, found {}",
                n + 1,
                PIXELS + 1,
                fields.len()
            )
            .into());
        }
        for f in &fields[..PIXELS] {
            let v: u8 = f.parse()?;
            if v > 16 {
                return Err(format!("digits.csv line {}: pixel {v} above 16", n + 1).into());
            }
            out.images.push(f32::from(v) / 16.0);
        }
        let label: i32 = fields[PIXELS].parse()?;
        if !(0..CLASSES as i32).contains(&label) {
            return Err(format!("digits.csv line {}: label {label}", n + 1).into());
        }
        out.labels.push(label);
    }
    Ok(out)
}

//! MNIST and Fashion-MNIST from their original IDX files, and the job's seeded subsets.
//!
//! The files are installed by `deploy/setup.sh` (see `../shared/data.md`); this module never
//! downloads anything. Every failure names the file and the command that fetches it.

use std::fs::File;
use std::io::{BufReader, Read};
use std::path::{Path, PathBuf};

use flate2::read::GzDecoder;
use ibsweep_shared::job::{Dataset, Sampling};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::error::{Error, Result};

/// Shown with every data error: the one command that installs the data sets.
pub const SETUP_HINT: &str = "run `deploy/setup.sh` to install MNIST and Fashion-MNIST, \
     or point --datasets/IBSWEEP_DATASETS at a directory holding <set>/*-ubyte[.gz]";

const IMAGES_MAGIC: u32 = 0x0000_0803;
const LABELS_MAGIC: u32 = 0x0000_0801;
/// Both data sets are 28x28 grey images.
pub const SIDE: usize = 28;
pub const PIXELS: usize = SIDE * SIDE;
pub const CLASSES: usize = 10;

/// Which half of a data set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Part {
    Train,
    Test,
}

/// Images as f32 in [0, 1] (row-major, `PIXELS` per image) with their labels.
#[derive(Debug, Clone, PartialEq)]
pub struct Images {
    pub pixels: Vec<f32>,
    pub labels: Vec<u8>,
}

impl Images {
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    pub fn image(&self, i: usize) -> &[f32] {
        &self.pixels[i * PIXELS..(i + 1) * PIXELS]
    }

    /// The images at `indices`, in that order (repeats allowed).
    pub fn select(&self, indices: &[u32]) -> Images {
        let mut pixels = Vec::with_capacity(indices.len() * PIXELS);
        let mut labels = Vec::with_capacity(indices.len());
        for &i in indices {
            pixels.extend_from_slice(self.image(i as usize));
            labels.push(self.labels[i as usize]);
        }
        Images { pixels, labels }
    }
}

/// Where the data sets live when no flag says: the set-up script's cache.
pub fn default_datasets_dir() -> PathBuf {
    if let Some(cache) = std::env::var_os("IBSWEEP_CACHE") {
        return PathBuf::from(cache).join("data");
    }
    let home = std::env::var_os("HOME").map(PathBuf::from).unwrap_or_else(|| PathBuf::from("/root"));
    home.join(".cache/ibsweep/data")
}

fn file_stem(part: Part, kind: &str) -> String {
    let prefix = match part {
        Part::Train => "train",
        Part::Test => "t10k",
    };
    let dims = if kind == "images" { "idx3" } else { "idx1" };
    format!("{prefix}-{kind}-{dims}-ubyte")
}

/// Finds `<dir>/<set>/<stem>` or its `.gz`.
fn locate(dir: &Path, dataset: Dataset, stem: &str) -> Result<PathBuf> {
    let set_dir = dir.join(dataset.as_str());
    for candidate in [set_dir.join(stem), set_dir.join(format!("{stem}.gz"))] {
        if candidate.is_file() {
            return Ok(candidate);
        }
    }
    Err(Error::Data {
        path: set_dir.join(stem),
        reason: format!("missing (neither {stem} nor {stem}.gz exists); {SETUP_HINT}"),
    })
}

/// Reads a whole IDX file, transparently un-gzipping it (by magic bytes, not by name).
fn read_all(path: &Path) -> Result<Vec<u8>> {
    let io_err = |e: std::io::Error| Error::Data { path: path.to_path_buf(), reason: format!("{e}; {SETUP_HINT}") };
    let mut reader = BufReader::new(File::open(path).map_err(io_err)?);
    let mut bytes = Vec::new();
    reader.read_to_end(&mut bytes).map_err(io_err)?;
    if bytes.starts_with(&[0x1f, 0x8b]) {
        let mut plain = Vec::new();
        GzDecoder::new(&bytes[..]).read_to_end(&mut plain).map_err(|e| Error::Data {
            path: path.to_path_buf(),
            reason: format!("corrupt gzip: {e}; {SETUP_HINT}"),
        })?;
        bytes = plain;
    }
    Ok(bytes)
}

/// Parses an IDX header with the expected magic and dimension count; returns the dimensions
/// and the payload, whose length is checked against them.
fn parse_idx<'a>(path: &Path, bytes: &'a [u8], magic: u32, ndims: usize) -> Result<(Vec<usize>, &'a [u8])> {
    let corrupt = |reason: String| Error::Data { path: path.to_path_buf(), reason: format!("{reason}; {SETUP_HINT}") };
    let header_len = 4 + 4 * ndims;
    if bytes.len() < header_len {
        return Err(corrupt(format!("truncated: {} bytes, shorter than the IDX header", bytes.len())));
    }
    let word = |i: usize| u32::from_be_bytes(bytes[4 * i..4 * i + 4].try_into().expect("4 bytes"));
    let found = word(0);
    if found != magic {
        return Err(corrupt(format!("bad IDX magic 0x{found:08x}, expected 0x{magic:08x}")));
    }
    let dims: Vec<usize> = (1..=ndims).map(|i| word(i) as usize).collect();
    let expected: usize = dims.iter().product();
    let payload = &bytes[header_len..];
    if payload.len() != expected {
        return Err(corrupt(format!(
            "size mismatch: header {dims:?} needs {expected} bytes, file has {}",
            payload.len()
        )));
    }
    Ok((dims, payload))
}

/// Loads one half of a data set, checking magic numbers, counts and image size.
pub fn load(dir: &Path, dataset: Dataset, part: Part) -> Result<Images> {
    let images_path = locate(dir, dataset, &file_stem(part, "images"))?;
    let labels_path = locate(dir, dataset, &file_stem(part, "labels"))?;
    let image_bytes = read_all(&images_path)?;
    let label_bytes = read_all(&labels_path)?;
    let (idims, pixels) = parse_idx(&images_path, &image_bytes, IMAGES_MAGIC, 3)?;
    let (ldims, labels) = parse_idx(&labels_path, &label_bytes, LABELS_MAGIC, 1)?;
    if idims[1] != SIDE || idims[2] != SIDE {
        return Err(Error::Data {
            path: images_path,
            reason: format!("images are {}x{}, expected {SIDE}x{SIDE}", idims[1], idims[2]),
        });
    }
    if idims[0] != ldims[0] {
        return Err(Error::Data {
            path: labels_path,
            reason: format!("{} labels for {} images in {}", ldims[0], idims[0], images_path.display()),
        });
    }
    if let Some(bad) = labels.iter().find(|&&l| l as usize >= CLASSES) {
        return Err(Error::Data { path: labels_path, reason: format!("label {bad} outside 0..{CLASSES}") });
    }
    Ok(Images { pixels: pixels.iter().map(|&p| f32::from(p) / 255.0).collect(), labels: labels.to_vec() })
}

/// A seeded choice of `size` images out of `labels.len()`, and a stable hash of it so two
/// runs can tell whether they saw the same samples.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subset {
    pub indices: Vec<u32>,
    pub hash: String,
}

impl Subset {
    fn new(indices: Vec<u32>) -> Subset {
        let bytes: Vec<u8> = indices.iter().flat_map(|i| i.to_le_bytes()).collect();
        let hash = format!("{:016x}", xxhash_rust::xxh3::xxh3_64(&bytes));
        Subset { indices, hash }
    }
}

/// Draws a subset. `Random` takes `size` distinct images (all of them, in order, when `size`
/// is the whole set, which is how the paper uses the test set); `PerClassWithReplacement`
/// draws `size / 10` images of each class with replacement, as the reference results did.
pub fn sample(labels: &[u8], size: usize, sampling: Sampling, seed: u64) -> Result<Subset> {
    let n = labels.len();
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let indices = match sampling {
        Sampling::Random => {
            if size > n {
                return Err(Error::InvalidInput(format!("asked for {size} images, the set has {n}")));
            }
            if size == n {
                (0..n as u32).collect()
            } else {
                // Partial Fisher-Yates: the first `size` slots become a uniform sample.
                let mut all: Vec<u32> = (0..n as u32).collect();
                for i in 0..size {
                    let j = rng.random_range(i..n);
                    all.swap(i, j);
                }
                all.truncate(size);
                all
            }
        }
        Sampling::PerClassWithReplacement => {
            if !size.is_multiple_of(CLASSES) {
                return Err(Error::InvalidInput(format!(
                    "per-class-with-replacement needs a size divisible by {CLASSES}, got {size}"
                )));
            }
            let mut out = Vec::with_capacity(size);
            for class in 0..CLASSES as u8 {
                let members: Vec<u32> = (0..n as u32).filter(|&i| labels[i as usize] == class).collect();
                if members.is_empty() {
                    return Err(Error::InvalidInput(format!("class {class} has no images")));
                }
                out.extend((0..size / CLASSES).map(|_| members[rng.random_range(0..members.len())]));
            }
            out
        }
    };
    Ok(Subset::new(indices))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write_idx(path: &Path, magic: u32, dims: &[u32], payload: &[u8]) {
        let mut bytes = magic.to_be_bytes().to_vec();
        for d in dims {
            bytes.extend(d.to_be_bytes());
        }
        bytes.extend(payload);
        std::fs::write(path, bytes).unwrap();
    }

    fn tiny_set(dir: &Path, n: u32) {
        let set = dir.join("mnist");
        std::fs::create_dir_all(&set).unwrap();
        let pixels: Vec<u8> = (0..n as usize * PIXELS).map(|i| (i % 256) as u8).collect();
        let labels: Vec<u8> = (0..n).map(|i| (i % 10) as u8).collect();
        write_idx(&set.join("t10k-images-idx3-ubyte"), IMAGES_MAGIC, &[n, 28, 28], &pixels);
        write_idx(&set.join("t10k-labels-idx1-ubyte"), LABELS_MAGIC, &[n], &labels);
    }

    #[test]
    fn reads_tiny_plain_idx() {
        let dir = tempfile::tempdir().unwrap();
        tiny_set(dir.path(), 3);
        let images = load(dir.path(), Dataset::Mnist, Part::Test).unwrap();
        assert_eq!(images.len(), 3);
        assert_eq!(images.labels, vec![0, 1, 2]);
        assert_eq!(images.image(0)[255], 1.0);
        assert_eq!(images.image(0)[1], 1.0 / 255.0);
    }

    #[test]
    fn reads_gzip_and_rejects_bad_files() {
        let dir = tempfile::tempdir().unwrap();
        tiny_set(dir.path(), 2);
        let set = dir.path().join("mnist");
        // gzip the labels; the loader finds the .gz when the plain file is gone.
        let plain = std::fs::read(set.join("t10k-labels-idx1-ubyte")).unwrap();
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        std::io::Write::write_all(&mut gz, &plain).unwrap();
        std::fs::write(set.join("t10k-labels-idx1-ubyte.gz"), gz.finish().unwrap()).unwrap();
        std::fs::remove_file(set.join("t10k-labels-idx1-ubyte")).unwrap();
        assert_eq!(load(dir.path(), Dataset::Mnist, Part::Test).unwrap().labels, vec![0, 1]);

        // Wrong magic.
        write_idx(&set.join("t10k-images-idx3-ubyte"), LABELS_MAGIC, &[2, 28, 28], &[0; 2 * PIXELS]);
        let err = load(dir.path(), Dataset::Mnist, Part::Test).unwrap_err().to_string();
        assert!(err.contains("bad IDX magic") && err.contains("t10k-images-idx3-ubyte"), "{err}");
        assert!(err.contains("deploy/setup.sh"), "{err}");

        // Truncated payload.
        write_idx(&set.join("t10k-images-idx3-ubyte"), IMAGES_MAGIC, &[2, 28, 28], &[0; PIXELS]);
        let err = load(dir.path(), Dataset::Mnist, Part::Test).unwrap_err().to_string();
        assert!(err.contains("size mismatch"), "{err}");

        // Count mismatch between images and labels.
        write_idx(&set.join("t10k-images-idx3-ubyte"), IMAGES_MAGIC, &[1, 28, 28], &[0; PIXELS]);
        let err = load(dir.path(), Dataset::Mnist, Part::Test).unwrap_err().to_string();
        assert!(err.contains("2 labels for 1 images"), "{err}");

        // Missing file.
        let err = load(dir.path(), Dataset::FashionMnist, Part::Test).unwrap_err().to_string();
        assert!(err.contains("fashion-mnist") && err.contains("missing"), "{err}");
    }

    #[test]
    fn sampling_is_seeded_distinct_and_hashed() {
        let labels: Vec<u8> = (0..1000).map(|i| (i % 10) as u8).collect();
        let a = sample(&labels, 100, Sampling::Random, 7).unwrap();
        let b = sample(&labels, 100, Sampling::Random, 7).unwrap();
        let c = sample(&labels, 100, Sampling::Random, 8).unwrap();
        assert_eq!(a, b);
        assert_ne!(a.hash, c.hash);
        let mut distinct = a.indices.clone();
        distinct.sort_unstable();
        distinct.dedup();
        assert_eq!(distinct.len(), 100);
        assert_eq!(sample(&labels, 1000, Sampling::Random, 3).unwrap().indices, (0..1000).collect::<Vec<_>>());
        assert!(sample(&labels, 1001, Sampling::Random, 3).is_err());

        let per_class = sample(&labels, 50, Sampling::PerClassWithReplacement, 1).unwrap();
        for class in 0..10u8 {
            let count = per_class.indices.iter().filter(|&&i| labels[i as usize] == class).count();
            assert_eq!(count, 5);
        }
        assert!(sample(&labels, 55, Sampling::PerClassWithReplacement, 1).is_err());
    }
}

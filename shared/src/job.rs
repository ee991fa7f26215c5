//! One job: the network, data and measurement parameters of a single training run
//! (design §1). Shared by the coordinator (grid expansion, validation at submit time) and
//! the worker (training).

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::measure::BinSize;

/// The image side length of both data sets.
pub const IMAGE_SIDE: u32 = 28;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Dataset {
    Mnist,
    FashionMnist,
}

impl Dataset {
    pub fn as_str(self) -> &'static str {
        match self {
            Dataset::Mnist => "mnist",
            Dataset::FashionMnist => "fashion-mnist",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Pooling {
    None,
    /// 2x2 max pooling, stride 2, `same` padding, after every second conv layer.
    Max2,
}

impl Pooling {
    pub fn as_str(self) -> &'static str {
        match self {
            Pooling::None => "none",
            Pooling::Max2 => "max2",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Activation {
    Tanh,
    Relu,
}

impl Activation {
    pub fn as_str(self) -> &'static str {
        match self {
            Activation::Tanh => "tanh",
            Activation::Relu => "relu",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Split {
    Train,
    Test,
}

impl Split {
    pub fn as_str(self) -> &'static str {
        match self {
            Split::Train => "train",
            Split::Test => "test",
        }
    }
}

/// How the training subset is drawn (design §1 "Measurement").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Sampling {
    /// `train_size` distinct images, seeded.
    #[default]
    Random,
    /// `train_size / 10` draws per class with replacement, as the reference results used.
    PerClassWithReplacement,
}

/// Which epochs are measured. Written as `every`, `log:N`, `paper` or a list of epochs.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub enum EpochSchedule {
    #[default]
    Every,
    Log(u32),
    Paper,
    List(Vec<u32>),
}

impl EpochSchedule {
    /// The measured epochs for a run of `epochs` epochs, sorted and distinct. Epoch 0 is
    /// the untrained network.
    pub fn epochs(&self, epochs: u32) -> Vec<u32> {
        let mut out: Vec<u32> = match self {
            EpochSchedule::Every => (0..=epochs).collect(),
            EpochSchedule::Log(n) => {
                // 0, then n-1 points spaced evenly in log from 1 to `epochs`; rounding can merge
                // neighbours at the low end, so short runs get fewer points.
                let mut v = vec![0];
                let steps = n.saturating_sub(2);
                if epochs >= 1 && *n >= 2 {
                    for k in 0..=steps {
                        let x = if steps == 0 { 1.0 } else { f64::from(k) / f64::from(steps) };
                        v.push((f64::from(epochs).powf(x)).round() as u32);
                    }
                    v.push(epochs);
                }
                v
            }
            EpochSchedule::Paper => {
                // The reference code measures its epoch k (0-based, after training k+1 epochs)
                // when k < 10 and k % 2 == 0, k < 50 and k % 5 == 0, k < 200 and k % 50 == 0,
                // or k % 500 == 0. Ours is epoch k + 1: 36 points for 10,000, as in the design.
                let mut v = Vec::new();
                v.extend(
                    (0..epochs)
                        .filter(|&k| {
                            (k < 10 && k % 2 == 0) || (k < 50 && k % 5 == 0) || (k < 200 && k % 50 == 0) || k % 500 == 0
                        })
                        .map(|k| k + 1),
                );
                v
            }
            EpochSchedule::List(list) => list.clone(),
        };
        out.retain(|&e| e <= epochs);
        out.sort_unstable();
        out.dedup();
        out
    }
}

impl fmt::Display for EpochSchedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EpochSchedule::Every => write!(f, "every"),
            EpochSchedule::Log(n) => write!(f, "log:{n}"),
            EpochSchedule::Paper => write!(f, "paper"),
            EpochSchedule::List(list) => {
                let items: Vec<String> = list.iter().map(u32::to_string).collect();
                write!(f, "[{}]", items.join(", "))
            }
        }
    }
}

impl std::str::FromStr for EpochSchedule {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim() {
            "every" => Ok(EpochSchedule::Every),
            "paper" => Ok(EpochSchedule::Paper),
            other => match other.strip_prefix("log:").map(str::parse::<u32>) {
                Some(Ok(n)) if n >= 2 => Ok(EpochSchedule::Log(n)),
                _ => Err(format!(
                    "measure.epochs must be `every`, `paper`, `log:N` with N >= 2, or a list of epochs; got `{other}`"
                )),
            },
        }
    }
}

impl Serialize for EpochSchedule {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            EpochSchedule::List(list) => list.serialize(serializer),
            other => serializer.serialize_str(&other.to_string()),
        }
    }
}

impl<'de> Deserialize<'de> for EpochSchedule {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Name(String),
            List(Vec<u32>),
        }
        match Raw::deserialize(deserializer).map_err(|_| {
            serde::de::Error::custom("measure.epochs must be `every`, `paper`, `log:N`, or a list of epochs")
        })? {
            Raw::Name(s) => s.parse().map_err(serde::de::Error::custom),
            Raw::List(list) => Ok(EpochSchedule::List(list)),
        }
    }
}

/// What is measured and when.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MeasureSpec {
    pub epochs: EpochSchedule,
    pub splits: Vec<Split>,
    pub bin_sizes: Vec<BinSize>,
    /// Keep the raw hashed histograms after finalization (they are large).
    pub keep_histograms: bool,
}

impl Default for MeasureSpec {
    fn default() -> Self {
        MeasureSpec {
            epochs: EpochSchedule::Every,
            splits: vec![Split::Train, Split::Test],
            bin_sizes: vec![BinSize::new(0.67).expect("0.67 is a valid bin size")],
            keep_histograms: false,
        }
    }
}

/// Everything one job needs. Defaults are the paper's (design §1 "Network").
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JobSpec {
    pub dataset: Dataset,
    pub width: u32,
    pub depth: u32,
    pub kernel: u32,
    #[serde(default = "default_pooling")]
    pub pooling: Pooling,
    #[serde(default)]
    pub fc: Vec<u32>,
    #[serde(default = "default_activation")]
    pub activation: Activation,
    #[serde(default)]
    pub seed: u64,
    pub epochs: u32,
    #[serde(default = "default_batch_size")]
    pub batch_size: u32,
    #[serde(default = "default_lr")]
    pub lr: f64,
    #[serde(default = "default_size")]
    pub train_size: u32,
    #[serde(default = "default_size")]
    pub test_size: u32,
    #[serde(default)]
    pub sampling: Sampling,
    #[serde(default)]
    pub measure: MeasureSpec,
}

fn default_pooling() -> Pooling {
    Pooling::None
}
fn default_activation() -> Activation {
    Activation::Tanh
}
fn default_batch_size() -> u32 {
    1000
}
fn default_lr() -> f64 {
    1e-3
}
fn default_size() -> u32 {
    10_000
}

/// Sizes of the data sets' two halves, for validating subset sizes.
pub const TRAIN_IMAGES: u32 = 60_000;
pub const TEST_IMAGES: u32 = 10_000;

/// A job specification that cannot run, with the parameter at fault.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct SpecError(pub String);

/// One measured layer of the network.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LayerInfo {
    /// 1-based position among the measured layers.
    pub index: u32,
    /// `conv1`..., `fc1`..., `softmax`.
    pub name: String,
    /// Values per sample in this layer's output.
    pub features: usize,
}

impl JobSpec {
    /// Checks every parameter, including the spatial size through the conv stack.
    pub fn validate(&self) -> Result<(), SpecError> {
        let err = |msg: String| Err(SpecError(msg));
        if self.width == 0 {
            return err("width must be at least 1".into());
        }
        if self.depth == 0 {
            return err("depth must be at least 1 conv layer".into());
        }
        if self.kernel == 0 || self.kernel.is_multiple_of(2) {
            return err(format!(
                "kernel must be odd and at least 1 (same padding is symmetric only then), got {}",
                self.kernel
            ));
        }
        if let Some(i) = self.fc.iter().position(|&w| w == 0) {
            return err(format!("fc[{i}] is 0; fully connected widths must be at least 1"));
        }
        if self.batch_size == 0 {
            return err("batch_size must be at least 1".into());
        }
        if !(self.lr.is_finite() && self.lr > 0.0) {
            return err(format!("lr must be a positive number, got {}", self.lr));
        }
        if self.train_size == 0 || self.train_size > TRAIN_IMAGES {
            return err(format!("train_size must be 1..={TRAIN_IMAGES}, got {}", self.train_size));
        }
        if self.sampling == Sampling::PerClassWithReplacement && !self.train_size.is_multiple_of(10) {
            return err(format!(
                "sampling per-class-with-replacement needs train_size divisible by 10, got {}",
                self.train_size
            ));
        }
        if self.test_size == 0 || self.test_size > TEST_IMAGES {
            return err(format!("test_size must be 1..={TEST_IMAGES}, got {}", self.test_size));
        }
        if self.measure.splits.is_empty() {
            return err("measure.splits must name at least one of train, test".into());
        }
        if self.measure.bin_sizes.is_empty() {
            return err("measure.bin_sizes must hold at least one bin size".into());
        }
        if let EpochSchedule::List(list) = &self.measure.epochs {
            if let Some(e) = list.iter().find(|&&e| e > self.epochs) {
                return err(format!("measure.epochs lists epoch {e}, beyond epochs = {}", self.epochs));
            }
            if list.is_empty() {
                return err("measure.epochs is an empty list".into());
            }
        }
        self.layers().map(|_| ())
    }

    /// The measured layers with their output sizes, or the error naming the layer where the
    /// image shrinks below 1x1.
    pub fn layers(&self) -> Result<Vec<LayerInfo>, SpecError> {
        self.shapes().map(|(layers, _)| layers)
    }

    /// Values per sample entering the first fully connected (or output) layer: the last
    /// conv layer's output, after its pooling if it has one.
    pub fn flattened_features(&self) -> Result<usize, SpecError> {
        self.shapes().map(|(_, flattened)| flattened)
    }

    fn shapes(&self) -> Result<(Vec<LayerInfo>, usize), SpecError> {
        let mut layers = Vec::new();
        let mut side = IMAGE_SIDE;
        for conv in 1..=self.depth {
            if conv > 1 {
                // `valid` padding after the first layer.
                if side < self.kernel {
                    return Err(SpecError(format!(
                        "kernel {} with depth {} and pooling {}: conv{conv} gets a {side}x{side} input, smaller than its kernel",
                        self.kernel,
                        self.depth,
                        self.pooling.as_str()
                    )));
                }
                side = side - self.kernel + 1;
            }
            layers.push(LayerInfo {
                index: conv,
                name: format!("conv{conv}"),
                features: (side * side * self.width) as usize,
            });
            if self.pooling == Pooling::Max2 && conv % 2 == 0 {
                side = side.div_ceil(2);
            }
        }
        let flattened = (side * side * self.width) as usize;
        for (i, &w) in self.fc.iter().enumerate() {
            layers.push(LayerInfo {
                index: self.depth + i as u32 + 1,
                name: format!("fc{}", i + 1),
                features: w as usize,
            });
        }
        layers.push(LayerInfo { index: layers.len() as u32 + 1, name: "softmax".into(), features: 10 });
        Ok((layers, flattened))
    }

    /// The measured epochs of this job.
    pub fn measured_epochs(&self) -> Vec<u32> {
        self.measure.epochs.epochs(self.epochs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn spec() -> JobSpec {
        JobSpec {
            dataset: Dataset::Mnist,
            width: 6,
            depth: 6,
            kernel: 3,
            pooling: Pooling::None,
            fc: vec![],
            activation: Activation::Tanh,
            seed: 0,
            epochs: 10,
            batch_size: 1000,
            lr: 1e-3,
            train_size: 10_000,
            test_size: 10_000,
            sampling: Sampling::Random,
            measure: MeasureSpec::default(),
        }
    }

    #[test]
    fn layer_shapes() {
        let layers = spec().layers().unwrap();
        let names: Vec<_> = layers.iter().map(|l| l.name.as_str()).collect();
        assert_eq!(names, ["conv1", "conv2", "conv3", "conv4", "conv5", "conv6", "softmax"]);
        // 28 same, then 26, 24, 22, 20, 18 with 3x3 valid.
        assert_eq!(layers[0].features, 28 * 28 * 6);
        assert_eq!(layers[5].features, 18 * 18 * 6);
        let pooled = JobSpec { pooling: Pooling::Max2, depth: 3, fc: vec![500, 1024, 500], ..spec() };
        let layers = pooled.layers().unwrap();
        // conv1 28, conv2 26 -> pool 13, conv3 11.
        assert_eq!(layers[2].features, 11 * 11 * 6);
        assert_eq!(
            layers.iter().map(|l| l.name.as_str()).collect::<Vec<_>>(),
            ["conv1", "conv2", "conv3", "fc1", "fc2", "fc3", "softmax"]
        );
        assert_eq!(layers[6].index, 7);
        // depth 4 with pooling: 28, 26 -> pool 13, 11, 9 -> pool 5 (odd sizes round up).
        let four = JobSpec { pooling: Pooling::Max2, depth: 4, ..spec() };
        assert_eq!(four.flattened_features().unwrap(), 5 * 5 * 6);
        assert_eq!(JobSpec { depth: 2, pooling: Pooling::Max2, ..spec() }.flattened_features().unwrap(), 13 * 13 * 6);
    }

    #[test]
    fn shrinking_below_one_names_the_layer() {
        let bad = JobSpec { depth: 5, kernel: 11, width: 3, ..spec() };
        let msg = bad.validate().unwrap_err().0;
        assert!(msg.contains("conv4") && msg.contains("kernel 11") && msg.contains("depth 5"), "{msg}");
        assert!(JobSpec { depth: 2, kernel: 11, ..spec() }.validate().is_ok());
    }

    #[test]
    fn invalid_parameters_are_named() {
        let cases = [
            (JobSpec { width: 0, ..spec() }, "width"),
            (JobSpec { kernel: 4, ..spec() }, "kernel"),
            (JobSpec { lr: -1.0, ..spec() }, "lr"),
            (JobSpec { train_size: 70_000, ..spec() }, "train_size"),
            (JobSpec { test_size: 0, ..spec() }, "test_size"),
            (JobSpec { fc: vec![10, 0], ..spec() }, "fc[1]"),
            (JobSpec { measure: MeasureSpec { splits: vec![], ..MeasureSpec::default() }, ..spec() }, "splits"),
            (
                JobSpec {
                    measure: MeasureSpec { epochs: EpochSchedule::List(vec![11]), ..MeasureSpec::default() },
                    ..spec()
                },
                "epoch 11",
            ),
        ];
        for (job, needle) in cases {
            let msg = job.validate().unwrap_err().0;
            assert!(msg.contains(needle), "{needle}: {msg}");
        }
    }

    #[test]
    fn schedules() {
        assert_eq!(EpochSchedule::Every.epochs(3), vec![0, 1, 2, 3]);
        assert_eq!(EpochSchedule::Paper.epochs(10_000).len(), 36);
        assert_eq!(&EpochSchedule::Paper.epochs(10_000)[..7], &[1, 3, 5, 6, 7, 9, 11]);
        let log = EpochSchedule::Log(36).epochs(10_000);
        assert_eq!((log[0], *log.last().unwrap()), (0, 10_000));
        assert!(log.len() <= 36 && log.len() > 30, "{log:?}");
        assert_eq!(EpochSchedule::Log(5).epochs(2), vec![0, 1, 2]);
        assert_eq!("log:8".parse::<EpochSchedule>().unwrap(), EpochSchedule::Log(8));
        assert!("log:x".parse::<EpochSchedule>().is_err());
        assert_eq!(EpochSchedule::List(vec![5, 0, 5, 20]).epochs(10), vec![0, 5]);
    }
}

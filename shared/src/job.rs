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
    /// Whether `epoch` is measured in a run of `epochs` epochs (no list is built).
    pub fn contains(&self, epoch: u32, epochs: u32) -> bool {
        if epoch > epochs {
            return false;
        }
        match self {
            EpochSchedule::Every => true,
            EpochSchedule::Paper => epoch >= 1 && paper_measures(epoch - 1),
            EpochSchedule::List(list) => list.contains(&epoch),
            EpochSchedule::Log(_) => self.epochs(epochs).binary_search(&epoch).is_ok(),
        }
    }

    /// How many epochs are measured in a run of `epochs` epochs, without building a list
    /// longer than the schedule itself.
    pub fn count(&self, epochs: u32) -> u32 {
        match self {
            EpochSchedule::Every => epochs.saturating_add(1),
            EpochSchedule::Paper => (0..epochs).filter(|&k| paper_measures(k)).count() as u32,
            EpochSchedule::List(_) | EpochSchedule::Log(_) => self.epochs(epochs).len() as u32,
        }
    }

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
            EpochSchedule::Paper => (0..epochs).filter(|&k| paper_measures(k)).map(|k| k + 1).collect(),
            EpochSchedule::List(list) => list.clone(),
        };
        out.retain(|&e| e <= epochs);
        out.sort_unstable();
        out.dedup();
        out
    }
}

/// The reference code's `do_report` (its main.py): whether it measures its 0-based epoch `k`,
/// i.e. after training `k + 1` epochs. Note the `(k + 1) % m` from epoch 10 on: it measures
/// the *end* of every 5th, 50th and 500th epoch, not its start.
fn paper_measures(k: u32) -> bool {
    match k {
        0..10 => k.is_multiple_of(2),
        10..50 => (k + 1).is_multiple_of(5),
        50..200 => (k + 1).is_multiple_of(50),
        _ => (k + 1).is_multiple_of(500),
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
                Some(Ok(n)) if (2..=bounds::MEASURED_EPOCHS).contains(&n) => Ok(EpochSchedule::Log(n)),
                _ => Err(format!(
                    "measure.epochs must be `every`, `paper`, `log:N` with 2 <= N <= {}, or a list of epochs; got `{other}`",
                    bounds::MEASURED_EPOCHS
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
            Raw::List(list) if list.len() > bounds::MEASURED_EPOCHS as usize => Err(serde::de::Error::custom(format!(
                "measure.epochs lists {} epochs; at most {} are accepted",
                list.len(),
                bounds::MEASURED_EPOCHS
            ))),
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
    /// Estimators beyond binning; empty (and out of the canonical form) by default.
    #[serde(skip_serializing_if = "crate::estimators::EstimatorsSpec::is_empty")]
    pub estimators: crate::estimators::EstimatorsSpec,
}

impl MeasureSpec {
    /// Duplicate splits or bin sizes would make two histograms share one key: refused.
    pub fn check_distinct(&self) -> Result<(), String> {
        for (i, split) in self.splits.iter().enumerate() {
            if self.splits[..i].contains(split) {
                return Err(format!("measure.splits lists `{}` twice", split.as_str()));
            }
        }
        if self.bin_sizes.len() > bounds::BIN_SIZES {
            return Err(format!(
                "measure.bin_sizes has {} sizes; at most {} are accepted",
                self.bin_sizes.len(),
                bounds::BIN_SIZES
            ));
        }
        for (i, bin) in self.bin_sizes.iter().enumerate() {
            if self.bin_sizes[..i].contains(bin) {
                return Err(format!("measure.bin_sizes lists {} twice", bin.get()));
            }
        }
        if let EpochSchedule::List(list) = &self.epochs {
            let mut sorted = list.clone();
            sorted.sort_unstable();
            if let Some(pair) = sorted.windows(2).find(|w| w[0] == w[1]) {
                return Err(format!("measure.epochs lists epoch {} twice", pair[0]));
            }
        }
        Ok(())
    }
}

impl Default for MeasureSpec {
    fn default() -> Self {
        MeasureSpec {
            epochs: EpochSchedule::Every,
            splits: vec![Split::Train, Split::Test],
            bin_sizes: vec![BinSize::new(0.67).expect("0.67 is a valid bin size")],
            keep_histograms: false,
            estimators: crate::estimators::EstimatorsSpec::default(),
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
    /// Checkpoint every this many epochs (0: never). With `checkpoint_minutes`, whichever
    /// comes first. Not part of the science, so left out of the canonical form at its default.
    #[serde(default = "default_checkpoint_every", skip_serializing_if = "is_default_checkpoint_every")]
    pub checkpoint_every: u32,
    /// Checkpoint after this many minutes of training since the last one.
    #[serde(default = "default_checkpoint_minutes", skip_serializing_if = "is_default_checkpoint_minutes")]
    pub checkpoint_minutes: f64,
    /// Evaluate the test split every this many epochs; measured epochs always are, so no
    /// result row depends on it (hence out of the canonical form at its default, 1).
    #[serde(default = "default_eval_every", skip_serializing_if = "is_default_eval_every")]
    pub eval_every: u32,
}

/// A 10,000-epoch job loses at most 50 epochs (or 10 minutes) to a preemption.
pub const DEFAULT_CHECKPOINT_EVERY: u32 = 50;
pub const DEFAULT_CHECKPOINT_MINUTES: f64 = 10.0;

fn default_checkpoint_every() -> u32 {
    DEFAULT_CHECKPOINT_EVERY
}
fn is_default_checkpoint_every(v: &u32) -> bool {
    *v == DEFAULT_CHECKPOINT_EVERY
}
fn default_checkpoint_minutes() -> f64 {
    DEFAULT_CHECKPOINT_MINUTES
}
fn is_default_checkpoint_minutes(v: &f64) -> bool {
    *v == DEFAULT_CHECKPOINT_MINUTES
}

fn default_eval_every() -> u32 {
    1
}
fn is_default_eval_every(v: &u32) -> bool {
    *v == 1
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

/// Upper bounds on every parameter, checked before anything is allocated in proportion to
/// them. Each is far beyond the paper (width 12, depth 9, kernel 11, fc 1024, 10^4 epochs)
/// and well below what would exhaust a coordinator or a worker.
pub mod bounds {
    pub const WIDTH: u32 = 4096;
    pub const DEPTH: u32 = 64;
    /// A kernel wider than the image only sees padding.
    pub const KERNEL: u32 = super::IMAGE_SIDE;
    pub const FC_LAYERS: usize = 32;
    pub const FC_WIDTH: u32 = 65_536;
    pub const EPOCHS: u32 = 1_000_000;
    /// Weights of one network (4 bytes each: 400 MB).
    pub const WEIGHTS: u64 = 100_000_000;
    /// Histograms one job delivers: measured epochs x splits x layers x bin sizes.
    pub const HISTOGRAMS: u64 = 1_000_000;
    pub const BIN_SIZES: usize = 64;
    /// Entries of an explicit `measure.epochs` list, and N of `log:N`.
    pub const MEASURED_EPOCHS: u32 = 100_000;
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
        if !(1..=bounds::WIDTH).contains(&self.width) {
            return err(format!("width must be 1..={}, got {}", bounds::WIDTH, self.width));
        }
        if !(1..=bounds::DEPTH).contains(&self.depth) {
            return err(format!("depth must be 1..={} conv layers, got {}", bounds::DEPTH, self.depth));
        }
        if self.kernel == 0 || self.kernel.is_multiple_of(2) || self.kernel > bounds::KERNEL {
            return err(format!(
                "kernel must be odd and 1..={} (same padding is symmetric only then), got {}",
                bounds::KERNEL,
                self.kernel
            ));
        }
        if self.fc.len() > bounds::FC_LAYERS {
            return err(format!("fc has {} layers; at most {} are accepted", self.fc.len(), bounds::FC_LAYERS));
        }
        if let Some(i) = self.fc.iter().position(|&w| w == 0) {
            return err(format!("fc[{i}] is 0; fully connected widths must be at least 1"));
        }
        if let Some(i) = self.fc.iter().position(|&w| w > bounds::FC_WIDTH) {
            return err(format!(
                "fc[{i}] is {}; fully connected widths must be at most {}",
                self.fc[i],
                bounds::FC_WIDTH
            ));
        }
        if self.epochs > bounds::EPOCHS {
            return err(format!("epochs must be at most {}, got {}", bounds::EPOCHS, self.epochs));
        }
        if !(self.checkpoint_minutes.is_finite() && self.checkpoint_minutes > 0.0 && self.checkpoint_minutes <= 1e6) {
            return err(format!(
                "checkpoint_minutes must be a positive number of minutes (at most 10^6), got {}",
                self.checkpoint_minutes
            ));
        }
        if self.batch_size == 0 {
            return err("batch_size must be at least 1".into());
        }
        if self.eval_every == 0 {
            return err("eval_every must be at least 1 (1: evaluate the test split after every epoch)".into());
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
        let smallest_split = self
            .measure
            .splits
            .iter()
            .map(|split| match split {
                Split::Train => self.train_size,
                Split::Test => self.test_size,
            })
            .min()
            .unwrap_or(0);
        if let Err(message) = self.measure.estimators.check(smallest_split) {
            return err(message);
        }
        self.measure.check_distinct().map_err(SpecError)?;
        if self.batch_size > self.train_size.max(self.test_size) {
            return err(format!(
                "batch_size {} is larger than both subsets ({} train, {} test images)",
                self.batch_size, self.train_size, self.test_size
            ));
        }
        if let EpochSchedule::List(list) = &self.measure.epochs {
            if let Some(e) = list.iter().find(|&&e| e > self.epochs) {
                return err(format!("measure.epochs lists epoch {e}, beyond epochs = {}", self.epochs));
            }
            if list.is_empty() {
                return err("measure.epochs is an empty list".into());
            }
        }
        let layers = self.layers()?;
        let weights = self.weights()?;
        if weights > bounds::WEIGHTS {
            return err(format!("the network has {weights} weights; at most {} are accepted", bounds::WEIGHTS));
        }
        let histograms = u64::from(self.measure.epochs.count(self.epochs))
            * self.measure.splits.len() as u64
            * layers.len() as u64
            * self.measure.bin_sizes.len() as u64;
        if histograms > bounds::HISTOGRAMS {
            return err(format!(
                "the job would deliver {histograms} histograms (measured epochs x splits x layers x bin sizes); at most {} are accepted: measure fewer epochs",
                bounds::HISTOGRAMS
            ));
        }
        Ok(())
    }

    /// Number of weights (conv kernels, fc and output matrices), overflow-checked.
    pub fn weights(&self) -> Result<u64, SpecError> {
        let too_big = || SpecError("the network's weight count overflows".into());
        let k2 = u64::from(self.kernel) * u64::from(self.kernel);
        let w = u64::from(self.width);
        let mut total = k2 * w; // conv1 has one input channel
        total = total.checked_add(k2 * w * w * u64::from(self.depth - 1)).ok_or_else(too_big)?;
        let mut inputs = self.flattened_features()? as u64;
        for &out in self.fc.iter().chain(std::iter::once(&10)) {
            total = inputs.checked_mul(u64::from(out)).and_then(|m| total.checked_add(m)).ok_or_else(too_big)?;
            inputs = u64::from(out);
        }
        Ok(total)
    }

    /// Whether `epoch` is measured, without building the list.
    pub fn is_measured_epoch(&self, epoch: u32) -> bool {
        self.measure.epochs.contains(epoch, self.epochs)
    }

    /// Whether the whole test split is evaluated after `epoch` for its loss and accuracy:
    /// every `eval_every`-th epoch and the last. Measured epochs compute them while
    /// measuring, whatever this says. Evaluation only reports, it never changes the weights
    /// or the random streams, so skipping it leaves every result row as it was.
    pub fn evaluates_test(&self, epoch: u32) -> bool {
        epoch.is_multiple_of(self.eval_every.max(1)) || epoch == self.epochs
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
        if self.depth > bounds::DEPTH || self.fc.len() > bounds::FC_LAYERS {
            return Err(SpecError(format!(
                "depth {} with {} fc layers is beyond the limits ({} conv, {} fc)",
                self.depth,
                self.fc.len(),
                bounds::DEPTH,
                bounds::FC_LAYERS
            )));
        }
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
                features: side as usize * side as usize * self.width as usize,
            });
            if self.pooling == Pooling::Max2 && conv % 2 == 0 {
                side = side.div_ceil(2);
            }
        }
        let flattened = side as usize * side as usize * self.width as usize;
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
            checkpoint_every: DEFAULT_CHECKPOINT_EVERY,
            checkpoint_minutes: DEFAULT_CHECKPOINT_MINUTES,
            eval_every: 1,
        }
    }

    #[test]
    fn checkpoint_settings_stay_out_of_the_canonical_form_at_their_defaults() {
        let json = serde_json::to_value(spec()).unwrap();
        assert!(json.get("checkpoint_every").is_none() && json.get("checkpoint_minutes").is_none());
        let custom = JobSpec { checkpoint_every: 2, ..spec() };
        let back: JobSpec = serde_json::from_value(serde_json::to_value(&custom).unwrap()).unwrap();
        assert_eq!(back.checkpoint_every, 2);
        let bad = JobSpec { checkpoint_minutes: 0.0, ..spec() };
        assert!(bad.validate().unwrap_err().0.starts_with("checkpoint_minutes"));
    }

    #[test]
    fn eval_every_stays_out_of_the_canonical_form_at_its_default_and_keeps_the_last_epoch() {
        assert!(serde_json::to_value(spec()).unwrap().get("eval_every").is_none());
        let sparse = JobSpec { eval_every: 4, epochs: 10, ..spec() };
        let evaluated: Vec<u32> = (1..=10).filter(|&e| sparse.evaluates_test(e)).collect();
        assert_eq!(evaluated, vec![4, 8, 10]);
        assert!((1..=10).all(|e| spec().evaluates_test(e)));
        let bad = JobSpec { eval_every: 0, ..spec() };
        assert!(bad.validate().unwrap_err().0.starts_with("eval_every"));
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
        let mut paper = vec![1, 3, 5, 7, 9, 15, 20, 25, 30, 35, 40, 45, 50, 100, 150, 200];
        paper.extend((1..=20).map(|k| k * 500));
        assert_eq!(paper.len(), 36);
        assert_eq!(EpochSchedule::Paper.epochs(10_000), paper);
        assert_eq!(EpochSchedule::Paper.epochs(50), &paper[..13]);
        assert_eq!(EpochSchedule::Paper.epochs(200), &paper[..16]);
        let log = EpochSchedule::Log(36).epochs(10_000);
        assert_eq!((log[0], *log.last().unwrap()), (0, 10_000));
        assert!(log.len() <= 36 && log.len() > 30, "{log:?}");
        assert_eq!(EpochSchedule::Log(5).epochs(2), vec![0, 1, 2]);
        assert_eq!("log:8".parse::<EpochSchedule>().unwrap(), EpochSchedule::Log(8));
        assert!("log:x".parse::<EpochSchedule>().is_err());
        assert_eq!(EpochSchedule::List(vec![5, 0, 5, 20]).epochs(10), vec![0, 5]);
    }
}

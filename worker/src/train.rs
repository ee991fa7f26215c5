//! Training and measurement of one job (design §1), on the calling thread.
//!
//! The caller runs this on a dedicated thread (never on an async runtime) and receives
//! [`Event`]s: per-epoch metrics, and per measured epoch and split one histogram per
//! (layer, bin size). Layers are binned batch by batch as the forward pass produces them, so
//! no layer's activations for a whole split are ever held at once.

use std::path::Path;
use std::time::{Duration, Instant};

use ibsweep_shared::job::{JobSpec, LayerInfo, Split};
use ibsweep_shared::measure::{BinSize, LayerAccumulator, LayerHistogram, MeasureError};
use ibsweep_shared::results::Measurement;
use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;
use serde::Serialize;
use tch::nn;
use tch::{Device, Kind, Tensor};

use crate::adam::Adam;
use crate::checkpoint::{self, TrainingState};
use crate::data::{self, CLASSES, Images, Part};
use crate::epoch_estimates::{JobEstimators, LayerEstimate};
use crate::error::{Error, Result, Stop};
use crate::model::Network;
use ibsweep_shared::results::EstimateColumns;

/// A job's images: the seeded training subset and the test subset, with the hashes of the
/// chosen indices (recorded with the results so two runs can be compared).
#[derive(Debug, Clone)]
pub struct JobData {
    pub train: Images,
    pub test: Images,
    pub train_hash: String,
    pub test_hash: String,
}

impl JobData {
    pub fn load(spec: &JobSpec, datasets: &Path) -> Result<JobData> {
        let train_all = data::load(datasets, spec.dataset, Part::Train)?;
        let test_all = data::load(datasets, spec.dataset, Part::Test)?;
        let train = data::sample(&train_all.labels, spec.train_size as usize, spec.sampling, spec.seed)?;
        // The test subset is always distinct images; the whole set (in order) at 10,000.
        let test = data::sample(
            &test_all.labels,
            spec.test_size as usize,
            ibsweep_shared::job::Sampling::Random,
            spec.seed ^ 0x7e57,
        )?;
        Ok(JobData {
            train: train_all.select(&train.indices),
            test: test_all.select(&test.indices),
            train_hash: train.hash,
            test_hash: test.hash,
        })
    }

    pub fn split(&self, split: Split) -> &Images {
        match split {
            Split::Train => &self.train,
            Split::Test => &self.test,
        }
    }
}

/// Loss and accuracy of both splits after an epoch. Train figures are the running average
/// over the epoch's mini-batches (as Keras reports them), or the exact evaluation when the
/// train split was measured at that epoch; `None` where nothing was computed (epoch 0 of a
/// split that is not measured).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct EpochMetrics {
    pub epoch: u32,
    pub train_loss: Option<f64>,
    pub train_accuracy: Option<f64>,
    pub test_loss: Option<f64>,
    pub test_accuracy: Option<f64>,
    /// Wall time of the epoch: training, evaluation and measurement.
    pub seconds: f64,
}

/// One measured layer's histograms, one per bin size.
#[derive(Debug, Clone)]
pub struct LayerResult {
    pub layer: LayerInfo,
    pub histograms: Vec<(BinSize, LayerHistogram)>,
}

/// Everything measured for one split at one epoch.
#[derive(Debug, Clone)]
pub struct SplitMeasurement {
    pub epoch: u32,
    pub split: Split,
    pub loss: f64,
    pub accuracy: f64,
    pub layers: Vec<LayerResult>,
    /// The `measure.estimators` results of this split and epoch (empty without them).
    pub estimates: Vec<LayerEstimate>,
}

impl SplitMeasurement {
    /// The key of one of this measurement's histograms.
    pub fn key(&self, layer: &LayerInfo, bin: BinSize) -> Measurement {
        Measurement {
            epoch: self.epoch,
            split: self.split,
            layer: layer.index,
            layer_name: layer.name.clone(),
            bin_size: bin.get(),
            loss: self.loss,
            accuracy: self.accuracy,
        }
    }

    /// The key of one layer's estimates (bin size 0: they are not a histogram).
    pub fn estimates_key(&self, layer: &LayerInfo) -> Measurement {
        Measurement {
            epoch: self.epoch,
            split: self.split,
            layer: layer.index,
            layer_name: layer.name.clone(),
            bin_size: 0.0,
            loss: self.loss,
            accuracy: self.accuracy,
        }
    }

    /// One layer's estimates as result-row columns, in the order the job's estimators
    /// section lists them (empty without KDE, Rényi or sliced MI).
    pub fn layer_columns(&self, layer: &LayerInfo) -> Vec<EstimateColumns> {
        self.estimates.iter().filter(|e| e.layer == layer.index).flat_map(LayerEstimate::columns).collect()
    }
}

#[derive(Debug, Clone)]
pub enum Event {
    /// Sent after every split measured at an epoch, before that epoch's metrics.
    Measured(SplitMeasurement),
    Epoch(EpochMetrics),
    /// The training state after `epoch` (after that epoch's metrics), as a safetensors file.
    Checkpoint {
        epoch: u32,
        bytes: Vec<u8>,
    },
}

/// Where a run starts and when it checkpoints.
#[derive(Default)]
pub struct Plan<'a> {
    /// Continue after this state's epoch instead of from scratch.
    pub resume: Option<&'a TrainingState>,
    /// Emit checkpoints every `spec.checkpoint_every` epochs or `checkpoint_minutes`.
    pub checkpoints: bool,
    /// Also emit one after the last epoch (the final weights).
    pub final_checkpoint: bool,
    /// Polled at the end of each epoch: when true, checkpoint now and stop
    /// ([`Error::Stopped`]). How a worker shuts down without losing the epoch in progress.
    pub drain: Option<&'a dyn Fn() -> bool>,
}

impl std::fmt::Debug for Plan<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Plan")
            .field("resume_epoch", &self.resume.map(|r| r.epoch))
            .field("checkpoints", &self.checkpoints)
            .field("final_checkpoint", &self.final_checkpoint)
            .field("drain", &self.drain.is_some())
            .finish()
    }
}

/// How to run: threads for libtorch's intra-op pool and for binning.
#[derive(Debug, Clone)]
pub struct RunConfig {
    pub threads: usize,
    pub device: Device,
}

fn to_tensors(images: &Images, device: Device) -> (Tensor, Tensor) {
    let x = Tensor::from_slice(&images.pixels).view([-1, 1, data::SIDE as i64, data::SIDE as i64]).to_device(device);
    let y = Tensor::from_slice(&images.labels).to_kind(Kind::Int64).to_device(device);
    (x, y)
}

/// Sum of the loss and number of correct predictions of a batch.
fn batch_stats(logits: &Tensor, y: &Tensor) -> (f64, f64) {
    let n = y.size()[0] as f64;
    let loss = logits.cross_entropy_for_logits(y).double_value(&[]) * n;
    // accuracy_for_logits is an f32 mean; the count of correct predictions is an integer.
    let correct = (logits.accuracy_for_logits(y).double_value(&[]) * n).round();
    (loss, correct)
}

/// Trains `spec` on `data` from scratch without checkpoints (see [`run_job_with`]).
pub fn run_job(
    spec: &JobSpec,
    data: &JobData,
    config: &RunConfig,
    stop: &dyn Fn() -> bool,
    on_event: &mut dyn FnMut(Event) -> Result<()>,
) -> Result<()> {
    run_job_with(spec, data, config, &Plan::default(), stop, on_event)
}

/// Trains `spec` on `data` as `plan` says, sending events as it goes. `stop` is polled
/// between mini-batches; when it returns true, the run ends with [`Error::Stopped`].
/// A resumed run produces exactly the events the uninterrupted run would have produced
/// after the checkpoint's epoch (at the same thread count).
pub fn run_job_with(
    spec: &JobSpec,
    data: &JobData,
    config: &RunConfig,
    plan: &Plan<'_>,
    stop: &dyn Fn() -> bool,
    on_event: &mut dyn FnMut(Event) -> Result<()>,
) -> Result<()> {
    spec.validate()?;
    tch::set_num_threads(config.threads.max(1) as i32);
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(config.threads.max(1))
        .thread_name(|i| format!("binning-{i}"))
        .build()
        .map_err(|e| Error::Setup(format!("cannot start binning threads: {e}")))?;
    // Weights (and dropout-free forward passes) are then a function of the seed.
    tch::manual_seed(spec.seed as i64);
    let vs = nn::VarStore::new(config.device);
    let net = Network::new(&vs.root(), spec)?;
    let mut adam = Adam::new(&vs, spec.lr);
    let measured_splits: Vec<(Split, &Images)> = spec.measure.splits.iter().map(|&s| (s, data.split(s))).collect();
    let mut estimators = JobEstimators::new(spec, net.layers(), &measured_splits)?;
    let (train_x, train_y) = to_tensors(&data.train, config.device);
    let (test_x, test_y) = to_tensors(&data.test, config.device);
    let measured = spec.measured_epochs();
    let batch = spec.batch_size as usize;
    let mut rng = ChaCha8Rng::seed_from_u64(spec.seed);
    let mut first = 0;
    if let Some(state) = plan.resume {
        state.restore(&mut adam)?;
        rng.set_word_pos(state.rng_word_pos);
        if let (Some(e), Some(scales)) = (estimators.as_mut(), &state.estimator_scales) {
            e.restore_scales(scales)?;
        }
        first = state.epoch + 1;
    }
    let checkpointing = plan.checkpoints && spec.checkpoint_every > 0;
    let interval = Duration::from_secs_f64(spec.checkpoint_minutes * 60.0);
    let mut last_checkpoint = Instant::now();

    for epoch in first..=spec.epochs {
        let started = Instant::now();
        let mut metrics = EpochMetrics {
            epoch,
            train_loss: None,
            train_accuracy: None,
            test_loss: None,
            test_accuracy: None,
            seconds: 0.0,
        };
        if epoch > 0 {
            let mut order: Vec<i64> = (0..data.train.len() as i64).collect();
            order.shuffle(&mut rng);
            let (mut loss_sum, mut correct) = (0.0, 0.0);
            for chunk in order.chunks(batch) {
                if stop() {
                    return Err(Error::Stopped(Stop::Requested));
                }
                let index = Tensor::from_slice(chunk).to_device(config.device);
                let (x, y) = (train_x.index_select(0, &index), train_y.index_select(0, &index));
                let logits = net.logits(&x);
                let loss = logits.cross_entropy_for_logits(&y);
                adam.backward_step(&loss);
                let (l, c) = tch::no_grad(|| batch_stats(&logits, &y));
                if !l.is_finite() {
                    return Err(Error::Diverged {
                        epoch,
                        layer: "loss".into(),
                        detail: format!("training loss is {l}"),
                    });
                }
                loss_sum += l;
                correct += c;
            }
            let n = data.train.len() as f64;
            metrics.train_loss = Some(loss_sum / n);
            metrics.train_accuracy = Some(correct / n);
        }
        if measured.binary_search(&epoch).is_ok() {
            for &split in &spec.measure.splits {
                let (x, y) = match split {
                    Split::Train => (&train_x, &train_y),
                    Split::Test => (&test_x, &test_y),
                };
                let labels = &data.split(split).labels;
                let m = measure_split(&net, spec, &pool, (epoch, split), (x, y, labels), estimators.as_mut())?;
                match split {
                    Split::Train => (metrics.train_loss, metrics.train_accuracy) = (Some(m.loss), Some(m.accuracy)),
                    Split::Test => (metrics.test_loss, metrics.test_accuracy) = (Some(m.loss), Some(m.accuracy)),
                }
                on_event(Event::Measured(m))?;
                if stop() {
                    return Err(Error::Stopped(Stop::Requested));
                }
            }
        }
        if epoch > 0 && metrics.test_loss.is_none() && spec.evaluates_test(epoch) {
            let (l, a) = evaluate(&net, &test_x, &test_y, batch);
            (metrics.test_loss, metrics.test_accuracy) = (Some(l), Some(a));
        }
        metrics.seconds = started.elapsed().as_secs_f64();
        on_event(Event::Epoch(metrics))?;
        if !checkpointing || epoch == 0 {
            continue;
        }
        let last = epoch == spec.epochs;
        let draining = !last && plan.drain.is_some_and(|drain| drain());
        let due = !last && (epoch % spec.checkpoint_every == 0 || last_checkpoint.elapsed() >= interval);
        if draining || due || (last && plan.final_checkpoint) {
            let scales = estimators.as_ref().map(JobEstimators::held_scales);
            let bytes = checkpoint::encode(spec, epoch, &adam, rng.get_word_pos(), scales.as_deref())?;
            on_event(Event::Checkpoint { epoch, bytes })?;
            last_checkpoint = Instant::now();
        }
        if draining {
            return Err(Error::Stopped(Stop::Drained { epoch }));
        }
    }
    Ok(())
}

fn evaluate(net: &Network, x: &Tensor, y: &Tensor, batch: usize) -> (f64, f64) {
    tch::no_grad(|| {
        let n = y.size()[0];
        let (mut loss, mut correct) = (0.0, 0.0);
        for start in (0..n).step_by(batch) {
            let len = (batch as i64).min(n - start);
            let (l, c) = batch_stats(&net.logits(&x.narrow(0, start, len)), &y.narrow(0, start, len));
            loss += l;
            correct += c;
        }
        (loss / n as f64, correct / n as f64)
    })
}

/// One forward pass over a split in batches; every measured layer's output is binned into
/// its accumulators as soon as it is produced.
fn measure_split(
    net: &Network,
    spec: &JobSpec,
    pool: &rayon::ThreadPool,
    (epoch, split): (u32, Split),
    (x, y, labels): (&Tensor, &Tensor, &[u8]),
    estimators: Option<&mut JobEstimators>,
) -> Result<SplitMeasurement> {
    let layers = net.layers().to_vec();
    let mut accumulators: Vec<LayerAccumulator> =
        layers.iter().map(|_| LayerAccumulator::new(spec.measure.bin_sizes.clone(), CLASSES)).collect();
    let labels: Vec<u32> = labels.iter().map(|&l| u32::from(l)).collect();
    let n = labels.len() as i64;
    let batch = (spec.batch_size as i64).min(1000);
    let (mut loss, mut correct) = (0.0, 0.0);
    let mut values: Vec<f32> = Vec::new();
    let mut pass = estimators.as_deref().map(|e| e.begin(spec, &layers));
    tch::no_grad(|| -> Result<()> {
        for start in (0..n).step_by(batch as usize) {
            let len = batch.min(n - start);
            let batch_labels = &labels[start as usize..(start + len) as usize];
            let logits = net.forward_visit(&x.narrow(0, start, len), |layer, output| {
                let output = output.to_device(Device::Cpu).to_kind(Kind::Float).contiguous();
                values.resize(output.numel(), 0.0);
                output.f_copy_data(&mut values, output.numel())?;
                if let (Some(e), Some(pass)) = (estimators.as_deref(), pass.as_mut()) {
                    e.observe(pass, layer, &output, &values)?;
                }
                let accumulator = &mut accumulators[layer];
                let features = layers[layer].features;
                pool.install(|| accumulator.add_batch(&values, features, batch_labels)).map_err(|e| match e {
                    MeasureError::NonFinite { sample, feature, value } => Error::Diverged {
                        epoch,
                        layer: layers[layer].name.clone(),
                        detail: format!(
                            "activation {value} at sample {}, feature {feature} of the {} split",
                            start as usize + sample,
                            split.as_str()
                        ),
                    },
                    other => other.into(),
                })
            })?;
            let (l, c) = batch_stats(&logits, &y.narrow(0, start, len));
            loss += l;
            correct += c;
        }
        Ok(())
    })?;
    let estimates = match (estimators, pass) {
        (Some(e), Some(pass)) => e.finish(net, epoch, split, x, &labels, pass)?,
        _ => Vec::new(),
    };
    let layers = layers
        .into_iter()
        .zip(accumulators)
        .map(|(layer, acc)| LayerResult { layer, histograms: acc.finish() })
        .collect();
    Ok(SplitMeasurement { epoch, split, loss: loss / n as f64, accuracy: correct / n as f64, layers, estimates })
}

//! The estimators of `measure.estimators` inside the measurement pass of each measured
//! epoch.
//!
//! - **Sample.** KDE and Rényi are O(M²): they see a fixed, class-stratified subsample of
//!   each split (`samples`, `samples / 10` per class). It is drawn with the job's seed and
//!   is the same at every epoch; the SHA-256 of its indices is recorded with every row. Its
//!   own ceiling is log2 M.
//! - **Scales held fixed.** A relative noise variance multiplies the layer's median
//!   nearest-neighbour squared distance, and a `median` kernel width is the median
//!   pairwise distance. Both are taken at the job's first measured epoch and then held
//!   for the job, so that later epochs are measured with the same ruler. An `alignment`
//!   width is the exception by design: chosen again at every measured epoch and smoothed
//!   with the previous one, as Wickstrøm et al. do.
//! - **Sliced MI** sees the whole split: each batch's layer output is projected on P seeded
//!   unit directions as the pass produces it, so only N x P numbers are kept per layer.
//! - **Activations**: each layer's values over the whole split, counted into a fixed-range
//!   histogram batch by batch.

use std::collections::HashMap;

use ibsweep_shared::estimators::{EstimatorsSpec, SigmaName, SigmaSpec};
use ibsweep_shared::job::{Activation, JobSpec, LayerInfo, Split};
use ibsweep_shared::results::{EstimateColumns, Estimator, SigmaRule};
use rand::seq::SliceRandom;
use rand::{Rng as _, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tch::{Device, Kind, Tensor};

use crate::data::{CLASSES, Images};
use crate::error::{Error, Result};
use crate::estimators::kde::{self, KdeRow};
use crate::estimators::renyi::{self, RenyiRow};
use crate::estimators::sliced::{self, SlicedRow};
use crate::estimators::{Precision, Sample};
use crate::model::Network;

/// One estimate of one layer at one measured epoch and split.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LayerEstimate {
    pub epoch: u32,
    pub split: Split,
    pub layer: u32,
    pub layer_name: String,
    /// SHA-256 (hex, first 16 digits) of the sample's indices; empty for sliced MI, which
    /// sees the whole split.
    pub sample_hash: String,
    /// How the row's scale was chosen, where the row itself cannot say.
    #[serde(flatten)]
    pub setting: Setting,
    #[serde(flatten)]
    pub row: EstimateRow,
}

/// KDE: the relative factor of a relative noise variance; Rényi: how each σ was chosen.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Setting {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub relative_noise: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sigma_rule: Option<SigmaRule>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub input_sigma_rule: Option<SigmaRule>,
}

impl LayerEstimate {
    /// The result-row columns of this estimate: two (upper, lower) for KDE, one for Rényi
    /// and sliced MI, none for an activation histogram (not an MI row).
    pub fn columns(&self) -> Vec<EstimateColumns> {
        let hash = Some(self.sample_hash.clone()).filter(|h| !h.is_empty());
        match &self.row {
            EstimateRow::Kde(r) => {
                [(Estimator::KdeUpper, r.i_xt_upper, r.i_yt_upper), (Estimator::KdeLower, r.i_xt_lower, r.i_yt_lower)]
                    .into_iter()
                    .map(|(estimator, i_xt, i_yt)| EstimateColumns {
                        i_xt: Some(i_xt),
                        noise_variance: Some(r.noise_variance),
                        relative_noise: self.setting.relative_noise,
                        sample_hash: hash.clone(),
                        ..EstimateColumns::new(estimator, r.n as u64, i_yt)
                    })
                    .collect()
            }
            EstimateRow::Renyi(r) => vec![EstimateColumns {
                h_t: Some(r.s_t),
                i_xt: Some(r.i_xt),
                h_y: Some(r.s_y),
                h_x: Some(r.s_x),
                alpha: Some(r.alpha),
                sigma: Some(r.sigma),
                sigma_rule: self.setting.sigma_rule,
                input_sigma: Some(r.input_sigma),
                input_sigma_rule: self.setting.input_sigma_rule,
                sample_hash: hash,
                ..EstimateColumns::new(Estimator::Renyi, r.n as u64, r.i_yt)
            }],
            EstimateRow::Sliced(r) => vec![EstimateColumns {
                i_yt_stderr: Some(r.i_yt_stderr),
                projections: Some(r.projections as u32),
                k: Some(r.k as u32),
                ..EstimateColumns::new(Estimator::Sliced, r.n as u64, r.i_yt)
            }],
            EstimateRow::Activations(_) => Vec::new(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum EstimateRow {
    Kde(KdeRow),
    Renyi(RenyiRow),
    Sliced(SlicedRow),
    Activations(ActivationsRow),
}

/// One layer's activation values over a split, in `bins` equal bins over `[low, high]`;
/// values outside are counted in `below` and `above`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ActivationsRow {
    pub estimator: &'static str,
    pub low: f64,
    pub high: f64,
    pub values: u64,
    pub below: u64,
    pub above: u64,
    pub counts: Vec<u64>,
}

/// Scales fixed at the first measured epoch, per (split, layer).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
struct Scales {
    nearest_squared: Option<f64>,
    median_distance: Option<f64>,
    /// The smoothed `alignment` width after the last measured epoch.
    #[serde(default)]
    alignment: Option<f64>,
}

/// One split's fixed sample.
#[derive(Debug)]
struct SplitSample {
    rows: Tensor,
    labels: Vec<u32>,
    hash: String,
    /// The sample's input images: squared distances and the median width.
    inputs_d: Option<(Tensor, f64)>,
    /// Their kernel's entropies, the same for every layer and epoch.
    input_entropies: renyi::InputEntropies,
}

/// What a job's estimators carry from one measured epoch to the next.
#[derive(Debug)]
pub struct JobEstimators {
    spec: EstimatorsSpec,
    precision: Precision,
    samples: HashMap<Split, SplitSample>,
    scales: HashMap<(Split, u32), Scales>,
    /// Per measured layer, D x P unit columns (f32), for sliced MI.
    projections: Vec<Tensor>,
}

/// Per split and epoch, what the pass collects batch by batch: each layer's projected
/// values (N x P row-major) and its activation counts.
#[derive(Debug)]
pub struct SplitPass {
    projected: Vec<Vec<f64>>,
    activations: Vec<ActivationsRow>,
}

impl JobEstimators {
    /// `None` when the job asks for no estimator beyond binning.
    pub fn new(spec: &JobSpec, layers: &[LayerInfo], splits: &[(Split, &Images)]) -> Result<Option<JobEstimators>> {
        let estimators = &spec.measure.estimators;
        if estimators.is_empty() {
            return Ok(None);
        }
        let mut samples = HashMap::new();
        if let Some(m) = estimators.samples() {
            for &(split, images) in splits {
                samples.insert(split, draw_sample(spec.seed, split, images, m as usize)?);
            }
        }
        let projections = match &estimators.sliced {
            Some(s) => layers.iter().map(|l| unit_directions(spec.seed, l, s.projections as usize)).collect(),
            None => Vec::new(),
        };
        Ok(Some(JobEstimators {
            spec: estimators.clone(),
            precision: Precision::F32,
            samples,
            scales: HashMap::new(),
            projections,
        }))
    }

    /// The scales held since the first measured epoch, as JSON for a checkpoint, so that a
    /// resumed attempt measures with the same ruler (f64 values round-trip exactly).
    pub fn held_scales(&self) -> String {
        let mut held: Vec<(Split, u32, Scales)> = self.scales.iter().map(|(&(s, l), &v)| (s, l, v)).collect();
        held.sort_by_key(|&(s, l, _)| (s, l));
        serde_json::to_string(&held).expect("scales serialize")
    }

    /// Takes back the scales of [`JobEstimators::held_scales`] from a checkpoint.
    pub fn restore_scales(&mut self, json: &str) -> Result<()> {
        let held: Vec<(Split, u32, Scales)> =
            serde_json::from_str(json).map_err(|e| Error::Checkpoint(format!("estimator scales: {e}")))?;
        self.scales = held.into_iter().map(|(s, l, v)| ((s, l), v)).collect();
        Ok(())
    }

    /// Starts a split's pass over `layers`.
    pub fn begin(&self, spec: &JobSpec, layers: &[LayerInfo]) -> SplitPass {
        let projected = vec![Vec::new(); if self.spec.sliced.is_some() { layers.len() } else { 0 }];
        let activations = match &self.spec.activations {
            None => Vec::new(),
            Some(a) => layers
                .iter()
                .map(|layer| {
                    let [low, high] = a.range.unwrap_or(if layer.name == "softmax" {
                        [0.0, 1.0]
                    } else {
                        match spec.activation {
                            Activation::Tanh => [-1.0, 1.0],
                            Activation::Relu => [0.0, 4.0],
                        }
                    });
                    ActivationsRow {
                        estimator: "activations",
                        low,
                        high,
                        values: 0,
                        below: 0,
                        above: 0,
                        counts: vec![0; a.bins as usize],
                    }
                })
                .collect(),
        };
        SplitPass { projected, activations }
    }

    /// One batch's output of measured layer `layer` (0-based): `output` as a tensor for the
    /// projections, `values` the same numbers on the CPU for the counts.
    pub fn observe(&self, pass: &mut SplitPass, layer: usize, output: &Tensor, values: &[f32]) -> Result<()> {
        if let Some(row) = pass.activations.get_mut(layer) {
            let bins = row.counts.len();
            let scale = bins as f64 / (row.high - row.low);
            for &v in values {
                let v = f64::from(v);
                if v < row.low {
                    row.below += 1;
                } else if v > row.high {
                    row.above += 1;
                } else {
                    // `high` itself falls in the last bin.
                    row.counts[(((v - row.low) * scale) as usize).min(bins - 1)] += 1;
                }
            }
            row.values += values.len() as u64;
        }
        if pass.projected.is_empty() {
            return Ok(());
        }
        let rows = output.size()[0];
        let flat = output.view([rows, -1]).to_kind(Kind::Float);
        let z = flat.matmul(&self.projections[layer]).to_kind(Kind::Double).contiguous();
        let n = z.numel();
        let start = pass.projected[layer].len();
        pass.projected[layer].resize(start + n, 0.0);
        z.f_copy_data(&mut pass.projected[layer][start..], n)?;
        Ok(())
    }

    /// Every estimate of one split at one measured epoch: the sample's forward pass for
    /// KDE and Rényi, and the collected projections for sliced MI.
    pub fn finish(
        &mut self,
        net: &Network,
        epoch: u32,
        split: Split,
        x: &Tensor,
        labels: &[u32],
        pass: SplitPass,
    ) -> Result<Vec<LayerEstimate>> {
        let layers = net.layers().to_vec();
        let mut out = Vec::new();
        let diverged = |layer: &LayerInfo, e: crate::estimators::EstimatorError| Error::Diverged {
            epoch,
            layer: layer.name.clone(),
            detail: format!("{} split estimators: {e}", split.as_str()),
        };
        if let Some(sample) = self.samples.get_mut(&split) {
            let images = x.index_select(0, &sample.rows.to_device(x.device()));
            // Each layer's outputs for the whole sample, gathered batch by batch.
            let mut outputs: Vec<Vec<Tensor>> = layers.iter().map(|_| Vec::new()).collect();
            tch::no_grad(|| -> Result<()> {
                for start in (0..images.size()[0]).step_by(1000) {
                    let len = 1000.min(images.size()[0] - start);
                    let _logits = net.forward_visit(&images.narrow(0, start, len), |layer, output| {
                        outputs[layer].push(output.to_device(Device::Cpu).to_kind(Kind::Float));
                        Ok(())
                    })?;
                }
                Ok(())
            })?;
            if sample.inputs_d.is_none() && self.spec.renyi.is_some() {
                let flat = images.to_device(Device::Cpu).view([images.size()[0], -1]);
                let inputs =
                    Sample::from_tensor(&flat, &sample.labels).map_err(|e| Error::InvalidInput(e.to_string()))?;
                let d = inputs.squared_distances(self.precision);
                let median = renyi::median_pairwise_distance(&d);
                sample.inputs_d = Some((d, median));
            }
            for (layer, parts) in layers.iter().zip(outputs) {
                let values = Tensor::cat(&parts, 0);
                let m = values.size()[0];
                let t = Sample::from_tensor(&values.view([m, -1]), &sample.labels).map_err(|e| diverged(layer, e))?;
                let d = t.squared_distances(self.precision);
                let scales = self.scales.entry((split, layer.index)).or_default();
                let key = |row, setting| LayerEstimate {
                    epoch,
                    split,
                    layer: layer.index,
                    layer_name: layer.name.clone(),
                    sample_hash: sample.hash.clone(),
                    setting,
                    row,
                };
                if let Some(spec) = &self.spec.kde {
                    let mut variances = spec.noise_variance.clone();
                    if !spec.relative_noise.is_empty() {
                        let base =
                            *scales.nearest_squared.get_or_insert_with(|| kde::median_nearest_squared_distance(&d));
                        if base <= 0.0 {
                            return Err(diverged(
                                layer,
                                crate::estimators::EstimatorError::Constant("a relative noise variance"),
                            ));
                        }
                        variances.extend(spec.relative_noise.iter().map(|r| r * base));
                    }
                    let relative =
                        spec.noise_variance.iter().map(|_| None).chain(spec.relative_noise.iter().map(|&r| Some(r)));
                    for (row, relative_noise) in
                        kde::kde(&t, &d, &variances).map_err(|e| diverged(layer, e))?.into_iter().zip(relative)
                    {
                        out.push(key(EstimateRow::Kde(row), Setting { relative_noise, ..Setting::default() }));
                    }
                }
                if let (Some(spec), Some((inputs_d, input_median))) = (&self.spec.renyi, &sample.inputs_d) {
                    let input_sigma = match spec.input_sigma {
                        SigmaSpec::Fixed(s) => s,
                        SigmaSpec::Named(SigmaName::Median) => *input_median,
                        SigmaSpec::Named(SigmaName::Alignment) => {
                            unreachable!("EstimatorsSpec::check refuses an aligned input width")
                        }
                    };
                    // Taken once per epoch, whichever σ list entries use it.
                    let aligned = if spec.sigma.contains(&SigmaSpec::Named(SigmaName::Alignment)) {
                        let best = renyi::alignment_sigma(&d, &sample.labels).map_err(|e| diverged(layer, e))?;
                        let smoothed = match scales.alignment {
                            Some(previous) => {
                                renyi::ALIGNMENT_SMOOTHING * best + (1.0 - renyi::ALIGNMENT_SMOOTHING) * previous
                            }
                            None => best,
                        };
                        scales.alignment = Some(smoothed);
                        Some(smoothed)
                    } else {
                        None
                    };
                    for &choice in &spec.sigma {
                        let sigma = match choice {
                            SigmaSpec::Fixed(s) => s,
                            SigmaSpec::Named(SigmaName::Median) => {
                                *scales.median_distance.get_or_insert_with(|| renyi::median_pairwise_distance(&d))
                            }
                            SigmaSpec::Named(SigmaName::Alignment) => {
                                aligned.expect("taken above when the list asks for it")
                            }
                        };
                        let setting = Setting {
                            sigma_rule: Some(choice.rule()),
                            input_sigma_rule: Some(spec.input_sigma.rule()),
                            ..Setting::default()
                        };
                        let rows = renyi::renyi_cached(
                            &t,
                            &d,
                            inputs_d,
                            &spec.alpha,
                            (sigma, input_sigma),
                            &mut sample.input_entropies,
                        )
                        .map_err(|e| diverged(layer, e))?;
                        out.extend(rows.into_iter().map(|row| key(EstimateRow::Renyi(row), setting)));
                    }
                }
            }
        }
        // These two see the whole split, not the sample: no sample hash.
        let whole_split = |layer: &LayerInfo, row| LayerEstimate {
            epoch,
            split,
            layer: layer.index,
            layer_name: layer.name.clone(),
            sample_hash: String::new(),
            setting: Setting::default(),
            row,
        };
        for (layer, row) in layers.iter().zip(pass.activations) {
            out.push(whole_split(layer, EstimateRow::Activations(row)));
        }
        if let Some(spec) = &self.spec.sliced {
            for (layer, z) in layers.iter().zip(pass.projected) {
                let row = sliced::sliced_projected(&z, spec.projections as usize, labels, spec.k as usize)
                    .map_err(|e| diverged(layer, e))?;
                out.push(whole_split(layer, EstimateRow::Sliced(row)));
            }
        }
        Ok(out)
    }
}

/// `m / 10` images of each class, drawn without replacement with the job's seed (a stream
/// of its own per split), in index order.
fn draw_sample(seed: u64, split: Split, images: &Images, m: usize) -> Result<SplitSample> {
    let per_class = m / CLASSES;
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x5A4D_504C_4553 ^ (split as u64 + 1) << 56);
    let mut rows = Vec::with_capacity(m);
    for class in 0..CLASSES as u8 {
        let mut of_class: Vec<i64> =
            images.labels.iter().enumerate().filter(|(_, l)| **l == class).map(|(i, _)| i as i64).collect();
        if of_class.len() < per_class {
            return Err(Error::InvalidInput(format!(
                "the {} split has {} images of class {class}; measure.estimators samples {m} need {per_class} of each",
                split.as_str(),
                of_class.len()
            )));
        }
        of_class.shuffle(&mut rng);
        rows.extend_from_slice(&of_class[..per_class]);
    }
    rows.sort_unstable();
    let mut hasher = Sha256::new();
    for r in &rows {
        hasher.update((*r as u32).to_le_bytes());
    }
    let hash: String = hasher.finalize().iter().take(8).map(|b| format!("{b:02x}")).collect();
    let labels = rows.iter().map(|&r| u32::from(images.labels[r as usize])).collect();
    Ok(SplitSample {
        rows: Tensor::from_slice(&rows),
        labels,
        hash,
        inputs_d: None,
        input_entropies: Default::default(),
    })
}

/// P directions uniform on the sphere in the layer's D dimensions, as columns (f32),
/// seeded by the job's seed and the layer.
fn unit_directions(seed: u64, layer: &LayerInfo, p: usize) -> Tensor {
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x534C_4943_4544 ^ u64::from(layer.index) << 48);
    let d = layer.features;
    let mut values = vec![0f32; d * p];
    for v in values.iter_mut() {
        // Box–Muller from two uniforms in (0, 1].
        let (u1, u2): (f64, f64) = (1.0 - rng.random::<f64>(), rng.random::<f64>());
        *v = ((-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()) as f32;
    }
    let directions = Tensor::from_slice(&values).view([d as i64, p as i64]);
    let norms = directions.square().sum_dim_intlist([0i64].as_slice(), true, Kind::Float).sqrt();
    directions / norms
}

//! A job's training state as one safetensors file: everything a resumed attempt needs to
//! continue exactly where this one stopped.
//!
//! Tensors: `param/<name>` (the weights), `adam.exp_avg/<name>` and
//! `adam.exp_avg_sq/<name>` (Adam's moments), all f32 little-endian. Metadata: the format,
//! the epoch trained so far, Adam's step and hyper-parameters, the position of the
//! training-order RNG in its ChaCha8 stream, the scales the job's estimators hold since
//! its first measured epoch (JSON, when it has estimators), and the job's canonical spec,
//! so a checkpoint is never applied to another job. safetensors is a plain documented format: PyTorch loads
//! it with `safetensors.torch.load_file`, libtorch programs through tch or any of the
//! header-only readers, and the file carries no code (unlike a pickle).

use std::collections::HashMap;

use ibsweep_shared::grid::canonical_job;
use ibsweep_shared::job::JobSpec;
use safetensors::tensor::TensorView;
use safetensors::{Dtype, SafeTensors};
use sha2::{Digest, Sha256};
use tch::{Kind, Tensor};

use crate::adam::{self, Adam};
use crate::error::{Error, Result};

pub const FORMAT: &str = "ibsweep-checkpoint/1";

/// SHA-256 of `bytes` as 64 lowercase hex digits.
pub fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}

/// A checkpoint read back: validated against its job, not yet applied.
#[derive(Debug, PartialEq)]
pub struct TrainingState {
    pub epoch: u32,
    pub adam_step: u64,
    pub rng_word_pos: u128,
    /// [`crate::epoch_estimates::JobEstimators::held_scales`], when the job has estimators.
    pub estimator_scales: Option<String>,
    /// name -> (shape, f32 values)
    tensors: HashMap<String, (Vec<usize>, Vec<f32>)>,
}

fn f32_bytes(t: &Tensor) -> Result<(Vec<usize>, Vec<u8>)> {
    let t = t.to_device(tch::Device::Cpu).to_kind(Kind::Float).contiguous();
    let shape: Vec<usize> = t.size().iter().map(|&d| d as usize).collect();
    let n = t.numel();
    let mut values = vec![0f32; n];
    t.f_copy_data(&mut values, n)?;
    Ok((shape, values.iter().flat_map(|v| v.to_le_bytes()).collect()))
}

/// Serializes the state after `epoch`.
pub fn encode(
    spec: &JobSpec,
    epoch: u32,
    adam: &Adam,
    rng_word_pos: u128,
    estimator_scales: Option<&str>,
) -> Result<Vec<u8>> {
    let mut owned: Vec<(String, Vec<usize>, Vec<u8>)> = Vec::new();
    for slot in &adam.slots {
        for (prefix, tensor) in
            [("param", &slot.param), ("adam.exp_avg", &slot.exp_avg), ("adam.exp_avg_sq", &slot.exp_avg_sq)]
        {
            let (shape, bytes) = f32_bytes(tensor)?;
            owned.push((format!("{prefix}/{}", slot.name), shape, bytes));
        }
    }
    let views = owned
        .iter()
        .map(|(name, shape, bytes)| TensorView::new(Dtype::F32, shape.clone(), bytes).map(|v| (name.clone(), v)))
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| Error::Checkpoint(format!("tensor: {e:?}")))?;
    let mut metadata = HashMap::from([
        ("format".to_string(), FORMAT.to_string()),
        ("epoch".to_string(), epoch.to_string()),
        ("adam_step".to_string(), adam.step.to_string()),
        ("adam_betas".to_string(), format!("{},{}", adam::BETA1, adam::BETA2)),
        ("adam_eps".to_string(), adam::EPS.to_string()),
        ("lr".to_string(), spec.lr.to_string()),
        ("rng".to_string(), "ChaCha8 seeded with the job's seed".to_string()),
        ("rng_word_pos".to_string(), rng_word_pos.to_string()),
        ("job".to_string(), canonical_job(spec)),
    ]);
    if let Some(scales) = estimator_scales {
        metadata.insert("estimator_scales".to_string(), scales.to_string());
    }
    safetensors::serialize(views, &Some(metadata)).map_err(|e| Error::Checkpoint(format!("{e:?}")))
}

/// Reads and checks a checkpoint of `spec`: its format, its job, its numbers.
pub fn decode(spec: &JobSpec, bytes: &[u8]) -> Result<TrainingState> {
    let bad = Error::Checkpoint;
    let (_, header) = SafeTensors::read_metadata(bytes).map_err(|e| bad(format!("not a safetensors file: {e:?}")))?;
    let meta = header.metadata().clone().ok_or_else(|| bad("no metadata".into()))?;
    let field = |key: &str| meta.get(key).ok_or_else(|| bad(format!("metadata has no `{key}`")));
    if field("format")? != FORMAT {
        return Err(bad(format!("format `{}`, expected `{FORMAT}`", field("format")?)));
    }
    if field("job")? != &canonical_job(spec) {
        return Err(bad("it belongs to another job".into()));
    }
    let number = |key: &str| -> Result<u128> { field(key)?.parse::<u128>().map_err(|e| bad(format!("`{key}`: {e}"))) };
    let epoch = u32::try_from(number("epoch")?).map_err(|_| bad("epoch out of range".into()))?;
    let adam_step = u64::try_from(number("adam_step")?).map_err(|_| bad("adam_step out of range".into()))?;
    let rng_word_pos = number("rng_word_pos")?;
    let estimator_scales = meta.get("estimator_scales").cloned();
    let tensors = SafeTensors::deserialize(bytes).map_err(|e| bad(format!("{e:?}")))?;
    let mut out = HashMap::new();
    for name in tensors.names() {
        let view = tensors.tensor(name).map_err(|e| bad(format!("{name}: {e:?}")))?;
        if view.dtype() != Dtype::F32 {
            return Err(bad(format!("{name} is {:?}, expected F32", view.dtype())));
        }
        let values = view.data().chunks_exact(4).map(|c| f32::from_le_bytes(c.try_into().expect("4 bytes"))).collect();
        out.insert(name.clone(), (view.shape().to_vec(), values));
    }
    Ok(TrainingState { epoch, adam_step, rng_word_pos, estimator_scales, tensors: out })
}

/// Checks that `state` fits the network `spec` builds (names and shapes), without
/// training anything.
pub fn check_fits(spec: &JobSpec, state: &TrainingState) -> Result<()> {
    let vs = tch::nn::VarStore::new(tch::Device::Cpu);
    let _network = crate::model::Network::new(&vs.root(), spec)?;
    let mut adam = Adam::new(&vs, spec.lr);
    state.restore(&mut adam)
}

impl TrainingState {
    /// Copies the weights and moments into `adam`'s tensors; every one must be there with
    /// the shape the network has, and nothing else may be.
    pub fn restore(&self, adam: &mut Adam) -> Result<()> {
        let expected = adam.slots.len() * 3;
        if self.tensors.len() != expected {
            return Err(Error::Checkpoint(format!("{} tensors, the network needs {expected}", self.tensors.len())));
        }
        tch::no_grad(|| -> Result<()> {
            for slot in &mut adam.slots {
                for (prefix, tensor) in [
                    ("param", &mut slot.param),
                    ("adam.exp_avg", &mut slot.exp_avg),
                    ("adam.exp_avg_sq", &mut slot.exp_avg_sq),
                ] {
                    let name = format!("{prefix}/{}", slot.name);
                    let (shape, values) =
                        self.tensors.get(&name).ok_or_else(|| Error::Checkpoint(format!("`{name}` is missing")))?;
                    let want: Vec<usize> = tensor.size().iter().map(|&d| d as usize).collect();
                    if *shape != want {
                        return Err(Error::Checkpoint(format!(
                            "`{name}` has shape {shape:?}, the network's is {want:?}"
                        )));
                    }
                    let source = Tensor::from_slice(values).view(tensor.size().as_slice()).to_device(tensor.device());
                    tensor.copy_(&source);
                }
            }
            Ok(())
        })?;
        adam.step = self.adam_step;
        Ok(())
    }
}

//! Adam, written out so its state can be checkpointed.
//!
//! tch's optimizers keep their moments inside libtorch with no way to read or restore them,
//! and a resumed job must continue exactly where it stopped. This is libtorch's own Adam
//! (`torch/csrc/api/src/optim/adam.cpp`, no weight decay, no amsgrad) step for step, with
//! the moments and the step count as plain tensors the checkpoint saves and restores bit
//! for bit. Parameters are kept in name order, so the state lines up across processes.

use tch::nn::VarStore;
use tch::{Kind, Tensor};

/// Adam's defaults, as in libtorch and Keras.
pub const BETA1: f64 = 0.9;
pub const BETA2: f64 = 0.999;
pub const EPS: f64 = 1e-8;

/// One parameter with its two moments.
#[derive(Debug)]
pub struct Slot {
    pub name: String,
    pub param: Tensor,
    pub exp_avg: Tensor,
    pub exp_avg_sq: Tensor,
}

#[derive(Debug)]
pub struct Adam {
    lr: f64,
    /// Steps taken so far (libtorch's per-parameter `step`, equal for all of them here).
    pub step: u64,
    pub slots: Vec<Slot>,
}

impl Adam {
    /// Adam over every trainable variable of `vs`, moments at zero.
    pub fn new(vs: &VarStore, lr: f64) -> Adam {
        let mut vars: Vec<(String, Tensor)> = vs.variables().into_iter().filter(|(_, t)| t.requires_grad()).collect();
        vars.sort_by(|a, b| a.0.cmp(&b.0));
        let slots = vars
            .into_iter()
            .map(|(name, param)| {
                let exp_avg = Tensor::zeros_like(&param).to_kind(Kind::Float);
                let exp_avg_sq = Tensor::zeros_like(&param).to_kind(Kind::Float);
                Slot { name, param, exp_avg, exp_avg_sq }
            })
            .collect();
        Adam { lr, step: 0, slots }
    }

    /// Zeroes the gradients, back-propagates `loss` and takes one step.
    pub fn backward_step(&mut self, loss: &Tensor) {
        for slot in &mut self.slots {
            slot.param.zero_grad();
        }
        loss.backward();
        self.step();
    }

    fn step(&mut self) {
        self.step += 1;
        let step = self.step as f64;
        let bias_correction1 = 1.0 - BETA1.powf(step);
        let bias_correction2 = 1.0 - BETA2.powf(step);
        let step_size = self.lr / bias_correction1;
        tch::no_grad(|| {
            for slot in &mut self.slots {
                let grad = slot.param.grad();
                if !grad.defined() {
                    continue;
                }
                let _ = slot.exp_avg.g_mul_scalar_(BETA1).g_add_(&(&grad * (1.0 - BETA1)));
                let _ = slot.exp_avg_sq.g_mul_scalar_(BETA2).g_add_(&(&grad * &grad * (1.0 - BETA2)));
                let denom = slot.exp_avg_sq.sqrt() / bias_correction2.sqrt() + EPS;
                let _ = slot.param.g_add_(&(&slot.exp_avg / denom * (-step_size)));
            }
        });
    }
}

//! The paper's CNNs in libtorch (design §1 "Network"): conv layers (first `same`, later
//! `valid` padding) each followed by the activation, 2x2 max pooling after every second conv
//! when asked, the hidden fully connected layers, and a dense 10 + softmax output.
//! Glorot-uniform weights and zero biases, as in the Keras reference code.

use ibsweep_shared::job::{Activation, JobSpec, LayerInfo, Pooling};
use tch::nn::{self, Module};
use tch::{Kind, Tensor};

use crate::error::Result;

/// A network built from a job spec, with access to every measured layer's output.
#[derive(Debug)]
pub struct Network {
    convs: Vec<nn::Conv2D>,
    fcs: Vec<nn::Linear>,
    output: nn::Linear,
    pooling: Pooling,
    activation: Activation,
    layers: Vec<LayerInfo>,
}

fn glorot(fan_in: i64, fan_out: i64) -> nn::Init {
    let limit = (6.0 / (fan_in + fan_out) as f64).sqrt();
    nn::Init::Uniform { lo: -limit, up: limit }
}

impl Network {
    /// Builds the network's variables under `root`. Call `tch::manual_seed` first for
    /// reproducible weights.
    pub fn new(root: &nn::Path<'_>, spec: &JobSpec) -> Result<Network> {
        let layers = spec.layers()?;
        let k = i64::from(spec.kernel);
        let width = i64::from(spec.width);
        let mut convs = Vec::new();
        let mut channels = 1;
        for conv in 1..=spec.depth {
            let config = nn::ConvConfig {
                padding: if conv == 1 { k / 2 } else { 0 },
                ws_init: glorot(channels * k * k, width * k * k),
                bs_init: nn::Init::Const(0.0),
                ..Default::default()
            };
            convs.push(nn::conv2d(root / format!("conv{conv}"), channels, width, k, config));
            channels = width;
        }
        let mut inputs = spec.flattened_features()? as i64;
        let mut fcs = Vec::new();
        for (i, &w) in spec.fc.iter().enumerate() {
            let w = i64::from(w);
            let config =
                nn::LinearConfig { ws_init: glorot(inputs, w), bs_init: Some(nn::Init::Const(0.0)), bias: true };
            fcs.push(nn::linear(root / format!("fc{}", i + 1), inputs, w, config));
            inputs = w;
        }
        let config = nn::LinearConfig { ws_init: glorot(inputs, 10), bs_init: Some(nn::Init::Const(0.0)), bias: true };
        let output = nn::linear(root / "output", inputs, 10, config);
        Ok(Network { convs, fcs, output, pooling: spec.pooling, activation: spec.activation, layers })
    }

    /// The measured layers, in forward order.
    pub fn layers(&self) -> &[LayerInfo] {
        &self.layers
    }

    fn activate(&self, x: &Tensor) -> Tensor {
        match self.activation {
            Activation::Tanh => x.tanh(),
            Activation::Relu => x.relu(),
        }
    }

    /// Runs `images` (`[batch, 1, 28, 28]`) and calls `visit(layer_index, output)` with
    /// every measured layer's output, flattened to `[batch, features]`; returns the logits.
    pub fn forward_visit(
        &self,
        images: &Tensor,
        mut visit: impl FnMut(usize, &Tensor) -> Result<()>,
    ) -> Result<Tensor> {
        let mut x = images.shallow_clone();
        let mut layer = 0;
        for (i, conv) in self.convs.iter().enumerate() {
            x = self.activate(&conv.forward(&x));
            visit(layer, &x.flatten(1, -1))?;
            layer += 1;
            if self.pooling == Pooling::Max2 && (i + 1) % 2 == 0 {
                // `same` padding for stride 2: odd sizes round up, which ceil_mode gives.
                x = x.max_pool2d([2, 2], [2, 2], [0, 0], [1, 1], true);
            }
        }
        x = x.flatten(1, -1);
        for fc in &self.fcs {
            x = self.activate(&fc.forward(&x));
            visit(layer, &x)?;
            layer += 1;
        }
        let logits = self.output.forward(&x);
        visit(layer, &logits.softmax(-1, Kind::Float))?;
        Ok(logits)
    }

    /// Logits only (training).
    pub fn logits(&self, images: &Tensor) -> Tensor {
        self.forward_visit(images, |_, _| Ok(())).expect("a no-op visitor cannot fail")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::Device;

    fn spec(depth: u32, kernel: u32, pooling: &str, fc: &[u32]) -> JobSpec {
        serde_json::from_value(serde_json::json!({
            "dataset": "mnist", "width": 3, "depth": depth, "kernel": kernel, "pooling": pooling, "fc": fc, "epochs": 1,
        }))
        .unwrap()
    }

    #[test]
    fn every_layer_has_the_size_the_spec_says() {
        let cases = [
            spec(6, 3, "none", &[]),
            spec(3, 3, "max2", &[]),
            spec(4, 3, "max2", &[7]),
            spec(5, 3, "none", &[500, 1024, 500]),
            spec(2, 11, "none", &[]),
            spec(5, 3, "max2", &[4]),
        ];
        for spec in cases {
            let vs = nn::VarStore::new(Device::Cpu);
            let net = Network::new(&vs.root(), &spec).unwrap();
            let images = Tensor::zeros([2, 1, 28, 28], (Kind::Float, Device::Cpu));
            let mut seen = Vec::new();
            let logits = net
                .forward_visit(&images, |layer, out| {
                    seen.push((layer, out.size()));
                    Ok(())
                })
                .unwrap();
            assert_eq!(logits.size(), [2, 10]);
            let expected: Vec<(usize, Vec<i64>)> =
                spec.layers().unwrap().iter().enumerate().map(|(i, l)| (i, vec![2, l.features as i64])).collect();
            assert_eq!(seen, expected, "{spec:?}");
        }
    }
}

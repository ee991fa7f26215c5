//! Proves the whole set-up chain on a clean machine: libtorch loads, the real MNIST files
//! parse, and a small tanh CNN learns from them.

use ibsweep_shared::job::{Dataset, JobSpec, Sampling};
use ibsweep_worker::data::{self, Part};
use ibsweep_worker::model::Network;
use tch::nn::{self, OptimizerConfig};
use tch::{Device, Kind, Tensor};

#[test]
fn small_tanh_cnn_learns_real_mnist() {
    let dir = data::default_datasets_dir();
    let train = data::load(&dir, Dataset::Mnist, Part::Train).expect("real MNIST installed by deploy/setup.sh");
    assert_eq!(train.len(), 60_000);
    let subset = data::sample(&train.labels, 2_000, Sampling::Random, 1).unwrap();
    let images = train.select(&subset.indices);
    let x = Tensor::from_slice(&images.pixels).view([-1, 1, 28, 28]);
    let y = Tensor::from_slice(&images.labels).to_kind(Kind::Int64);

    let spec: JobSpec = serde_json::from_value(serde_json::json!({
        "dataset": "mnist", "width": 4, "depth": 2, "kernel": 3, "epochs": 1,
    }))
    .unwrap();
    tch::manual_seed(0);
    let vs = nn::VarStore::new(Device::Cpu);
    let net = Network::new(&vs.root(), &spec).unwrap();
    let mut adam = nn::Adam::default().build(&vs, 1e-2).unwrap();
    let loss_of = |net: &Network| net.logits(&x).cross_entropy_for_logits(&y).double_value(&[]);
    let before = loss_of(&net);
    for step in 0..20 {
        let start = (step % 10) * 200;
        let loss = net.logits(&x.narrow(0, start, 200)).cross_entropy_for_logits(&y.narrow(0, start, 200));
        adam.backward_step(&loss);
    }
    let after = loss_of(&net);
    assert!(before > 2.0, "an untrained 10-way classifier starts near ln 10: {before}");
    assert!(after < before - 0.5, "loss should fall: {before} -> {after}");
}

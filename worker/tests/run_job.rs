//! The worker's science path on real MNIST: training, per-epoch measurement, agreement of
//! the streamed histograms with `worker estimate` on dumped activations, determinism, and
//! the job file's errors.

use std::process::Command;
use std::sync::Mutex;

use ibsweep_shared::job::{JobSpec, Split};
use ibsweep_worker::checkpoint;
use ibsweep_worker::data;
use ibsweep_worker::estimate::write_npy;
use ibsweep_worker::model::Network;
use ibsweep_worker::train::{self, Event, JobData, Plan, RunConfig, SplitMeasurement};
use tch::{Device, Kind, Tensor, nn};

/// libtorch's seed is process-global: tests that build networks take turns.
static TORCH: Mutex<()> = Mutex::new(());

fn spec(extra: serde_json::Value) -> JobSpec {
    let mut base = serde_json::json!({
        "dataset": "mnist", "width": 4, "depth": 2, "kernel": 3, "epochs": 3, "seed": 5,
        "batch_size": 100, "train_size": 1000, "test_size": 1000,
        "measure": {"epochs": "every", "splits": ["train", "test"], "bin_sizes": [0.67]},
    });
    for (k, v) in extra.as_object().unwrap() {
        base[k] = v.clone();
    }
    serde_json::from_value(base).unwrap()
}

fn config() -> RunConfig {
    RunConfig { threads: 2, device: Device::Cpu }
}

fn run(spec: &JobSpec, data: &JobData) -> (Vec<SplitMeasurement>, Vec<train::EpochMetrics>) {
    let _guard = TORCH.lock().unwrap_or_else(|e| e.into_inner());
    let (mut measured, mut epochs) = (Vec::new(), Vec::new());
    train::run_job(spec, data, &config(), &|| false, &mut |event| {
        match event {
            Event::Measured(m) => measured.push(m),
            Event::Epoch(e) => epochs.push(e),
            Event::Checkpoint { .. } => unreachable!("run_job never checkpoints"),
        }
        Ok(())
    })
    .unwrap();
    (measured, epochs)
}

/// Everything a run reports after `from`, without wall times: losses, accuracies and every
/// histogram's bytes.
type Trace = Vec<(u32, String, Vec<Vec<u8>>, [Option<f64>; 4])>;

fn planned(spec: &JobSpec, data: &JobData, plan: &Plan<'_>) -> (Trace, Vec<(u32, Vec<u8>)>) {
    let _guard = TORCH.lock().unwrap_or_else(|e| e.into_inner());
    let (mut trace, mut checkpoints) = (Vec::new(), Vec::new());
    train::run_job_with(spec, data, &config(), plan, &|| false, &mut |event| {
        match event {
            Event::Measured(m) => trace.push((
                m.epoch,
                format!("{} {} {}", m.split.as_str(), m.loss, m.accuracy),
                m.layers.iter().flat_map(|l| l.histograms.iter().map(|(_, h)| h.to_bytes())).collect(),
                [None; 4],
            )),
            Event::Epoch(e) => trace.push((
                e.epoch,
                "epoch".into(),
                vec![],
                [e.train_loss, e.train_accuracy, e.test_loss, e.test_accuracy],
            )),
            Event::Checkpoint { epoch, bytes } => checkpoints.push((epoch, bytes)),
        }
        Ok(())
    })
    .unwrap();
    (trace, checkpoints)
}

#[test]
fn a_resumed_run_continues_exactly_where_its_checkpoint_left_off() {
    // Conv and fully connected layers, so every kind of weight goes through the checkpoint.
    let spec = spec(serde_json::json!({"epochs": 4, "fc": [16], "checkpoint_every": 2}));
    let data = JobData::load(&spec, &data::default_datasets_dir()).unwrap();
    let full_plan = Plan { checkpoints: true, final_checkpoint: true, ..Plan::default() };
    let (full, checkpoints) = planned(&spec, &data, &full_plan);
    let epochs: Vec<u32> = checkpoints.iter().map(|(e, _)| *e).collect();
    assert_eq!(epochs, [2, 4], "every 2 epochs, plus the final one");
    let state = checkpoint::decode(&spec, &checkpoints[0].1).unwrap();
    assert_eq!(state.epoch, 2);
    let (resumed, again) = planned(
        &spec,
        &data,
        &Plan { resume: Some(&state), checkpoints: true, final_checkpoint: true, ..Plan::default() },
    );
    let after: Trace = full.into_iter().filter(|t| t.0 > 2).collect();
    assert_eq!(resumed, after, "the same losses, accuracies and histograms, bit for bit");
    // The same final state (the file's metadata order may differ, so compare contents).
    assert_eq!(again.len(), 1);
    let (a, b) =
        (checkpoint::decode(&spec, &again[0].1).unwrap(), checkpoint::decode(&spec, &checkpoints[1].1).unwrap());
    assert!(a == b && a.epoch == 4, "the final checkpoints differ");

    // A checkpoint of another job, or a damaged one, is refused with the reason.
    let other = JobSpec { seed: 99, ..spec.clone() };
    assert!(checkpoint::decode(&other, &checkpoints[0].1).unwrap_err().to_string().contains("another job"));
    let mut damaged = checkpoints[0].1.clone();
    damaged.truncate(damaged.len() - 10);
    assert!(checkpoint::decode(&spec, &damaged).is_err());
    let wider = JobSpec { fc: vec![17], ..spec.clone() };
    let err = checkpoint::decode(&wider, &checkpoints[0].1).unwrap_err().to_string();
    assert!(err.contains("another job"), "{err}");
}

#[test]
fn tiny_model_trains_and_epoch_zero_is_at_the_ceiling() {
    let spec = spec(serde_json::json!({"width": 6}));
    let data = JobData::load(&spec, &data::default_datasets_dir()).unwrap();
    let (measured, epochs) = run(&spec, &data);
    assert_eq!(epochs.len(), 4);
    let last = epochs.last().unwrap();
    assert!(last.test_accuracy.unwrap() > 0.5, "test accuracy should rise well above chance: {last:?}");
    assert!(last.train_loss.unwrap() < epochs[0].train_loss.unwrap());
    // 4 epochs x 2 splits, 3 layers each (conv1, conv2, softmax).
    assert_eq!(measured.len(), 8);
    let zero = measured.iter().find(|m| m.epoch == 0 && m.split == Split::Test).unwrap();
    let conv1 = zero.layers[0].histograms[0].1.estimate().unwrap();
    // All 1,000 test images are distinct and a 28x28x6 tanh layer keeps them apart.
    assert_eq!(conv1.distinct, 1000);
    assert!((conv1.i_xt - 1000f64.log2()).abs() < 1e-12);
    assert!((conv1.i_yt - conv1.h_y).abs() < 1e-12);
    for m in &measured {
        let softmax = m.layers.last().unwrap();
        assert_eq!(softmax.layer.name, "softmax");
        let e = softmax.histograms[0].1.estimate().unwrap();
        assert!(e.i_xt >= 0.0 && e.i_xt <= 1000f64.log2() + 1e-12);
        assert!(e.i_yt >= -1e-12 && e.i_yt <= e.i_xt.min(e.h_y) + 1e-12, "{e:?}");
    }
}

#[test]
fn streamed_histograms_equal_worker_estimate_on_dumped_activations() {
    let spec = spec(
        serde_json::json!({"epochs": 0, "measure": {"epochs": [0], "splits": ["test"], "bin_sizes": [0.67, 0.05]}, "fc": [16]}),
    );
    let data = JobData::load(&spec, &data::default_datasets_dir()).unwrap();
    let (measured, _) = run(&spec, &data);
    let streamed = &measured[0];

    // The same network (same seed), run over the test split in the same batches, with every
    // layer dumped whole to npy.
    let dir = tempfile::tempdir().unwrap();
    let _guard = TORCH.lock().unwrap_or_else(|e| e.into_inner());
    tch::set_num_threads(2);
    tch::manual_seed(spec.seed as i64);
    let vs = nn::VarStore::new(Device::Cpu);
    let net = Network::new(&vs.root(), &spec).unwrap();
    let x = Tensor::from_slice(&data.test.pixels).view([-1, 1, 28, 28]);
    let mut dumps: Vec<Vec<f32>> = vec![Vec::new(); net.layers().len()];
    tch::no_grad(|| {
        for start in (0..1000).step_by(100) {
            let _logits = net
                .forward_visit(&x.narrow(0, start, 100), |layer, out| {
                    let out = out.to_kind(Kind::Float).contiguous();
                    let mut values = vec![0f32; out.numel()];
                    out.copy_data(&mut values, out.numel());
                    dumps[layer].extend(values);
                    Ok(())
                })
                .unwrap();
        }
    });
    let labels: Vec<u8> = data.test.labels.clone();
    let y_path = dir.path().join("y.npy");
    write_npy(&y_path, &[1000], &labels).unwrap();
    for (layer, values) in net.layers().iter().zip(&dumps) {
        let a_path = dir.path().join(format!("{}.npy", layer.name));
        write_npy(&a_path, &[1000, layer.features as u64], values).unwrap();
        let out = Command::new(env!("CARGO_BIN_EXE_worker"))
            .args(["estimate", "--json", "--bin-size", "0.67", "--bin-size", "0.05", "--activations"])
            .arg(&a_path)
            .arg("--labels")
            .arg(&y_path)
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let rows: Vec<serde_json::Value> =
            String::from_utf8(out.stdout).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
        let streamed_layer = streamed.layers.iter().find(|l| l.layer.name == layer.name).unwrap();
        for (row, (bin, histogram)) in rows.iter().zip(&streamed_layer.histograms) {
            let e = histogram.estimate().unwrap();
            assert_eq!(row["bin_size"].as_f64().unwrap(), bin.get());
            assert_eq!(row["distinct"].as_u64().unwrap(), e.distinct, "{} at {bin}", layer.name);
            for (key, value) in [("h_t", e.h_t), ("i_yt", e.i_yt), ("h_y", e.h_y), ("h_t_given_y", e.h_t_given_y)] {
                assert!((row[key].as_f64().unwrap() - value).abs() < 1e-12, "{} {key} at {bin}", layer.name);
            }
        }
    }
}

#[test]
fn same_seed_and_threads_give_identical_results() {
    let spec =
        spec(serde_json::json!({"epochs": 1, "measure": {"epochs": "every", "splits": ["test"], "bin_sizes": [0.67]}}));
    let data = JobData::load(&spec, &data::default_datasets_dir()).unwrap();
    let digest = |measured: &[SplitMeasurement]| -> Vec<Vec<u8>> {
        measured.iter().flat_map(|m| m.layers.iter().map(|l| l.histograms[0].1.to_bytes())).collect()
    };
    let (a, ea) = run(&spec, &data);
    let (b, eb) = run(&spec, &data);
    assert_eq!(digest(&a), digest(&b));
    assert_eq!(ea.last().unwrap().test_loss, eb.last().unwrap().test_loss);
    let other = JobSpec { seed: 6, ..spec.clone() };
    let other_data = JobData::load(&other, &data::default_datasets_dir()).unwrap();
    assert_ne!(other_data.train_hash, data.train_hash);
    let (c, _) = run(&other, &other_data);
    assert_ne!(digest(&a), digest(&c));
}

#[test]
fn job_file_errors_name_the_file_line_and_parameter() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        ("dataset: cifar\nwidth: 2\ndepth: 2\nkernel: 3\nepochs: 1\n", "unknown variant `cifar`"),
        ("dataset: mnist\nwidth: 2\ndepth: 2\nkernel: 3\nepochs: 1\nwidht: 3\n", "line 6"),
        (
            "dataset: mnist\nwidth: 3\ndepth: 5\nkernel: 11\nepochs: 1\n",
            "conv4 gets a 8x8 input, smaller than its kernel",
        ),
        ("dataset: mnist\nwidth: 2\ndepth: 2\nkernel: 3\nepochs: 1\nmeasure: {bin_sizes: [-1]}\n", "bin size -1"),
    ];
    for (i, (text, needle)) in cases.iter().enumerate() {
        let path = dir.path().join(format!("job{i}.yaml"));
        std::fs::write(&path, text).unwrap();
        let out = Command::new(env!("CARGO_BIN_EXE_worker"))
            .arg("run")
            .arg(&path)
            .arg("--out")
            .arg(dir.path().join("out"))
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{stderr}");
        assert!(stderr.contains(needle) && stderr.contains(&format!("job{i}.yaml")), "expected '{needle}' in {stderr}");
    }
}

/// `eval_every` skips the test split's evaluation on unmeasured epochs, and changes no
/// measurement: the histograms are byte for byte those of a run that evaluates every epoch.
#[test]
fn eval_every_skips_unmeasured_evaluations_and_changes_no_histogram() {
    let every =
        spec(serde_json::json!({"epochs": 5, "measure": {"epochs": [0, 2], "splits": ["test"], "bin_sizes": [0.67]}}));
    let sparse = JobSpec { eval_every: 3, ..every.clone() };
    let data = JobData::load(&every, &data::default_datasets_dir()).unwrap();
    let (m_every, e_every) = run(&every, &data);
    let (m_sparse, e_sparse) = run(&sparse, &data);
    let bytes = |ms: &[SplitMeasurement]| -> Vec<Vec<u8>> {
        ms.iter().flat_map(|m| m.layers.iter().flat_map(|l| l.histograms.iter().map(|(_, h)| h.to_bytes()))).collect()
    };
    assert_eq!(bytes(&m_every), bytes(&m_sparse));
    let evaluated = |es: &[train::EpochMetrics]| -> Vec<u32> {
        es.iter().filter(|e| e.test_loss.is_some()).map(|e| e.epoch).collect()
    };
    assert_eq!(evaluated(&e_every), vec![0, 1, 2, 3, 4, 5]);
    // Epoch 2 is measured (so evaluated), 3 is the third, 5 the last.
    assert_eq!(evaluated(&e_sparse), vec![0, 2, 3, 5]);
    assert_eq!(e_every[5].test_loss, e_sparse[5].test_loss, "the weights are the same");
}

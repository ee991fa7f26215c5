"""Measures the cost of every distinct network of the paper's figures (examples/fig*.yaml)
with a short `worker run`, and extrapolates to the full 10,000-epoch runs.

For each network: 4 epochs on MNIST 10k/10k, 1 libtorch thread, train and test measured
after epoch 1 only, `eval_every: 2`. Epoch 2's time is an unmeasured epoch that evaluates
the test split (training plus evaluation), epoch 3's one that does not (training alone);
epoch 1 minus epoch 2 is the cost of one measurement. A full job is 10,000 unmeasured
epochs + 36 measurements (the `paper` schedule), with the test split evaluated after every
epoch (`eval_every: 1`, the default) or after every 50th (`eval_every: 50`, the paper
grids' setting).

Usage: python3 bench/paper_cost.py WORKER_BIN   (prints a table; seconds in JSON at the end)
"""
import json, os, subprocess, sys, tempfile

worker = sys.argv[1]
NETWORKS = {
    # name: (width, depth, kernel, pooling, fc)
    "fig4 w1 d6 k3": (1, 6, 3, "none", []),
    "fig4 w3 d6 k3": (3, 6, 3, "none", []),
    "fig4/6 w6 d6 k3": (6, 6, 3, "none", []),
    "fig4 w12 d6 k3": (12, 6, 3, "none", []),
    "fig5 w3 d2 k3": (3, 2, 3, "none", []),
    "fig5 w3 d2 k7": (3, 2, 7, "none", []),
    "fig5 w3 d2 k11": (3, 2, 11, "none", []),
    "fig5/8 w3 d5 k3": (3, 5, 3, "none", []),
    "fig5 w3 d5 k5": (3, 5, 5, "none", []),
    "fig5 w3 d5 k7": (3, 5, 7, "none", []),
    "fig6 w6 d1 k3": (6, 1, 3, "none", []),
    "fig6 w6 d2 k3": (6, 2, 3, "none", []),
    "fig6 w6 d9 k3": (6, 9, 3, "none", []),
    "fig7 w12 d3 k3 none": (12, 3, 3, "none", []),
    "fig7 w12 d3 k3 max2": (12, 3, 3, "max2", []),
    "fig8 w3 d5 k3 fc": (3, 5, 3, "none", [500, 1024, 500]),
}
results = {}
print(f"{'network':<22} {'epoch s':>8} {'eval s':>7} {'measure s':>10} {'CPU-h every':>12} {'CPU-h 1/50':>11}")
for name, (width, depth, kernel, pooling, fc) in NETWORKS.items():
    with tempfile.TemporaryDirectory() as tmp:
        job = os.path.join(tmp, "job.yaml")
        with open(job, "w") as f:
            f.write(f"dataset: mnist\nwidth: {width}\ndepth: {depth}\nkernel: {kernel}\npooling: {pooling}\nfc: {fc}\n"
                    "epochs: 4\neval_every: 2\nbatch_size: 1000\nmeasure: {epochs: [1], splits: [train, test]}\n")
        subprocess.run([worker, "run", job, "--out", os.path.join(tmp, "out"), "--threads", "1"], check=True, stderr=subprocess.DEVNULL)
        epochs = [json.loads(l) for l in open(os.path.join(tmp, "out", "epochs.jsonl"))]
    evaluated, plain = epochs[2]["seconds"], epochs[3]["seconds"]
    evaluation = max(evaluated - plain, 0.0)
    measure = max(epochs[1]["seconds"] - evaluated, 0.0)
    every = (10_000 * evaluated + 36 * measure) / 3600
    sparse = (10_000 * plain + 200 * evaluation + 36 * measure) / 3600
    results[name] = {"epoch_seconds": plain, "eval_seconds": evaluation, "measure_seconds": measure,
                     "job_cpu_hours_eval_every_1": every, "job_cpu_hours_eval_every_50": sparse}
    print(f"{name:<22} {plain:>8.2f} {evaluation:>7.2f} {measure:>10.2f} {every:>12.1f} {sparse:>11.1f}", flush=True)
print(json.dumps(results))

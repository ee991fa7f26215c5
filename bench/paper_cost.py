"""Measures the cost of every distinct network of the paper's figures (examples/fig*.yaml)
with a short `worker run`, and extrapolates to the full 10,000-epoch runs.

For each network: 2 epochs on MNIST 10k/10k, 1 libtorch thread, train and test measured
after epoch 1 only. Epoch 2's time is the cost of an unmeasured epoch (training plus the
test evaluation every epoch does); epoch 1 minus epoch 2 is the cost of one measurement.
A full job is 10,000 x unmeasured + 36 x measurement (the `paper` schedule).

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
print(f"{'network':<22} {'epoch s':>8} {'measure s':>10} {'job CPU-h':>10}")
for name, (width, depth, kernel, pooling, fc) in NETWORKS.items():
    with tempfile.TemporaryDirectory() as tmp:
        job = os.path.join(tmp, "job.yaml")
        with open(job, "w") as f:
            f.write(f"dataset: mnist\nwidth: {width}\ndepth: {depth}\nkernel: {kernel}\npooling: {pooling}\nfc: {fc}\n"
                    "epochs: 2\nbatch_size: 1000\nmeasure: {epochs: [1], splits: [train, test]}\n")
        subprocess.run([worker, "run", job, "--out", os.path.join(tmp, "out"), "--threads", "1"], check=True, stderr=subprocess.DEVNULL)
        epochs = [json.loads(l) for l in open(os.path.join(tmp, "out", "epochs.jsonl"))]
    plain = epochs[2]["seconds"]
    measure = max(epochs[1]["seconds"] - plain, 0.0)
    hours = (10_000 * plain + 36 * measure) / 3600
    results[name] = {"epoch_seconds": plain, "measure_seconds": measure, "job_cpu_hours": hours}
    print(f"{name:<22} {plain:>8.2f} {measure:>10.2f} {hours:>10.1f}", flush=True)
print(json.dumps(results))

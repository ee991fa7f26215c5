"""Side-by-side: `worker run` vs the paper's PyTorch + NumPy pipeline (bench/torch_pipeline.py).

Widest paper model (6 conv x 12, 3x3, tanh, MNIST 10k/10k), 2 epochs, train and test measured
after each epoch, same thread count on both sides. Prints per-epoch seconds, their ratio, and
the worker's peak RSS.

Usage: python training.py WORKER_BIN DATA_DIR THREADS
"""
import json, os, resource, subprocess, sys, tempfile

worker, data_dir, threads = sys.argv[1], sys.argv[2], sys.argv[3]
here = os.path.dirname(os.path.abspath(__file__))
job = """dataset: mnist
width: 12
depth: 6
kernel: 3
epochs: 2
seed: 0
batch_size: 1000
train_size: 10000
test_size: 10000
measure: {epochs: [1, 2], splits: [train, test], bin_sizes: [0.67]}
"""
with tempfile.TemporaryDirectory() as tmp:
    path = os.path.join(tmp, "job.yaml")
    with open(path, "w") as f:
        f.write(job)
    out = os.path.join(tmp, "out")
    subprocess.run([worker, "run", path, "--out", out, "--threads", threads, "--datasets", data_dir],
                   check=True, stderr=subprocess.DEVNULL)
    rss_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    ours = [json.loads(l) for l in open(os.path.join(out, "epochs.jsonl"))][1:]
    conv1 = [json.loads(l) for l in open(os.path.join(out, "mi.jsonl")) if '"conv1"' in l][0]["i_xt"]

theirs = [json.loads(l) for l in subprocess.run(
    [sys.executable, os.path.join(here, "torch_pipeline.py"), data_dir, "2", threads],
    check=True, capture_output=True, text=True).stdout.splitlines()]

print(f"widest paper model, MNIST 10k/10k, 2 epochs, train+test measured each epoch, {threads} threads")
print(f"{'epoch':>5} {'worker s':>9} {'PyTorch+NumPy s':>16} {'(train / measure)':>18} {'ratio':>6}")
for o, t in zip(ours, theirs):
    print(f"{o['epoch']:>5} {o['seconds']:>9.1f} {t['seconds']:>16.1f} {t['train_seconds']:>8.1f} / {t['measure_seconds']:<7.1f} {o['seconds'] / t['seconds']:>6.2f}x")
print(f"worker peak RSS: {rss_mb:.0f} MB")
print(f"conv1 I(X;T) after epoch 1: worker {conv1:.4f}, PyTorch {theirs[0]['conv1_i_xt']:.4f} bits")

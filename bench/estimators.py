"""`deploy/bench.sh estimators`: each kernel estimator of `worker estimate` side by side
with its NumPy port (bench/estimators_ref.py) on the same activations: M = 2,000 samples
(200 per class) of the widest paper layer (12 x 28 x 28 = 9,408 units, float32 as the
worker holds them), 784 input pixels, 256 projections. Ours is timed as a user runs it
(process start and reading the npy files included); the port only computes, in f64 as the
reference code does. Best of `REPEATS` runs each.

Usage: estimators.py WORKER_BINARY [THREADS]
"""

import json
import os
import subprocess
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import estimators_ref as ref  # noqa: E402

M, D, DX, P, K = 2000, 9408, 784, 256, 3
REPEATS = 2


def best(f):
    times = []
    for _ in range(REPEATS):
        t = time.perf_counter()
        out = f()
        times.append(time.perf_counter() - t)
    return min(times), out


def main():
    worker, threads = sys.argv[1], sys.argv[2] if len(sys.argv) > 2 else "2"
    rng = np.random.default_rng(2026)
    y = np.arange(M) % 10
    centres = rng.uniform(-1.5, 1.5, (10, D)).astype(np.float32)
    a = np.tanh(centres[y] + 0.8 * rng.normal(size=(M, D)).astype(np.float32)).astype(np.float32)
    x = (rng.uniform(size=(M, DX)) + 0.05 * y[:, None]).astype(np.float32)
    p = rng.normal(size=(D, P)).astype(np.float32)
    with tempfile.TemporaryDirectory() as tmp:
        paths = {name: os.path.join(tmp, f"{name}.npy") for name in "ayxp"}
        for name, arr in zip("ayxp", (a, y, x, p)):
            np.save(paths[name], arr)
        a64, x64, p64 = a.astype(np.float64), x.astype(np.float64), p.astype(np.float64)
        cases = [
            ("kde (v = 0.1)", ["--estimator", "kde", "--noise-variance", "0.1"],
             lambda: [ref.kde(a64, y, 0.1)]),
            ("renyi (alpha 1.01 and 2, median widths)",
             ["--estimator", "renyi", "--inputs", paths["x"], "--alpha", "1.01", "--alpha", "2"],
             lambda: [ref.renyi(a64, y, x64, ref.median_distance(a64), ref.median_distance(x64), al)
                      for al in (1.01, 2.0)]),
            (f"sliced ({P} projections, k = {K})",
             ["--estimator", "sliced", "--projections", paths["p"], "--k", str(K)],
             lambda: [ref.sliced(a64, y, p64, K)]),
        ]
        env = dict(os.environ, IBSWEEP_THREADS=threads, OMP_NUM_THREADS=threads)
        print(f"M = {M}, D = {D}, {threads} threads; seconds, best of {REPEATS}")
        print(f"{'estimator':<42} {'NumPy port':>10} {'ibsweep':>9} {'ratio':>7}  max |difference| (bits)")
        for name, args, port in cases:
            cmd = [worker, "estimate", "--activations", paths["a"], "--labels", paths["y"], "--json", *args]
            ours_s, out = best(lambda: subprocess.run(cmd, check=True, capture_output=True, env=env).stdout)
            ours = [json.loads(line) for line in out.decode().splitlines()]
            port_s, theirs = best(port)
            diff = max(abs(o[k] - t[k]) for o, t in zip(ours, theirs) for k in t if isinstance(t[k], float))
            print(f"{name:<42} {port_s:>10.2f} {ours_s:>9.2f} {port_s / ours_s:>6.2f}x  {diff:.1e}")


if __name__ == "__main__":
    main()

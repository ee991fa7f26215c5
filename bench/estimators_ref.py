"""NumPy ports of the reference estimators, for ibsweep's tests and benchmarks.

Each function follows its reference's arithmetic step by step (constants included), so a
test that agrees with it to 1e-6 bits checks ibsweep's cancelled forms too:

- kde: artemyk/ibsgd `kde.py` (entropy_estimator_kl, entropy_estimator_bd, kde_condentropy)
  and the MI arithmetic of its `MNIST_ComputeMI` notebook.
- renyi: uk-cliplab/representation-itl `matrix_itl.py` (generalizedInformationPotential,
  frobeniusGIP, matrixAlphaEntropy, matrixAlphaMutualInformation).
- sliced: shelvia-w/SMI-DNN `compute_smi` with `calc_ksg_mi_cd` and `entropy_c`. Two
  deliberate changes, both stated in ibsweep's docs: ties are floored at 1e-10 instead of
  broken with 1e-10 random noise (deterministic), and the projections are given.

Usage (one JSON object per parameter value, one per line, the keys of `worker estimate`):
  estimators_ref.py kde A.npy Y.npy V [V ...]
  estimators_ref.py renyi A.npy Y.npy X.npy SIGMA INPUT_SIGMA A [A ...]   (SIGMA may be `median`)
  estimators_ref.py sliced A.npy Y.npy P.npy K
"""

import json
import sys

import numpy as np

NATS2BITS = 1.0 / np.log(2)


def logsumexp(a, axis):
    m = np.max(a, axis=axis, keepdims=True)
    return np.squeeze(m, axis=axis) + np.log(np.sum(np.exp(a - m), axis=axis))


# ---- kde (ibsgd) ----

def get_dists(x):
    x2 = np.expand_dims(np.sum(np.square(x), axis=1), 1)
    return x2 + x2.T - 2 * np.dot(x, x.T)


def entropy_estimator_kl(x, var):
    dims, n = x.shape[1], x.shape[0]
    dists2 = get_dists(x) / (2 * var)
    normconst = (dims / 2.0) * np.log(2 * np.pi * var)
    lprobs = logsumexp(-dists2, axis=1) - np.log(n) - normconst
    return dims / 2 + (-np.mean(lprobs))


def entropy_estimator_bd(x, var):
    dims = x.shape[1]
    return entropy_estimator_kl(x, 4 * var) + np.log(0.25) * dims / 2


def kde_condentropy(x, var):
    dims = x.shape[1]
    return (dims / 2.0) * (np.log(2 * np.pi * var) + 1)


def kde(x, y, var):
    labels = np.unique(y)
    labelprobs = np.array([np.mean(y == c) for c in labels])
    h_upper = entropy_estimator_kl(x, var)
    h_lower = entropy_estimator_bd(x, var)
    h_given_x = kde_condentropy(x, var)
    h_given_y_upper = sum(p * entropy_estimator_kl(x[y == c], var) for c, p in zip(labels, labelprobs))
    h_given_y_lower = sum(p * entropy_estimator_bd(x[y == c], var) for c, p in zip(labels, labelprobs))
    return {
        "estimator": "kde", "noise_variance": var, "n": len(x),
        "i_xt_upper": NATS2BITS * (h_upper - h_given_x),
        "i_xt_lower": NATS2BITS * (h_lower - h_given_x),
        "i_yt_upper": NATS2BITS * (h_upper - h_given_y_upper),
        "i_yt_lower": NATS2BITS * (h_lower - h_given_y_lower),
    }


# ---- renyi (representation-itl) ----

def generalized_information_potential(k, alpha):
    if alpha == 2:
        return np.sum(np.power(k, 2)) / k.shape[0] ** 2  # frobeniusGIP (trace(K) = N)
    ek = np.linalg.eigh(k)[0]
    mek = ek[ek > 0.0]
    mek = mek / np.sum(mek)
    return np.sum(np.exp(alpha * np.log(mek)))


def matrix_alpha_entropy(k, alpha):
    return (1.0 / (1.0 - alpha)) * np.log(generalized_information_potential(k, alpha))


def gaussian_gram(x, sigma):
    return np.exp(-np.maximum(get_dists(x), 0.0) / (2 * sigma ** 2))


def median_distance(x):
    d = np.sqrt(np.maximum(get_dists(x), 0.0))
    return float(np.median(d[np.triu_indices(len(x), 1)]))


def alignment_sigma(t, y, n=300):
    """Wickstrom et al.'s AligmentOptimizer choice of a layer's width: the candidate whose
    kernel best aligns with the label kernel. Candidates as theirs (evenly spaced up to ten
    times the mean pairwise distance; theirs start at 0.1, ours at the grid step), with our
    kernel exp(-d / 2 sigma^2)."""
    d = np.maximum(get_dists(t), 0.0)
    mean = np.sqrt(d)[np.triu_indices(len(t), 1)].mean()
    ky = (y[:, None] == y[None, :]).astype(np.float64)
    sigmas = [10 * mean * i / n for i in range(1, n + 1)]
    alignment = [np.sum(k * ky) / (np.linalg.norm(k) * np.linalg.norm(ky))
                 for k in (np.exp(-d / (2 * s ** 2)) for s in sigmas)]
    return float(sigmas[int(np.argmax(alignment))])


def renyi(t, y, x, sigma, input_sigma, alpha):
    kt, kx = gaussian_gram(t, sigma), gaussian_gram(x, input_sigma)
    ky = (y[:, None] == y[None, :]).astype(np.float64)
    s_t, s_x, s_y = (matrix_alpha_entropy(k, alpha) for k in (kt, kx, ky))
    return {
        "estimator": "renyi", "alpha": alpha, "sigma": sigma, "input_sigma": input_sigma, "n": len(t),
        "s_t": NATS2BITS * s_t, "s_x": NATS2BITS * s_x, "s_y": NATS2BITS * s_y,
        "i_xt": NATS2BITS * (s_x + s_t - matrix_alpha_entropy(kx * kt, alpha)),
        "i_yt": NATS2BITS * (s_y + s_t - matrix_alpha_entropy(ky * kt, alpha)),
    }


# ---- sliced (SMI-DNN) ----

def digamma_int(n):
    return -np.euler_gamma + sum(1.0 / i for i in range(1, n))


def kth_neighbour_1d(z, k):
    """Distance to the k-th nearest other value: what the reference's KDTree query
    (k + 1 neighbours, self included) returns in one dimension. The k nearest of a point
    lie within k places of it in sorted order, so a window of 2k + 1 suffices."""
    order = np.argsort(z, kind="stable")
    s = z[order]
    n = len(s)
    padded = np.concatenate([np.full(k, -np.inf), s, np.full(k, np.inf)])
    window = padded[np.arange(n)[:, None] + np.arange(2 * k + 1)[None, :]]
    d = np.abs(window - s[:, None])
    d[:, k] = np.inf  # the point itself
    out = np.empty(n)
    out[order] = np.partition(d, k - 1, axis=1)[:, k - 1]
    return out


def entropy_c(z, k):
    # 1-D Kozachenko-Leonenko with the Chebyshev (= absolute) distance.
    n = len(z)
    nn = np.maximum(kth_neighbour_1d(z, k), 1e-10)
    return digamma_int(n) - digamma_int(k) + np.log(2) + np.log(nn).mean()


def calc_ksg_mi_cd(z, y, k):
    h = entropy_c(z, k)
    labels, counts = np.unique(y, return_counts=True)
    h_given_y = sum(c / len(y) * entropy_c(z[y == l], k) for l, c in zip(labels, counts))
    return abs(h - h_given_y)


def sliced(t, y, projections, k):
    mis = np.array([calc_ksg_mi_cd(t @ projections[:, p], y, k) for p in range(projections.shape[1])]) * NATS2BITS
    return {
        "estimator": "sliced", "projections": projections.shape[1], "k": k, "n": len(t),
        "i_yt": float(np.mean(mis)), "i_yt_stderr": float(np.std(mis, ddof=1) / np.sqrt(len(mis))),
    }


def main(argv):
    kind, a, labels = argv[0], argv[1], argv[2]
    t = np.load(a).astype(np.float64).reshape(len(np.load(a)), -1)
    y = np.load(labels).reshape(-1)
    if kind == "kde":
        rows = [kde(t, y, float(v)) for v in argv[3:]]
    elif kind == "renyi":
        x = np.load(argv[3]).astype(np.float64)
        x = x.reshape(len(x), -1)
        sigma = {"median": lambda: median_distance(t), "alignment": lambda: alignment_sigma(t, y)}.get(
            argv[4], lambda: float(argv[4]))()
        input_sigma = median_distance(x) if argv[5] == "median" else float(argv[5])
        rows = [renyi(t, y, x, sigma, input_sigma, float(al)) for al in argv[6:]]
    elif kind == "sliced":
        rows = [sliced(t, y, np.load(argv[3]).astype(np.float64), int(argv[4]))]
    else:
        raise SystemExit(f"unknown estimator {kind}")
    for row in rows:
        print(json.dumps({k: (float(v) if isinstance(v, np.floating) else v) for k, v in row.items()}))


if __name__ == "__main__":
    main(sys.argv[1:])

"""The paper's pipeline in PyTorch + NumPy, for side-by-side timing with `worker`.

Trains the widest paper model (6 conv x 12 channels, 3x3, tanh, MNIST 10k train / 10k test,
Adam 1e-3, batch 1000) and after each epoch measures every layer of both splits the way the
reference code does: keep each layer's activations for the whole split, `np.floor(h / 0.67)`,
unique rows (on a bytes view), and per-label unique rows for I(Y;T).

Usage: python torch_pipeline.py DATA_DIR EPOCHS THREADS   (prints one JSON line per epoch)
"""
import json, os, sys, time
import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

data_dir, epochs, threads = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
torch.set_num_threads(threads)
torch.manual_seed(0)

def idx(path, offset):
    with open(path, "rb") as f:
        return np.frombuffer(f.read(), dtype=np.uint8, offset=offset)

mnist = os.path.join(data_dir, "mnist")
train_x = idx(os.path.join(mnist, "train-images-idx3-ubyte"), 16).reshape(-1, 1, 28, 28)
train_y = idx(os.path.join(mnist, "train-labels-idx1-ubyte"), 8)
test_x = idx(os.path.join(mnist, "t10k-images-idx3-ubyte"), 16).reshape(-1, 1, 28, 28)
test_y = idx(os.path.join(mnist, "t10k-labels-idx1-ubyte"), 8)
rng = np.random.default_rng(0)
pick = rng.choice(len(train_y), 10000, replace=False)
xs = {"train": torch.tensor(train_x[pick] / 255.0, dtype=torch.float32), "test": torch.tensor(test_x / 255.0, dtype=torch.float32)}
ys = {"train": torch.tensor(train_y[pick], dtype=torch.int64), "test": torch.tensor(test_y, dtype=torch.int64)}

class Net(nn.Module):
    def __init__(self, width=12, depth=6, k=3):
        super().__init__()
        self.convs = nn.ModuleList()
        ch, side = 1, 28
        for i in range(depth):
            self.convs.append(nn.Conv2d(ch, width, k, padding=k // 2 if i == 0 else 0))
            ch = width
            if i > 0:
                side -= k - 1
        self.out = nn.Linear(width * side * side, 10)
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                nn.init.xavier_uniform_(m.weight)
                nn.init.zeros_(m.bias)

    def forward(self, x, keep=None):
        for conv in self.convs:
            x = torch.tanh(conv(x))
            if keep is not None:
                keep.append(x.flatten(1))
        logits = self.out(x.flatten(1))
        if keep is not None:
            keep.append(F.softmax(logits, dim=1))
        return logits

def entropy(counts):
    p = counts / counts.sum()
    return -(p * np.log2(p)).sum()

def mi(codes, labels):
    view = np.ascontiguousarray(codes).view(np.dtype((np.void, codes.dtype.itemsize * codes.shape[1])))
    _, counts = np.unique(view, return_counts=True)
    h_t = entropy(counts)
    h_t_y = 0.0
    for y in np.unique(labels):
        sel = view[labels == y]
        _, c = np.unique(sel, return_counts=True)
        h_t_y += len(sel) / len(labels) * entropy(c)
    return h_t, h_t - h_t_y

net = Net()
opt = torch.optim.Adam(net.parameters(), lr=1e-3)
for epoch in range(1, epochs + 1):
    start = time.perf_counter()
    perm = torch.randperm(10000)
    for b in range(0, 10000, 1000):
        i = perm[b:b + 1000]
        opt.zero_grad()
        loss = F.cross_entropy(net(xs["train"][i]), ys["train"][i])
        loss.backward()
        opt.step()
    trained = time.perf_counter()
    results = []
    for split in ("train", "test"):
        layers = None
        with torch.no_grad():
            for b in range(0, 10000, 1000):
                keep = []
                net(xs[split][b:b + 1000], keep)
                if layers is None:
                    layers = [[] for _ in keep]
                for store, act in zip(layers, keep):
                    store.append(act.numpy())
        labels = ys[split].numpy()
        for acts in layers:
            h = np.concatenate(acts)
            results.append(mi(np.floor(h / 0.67), labels))
    done = time.perf_counter()
    print(json.dumps({"epoch": epoch, "seconds": done - start, "train_seconds": trained - start, "measure_seconds": done - trained, "conv1_i_xt": results[0][0]}), flush=True)

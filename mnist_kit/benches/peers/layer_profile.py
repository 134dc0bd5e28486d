"""Per-layer profile of a PyTorch training step, to set beside `mnist-kit bench --profile`.

    THREADS=1 python mnist_kit/benches/peers/layer_profile.py <lenet5|resnet|mlp-61k|mlp-500-150> DIR [--json]

DIR holds the four raw (uncompressed) MNIST IDX files. The models are the ones of
../shared/peers/pytorch_bench.py (the kit's presets), with their layers named as the kit names
them (`conv1`, `pool1`, `stage2.0.bn1`, ...). Batch 64 (BATCH=N to change), Adam at 1e-3, 5
untimed steps and then STEPS=200 timed ones. Each layer's forward is timed by forward hooks
(pre-hook to hook); its backward by full backward hooks (from the gradient arriving at its
output to its input's gradient leaving), so a layer's backward includes its weight gradient.
The rest of the step is reported as `optimizer step`, `other forward` and `other backward`, as
the kit does. Milliseconds per batch.
"""
import json
import os
import sys
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

BATCH = int(os.environ.get("BATCH", 64))
STEPS = int(os.environ.get("STEPS", 200))
WARM = 5


def load(d):
    img = np.fromfile(f"{d}/train-images-idx3-ubyte", dtype=np.uint8)[16:].reshape(-1, 28, 28)
    lab = np.fromfile(f"{d}/train-labels-idx1-ubyte", dtype=np.uint8)[8:].astype(np.int64)
    return img, lab


class Pool(nn.Module):
    def forward(self, x):
        return F.max_pool2d(x, 2)


class ReLU(nn.Module):
    def forward(self, x):
        return F.relu(x)


class LeNet5(nn.Module):
    """Classic LeNet-5 on 32x32: the kit fuses ReLU into conv/fc, so ReLU counts with them."""
    side = 32

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Sequential(nn.Conv2d(1, 6, 5), ReLU())
        self.pool1 = Pool()
        self.conv2 = nn.Sequential(nn.Conv2d(6, 16, 5), ReLU())
        self.pool2 = Pool()
        self.conv3 = nn.Sequential(nn.Conv2d(16, 120, 5), ReLU())
        self.fc1 = nn.Sequential(nn.Linear(120, 84), ReLU())
        self.out = nn.Linear(84, 10)

    def forward(self, x):
        x = self.pool2(self.conv2(self.pool1(self.conv1(x))))
        return self.out(self.fc1(self.conv3(x).flatten(1)))


class Mlp(nn.Module):
    def __init__(self, dims, side):
        super().__init__()
        self.side = side
        self.names = [f"fc{i + 1}" for i in range(len(dims) - 2)] + ["out"]
        for i, n in enumerate(self.names):
            layer = nn.Linear(dims[i], dims[i + 1])
            setattr(self, n, layer if n == "out" else nn.Sequential(layer, ReLU()))

    def forward(self, x):
        x = x.flatten(1)
        for n in self.names:
            x = getattr(self, n)(x)
        return x


class Add(nn.Module):
    def forward(self, h, skip):
        return F.relu(h + skip)


class Block(nn.Module):
    def __init__(self, cin, cout, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.Sequential(nn.BatchNorm2d(cout), ReLU())
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.shortcut = self.shortcut_bn = None
        if stride != 1 or cin != cout:
            self.shortcut = nn.Conv2d(cin, cout, 1, stride, 0, bias=False)
            self.shortcut_bn = nn.BatchNorm2d(cout)
        self.add = Add()

    def forward(self, x):
        h = self.bn2(self.conv2(self.bn1(self.conv1(x))))
        skip = x if self.shortcut is None else self.shortcut_bn(self.shortcut(x))
        return self.add(h, skip)


class ResNet(nn.Module):
    side = 28

    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(1, 16, 3, 2, 1, bias=False)
        self.stem_bn = nn.Sequential(nn.BatchNorm2d(16), ReLU())
        self.stages = [("stage1.0", Block(16, 16, 1)), ("stage2.0", Block(16, 32, 2)),
                       ("stage3.0", Block(32, 64, 2))]
        for name, b in self.stages:
            self.add_module(name.replace(".", "_"), b)
        self.out = nn.Linear(64, 10)

    def forward(self, x):
        h = self.stem_bn(self.stem(x))
        for _, b in self.stages:
            h = b(h)
        return self.out(h.mean((2, 3)))


MODELS = {
    "lenet5": lambda: LeNet5(),
    "resnet": lambda: ResNet(),
    "mlp-61k": lambda: Mlp([1024, 48, 48, 48, 48, 48, 48, 10], 32),
    "mlp-500-150": lambda: Mlp([784, 500, 150, 10], 28),
}


def leaves(model):
    """The layers to time, named as the kit names them: (name, module)."""
    out = []
    for name, m in model.named_children():
        if isinstance(m, Block):
            out += [(f"{name.replace('_', '.')}.{c}", cm) for c, cm in m.named_children()]
        else:
            out.append((name, m))
    return out


def main():
    if len(sys.argv) < 3 or sys.argv[1] not in MODELS:
        sys.exit(__doc__)
    torch.set_num_threads(int(os.environ.get("THREADS", 2)))
    torch.manual_seed(0)
    img, lab = load(sys.argv[2])
    model = MODELS[sys.argv[1]]()
    side = model.side
    n = BATCH * (STEPS + WARM)
    x = np.zeros((n, 1, side, side), dtype=np.float32)
    pad = (side - 28) // 2
    x[:, 0, pad:pad + 28, pad:pad + 28] = (img[:n] / 255.0 - 0.1307) / 0.3081
    x, y = torch.from_numpy(x), torch.from_numpy(lab[:n])
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    fwd, bwd, started = {}, {}, {}
    timing = [False]

    def hooks(name, m):
        def pre(_m, _inp):
            started[("f", name)] = time.perf_counter()

        def post(_m, _inp, _out):
            if timing[0]:
                fwd[name] = fwd.get(name, 0.0) + time.perf_counter() - started[("f", name)]

        def bpre(_m, _gout):
            started[("b", name)] = time.perf_counter()

        def bpost(_m, _gin, _gout):
            if timing[0]:
                bwd[name] = bwd.get(name, 0.0) + time.perf_counter() - started[("b", name)]

        m.register_forward_pre_hook(pre)
        m.register_forward_hook(post)
        m.register_full_backward_pre_hook(bpre)
        m.register_full_backward_hook(bpost)

    named = leaves(model)
    for name, m in named:
        hooks(name, m)
    totals = [0.0, 0.0, 0.0]
    for s in range(STEPS + WARM):
        timing[0] = s >= WARM
        xb, yb = x[s * BATCH:(s + 1) * BATCH], y[s * BATCH:(s + 1) * BATCH]
        t0 = time.perf_counter()
        loss = F.cross_entropy(model(xb), yb)
        t1 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        t2 = time.perf_counter()
        opt.step()
        t3 = time.perf_counter()
        if timing[0]:
            totals[0] += t1 - t0
            totals[1] += t2 - t1
            totals[2] += t3 - t2
    per = 1e3 / STEPS
    rows = [{"name": n, "forward_ms": fwd.get(n, 0.0) * per, "backward_ms": bwd.get(n, 0.0) * per}
            for n, _ in named]
    lf = sum(r["forward_ms"] for r in rows)
    lb = sum(r["backward_ms"] for r in rows)
    rows += [{"name": "optimizer step", "forward_ms": 0.0, "backward_ms": totals[2] * per},
             {"name": "other forward", "forward_ms": max(0.0, totals[0] * per - lf), "backward_ms": 0.0},
             {"name": "other backward", "forward_ms": 0.0, "backward_ms": max(0.0, totals[1] * per - lb)}]
    step = sum(totals) * per
    for r in rows:
        r["share"] = (r["forward_ms"] + r["backward_ms"]) / step
    rows.sort(key=lambda r: -(r["forward_ms"] + r["backward_ms"]))
    if "--json" in sys.argv:
        print(json.dumps({"model": sys.argv[1], "batch_size": BATCH, "threads": torch.get_num_threads(),
                          "torch": torch.__version__, "step_ms": step, "layers": rows}))
        return
    print(f"PyTorch {torch.__version__}, {sys.argv[1]}, batch {BATCH}, {torch.get_num_threads()} threads: "
          f"{step:.3f} ms per step")
    print(f"{'layer':<22} {'forward ms':>11} {'backward ms':>12} {'share':>7}")
    for r in rows:
        print(f"{r['name']:<22} {r['forward_ms']:>11.3f} {r['backward_ms']:>12.3f} {100 * r['share']:>6.1f}%")


if __name__ == "__main__":
    main()

"""The `mnist-kit speedrun` recipe in PyTorch (CPU, eager), timed the same way: each run from
the start of the run to its last test prediction, data loading included; run 0 from process
start, so the interpreter and `import torch` count against it as the kit's start-up does.

usage: python speedrun.py DATA_DIR [SEEDS]    (DATA_DIR holds MNIST's four .gz IDX files, e.g.
       data/mnist; THREADS=N sets the thread count, default 2)

Recipe (mnist_kit::bench::speedrun::SpeedrunConfig::default()): LeNet-5 on 28x28 with
BatchNorm after each convolution, Adam (betas 0.9/0.999, eps 1e-8), batch 128, 2 epochs over
all 60,000 training images, one-cycle learning rate per step (peak 4e-3, cosine up from
peak/25 over the first 25 % of the steps, then cosine down to peak/1e4), label smoothing 0.1,
test predictions averaged over the image and its 1-pixel shifts left, right, up and down.
Prints one JSON line with the kit's field names."""
import time

PROCESS_START = time.perf_counter()

import gzip, json, math, os, statistics, sys  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn as nn  # noqa: E402
import torch.nn.functional as F  # noqa: E402

THREADS = int(os.environ.get("THREADS", 2))
torch.set_num_threads(THREADS)
EPOCHS, BATCH, PEAK, WARMUP, SMOOTH = 2, 128, 4e-3, 0.25, 0.1
SHIFTS = [(1, 0), (-1, 0), (0, 1), (0, -1)]
MEAN, STD = 0.1307, 0.3081


def idx(path, offset):
    with gzip.open(path, "rb") as f:
        return np.frombuffer(f.read(), dtype=np.uint8)[offset:]


def load(d):
    out = {}
    for split, prefix in (("train", "train"), ("test", "t10k")):
        img = idx(f"{d}/{prefix}-images-idx3-ubyte.gz", 16).reshape(-1, 28, 28)
        lab = idx(f"{d}/{prefix}-labels-idx1-ubyte.gz", 8).astype(np.int64)
        out[split] = (img, lab)
    return out


def normalize(img):
    return torch.from_numpy(((img.astype(np.float32) / 255.0 - MEAN) / STD)[:, None])


class Lenet28(nn.Module):
    def __init__(self):
        super().__init__()
        self.c1, self.b1 = nn.Conv2d(1, 6, 5), nn.BatchNorm2d(6)
        self.c2, self.b2 = nn.Conv2d(6, 16, 5), nn.BatchNorm2d(16)
        self.f0, self.f1, self.out = nn.Linear(256, 120), nn.Linear(120, 84), nn.Linear(84, 10)

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.b1(self.c1(x))), 2)
        x = F.max_pool2d(F.relu(self.b2(self.c2(x))), 2)
        x = F.relu(self.f0(x.flatten(1)))
        return self.out(F.relu(self.f1(x)))


def one_cycle(step, steps):
    """The kit's Schedule::OneCycle evaluated per step."""
    n = max(steps, 1)
    peak = max(round((n - 1) * WARMUP), 1)
    cos = lambda a, b, t: b + (a - b) * 0.5 * (1 + math.cos(math.pi * min(max(t, 0.0), 1.0)))
    if step <= peak:
        return cos(PEAK / 25, PEAK, step / peak)
    return cos(PEAK, PEAK / 1e4, (step - peak) / max((n - 1) - peak, 1))


def shifted(img, dx, dy):
    out = np.zeros_like(img)
    h, w = img.shape[1:]
    ys, yd = (slice(0, h - dy), slice(dy, h)) if dy >= 0 else (slice(-dy, h), slice(0, h + dy))
    xs, xd = (slice(0, w - dx), slice(dx, w)) if dx >= 0 else (slice(-dx, w), slice(0, w + dx))
    out[:, yd, xd] = img[:, ys, xs]
    return out


def run(start, data_dir, seed):
    data = load(data_dir)
    load_seconds = time.perf_counter() - start
    torch.manual_seed(seed)
    net = Lenet28()
    opt = torch.optim.Adam(net.parameters(), lr=PEAK / 25)
    x, y = normalize(data["train"][0]), torch.from_numpy(data["train"][1])
    per_epoch = math.ceil(len(y) / BATCH)
    steps = per_epoch * EPOCHS
    gen = torch.Generator().manual_seed(seed)
    t0 = time.perf_counter()
    net.train()
    for epoch in range(EPOCHS):
        order = torch.randperm(len(y), generator=gen)
        for b in range(per_epoch):
            i = order[b * BATCH:(b + 1) * BATCH]
            for g in opt.param_groups:
                g["lr"] = one_cycle(epoch * per_epoch + b, steps)
            loss = F.cross_entropy(net(x[i]), y[i], label_smoothing=SMOOTH)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    train_seconds = time.perf_counter() - t0
    net.eval()
    img, lab = data["test"]
    probs, plain = 0, None
    with torch.no_grad():
        for dx, dy in [(0, 0)] + SHIFTS:
            xt = normalize(shifted(img, dx, dy) if (dx, dy) != (0, 0) else img)
            p = torch.cat([F.softmax(net(xt[k:k + 1000]), 1) for k in range(0, len(lab), 1000)])
            probs = probs + p
            if plain is None:
                plain = (p.argmax(1).numpy() == lab).mean()
    acc = (probs.argmax(1).numpy() == lab).mean()
    return dict(seed=seed, test_accuracy=float(acc), plain_test_accuracy=float(plain),
                seconds=time.perf_counter() - start, load_seconds=load_seconds,
                train_seconds=train_seconds)


def main():
    data_dir = sys.argv[1]
    seeds = int(sys.argv[2]) if len(sys.argv) > 2 else 10
    runs = []
    for i in range(seeds):
        start = PROCESS_START if i == 0 else time.perf_counter()
        runs.append(run(start, data_dir, 2026 + i))
        print(json.dumps(runs[-1]), file=sys.stderr)
    secs = [r["seconds"] for r in runs]
    print(json.dumps({
        "mean_test_accuracy": statistics.mean(r["test_accuracy"] for r in runs),
        "per_seed": [r["test_accuracy"] for r in runs],
        "seconds_per_run": statistics.median(secs),
        "seeds": [r["seed"] for r in runs],
        "mean_plain_test_accuracy": statistics.mean(r["plain_test_accuracy"] for r in runs),
        "seconds": secs,
        "train_seconds_per_run": statistics.median(r["train_seconds"] for r in runs),
        "threads": THREADS,
        "peer": f"pytorch {torch.__version__}",
    }))


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""The PyTorch twin of `lesser bench`: the same networks, losses, optimizer, batches and
epochs, read from the same spec files, timed per round on one thread.

    python3 benches/peer/peer.py [--only NAME ...] [--epochs N] [--rounds N] [--specs DIR]

prints `variant,epochs,pairs,seconds_per_round,test_error` like `lesser bench`; with
`--flops`, `variant,epochs,gflop_per_round` instead: the multiply-adds of a round's
convolutions and linear layers, times 2 (training steps count forward and backward as three
forwards; every epoch evaluates the test pairs; the round ends evaluating training and test
pairs), so that seconds per round become GFLOP/s. A round is
what `lesser bench` times: draw 1,000 training and 1,000 test pairs, build the network,
train every epoch (shuffled batches) and measure the test error after each epoch (the
learning curve). Run by hand, never by CI (see benches/README.md).

Understands the spec keys the seed specs and bn_cnn use; a spec with grids, augmentation,
ensembles, schedules or the other training options is skipped (said on stderr) rather than
timed as something else.
"""

import argparse
import gzip
import pathlib
import statistics
import sys
import time
import tomllib

import numpy as np
import torch
from torch import nn
import torch.nn.functional as F

ROOT = pathlib.Path(__file__).resolve().parents[2]
UNSUPPORTED = ["augment", "repair", "ensemble", "tta", "schedule", "validation",
               "early_stopping", "label_smoothing"]


def load_spec(path):
    """A spec file with its `extends` chain merged: tables merge, anything else is replaced."""
    text = tomllib.loads(path.read_text())
    base = {}
    if "extends" in text:
        base = load_spec((path.parent / text["extends"]).resolve())
        base.pop("abstract", None)  # a file's own, not inherited

    def merge(a, b):
        out = dict(a)
        for k, v in b.items():
            out[k] = merge(a[k], v) if isinstance(v, dict) and isinstance(a.get(k), dict) else v
        return out

    return merge(base, text)


def idx(path):
    with gzip.open(path) as f:
        data = f.read()
    dims = data[3]
    shape = [int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(dims)]
    return np.frombuffer(data, np.uint8, offset=4 + 4 * dims).reshape(shape)


def pool(images):
    """28x28 bytes to 14x14 means, as `lesser` pools them."""
    x = images.astype(np.float32).reshape(-1, 14, 2, 14, 2)
    return x.mean(axis=(2, 4))


def draw_pairs(images, labels, n, rng):
    """`n` pairs drawn without replacement: (n, 2, 14, 14), targets c0 <= c1, classes."""
    pick = rng.choice(len(images), 2 * n, replace=False).reshape(n, 2)
    classes = labels[pick].astype(np.int64)
    return images[pick], (classes[:, 0] <= classes[:, 1]).astype(np.int64), classes


class Threshold(nn.Module):
    def __init__(self, threshold, value):
        super().__init__()
        self.t, self.v = threshold, value

    def forward(self, x):
        return F.threshold(x, self.t, self.v)


def build(stack, shape):
    """An nn.Sequential for a spec's layer list on inputs of `shape` ((C, H, W) or (F,))."""
    layers = []
    for l in stack:
        kind = l["layer"]
        if kind == "conv2d":
            k, s, p = l["kernel"], l.get("stride", 1), l.get("padding", 0)
            layers.append(nn.Conv2d(shape[0], l["out"], k, s, p))
            side = lambda n: (n + 2 * p - k) // s + 1
            shape = (l["out"], side(shape[1]), side(shape[2]))
        elif kind == "conv_transpose2d":
            k, s, p = l["kernel"], l.get("stride", 1), l.get("padding", 0)
            layers.append(nn.ConvTranspose2d(shape[0], l["out"], k, s, p))
            side = lambda n: (n - 1) * s - 2 * p + k
            shape = (l["out"], side(shape[1]), side(shape[2]))
        elif kind == "batch_norm":
            mod = nn.BatchNorm2d if len(shape) == 3 else nn.BatchNorm1d
            layers.append(mod(shape[0], eps=l.get("eps", 1e-5), momentum=l.get("momentum", 0.1)))
        elif kind in ("max_pool2d", "avg_pool2d"):
            k = l["kernel"]
            s = l.get("stride", k)
            layers.append((nn.MaxPool2d if kind == "max_pool2d" else nn.AvgPool2d)(k, s))
            shape = (shape[0], (shape[1] - k) // s + 1, (shape[2] - k) // s + 1)
        elif kind == "relu":
            layers.append(nn.ReLU())
        elif kind == "threshold":
            layers.append(Threshold(l["threshold"], l["value"]))
        elif kind == "dropout":
            layers.append(nn.Dropout(l["p"]))
        elif kind == "flatten":
            layers.append(nn.Flatten())
            shape = (int(np.prod(shape)),)
        elif kind == "linear":
            layers.append(nn.Linear(shape[0], l["out"]))
            shape = (l["out"],)
        else:
            raise SystemExit(f"peer.py: layer {kind!r} is not supported here")
    return nn.Sequential(*layers)


class Model(nn.Module):
    def __init__(self, m):
        super().__init__()
        self.m = m
        if m.get("topology", "digits") == "joint":
            self.joint = build(m["joint"], (2, 14, 14))
            return
        self.d0 = build(m["digit"], (1, 14, 14))
        self.d1 = self.d0 if m.get("weight_sharing", False) else build(m["digit"], (1, 14, 14))
        if m.get("compare", "learned") == "learned":
            self.head = build(m["head"], (20,))

    def forward(self, x):
        """Logits: (compare, reversed, digit0, digit1), any of them None."""
        if hasattr(self, "joint"):
            return self.joint(x), None, None, None
        b = x.shape[0]
        if self.d0 is self.d1:
            # One batch of 2B digits, interleaved, as `lesser` runs a shared network.
            d = self.d0(x.reshape(2 * b, 1, 14, 14)).reshape(b, 2, 10)
            d0, d1 = d[:, 0], d[:, 1]
        else:
            d0, d1 = self.d0(x[:, :1]), self.d1(x[:, 1:])
        if not hasattr(self, "head"):
            return None, None, d0, d1
        rev = self.head(torch.cat([d1, d0], 1)) if self.m.get("asymmetry", 0) > 0 else None
        return self.head(torch.cat([d0, d1], 1)), rev, d0, d1


def predict(out, compare):
    c, _, d0, d1 = out
    if c is not None:
        return c.argmax(1)
    if compare == "argmax":
        return (d0.argmax(1) <= d1.argmax(1)).long()
    p0, p1 = d0.softmax(1), d1.softmax(1)
    le = torch.triu(torch.ones(10, 10))  # i <= j
    return ((p0 @ le * p1).sum(1) > 0.5).long()


def round_time(spec, pools, epochs, seed):
    m, t = spec.get("model", {}), spec.get("train", {})
    start = time.perf_counter()
    rng = np.random.default_rng(seed)
    (tr_i, tr_l), (te_i, te_l) = pools
    xtr, ytr, ctr = draw_pairs(tr_i, tr_l, 1000, rng)
    xte, yte, _ = draw_pairs(te_i, te_l, 1000, rng)
    if t.get("normalize", "standardize") == "standardize":
        mu, sd = xtr.mean(), xtr.std()
    elif t.get("normalize") == "scale":
        mu, sd = 0.0, 255.0
    else:
        mu, sd = 0.0, 1.0
    xtr = torch.tensor((xtr - mu) / sd, dtype=torch.float32)
    xte = torch.tensor((xte - mu) / sd, dtype=torch.float32)
    ytr, ctr, yte = torch.tensor(ytr), torch.tensor(ctr), torch.tensor(yte)
    torch.manual_seed(seed)
    model = Model(m)
    o = t.get("optimizer", {})
    kind, lr, wd = o.get("kind", "adam"), o.get("lr", 1e-3), o.get("weight_decay", 0.0)
    betas = tuple(o.get("betas", (0.9, 0.999)))
    if kind == "adam":
        opt = torch.optim.Adam(model.parameters(), lr, betas, weight_decay=wd)
    elif kind == "adamw":
        opt = torch.optim.AdamW(model.parameters(), lr, betas, weight_decay=wd)
    else:
        opt = torch.optim.SGD(model.parameters(), lr, o.get("momentum", 0.0), weight_decay=wd)
    batch, compare = t.get("batch_size", 100), m.get("compare", "learned")
    aux, asym = m.get("aux_loss", 0.0), m.get("asymmetry", 0.0)
    err = None
    for _ in range(epochs):
        model.train()
        wrong = 0
        for b in torch.randperm(1000).split(batch):
            out = model(xtr[b])
            wrong += (predict(out, compare) != ytr[b]).sum().item()
            c, rev, d0, d1 = out
            loss = 0.0
            if c is not None:
                loss = loss + F.cross_entropy(c, ytr[b])
            if rev is not None:
                loss = loss + asym * F.cross_entropy(rev, (ctr[b, 1] <= ctr[b, 0]).long())
            if d0 is not None and aux > 0:
                loss = loss + aux * (F.cross_entropy(d0, ctr[b, 0]) + F.cross_entropy(d1, ctr[b, 1]))
            opt.zero_grad()
            loss.backward()
            opt.step()
        model.eval()
        with torch.no_grad():
            err = (predict(model(xte), compare) != yte).float().mean().item()
    return time.perf_counter() - start, err


def gflop_per_round(spec, epochs):
    """FLOPs of a round as the module docstring counts them, in GFLOP."""
    m = spec.get("model", {})
    model = Model(m)
    macs = [0]

    def count(mod, inp, out):
        if isinstance(mod, nn.Conv2d):
            k = mod.kernel_size[0] * mod.kernel_size[1]
            macs[0] += out.numel() * mod.in_channels * k
        elif isinstance(mod, nn.ConvTranspose2d):
            k = mod.kernel_size[0] * mod.kernel_size[1]
            macs[0] += inp[0].numel() * mod.out_channels * k
        elif isinstance(mod, nn.Linear):
            macs[0] += out.numel() * mod.in_features

    for mod in model.modules():
        mod.register_forward_hook(count)
    model.eval()
    with torch.no_grad():
        model(torch.zeros(1000, 2, 14, 14))
    forward = 2 * macs[0]  # FLOPs of one forward pass over 1,000 pairs
    return (epochs * (3 * forward + forward) + 2 * forward) / 1e9


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--specs", default=str(ROOT / "specs"))
    ap.add_argument("--data", default=str(ROOT / "data" / "mnist"))
    ap.add_argument("--only", nargs="*")
    ap.add_argument("--epochs", type=int)
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--flops", action="store_true")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    d = pathlib.Path(a.data)
    pools = [(pool(idx(d / f"{p}-images-idx3-ubyte.gz")), idx(d / f"{p}-labels-idx1-ubyte.gz"))
             for p in ("train", "t10k")]
    print("variant,epochs,gflop_per_round" if a.flops else
          "variant,epochs,pairs,seconds_per_round,test_error")
    for path in sorted(pathlib.Path(a.specs).glob("*.toml")):
        if a.only and path.stem not in a.only:
            continue
        spec = load_spec(path)
        if spec.get("abstract"):
            continue
        epochs = a.epochs or spec.get("train", {}).get("epochs", 25)
        skip = [k for k in UNSUPPORTED if k in spec.get("train", {})] + \
            (["grid"] if "grid" in spec else [])
        if skip:
            print(f"peer.py: skipped {path.stem}: {', '.join(skip)} not supported here",
                  file=sys.stderr)
            continue
        if a.flops:
            print(f"{path.stem},{epochs},{gflop_per_round(spec, epochs):.1f}", flush=True)
            continue
        runs = [round_time(spec, pools, epochs, seed) for seed in range(a.rounds)]
        secs = statistics.median(r[0] for r in runs)
        print(f"{path.stem},{epochs},1000,{secs:.3f},{runs[-1][1]:.4f}", flush=True)


if __name__ == "__main__":
    sys.exit(main())

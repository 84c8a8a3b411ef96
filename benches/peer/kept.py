#!/usr/bin/env python3
"""Loads a round's kept weights (`lesser run --keep-weights`) into the PyTorch twin of
`peer.py` and measures it on the test samples `lesser eval --save-samples` wrote: the same
network on the same inputs, so its test error is `lesser eval`'s.

    lesser eval VARIANT --round R --save-samples /tmp/samples.safetensors
    python3 benches/peer/kept.py specs/VARIANT.toml WEIGHTS.safetensors /tmp/samples.safetensors

WEIGHTS is the round's file in the store (`reports/.cache/rounds/*.safetensors`; its
metadata names the variant and round). Needs torch, numpy and safetensors; run by hand, never
by CI. Like `peer.py`, it understands the seed specs and bn_cnn, not ensembles or test-time
shifts.
"""

import pathlib
import sys

import torch
from safetensors import safe_open
from safetensors.torch import load_file

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from peer import Model, load_spec, predict  # noqa: E402

# lesser's stack names -> the twin's modules.
STACKS = {"digit": "d0", "second_digit": "d1", "head": "head", "joint": "joint"}


def main():
    spec_path, weights_path, samples_path = map(pathlib.Path, sys.argv[1:4])
    spec = load_spec(spec_path.resolve())
    m = spec.get("model", {})
    model = Model(m)
    with safe_open(str(weights_path), "pt") as f:
        meta = f.metadata() or {}
    kept = load_file(str(weights_path))
    state = {}
    for name, tensor in kept.items():
        stack, rest = name.split(".", 1)
        state[f"{STACKS[stack]}.{rest}"] = tensor
    missing, unexpected = model.load_state_dict(state, strict=False)
    # BatchNorm's batch counter is the only tensor lesser does not keep.
    missing = [k for k in missing if not k.endswith("num_batches_tracked")]
    # A shared digit network appears under d0 and d1 alike.
    missing = [k for k in missing if not (model.d1 is model.d0 and k.startswith("d1."))] \
        if hasattr(model, "d0") else missing
    if missing or unexpected:
        raise SystemExit(f"kept.py: missing {missing}, unexpected {unexpected}")
    samples = load_file(str(samples_path))
    x, target = samples["input"], samples["target"].long()
    model.eval()
    with torch.no_grad():
        pred = predict(model(x), m.get("compare", "learned"))
    wrong, n = int((pred != target).sum()), len(target)
    print(f"{meta.get('variant', '?')} round {meta.get('round', '?')}: test error "
          f"{100 * wrong / n:.1f}% ({wrong} of {n} samples wrong)")


if __name__ == "__main__":
    main()

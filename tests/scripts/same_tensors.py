#!/usr/bin/env python3
"""Compares two safetensors files (f32 tensors): same names and shapes, and every tensor within
REL of the reference in norm, ||a - b|| <= REL * ||b|| (+1e-30). Also compares two metrics.jsonl
files' per-step losses within REL. Exit 1 with one line per difference.
Usage: same_tensors.py REL A.safetensors B.safetensors [SUFFIX=REL2 ...]
       same_tensors.py REL --metrics A.jsonl B.jsonl
SUFFIX=REL2: tensors whose name ends in SUFFIX are held to REL2 instead."""
import array
import json
import math
import struct
import sys


def read(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        data = f.read()
    out = {}
    for name, t in header.items():
        if name == "__metadata__":
            continue
        assert t["dtype"] == "F32", f"{path}: {name} is {t['dtype']}"
        lo, hi = t["data_offsets"]
        values = array.array("f")
        values.frombytes(data[lo:hi])
        if sys.byteorder != "little":
            values.byteswap()
        out[name] = (tuple(t["shape"]), values)
    return out


def main():
    rel = float(sys.argv[1])
    bad = []
    if sys.argv[2] == "--metrics":
        a = [json.loads(l)["loss"] for l in open(sys.argv[3])]
        b = [json.loads(l)["loss"] for l in open(sys.argv[4])]
        if len(a) != len(b):
            bad.append(f"{len(a)} logged steps against {len(b)}")
        for i, (x, y) in enumerate(zip(a, b)):
            if abs(x - y) > rel * abs(y):
                bad.append(f"step {i + 1}: loss {x} against {y}")
    else:
        a, b = read(sys.argv[2]), read(sys.argv[3])
        loose = [arg.split("=") for arg in sys.argv[4:]]
        if sorted(a) != sorted(b):
            bad.append(f"tensor names differ: {sorted(set(a) ^ set(b))}")
        for name in sorted(set(a) & set(b)):
            (shape_a, va), (shape_b, vb) = a[name], b[name]
            if shape_a != shape_b:
                bad.append(f"{name}: shape {shape_a} against {shape_b}")
                continue
            diff = math.sqrt(math.fsum((x - y) ** 2 for x, y in zip(va, vb)))
            norm = math.sqrt(math.fsum(y * y for y in vb))
            limit = next((float(r) for suffix, r in loose if name.endswith(suffix)), rel)
            if not diff <= limit * norm + 1e-30:
                bad.append(f"{name}: |a - b| = {diff:.3g}, |b| = {norm:.3g}")
    for line in bad:
        print(line)
    sys.exit(1 if bad else 0)


main()

#!/usr/bin/env python3
"""Means over sampling seeds of the oracle hit rates in `xtask eval --out` files named
MODEL-SPLIT-sSEED.jsonl[.gz] (session 23's selection and confirmation runs):

    python3 docs/results/select-s23/summarise.py docs/results/select-s23
"""
import collections, glob, gzip, json, sys

rows = collections.defaultdict(list)
for path in sorted(glob.glob(sys.argv[1] + "/*.jsonl*")):
    name = path.split("/")[-1].split(".jsonl")[0]
    model, split, seed = name.rsplit("-", 2)
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rt") as f:
        summary = [json.loads(line) for line in f if line.strip()][-1]
    h = summary["hits"]
    rows[(model, split)].append(
        (seed, h["colour"], h["motion"], h["shape"], h["background"], summary["direction_agreement"])
    )
for (model, split), rs in sorted(rows.items()):
    n = len(rs)
    mean = [sum(r[i] for r in rs) / n for i in range(1, 6)]
    objects = sum(mean[:3]) / 3
    print(
        f"{model:8s} {split:5s} seeds {n}: colour {mean[0]:.3f} motion {mean[1]:.3f} shape {mean[2]:.3f} "
        f"background {mean[3]:.2f} | mean of the three {objects:.3f} | direction {mean[4]:.3f}"
    )

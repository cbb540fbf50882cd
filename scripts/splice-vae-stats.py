#!/usr/bin/env python3
"""Writes a VAE checkpoint whose weights come from one semgen `wan_vae` file and whose latent
statistics (`latents_mean`, `latents_std` in the `semgen.config` metadata) come from another.
Session 18 used it to put the phase-5 decoder (runs/s18/dec-p5, the shipped statistics) under the
fresh-pool stage 2 (runs/s18/ref-ship-fresh, statistics measured on its 2048-clip pool):

    python3 scripts/splice-vae-stats.py runs/s18/dec-p5/vae.safetensors \
        runs/s18/ref-ship-fresh/vae.safetensors OUT.safetensors
"""
import json, os, struct, sys

def read(path):
    b = open(path, "rb").read()
    n = struct.unpack("<Q", b[:8])[0]
    return json.loads(b[8:8 + n]), b[8 + n:]

weights, stats, out = sys.argv[1:4]
header, body = read(weights)
source, _ = read(stats)
config = json.loads(header["__metadata__"]["semgen.config"])
other = json.loads(source["__metadata__"]["semgen.config"])
if any(config[k] != other[k] for k in config if k not in ("latents_mean", "latents_std")):
    sys.exit("the two files hold different VAE architectures")
config["latents_mean"], config["latents_std"] = other["latents_mean"], other["latents_std"]
header["__metadata__"]["semgen.config"] = json.dumps(config, separators=(",", ":"))
h = json.dumps(header, separators=(",", ":")).encode()
h += b" " * ((8 - len(h) % 8) % 8)
tmp = out + ".tmp"
with open(tmp, "wb") as f:
    f.write(struct.pack("<Q", len(h)) + h + body)
os.replace(tmp, out)

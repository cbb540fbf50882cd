#!/usr/bin/env bash
# Assembles a model folder from training runs (see docs/training.md):
#   scripts/assemble-model.sh ENCODER_RUN REFINER_RUN SEMANTIC_RUN OUT_DIR
# SEMANTIC_RUN '-' assembles a baseline (a refiner without semantic tokens needs no stage 1).
# The refiner run holds the VAE with the latent statistics the refiner was trained on.
set -euo pipefail
enc=$1; ref=$2; sem=$3; out=$4
root=$(cd "$(dirname "$0")/.." && pwd)
tmp=$(mktemp -d "$(dirname "$out")/.assemble.XXXXXX")
chmod 755 "$tmp"
trap 'rm -rf "$tmp"' ERR
cp "$ref/vae.safetensors" "$ref/refiner.safetensors" "$ref/compressor.safetensors" "$tmp/"
cp "$enc/semantic_encoder.safetensors" "$enc/text_encoder.safetensors" "$tmp/"
[ "$sem" = "-" ] || cp "$sem/semantic_dit.safetensors" "$tmp/"
cp "$root/semgen-encoder/assets/shapes-tokenizer.json" "$tmp/tokenizer.json"
python3 - "$tmp" "$enc" "$ref" "$sem" "$root/configs/shapes-small/model.json" <<'PY'
import json, sys
tmp, enc, ref, sem, base = sys.argv[1:]
settings = json.load(open(base))
def last(run):
    try:
        rows = [json.loads(l) for l in open(f"{run}/train_log.jsonl")]
        return rows[-1]
    except Exception:
        return None
settings["provenance"] = {"refiner_run": last(ref), "semantic_run": last(sem)}
try:
    settings["provenance"]["encoder_metrics"] = json.load(open(f"{enc}/metrics.json"))[-1]
except Exception:
    pass
json.dump(settings, open(f"{tmp}/model.json", "w"), indent=2)
PY
rm -rf "$out.old"; [ -d "$out" ] && mv "$out" "$out.old"
mv "$tmp" "$out"; rm -rf "$out.old"
echo "assembled $out"

#!/usr/bin/env bash
# Retrains the shipped Shapes model after the encoder (runs/encoder): the VAE in two phases
# (image, then inflated to video), the refiner + compression MLP on the new latents, the
# semantic generator on the new z_sem, assembles checkpoints/shapes-small, fine-tunes the
# assembled VAE's decoder (encoder frozen: the latents stage 2 learned stay the same), fine-tunes
# stage 2 with the object cells weighted up and retrains stage 1 on its MLP, fine-tunes the decoder
# once more (object pixels weighted 20x, fresh clips; session 15), and evaluates; then trains and
# evaluates the VAE-space baseline on the result (Base-CT-Swin with the same recipe; session 18).
# Each step logs to runs/<name>.log. See docs/training.md and docs/vae.md.
#   scripts/retrain-shapes-small.sh [FIRST_STEP]   (vae-image | vae | refiner | semantic | assemble | decoder | objects | decoder-objects | eval | baseline)
# The decoder step starts from checkpoints/shapes-small/vae.safetensors, so run it once per assembly;
# the objects step starts from runs/refiner and runs/vae-decoder; decoder-objects from the
# decoder step's VAE installed in checkpoints/shapes-small.
# VAE_RESUME=--resume continues an interrupted video phase in runs/vae.
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p runs
x=target/release/xtask
first=${1:-vae-image}
started=false
step() { [ "$1" = "$first" ] && started=true; $started; }
if step vae-image; then
  $x train vae --config semgen-vae/configs/shapes-small-image.toml --out runs/vae-image > runs/vae-image.log 2>&1
fi
if step vae; then
  $x train vae --config semgen-vae/configs/shapes-small.toml --out runs/vae ${VAE_RESUME:-} >> runs/vae.log 2>&1
  $x eval-vae --checkpoint runs/vae/vae.safetensors --count 32 > runs/vae-eval.log 2>&1
fi
if step refiner; then
  $x train refiner --config configs/shapes-small/refiner.toml --out runs/refiner > runs/refiner.log 2>&1
fi
if step semantic; then
  $x train semantic --config configs/shapes-small/semantic.toml --out runs/semantic > runs/semantic.log 2>&1
fi
if step assemble; then
  scripts/assemble-model.sh runs/encoder runs/refiner runs/semantic checkpoints/shapes-small
fi
if step decoder; then
  $x train vae --config semgen-vae/configs/shapes-small-decoder.toml --out runs/vae-decoder > runs/vae-decoder.log 2>&1
  cp runs/vae-decoder/vae.safetensors checkpoints/shapes-small/.vae.safetensors.tmp
  mv checkpoints/shapes-small/.vae.safetensors.tmp checkpoints/shapes-small/vae.safetensors
  python3 - <<'PY'
import json, os, struct
p = "checkpoints/shapes-small/model.json"
m = json.load(open(p))
f = open("checkpoints/shapes-small/vae.safetensors", "rb")
meta = json.loads(f.read(struct.unpack("<Q", f.read(8))[0]))["__metadata__"]
m.setdefault("provenance", {})["vae_decoder_run"] = {
    "config": "semgen-vae/configs/shapes-small-decoder.toml", "step": int(meta["semgen.step"])}
json.dump(m, open(p + ".tmp", "w"), indent=2)
os.replace(p + ".tmp", p)
PY
  $x eval-vae --checkpoint checkpoints/shapes-small/vae.safetensors --count 32 > runs/vae-decoder-eval.log 2>&1
fi
if step objects; then
  # Stage 2 fine-tuned with object cells weighted up (1000 steps, then 2000 with the compression
  # MLP frozen), stage 1 retrained on the fine-tuned MLP; installed into the assembled model.
  $x train refiner --config configs/shapes-small/refiner-objects.toml --out runs/refiner-objects > runs/refiner-objects.log 2>&1
  $x train semantic --config configs/shapes-small/semantic-objects.toml --out runs/semantic-objects > runs/semantic-objects.log 2>&1
  $x train refiner --config configs/shapes-small/refiner-objects-frozen.toml --out runs/refiner-objects-frozen > runs/refiner-objects-frozen.log 2>&1
  for f in refiner compressor; do
    cp runs/refiner-objects-frozen/$f.safetensors checkpoints/shapes-small/.$f.safetensors.tmp
    mv checkpoints/shapes-small/.$f.safetensors.tmp checkpoints/shapes-small/$f.safetensors
  done
  cp runs/semantic-objects/semantic_dit.safetensors checkpoints/shapes-small/.semantic_dit.safetensors.tmp
  mv checkpoints/shapes-small/.semantic_dit.safetensors.tmp checkpoints/shapes-small/semantic_dit.safetensors
  python3 - <<'PY'
import json, os
p = "checkpoints/shapes-small/model.json"
m = json.load(open(p))
last = lambda run: [json.loads(l) for l in open(f"{run}/train_log.jsonl")][-1]
prov = m.setdefault("provenance", {})
prov["refiner_objects_runs"] = {
    "configs": ["configs/shapes-small/refiner-objects.toml", "configs/shapes-small/refiner-objects-frozen.toml"],
    "last": [last("runs/refiner-objects"), last("runs/refiner-objects-frozen")]}
prov["semantic_run"] = dict(last("runs/semantic-objects"), config="configs/shapes-small/semantic-objects.toml")
json.dump(m, open(p + ".tmp", "w"), indent=2)
os.replace(p + ".tmp", p)
PY
fi
if step decoder-objects; then
  $x train vae --config semgen-vae/configs/shapes-small-decoder-objects.toml --out runs/vae-decoder-objects > runs/vae-decoder-objects.log 2>&1
  cp runs/vae-decoder-objects/vae.safetensors checkpoints/shapes-small/.vae.safetensors.tmp
  mv checkpoints/shapes-small/.vae.safetensors.tmp checkpoints/shapes-small/vae.safetensors
  python3 - <<'PY2'
import json, os
p = "checkpoints/shapes-small/model.json"
m = json.load(open(p))
m.setdefault("provenance", {})["vae_decoder_run"] = {
    "config": "semgen-vae/configs/shapes-small-decoder-objects.toml", "step": 1500,
    "started_from": {"config": "semgen-vae/configs/shapes-small-decoder.toml", "step": 1000}}
json.dump(m, open(p + ".tmp", "w"), indent=2)
os.replace(p + ".tmp", p)
PY2
  $x eval-vae --checkpoint checkpoints/shapes-small/vae.safetensors --count 32 > runs/vae-decoder-objects-eval.log 2>&1
fi
if step eval; then
  $x eval --checkpoint checkpoints/shapes-small --count 100 --source vae --out docs/results/pipeline-vae-ceiling.jsonl > runs/eval-vae.log 2>&1
  $x eval --checkpoint checkpoints/shapes-small --count 100 --out docs/results/pipeline-generated.jsonl > runs/eval-generated.log 2>&1
  $x eval --checkpoint checkpoints/shapes-small --count 100 --source real --out docs/results/pipeline-real.jsonl > runs/eval-real.log 2>&1
  $x eval --checkpoint checkpoints/shapes-small --count 100 --source swapped --out docs/results/pipeline-swapped.jsonl > runs/eval-swapped.log 2>&1
fi
if step baseline; then
  # The baseline's three phases mirror refiner.toml, refiner-objects.toml and
  # refiner-objects-frozen.toml on the shipped VAE and text encoder (docs/training.md).
  for c in baseline baseline-objects baseline-objects-2; do
    $x train refiner --config configs/shapes-small/$c.toml --out runs/$c > runs/$c.log 2>&1
  done
  scripts/assemble-model.sh checkpoints/shapes-small runs/baseline-objects-2 - runs/model-baseline
  $x eval --checkpoint runs/model-baseline --count 100 --out docs/results/pipeline-baseline.jsonl > runs/eval-baseline.log 2>&1
fi
echo "retrained from $first"

#!/usr/bin/env bash
# Retrains the shipped Shapes model (docs/training.md), in two parts.
#
# v1 (the model shipped until session 22, kept in checkpoints/shapes-small-v1): after the encoder
# (runs/encoder), the VAE in two phases (image, then inflated to video), the refiner +
# compression MLP on the new latents, the semantic generator on the new z_sem, assembly into
# checkpoints/shapes-small-v1, the assembled VAE's decoder fine-tuned (encoder frozen: the
# latents stage 2 learned stay the same), stage 2 fine-tuned with the object cells weighted up
# and stage 1 retrained on its MLP, the decoder fine-tuned once more (object pixels weighted
# 20x, fresh clips; session 15), evaluations; then the VAE-space baseline on the result
# (Base-CT-Swin with the same recipe; session 18).
#
# v2 (shipped in session 23, kept in checkpoints/shapes-small-v2): v1's stage 2 moved onto the
# session-14 semantic encoder (checkpoints/encoder-next, docs/encoder.md) with a fresh
# compression MLP, trained on the posterior mean (configs/shapes-small/v2/01-07), a stage 1 on
# that MLP trained on clips and whole stories (08-11), v1's VAE decoder fine-tuned a fifth time
# (12) under stage 2's latent statistics, assembly into checkpoints/shapes-small-v2, evaluations.
#
# v3 (shipped in sessions 24-26): v2's stage 2 one round further on
# fresh clips (configs/shapes-small/v3/01), v2's decoder spliced under its latent statistics,
# assembled with v2's encoders and stage 1 into checkpoints/shapes-small, evaluations.
#
# v4 (shipped in session 27): v3 with its stage 1 (v2's) trained two
# rounds further on fresh clips and stories (configs/shapes-small/v4/01-02); needs the v3 step's
# run folder. v3 is v4 with checkpoints/shapes-small-v2/semantic_dit.safetensors.
#
# v5 (shipped since session 28, checkpoints/shapes-small): v4 with its stage 1 given a text
# refiner trained by its attribute loss, rounds on fresh clips and stories
# (configs/shapes-small/v5); needs the v3 and v4 steps' run folders.
#
# v6 (shipped since session 30, checkpoints/shapes-small): v5 with its VAE decoder fine-tuned on
# single frames and then re-fitted to video (configs/shapes-small/v6/01-02; decoder only, so the
# latents and stages 1 and 2 stay v5's); needs v5 in checkpoints/shapes-small. v5 is v6 with
# checkpoints/shapes-small-v5/vae.safetensors.
#
# v7 (shipped since session 31, checkpoints/shapes-small): v6 with its VAE decoder trained one more
# round the same way, single frames and then video, each schedule run to its end
# (configs/shapes-small/v7/01-02; decoder only); needs v6 in checkpoints/shapes-small. v6 is v7
# with checkpoints/shapes-small-v6/vae.safetensors.
#
# Each step logs to runs/<name>.log. See docs/training.md and docs/vae.md.
#   scripts/retrain-shapes-small.sh [FIRST_STEP]   (vae-image | vae | refiner | semantic | assemble | decoder | objects | decoder-objects | eval | baseline | v2 | v2-eval | v3 | v3-eval | v4 | v4-eval | v5 | v5-eval | v6 | v6-eval | v7 | v7-eval)
# The decoder step starts from checkpoints/shapes-small-v1/vae.safetensors, so run it once per
# assembly; the objects step starts from runs/refiner and runs/vae-decoder; decoder-objects from
# the decoder step's VAE installed in checkpoints/shapes-small-v1.
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
  scripts/assemble-model.sh runs/encoder runs/refiner runs/semantic checkpoints/shapes-small-v1
fi
if step decoder; then
  $x train vae --config semgen-vae/configs/shapes-small-decoder.toml --out runs/vae-decoder > runs/vae-decoder.log 2>&1
  cp runs/vae-decoder/vae.safetensors checkpoints/shapes-small-v1/.vae.safetensors.tmp
  mv checkpoints/shapes-small-v1/.vae.safetensors.tmp checkpoints/shapes-small-v1/vae.safetensors
  python3 - <<'PY'
import json, os, struct
p = "checkpoints/shapes-small-v1/model.json"
m = json.load(open(p))
f = open("checkpoints/shapes-small-v1/vae.safetensors", "rb")
meta = json.loads(f.read(struct.unpack("<Q", f.read(8))[0]))["__metadata__"]
m.setdefault("provenance", {})["vae_decoder_run"] = {
    "config": "semgen-vae/configs/shapes-small-decoder.toml", "step": int(meta["semgen.step"])}
json.dump(m, open(p + ".tmp", "w"), indent=2)
os.replace(p + ".tmp", p)
PY
  $x eval-vae --checkpoint checkpoints/shapes-small-v1/vae.safetensors --count 32 > runs/vae-decoder-eval.log 2>&1
fi
if step objects; then
  # Stage 2 fine-tuned with object cells weighted up (1000 steps, then 2000 with the compression
  # MLP frozen), stage 1 retrained on the fine-tuned MLP; installed into the assembled model.
  $x train refiner --config configs/shapes-small/refiner-objects.toml --out runs/refiner-objects > runs/refiner-objects.log 2>&1
  $x train semantic --config configs/shapes-small/semantic-objects.toml --out runs/semantic-objects > runs/semantic-objects.log 2>&1
  $x train refiner --config configs/shapes-small/refiner-objects-frozen.toml --out runs/refiner-objects-frozen > runs/refiner-objects-frozen.log 2>&1
  for f in refiner compressor; do
    cp runs/refiner-objects-frozen/$f.safetensors checkpoints/shapes-small-v1/.$f.safetensors.tmp
    mv checkpoints/shapes-small-v1/.$f.safetensors.tmp checkpoints/shapes-small-v1/$f.safetensors
  done
  cp runs/semantic-objects/semantic_dit.safetensors checkpoints/shapes-small-v1/.semantic_dit.safetensors.tmp
  mv checkpoints/shapes-small-v1/.semantic_dit.safetensors.tmp checkpoints/shapes-small-v1/semantic_dit.safetensors
  python3 - <<'PY'
import json, os
p = "checkpoints/shapes-small-v1/model.json"
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
  cp runs/vae-decoder-objects/vae.safetensors checkpoints/shapes-small-v1/.vae.safetensors.tmp
  mv checkpoints/shapes-small-v1/.vae.safetensors.tmp checkpoints/shapes-small-v1/vae.safetensors
  python3 - <<'PY2'
import json, os
p = "checkpoints/shapes-small-v1/model.json"
m = json.load(open(p))
m.setdefault("provenance", {})["vae_decoder_run"] = {
    "config": "semgen-vae/configs/shapes-small-decoder-objects.toml", "step": 1500,
    "started_from": {"config": "semgen-vae/configs/shapes-small-decoder.toml", "step": 1000}}
json.dump(m, open(p + ".tmp", "w"), indent=2)
os.replace(p + ".tmp", p)
PY2
  $x eval-vae --checkpoint checkpoints/shapes-small-v1/vae.safetensors --count 32 > runs/vae-decoder-objects-eval.log 2>&1
fi
if step eval; then
  $x eval --checkpoint checkpoints/shapes-small-v1 --count 100 --source vae --out docs/results/pipeline-vae-ceiling.jsonl > runs/eval-vae.log 2>&1
  $x eval --checkpoint checkpoints/shapes-small-v1 --count 100 --out docs/results/pipeline-generated.jsonl > runs/eval-generated.log 2>&1
  $x eval --checkpoint checkpoints/shapes-small-v1 --count 100 --source real --out docs/results/pipeline-real.jsonl > runs/eval-real.log 2>&1
  $x eval --checkpoint checkpoints/shapes-small-v1 --count 100 --source swapped --out docs/results/pipeline-swapped.jsonl > runs/eval-swapped.log 2>&1
fi
if step baseline; then
  # The baseline's three phases mirror refiner.toml, refiner-objects.toml and
  # refiner-objects-frozen.toml on the shipped VAE and text encoder (docs/training.md).
  for c in baseline baseline-objects baseline-objects-2; do
    $x train refiner --config configs/shapes-small/$c.toml --out runs/$c > runs/$c.log 2>&1
  done
  scripts/assemble-model.sh checkpoints/shapes-small-v1 runs/baseline-objects-2 - runs/model-baseline
  $x eval --checkpoint runs/model-baseline --count 100 --out docs/results/pipeline-baseline.jsonl > runs/eval-baseline.log 2>&1
fi
if step v2; then
  # Stage 2 on the session-14 encoder: phase 1 moves v1's refiner onto it with a fresh MLP that
  # learns; every later phase keeps that MLP frozen (stage 1 learns its space), on the posterior
  # mean; phases 5-7 each on 2048 fresh clips. Stage 1 on phase 1's MLP: clips, then clips and
  # whole stories. Then v1's decoder once more (encoder frozen) under phase 7's statistics.
  # Every file of configs/shapes-small/v2 in order, its kind in its name (as the chain test
  # reads them); the last refiner run's statistics go under the last decoder, then assembly.
  mkdir -p runs/v2
  for f in configs/shapes-small/v2/*.toml; do
    n=$(basename "$f" .toml)
    case $n in
      *-refiner-*) kind=refiner ;; *-semantic-*) kind=semantic ;; *-vae-*) kind=vae ;;
      *) echo "unknown step $n" >&2; exit 1 ;;
    esac
    $x train $kind --config "$f" --out runs/v2/$n > runs/v2/$n.log 2>&1
  done
  last() { basename "$(ls configs/shapes-small/v2/*-$1-*.toml | tail -n 1)" .toml; }
  ref=runs/v2/$(last refiner)
  python3 scripts/splice-vae-stats.py runs/v2/$(last vae)/vae.safetensors $ref/vae.safetensors $ref/vae.safetensors
  scripts/assemble-model.sh checkpoints/encoder-next $ref runs/v2/$(last semantic) checkpoints/shapes-small-v2
fi
# The standard table of a model (docs/results.md): MODEL_DIR RESULTS_DIR LOG_DIR.
tables() {
  $x eval --checkpoint $1 --count 100 --source vae --out $2/pipeline-vae-ceiling.jsonl > $3/eval-vae.log 2>&1
  for k in generated real swapped; do
    $x eval --checkpoint $1 --count 100 --source $k --out $2/pipeline-$k.jsonl > $3/eval-$k.log 2>&1
  done
}
if step v2-eval; then
  tables checkpoints/shapes-small-v2 docs/results/v2 runs/v2
fi
if step v3; then
  mkdir -p runs/v3
  $x train refiner --config configs/shapes-small/v3/01-refiner-fresh4.toml --out runs/v3/01-refiner-fresh4 > runs/v3/01-refiner-fresh4.log 2>&1
  ref=runs/v3/01-refiner-fresh4
  python3 scripts/splice-vae-stats.py checkpoints/shapes-small-v2/vae.safetensors $ref/vae.safetensors $ref/vae.safetensors
  # v2's folder serves as encoder and stage-1 "run": assembly takes its files as they are.
  scripts/assemble-model.sh checkpoints/shapes-small-v2 $ref checkpoints/shapes-small-v2 checkpoints/shapes-small
fi
if step v3-eval; then
  tables checkpoints/shapes-small docs/results/v3 runs/v3
fi
if step v4; then
  # Stage 1 two rounds further from v2's (= v3's) on fresh worlds, assembled with the v3 step's
  # stage 2 and VAE and v2's encoders, over the v3 folder.
  mkdir -p runs/v4
  for n in 01-semantic-fresh9 02-semantic-fresh10; do
    $x train semantic --config configs/shapes-small/v4/$n.toml --out runs/v4/$n > runs/v4/$n.log 2>&1
  done
  scripts/assemble-model.sh checkpoints/shapes-small-v2 runs/v3/01-refiner-fresh4 runs/v4/02-semantic-fresh10 checkpoints/shapes-small
fi
if step v4-eval; then
  tables checkpoints/shapes-small docs/results/v4 runs/v4
fi
if step v5; then
  # v4's stage 1 with a text refiner trained by its attribute loss, rounds on fresh worlds
  # (configs/shapes-small/v5, in order), assembled like v4; needs the v3 and v4 steps' runs.
  mkdir -p runs/v5
  last=
  for c in configs/shapes-small/v5/*.toml; do
    n=$(basename "$c" .toml)
    $x train semantic --config "$c" --out runs/v5/$n > runs/v5/$n.log 2>&1
    last=runs/v5/$n
  done
  scripts/assemble-model.sh checkpoints/shapes-small-v2 runs/v3/01-refiner-fresh4 "$last" checkpoints/shapes-small
fi
if step v5-eval; then
  tables checkpoints/shapes-small docs/results/v5 runs/v5
fi
if step v6; then
  # Two decoder-only phases from v5's VAE (still frames, then 9-frame clips), installed in place
  # of v5's vae.safetensors (same encoder, latents and statistics).
  mkdir -p runs/v6
  for n in 01-vae-decoder-p6-image 02-vae-decoder-p6-video; do
    $x train vae --config configs/shapes-small/v6/$n.toml --out runs/v6/$n > runs/v6/$n.log 2>&1
  done
  cp runs/v6/02-vae-decoder-p6-video/vae.safetensors checkpoints/shapes-small/vae.safetensors
fi
if step v6-eval; then
  tables checkpoints/shapes-small docs/results/v6 runs/v6
fi
if step v7; then
  # v6's two decoder-only phases once more from v6's VAE, installed in place of its
  # vae.safetensors (same encoder, latents and statistics).
  mkdir -p runs/v7
  for n in 01-vae-decoder-p7-image 02-vae-decoder-p7-video; do
    $x train vae --config configs/shapes-small/v7/$n.toml --out runs/v7/$n > runs/v7/$n.log 2>&1
  done
  cp runs/v7/02-vae-decoder-p7-video/vae.safetensors checkpoints/shapes-small/vae.safetensors
fi
if step v7-eval; then
  tables checkpoints/shapes-small docs/results/v7 runs/v7
fi
echo "retrained from $first"

#!/bin/bash
# Contact sheet (session 23): 4 prompts, v1 above v2, frames 0, 4, 8, 12, 16 (seed 0); needs the
# release semgen binary and a Python with Pillow (PYTHON=..., default python3).
cd "$(dirname "$0")/../../.."
out=$(mktemp -d)
prompts=(
 "a large red circle moving left slowly on a navy background"
 "a small yellow square moving up quickly on a gray background"
 "a large green triangle moving right quickly and a small white ring staying still on a brown background"
 "a large magenta diamond moving down slowly on a black background"
)
for i in 0 1 2 3; do
  for m in v1:checkpoints/shapes-small-v1 v2:checkpoints/shapes-small-v2; do
    target/release/semgen generate --quiet --checkpoint ${m#*:} --prompt "${prompts[$i]}" --seed 0 --out $out/$i-${m%%:*} > /dev/null
  done
done
${PYTHON:-python3} - "$out" "$1" "${prompts[@]}" <<'PY'
import sys, glob
from PIL import Image, ImageDraw
out, dest, prompts = sys.argv[1], sys.argv[2], sys.argv[3:]
S, pad, lab = 128, 4, 16
frames = [0, 4, 8, 12, 16]
W = 60 + len(frames) * (S + pad)
H = len(prompts) * (lab + 2 * (S + pad))
sheet = Image.new("RGB", (W, H), (255, 255, 255))
d = ImageDraw.Draw(sheet)
y = 0
for i, p in enumerate(prompts):
    d.text((4, y + 2), p, fill=(0, 0, 0))
    y += lab
    for m in ["v1", "v2"]:
        d.text((8, y + S // 2 - 6), m, fill=(0, 0, 0))
        for k, f in enumerate(frames):
            im = Image.open(f"{out}/{i}-{m}/{f:06d}.png").convert("RGB").resize((S, S), Image.NEAREST)
            sheet.paste(im, (60 + k * (S + pad), y))
        y += S + pad
sheet.save(dest)
print("wrote", dest)
PY

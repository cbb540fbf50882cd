#!/usr/bin/env bash
# z_dim sweep of the VAE's image phase (issue 4, docs/vae.md "z_dim for the Shapes world"):
# semgen-vae/configs/shapes-small-image.toml with `z_dim = Z` and `stop_at = STEPS`, same seed,
# one run per Z, each followed by the first-frame PSNR on validation clips.
# Usage: scripts/vae-zsweep.sh [OUT=runs/vae-zsweep] [STEPS=600] [Z...=16 8 4]
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-runs/vae-zsweep}
steps=${2:-600}
shift $(( $# > 2 ? 2 : $# ))
zs=("${@:-16 8 4}")
mkdir -p "$out"
cargo build --release -p xtask
for z in ${zs[@]}; do
  cfg="$out/image-z$z.toml"
  sed -e "s/^preset = \"shapes-small\"/preset = \"shapes-small\"\nz_dim = $z/" \
      -e "s/^stop_at = .*/stop_at = $steps/" semgen-vae/configs/shapes-small-image.toml > "$cfg"
  start=$(date +%s)
  target/release/xtask train vae --config "$cfg" --out "$out/z$z" > "$out/z$z.log" 2>&1
  echo "z=$z: $steps steps in $(( $(date +%s) - start )) s" | tee -a "$out/summary.txt"
  target/release/xtask eval-vae --checkpoint "$out/z$z/vae.safetensors" --count 256 --image \
    | tail -n 1 | tee -a "$out/summary.txt"
done

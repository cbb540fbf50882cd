#!/usr/bin/env bash
# semgen's test command (the one in the README, and the one CI runs).
#  1. installs what the tests need if it is missing (lavapipe for wgpu, ffmpeg);
#  2. runs every test of the workspace on the CPU backend, plus the attention and DiT checks on
#     the wgpu backend (feature `semgen-core/test-wgpu`), all in one build.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
# The Vulkan loader warns when it has no runtime dir; give it one.
export XDG_RUNTIME_DIR="${XDG_RUNTIME_DIR:-$(mktemp -d)}"
# Incremental caches are no use to a one-off build and cost gigabytes of disk; a developer who
# wants them sets CARGO_INCREMENTAL=1.
export CARGO_INCREMENTAL="${CARGO_INCREMENTAL:-0}"
cargo test --workspace --features semgen-core/test-wgpu "$@"

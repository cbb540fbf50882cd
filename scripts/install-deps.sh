#!/usr/bin/env bash
# Installs the system packages semgen's tests and tools need, if they are missing:
#  - Mesa's software Vulkan (lavapipe) + the Vulkan loader, so the wgpu backend runs on CPU-only
#    Linux machines (CI) instead of failing with "No possible adapter available";
#  - ffmpeg, for MP4 writing and reading real video folders.
# Safe to run repeatedly; does nothing when everything is present.
set -euo pipefail

need=()
have_lavapipe() {
  ls /usr/share/vulkan/icd.d/lvp_icd*.json >/dev/null 2>&1 && ldconfig -p 2>/dev/null | grep -q 'libvulkan.so.1'
}
have_lavapipe || need+=(mesa-vulkan-drivers libvulkan1)
command -v ffmpeg >/dev/null 2>&1 || need+=(ffmpeg)

if [ ${#need[@]} -eq 0 ]; then
  exit 0
fi

if ! command -v apt-get >/dev/null 2>&1; then
  echo "install-deps: please install: ${need[*]} (no apt-get on this machine)" >&2
  exit 1
fi
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1; then SUDO="sudo"; else
    echo "install-deps: need root to install: ${need[*]}" >&2; exit 1
  fi
fi
echo "install-deps: installing ${need[*]}"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null

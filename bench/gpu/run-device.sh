#!/usr/bin/env bash
# Issue 10's GPU measurements in one go, on a GPU machine that has the NVIDIA driver, an NVRTC
# library and (for the PyTorch side) a Python with torch, but no Rust toolchain: run from the
# repository root with a release xtask built elsewhere with the GPU backends, e.g.
#
#   CUDARC_CUDA_VERSION=13000 cargo build --release -p xtask --features cuda,wgpu
#   strip -o target/gpu/xtask target/release/xtask && gzip -9 target/gpu/xtask
#   # copy the tree and target/gpu/ to the GPU machine, then there:
#   XTASK=target/gpu/xtask OUT=/tmp/gpu bash bench/gpu/run-device.sh
#
# Every step has its own time limit and writes into $OUT as it goes, so a step that fails or
# runs long costs only itself. Results: env.txt (device, driver, versions), gpu-cuda.md/.jsonl
# (`xtask bench gpu`, with PyTorch), suite-cuda.md/.jsonl (the CPU suite's rows on the GPU),
# gpu-wgpu.md (a few cases through wgpu/Vulkan if the machine has a Vulkan driver), logs.
set -u
OUT=${OUT:-/tmp/semgen-gpu}
XTASK=${XTASK:-target/gpu/xtask}
PY=${PYTHON:-python3}
mkdir -p "$OUT"
t0=$(date +%s)
# A binary with three backends is ~75 MB stripped; it travels gzipped (~25 MB).
if [ ! -x "$XTASK" ] && [ -f "$XTASK.gz" ]; then
  gunzip -c "$XTASK.gz" > "$XTASK" && chmod +x "$XTASK"
fi
stamp() { echo "[$(( $(date +%s) - t0 )) s] $*" | tee -a "$OUT/steps.txt"; }

stamp "environment"
{
  nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv
  nvidia-smi | head -15
  uname -srm
  ldd --version | head -1
  "$PY" -c 'import torch, sys; print("python", sys.version.split()[0], "torch", torch.__version__, "cuda", torch.version.cuda, "cudnn", torch.backends.cudnn.version())'
  "$PY" -c 'import diffusers; print("diffusers", diffusers.__version__)'
  nproc; free -g | head -2
} > "$OUT/env.txt" 2>&1

# cudarc loads libnvrtc at run time (the version it was built for first, then others): put
# every folder that has one on the loader path.
nvrtc=$( { ldconfig -p 2>/dev/null | awk '/libnvrtc\.so/ {print $NF}'
  ls /usr/local/cuda*/lib64/libnvrtc.so* /usr/local/cuda*/targets/*/lib/libnvrtc.so* 2>/dev/null
  "$PY" -c 'import nvidia, glob, os; [print(p) for p in glob.glob(os.path.join(list(nvidia.__path__)[0], "**", "libnvrtc.so*"), recursive=True)]' 2>/dev/null
} | sort -u)
[ -z "$nvrtc" ] && nvrtc=$(timeout 30 find / -name 'libnvrtc.so*' -not -path '/proc/*' 2>/dev/null | sort)
for d in $(for f in $nvrtc; do dirname "$f"; done | sort -u); do
  export LD_LIBRARY_PATH="$d${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
done
echo "nvrtc: ${nvrtc:-none found}; LD_LIBRARY_PATH=${LD_LIBRARY_PATH:-}" >> "$OUT/env.txt"

# Pure-Python wheels for the peer's diffusers model, if they were brought along.
if ls target/gpu/wheels/*.whl > /dev/null 2>&1; then
  "$PY" -m pip install -q --no-deps --target /tmp/semgen-pylib target/gpu/wheels/*.whl >> "$OUT/env.txt" 2>&1 \
    && export PYTHONPATH=/tmp/semgen-pylib${PYTHONPATH:+:$PYTHONPATH}
  "$PY" -c 'import diffusers; print("diffusers (brought along)", diffusers.__version__)' >> "$OUT/env.txt" 2>&1
fi

stamp "probe"
# CubeCL logs every kernel it compiles and autotunes here, so a slow or stuck first run says
# where it is.
CUBECL_DEBUG_LOG="$OUT/cubecl-probe.log" RUST_BACKTRACE=1 timeout 90 "$XTASK" bench gpu --device cuda \
  --precisions f32 --cases attn-fwd-1024 --warmup 1 --repeats 2 > "$OUT/probe.log" 2>&1
stamp "probe rc=$?"

stamp "gpu cases, PyTorch"
timeout "${PEER_LIMIT:-90}" "$PY" bench/peer/peer_gpu.py --device cuda:0 --precisions f32,bf16 \
  > "$OUT/peer-gpu.jsonl" 2> "$OUT/peer-gpu.log"
stamp "peer rc=$?"

stamp "gpu cases, semgen"
timeout "${GPU_LIMIT:-200}" "$XTASK" bench gpu --device cuda --precisions f32,bf16 \
  --peer-jsonl "$OUT/peer-gpu.jsonl" --out "$OUT/gpu-cuda.md" > "$OUT/gpu.log" 2>&1
stamp "gpu rc=$?"

stamp "suite rows on cuda"
rows=dit-small-fwd,dit-small-train,wan13b-block-fwd,wan13b-block-train,refiner-fwd,refiner-train
rows=$rows,refiner-window-1x,refiner-window-16x,refiner-full-1x,refiner-full-16x,vae-small-decode
rows=$rows,vae-shapes-decode,qwen-small,umt5-small,generate
timeout "${SUITE_LIMIT:-140}" "$XTASK" bench suite --device cuda --rows "$rows" --repeats 10 --row-timeout 20 \
  --out "$OUT/suite-cuda.md" > "$OUT/suite.log" 2>&1
stamp "suite rc=$?"

stamp "attention under autodiff, composed (A/B of the kernel choice)"
SEMGEN_ATTENTION=composed timeout 30 "$XTASK" bench gpu --device cuda --precisions f32 \
  --cases attn-train-1024,block-train-1024 --out "$OUT/gpu-cuda-composed.md" > "$OUT/composed.log" 2>&1
stamp "composed rc=$?"

stamp "wgpu"
timeout 30 "$XTASK" bench gpu --device wgpu --precisions f32 --cases attn-fwd-4096,block-train-1024 \
  --out "$OUT/gpu-wgpu.md" > "$OUT/wgpu.log" 2>&1
stamp "wgpu rc=$?"
nvidia-smi --query-gpu=name,memory.used,temperature.gpu --format=csv >> "$OUT/env.txt" 2>&1
stamp "done"

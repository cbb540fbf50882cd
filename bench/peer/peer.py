#!/usr/bin/env python3
"""PyTorch side of semgen's side-by-side CPU benchmark (`cargo xtask bench suite --peer`).

Builds the upstream PyTorch models (diffusers / transformers, default init, fp32) at the same
configs as semgen's benchmark rows, times them, and prints one JSON line per row on stdout:

    {"row": NAME, "median_ms": x, "min_ms": x, "max_ms": x, "n": N, "params": P}

Everything else (logs, warnings) goes to stderr. Unknown row -> exit code 2.

Usage: python bench/peer/peer.py [--rows a,b,c] [--repeats N] [--threads T] [--list]
"""
import argparse
import json
import os
import statistics
import sys
import time
import warnings
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
FIXTURES = REPO / "fixtures"


def log(*a):
    print(*a, file=sys.stderr, flush=True)


def fixture_config(name):
    cfg = json.loads((FIXTURES / name / "config.json").read_text())
    return cfg


def _diffusers_kwargs(cfg):
    # diffusers config.json carries bookkeeping keys (`_use_default_values`, `_class_name`, ...).
    return {k: v for k, v in cfg.items() if not k.startswith("_")}


# ----------------------------------------------------------------------------------------------
# model builders (same classes and arguments as fixtures/make_fixtures.py)
# ----------------------------------------------------------------------------------------------

DIT_COMMON = dict(patch_size=(1, 2, 2), cross_attn_norm=True, qk_norm="rms_norm_across_heads", eps=1e-6)


def build_dit(cfg):
    from diffusers import WanTransformer3DModel
    kw = dict(DIT_COMMON)
    kw.update(cfg)
    if isinstance(kw.get("patch_size"), list):
        kw["patch_size"] = tuple(kw["patch_size"])
    return WanTransformer3DModel(**kw)


def dit_tiny_cfg():
    return _diffusers_kwargs(fixture_config("wan_dit"))


DIT_SMALL = dict(num_attention_heads=2, attention_head_dim=128, in_channels=16, out_channels=16,
                 text_dim=4096, freq_dim=256, ffn_dim=1024, num_layers=4)
WAN13B_BLOCK = dict(num_attention_heads=12, attention_head_dim=128, in_channels=16, out_channels=16,
                    text_dim=4096, freq_dim=256, ffn_dim=8960, num_layers=1)


def build_vae(cfg):
    from diffusers import AutoencoderKLWan
    kw = dict(dropout=0.0, attn_scales=[])
    kw.update(cfg)
    return AutoencoderKLWan(**kw)


def vae_tiny_cfg():
    return _diffusers_kwargs(fixture_config("wan_vae"))


VAE_SMALL = dict(base_dim=32, z_dim=16, dim_mult=[1, 2, 4, 4], num_res_blocks=2,
                 temperal_downsample=[False, True, True], attn_scales=[])
VAE_SHAPES = dict(base_dim=16, z_dim=8, dim_mult=[1, 2, 2, 2], num_res_blocks=1,
                  temperal_downsample=[False, True, True], attn_scales=[],
                  latents_mean=[0.0] * 8, latents_std=[1.0] * 8)


def build_qwen(cfg):
    from transformers.models.qwen2_5_vl.configuration_qwen2_5_vl import Qwen2_5_VLVisionConfig
    from transformers.models.qwen2_5_vl.modeling_qwen2_5_vl import Qwen2_5_VisionTransformerPretrainedModel
    if isinstance(cfg, dict) and "model_type" in cfg:          # a serialized fixture config
        vcfg = Qwen2_5_VLVisionConfig.from_dict(cfg)
    else:
        kw = dict(in_channels=3, hidden_act="silu")
        kw.update(cfg)
        vcfg = Qwen2_5_VLVisionConfig(**kw)
    vcfg._attn_implementation = "sdpa"
    return Qwen2_5_VisionTransformerPretrainedModel(vcfg)


QWEN_SMALL = dict(depth=4, hidden_size=256, num_heads=4, intermediate_size=1024, patch_size=14,
                  temporal_patch_size=2, spatial_merge_size=2, window_size=112, out_hidden_size=512,
                  fullatt_block_indexes=[3])
ENCODER_SHAPES = dict(depth=4, hidden_size=128, num_heads=4, intermediate_size=256, patch_size=8,
                      temporal_patch_size=2, spatial_merge_size=2, window_size=32, out_hidden_size=64,
                      fullatt_block_indexes=[1, 3])


def build_umt5(cfg):
    from transformers import UMT5Config, UMT5EncoderModel
    if "model_type" in cfg:                                      # a serialized fixture config
        tcfg = UMT5Config.from_dict(cfg)
    else:
        kw = dict(relative_attention_num_buckets=32, relative_attention_max_distance=128,
                  feed_forward_proj="gated-gelu", dropout_rate=0.0, layer_norm_epsilon=1e-6,
                  tie_word_embeddings=False)
        kw.update(cfg)
        tcfg = UMT5Config(**kw)
    tcfg.dropout_rate = 0.0
    tcfg._attn_implementation = "eager"                          # as in make_fixtures.py
    return UMT5EncoderModel(tcfg)


UMT5_SMALL = dict(d_model=256, d_kv=64, num_heads=4, d_ff=1024, num_layers=4, vocab_size=1000)


# ----------------------------------------------------------------------------------------------
# rows: each returns (model, step_fn, mode) where mode is "fwd" (inference) or "train"
# ----------------------------------------------------------------------------------------------

def _randn(shape, g):
    import torch
    return torch.randn(*shape, generator=g)


def dit_row(cfg_fn, hidden, text, train=False):
    def make(g):
        import torch
        model = build_dit(cfg_fn())
        b = hidden[0]
        x = _randn(hidden, g)
        ctx = _randn(text, g)
        t = torch.full((b,), 637.0)
        if not train:
            def step():
                return model(hidden_states=x, timestep=t, encoder_hidden_states=ctx, return_dict=False)[0]
            return model, step, "fwd"
        target = _randn(hidden[:1] + (model.config.out_channels,) + hidden[2:], g)
        opt = torch.optim.AdamW(model.parameters(), lr=1e-4)

        def step():
            out = model(hidden_states=x, timestep=t, encoder_hidden_states=ctx, return_dict=False)[0]
            loss = torch.nn.functional.mse_loss(out, target)
            loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
            return loss
        return model, step, "train"
    return make


def vae_decode_row(cfg_fn, z_shape):
    def make(g):
        vae = build_vae(cfg_fn())
        z = _randn(z_shape, g)

        def step():
            return vae.decode(z, return_dict=False)[0]
        return vae, step, "fwd"
    return make


def vae_encode_row(cfg_fn, x_shape):
    def make(g):
        vae = build_vae(cfg_fn())
        import torch
        x = torch.rand(*x_shape, generator=g) * 2 - 1          # video in [-1, 1]

        def step():
            return vae.encode(x).latent_dist.mode()
        return vae, step, "fwd"
    return make


def qwen_row(cfg_fn, grid):
    def make(g):
        import torch
        model = build_qwen(cfg_fn())
        c = model.config
        t, h, w = grid
        n = t * h * w
        dim = c.in_channels * c.temporal_patch_size * c.patch_size * c.patch_size
        pixels = _randn((n, dim), g)
        grid_thw = torch.tensor([list(grid)], dtype=torch.long)

        def step():
            return model(pixels, grid_thw=grid_thw)
        return model, step, "fwd"
    return make


def umt5_row(cfg_fn, seq):
    def make(g):
        import torch
        model = build_umt5(cfg_fn())
        ids = torch.randint(1, model.config.vocab_size, (1, seq), generator=g)
        mask = torch.ones(1, seq, dtype=torch.long)

        def step():
            return model(input_ids=ids, attention_mask=mask).last_hidden_state
        return model, step, "fwd"
    return make


ROWS = {
    "dit-tiny-fwd": dit_row(dit_tiny_cfg, (1, 4, 3, 8, 8), (1, 7, 16)),
    "dit-small-fwd": dit_row(lambda: dict(DIT_SMALL), (1, 16, 4, 16, 16), (1, 512, 4096)),
    "dit-small-train": dit_row(lambda: dict(DIT_SMALL), (1, 16, 4, 16, 16), (1, 512, 4096), train=True),
    "wan13b-block-fwd": dit_row(lambda: dict(WAN13B_BLOCK), (1, 16, 5, 16, 16), (1, 512, 4096)),
    "wan13b-block-train": dit_row(lambda: dict(WAN13B_BLOCK), (1, 16, 5, 16, 16), (1, 512, 4096), train=True),
    "vae-tiny-decode": vae_decode_row(vae_tiny_cfg, (1, 4, 3, 4, 4)),
    "vae-tiny-encode": vae_encode_row(vae_tiny_cfg, (1, 3, 9, 32, 32)),
    "vae-small-decode": vae_decode_row(lambda: dict(VAE_SMALL), (1, 16, 3, 8, 8)),
    "vae-small-encode": vae_encode_row(lambda: dict(VAE_SMALL), (1, 3, 9, 64, 64)),
    "vae-shapes-decode": vae_decode_row(lambda: dict(VAE_SHAPES), (1, 8, 5, 8, 8)),
    "qwen-tiny": qwen_row(lambda: fixture_config("qwen25vl_vision"), (2, 6, 10)),
    "qwen-small": qwen_row(lambda: dict(QWEN_SMALL), (2, 16, 16)),
    "encoder-shapes": qwen_row(lambda: dict(ENCODER_SHAPES), (3, 8, 8)),
    "umt5-tiny": umt5_row(lambda: fixture_config("umt5_encoder"), 40),
    "umt5-small": umt5_row(lambda: dict(UMT5_SMALL), 512),
}


def run_row(name, repeats):
    import torch
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)
    model, step, mode = ROWS[name](g)
    model = model.float()
    params = sum(p.numel() for p in model.parameters())
    times = []
    if mode == "fwd":
        model.eval()
        with torch.inference_mode():
            step()                                   # warm-up
            for _ in range(repeats):
                t0 = time.perf_counter()
                step()
                times.append((time.perf_counter() - t0) * 1e3)
    else:
        model.train()
        step()                                       # warm-up (also allocates AdamW state)
        for _ in range(repeats):
            t0 = time.perf_counter()
            step()
            times.append((time.perf_counter() - t0) * 1e3)
    return {"row": name, "median_ms": round(statistics.median(times), 4), "min_ms": round(min(times), 4),
            "max_ms": round(max(times), 4), "n": repeats, "params": params}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", default=None, help="comma-separated row names (default: all)")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: os.cpu_count())")
    ap.add_argument("--list", action="store_true", help="print the row names, one per line")
    args = ap.parse_args(argv)

    # stdout carries only the JSON lines (or the --list names); anything a library prints goes to stderr
    out = sys.stdout
    sys.stdout = sys.stderr

    def emit(line):
        out.write(line + "\n")
        out.flush()

    if args.list:
        for r in ROWS:
            emit(r)
        return 0

    rows = list(ROWS) if args.rows is None else [r.strip() for r in args.rows.split(",") if r.strip()]
    unknown = [r for r in rows if r not in ROWS]
    if unknown:
        log(f"peer.py: unknown row(s): {', '.join(unknown)}; known: {', '.join(ROWS)}")
        return 2
    if args.repeats < 1:
        log("peer.py: --repeats must be >= 1")
        return 2

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("DIFFUSERS_VERBOSITY", "error")
    warnings.simplefilter("ignore")
    import torch
    threads = args.threads or os.cpu_count() or 1
    torch.set_num_threads(threads)
    log(f"peer.py: torch {torch.__version__}, {threads} thread(s), rows: {', '.join(rows)}")

    for r in rows:
        res = run_row(r, args.repeats)
        emit(json.dumps(res))
        log(f"  {r}: median {res['median_ms']:.3f} ms (n={res['n']}, params={res['params']})")
    return 0


if __name__ == "__main__":
    sys.exit(main())

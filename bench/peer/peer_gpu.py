#!/usr/bin/env python3
"""PyTorch side of `cargo xtask bench gpu --peer`: the same GPU-scale cases as semgen's
(`xtask/src/gpu.rs`), timed on the same device, one JSON line per case and precision on stdout:

    {"case": "attn-fwd-4096", "precision": "bf16", "device": "cuda:0", "median_ms": x,
     "min_ms": x, "max_ms": x, "n": N, "implementation": "..."}

or, when a case fails (out of memory, say), {"case": ..., "precision": ..., "error": "..."}.

Cases (KIND-TOKENS):
  attn-fwd-N / attn-train-N   torch.nn.functional.scaled_dot_product_attention on
                              [16384/N, 16, N, 128] (FlashAttention's benchmark shapes); train =
                              forward + backward to q, k and v.
  block-fwd-N / block-train-N a Wan2.1-1.3B block slice (diffusers WanTransformer3DModel, 1 layer)
                              on latents [1, 16, N/1024, 64, 64] and text [1, 512, 4096]; train =
                              forward + MSE + backward + AdamW step + zero_grad.

Where diffusers is not installed (a bare GPU machine) the block runs on `WanBlockReplica`, the same
layers and operations written in plain torch (its parameter count is checked against diffusers'
when both are there: `--check-replica`). The "implementation" field says which ran.

Precisions: f32 (torch's defaults: TF32 off for matmuls) and bf16 / f16 (weights and inputs in
that type, as semgen's Cuda<bf16>).
"""
import argparse
import json
import math
import statistics
import sys
import time

ATTN_TOTAL, ATTN_HEADS, ATTN_DIM, TEXT_LEN = 16384, 16, 128, 512
WAN13B_BLOCK = dict(patch_size=(1, 2, 2), num_attention_heads=12, attention_head_dim=128, in_channels=16,
                    out_channels=16, text_dim=4096, freq_dim=256, ffn_dim=8960, num_layers=1,
                    cross_attn_norm=True, qk_norm="rms_norm_across_heads", eps=1e-6)


def log(*a):
    print(*a, file=sys.stderr, flush=True)


def parse_case(name):
    kind, n = name.rsplit("-", 1)
    n = int(n)
    if kind not in ("attn-fwd", "attn-train", "block-fwd", "block-train"):
        raise ValueError(f"unknown case kind {kind}")
    if kind.startswith("attn") and ATTN_TOTAL % n:
        raise ValueError(f"attention cases take a token count dividing {ATTN_TOTAL}")
    if kind.startswith("block") and n % 1024:
        raise ValueError("block cases take a multiple of 1024 tokens")
    return kind, n


def build_replica(torch):
    nn = torch.nn
    F = torch.nn.functional

    class RMSNorm(nn.Module):
        def __init__(self, d, eps):
            super().__init__()
            self.weight = nn.Parameter(torch.ones(d))
            self.eps = eps

        def forward(self, x):
            x32 = x.float()
            y = x32 * torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + self.eps)
            return y.to(x.dtype) * self.weight

    class FP32LayerNorm(nn.LayerNorm):
        """diffusers' FP32LayerNorm: normalises in f32, returns the input's type."""

        def forward(self, x):
            w = self.weight.float() if self.weight is not None else None
            b = self.bias.float() if self.bias is not None else None
            return F.layer_norm(x.float(), self.normalized_shape, w, b, self.eps).to(x.dtype)

    class Attention(nn.Module):
        def __init__(self, d, heads, eps):
            super().__init__()
            self.heads = heads
            self.to_q, self.to_k, self.to_v = nn.Linear(d, d), nn.Linear(d, d), nn.Linear(d, d)
            self.to_out = nn.ModuleList([nn.Linear(d, d)])
            self.norm_q, self.norm_k = RMSNorm(d, eps), RMSNorm(d, eps)

        def forward(self, x, ctx=None, rope=None):
            ctx = x if ctx is None else ctx
            b, n, d = x.shape
            h = self.heads
            q = self.norm_q(self.to_q(x)).view(b, n, h, -1).transpose(1, 2)
            k = self.norm_k(self.to_k(ctx)).view(b, ctx.shape[1], h, -1).transpose(1, 2)
            v = self.to_v(ctx).view(b, ctx.shape[1], h, -1).transpose(1, 2)
            if rope is not None:
                cos, sin = rope

                def rot(t):
                    t1, t2 = t.float().unflatten(-1, (-1, 2)).unbind(-1)
                    out = torch.stack((t1 * cos - t2 * sin, t1 * sin + t2 * cos), -1).flatten(-2)
                    return out.to(t.dtype)
                q, k = rot(q), rot(k)
            o = F.scaled_dot_product_attention(q, k, v)
            return self.to_out[0](o.transpose(1, 2).reshape(b, n, d))

    class Block(nn.Module):
        def __init__(self, d, heads, ffn, eps):
            super().__init__()
            self.norm1 = FP32LayerNorm(d, eps, elementwise_affine=False)
            self.attn1 = Attention(d, heads, eps)
            self.norm2 = FP32LayerNorm(d, eps, elementwise_affine=True)
            self.attn2 = Attention(d, heads, eps)
            self.norm3 = FP32LayerNorm(d, eps, elementwise_affine=False)
            self.ffn = nn.Sequential(nn.Linear(d, ffn), nn.GELU(approximate="tanh"), nn.Linear(ffn, d))
            self.scale_shift_table = nn.Parameter(torch.randn(1, 6, d) / d ** 0.5)

        def forward(self, x, ctx, temb, rope):
            sh, sc, g, csh, csc, cg = (self.scale_shift_table + temb.float()).chunk(6, dim=1)
            y = (self.norm1(x).float() * (1 + sc) + sh).type_as(x)
            x = (x.float() + self.attn1(y, rope=rope) * g).type_as(x)
            x = x + self.attn2(self.norm2(x), ctx=ctx)
            y = (self.norm3(x).float() * (1 + csc) + csh).type_as(x)
            return (x.float() + self.ffn(y).float() * cg).type_as(x)

    class WanBlockReplica(nn.Module):
        """diffusers' WanTransformer3DModel forward, layer for layer, in plain torch."""

        def __init__(self, c):
            super().__init__()
            d = c["num_attention_heads"] * c["attention_head_dim"]
            self.c, self.d = c, d
            p = c["patch_size"]
            self.patch_embedding = nn.Conv3d(c["in_channels"], d, kernel_size=p, stride=p)
            self.time_embedder = nn.Sequential(nn.Linear(c["freq_dim"], d), nn.SiLU(), nn.Linear(d, d))
            self.time_proj = nn.Sequential(nn.SiLU(), nn.Linear(d, 6 * d))
            self.text_embedder = nn.Sequential(nn.Linear(c["text_dim"], d), nn.GELU(approximate="tanh"),
                                               nn.Linear(d, d))
            self.blocks = nn.ModuleList([Block(d, c["num_attention_heads"], c["ffn_dim"], c["eps"])
                                         for _ in range(c["num_layers"])])
            self.norm_out = FP32LayerNorm(d, c["eps"], elementwise_affine=False)
            self.proj_out = nn.Linear(d, c["out_channels"] * math.prod(p))
            self.scale_shift_table = nn.Parameter(torch.randn(1, 2, d) / d ** 0.5)

        def rope(self, f, h, w, device):
            hd = self.c["attention_head_dim"]
            dims = [hd - 4 * (hd // 6), 2 * (hd // 6), 2 * (hd // 6)]
            parts = []
            for n, dim, ax in zip((f, h, w), dims, range(3)):
                freqs = 1.0 / (10000 ** (torch.arange(0, dim, 2, device=device).float() / dim))
                ang = torch.outer(torch.arange(n, device=device).float(), freqs)
                shape = [f, h, w, dim // 2]
                view = [1, 1, 1, dim // 2]
                view[ax] = n
                parts.append(ang.view(view).expand(shape))
            ang = torch.cat(parts, -1).reshape(f * h * w, hd // 2)
            return ang.cos(), ang.sin()

        def forward(self, hidden_states, timestep, encoder_hidden_states, return_dict=False):
            b, _, f, hh, ww = hidden_states.shape
            pt, ph, pw = self.c["patch_size"]
            x = self.patch_embedding(hidden_states)
            gf, gh, gw = x.shape[2:]
            x = x.flatten(2).transpose(1, 2)
            half = self.c["freq_dim"] // 2
            freqs = torch.exp(-math.log(10000) * torch.arange(half, device=x.device).float() / half)
            arg = timestep.float()[:, None] * freqs[None]
            tsin = torch.cat([arg.cos(), arg.sin()], -1).to(x.dtype)
            temb = self.time_embedder(tsin)
            tproj = self.time_proj(temb).unflatten(1, (6, -1))
            ctx = self.text_embedder(encoder_hidden_states)
            rope = self.rope(gf, gh, gw, x.device)
            for blk in self.blocks:
                x = blk(x, ctx, tproj, rope)
            shift, scale = (self.scale_shift_table + temb.float()[:, None]).chunk(2, dim=1)
            x = (self.norm_out(x).float() * (1 + scale) + shift).type_as(x)
            x = self.proj_out(x)
            x = x.reshape(b, gf, gh, gw, pt, ph, pw, -1).permute(0, 7, 1, 4, 2, 5, 3, 6)
            return (x.reshape(b, -1, f, hh, ww),)

    return WanBlockReplica(dict(WAN13B_BLOCK))


FORCE_REPLICA = False


def build_block(torch):
    if FORCE_REPLICA:
        return build_replica(torch), "WanBlockReplica (plain torch)"
    try:
        from diffusers import WanTransformer3DModel
        return WanTransformer3DModel(**WAN13B_BLOCK), "diffusers WanTransformer3DModel"
    except Exception as e:                                   # noqa: BLE001 (any import failure)
        log(f"peer_gpu.py: diffusers unavailable ({type(e).__name__}: {e}); using WanBlockReplica")
        return build_replica(torch), "WanBlockReplica (plain torch)"


def make_case(torch, name, dtype, device):
    kind, n = parse_case(name)
    F = torch.nn.functional
    g = torch.Generator(device="cpu").manual_seed(0)

    def rand(*shape):
        return (torch.rand(*shape, generator=g) * 2 - 1).to(device=device, dtype=dtype)

    if kind.startswith("attn"):
        shape = (ATTN_TOTAL // n, ATTN_HEADS, n, ATTN_DIM)
        q, k, v = rand(*shape), rand(*shape), rand(*shape)
        if kind == "attn-fwd":
            def step():
                with torch.inference_mode():
                    return F.scaled_dot_product_attention(q, k, v)
            return step, "F.scaled_dot_product_attention"
        q, k, v = (t.requires_grad_() for t in (q, k, v))
        up = rand(*shape)

        def step():
            out = F.scaled_dot_product_attention(q, k, v)
            out.backward(up)
            for t in (q, k, v):
                t.grad = None
        return step, "F.scaled_dot_product_attention + backward"

    model, impl = build_block(torch)
    model = model.to(device=device, dtype=dtype)
    x = rand(1, 16, n // 1024, 64, 64)
    ctx = rand(1, TEXT_LEN, 4096)
    t = torch.full((1,), 637.0, device=device)
    if kind == "block-fwd":
        model.eval()

        def step():
            with torch.inference_mode():
                return model(hidden_states=x, timestep=t, encoder_hidden_states=ctx, return_dict=False)[0]
        return step, impl
    model.train()
    target = rand(*x.shape)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)

    def step():
        out = model(hidden_states=x, timestep=t, encoder_hidden_states=ctx, return_dict=False)[0]
        loss = F.mse_loss(out, target)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        return loss
    return step, impl


def time_case(torch, step, device, warmup, repeats):
    cuda = str(device).startswith("cuda")
    for _ in range(max(warmup, 1)):
        step()
    if cuda:
        torch.cuda.synchronize(device)
    ms = []
    for _ in range(max(repeats, 1)):
        t0 = time.perf_counter()
        step()
        if cuda:
            torch.cuda.synchronize(device)
        ms.append((time.perf_counter() - t0) * 1e3)
    return ms


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cases", default="attn-fwd-1024,attn-fwd-4096,attn-fwd-16384,attn-train-1024,"
                    "attn-train-4096,block-fwd-4096,block-train-1024,block-train-4096,block-train-8192")
    ap.add_argument("--precisions", default="f32,bf16")
    ap.add_argument("--device", default="cuda:0")
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--repeats", type=int, default=10)
    ap.add_argument("--check-replica", action="store_true",
                    help="compare WanBlockReplica's parameter count with diffusers' and exit")
    ap.add_argument("--replica", action="store_true", help="run the block on WanBlockReplica even with diffusers")
    args = ap.parse_args(argv)
    global FORCE_REPLICA
    FORCE_REPLICA = args.replica
    out = sys.stdout
    sys.stdout = sys.stderr                                  # stdout carries only the JSON lines
    import torch

    if args.check_replica:
        from diffusers import WanTransformer3DModel
        ref = sum(p.numel() for p in WanTransformer3DModel(**WAN13B_BLOCK).parameters())
        rep = sum(p.numel() for p in build_replica(torch).parameters())
        log(f"diffusers {ref} parameters, replica {rep}")
        return 0 if ref == rep else 1

    dtypes = {"f32": torch.float32, "bf16": torch.bfloat16, "f16": torch.float16}
    device = torch.device(args.device)
    cases = [c.strip() for c in args.cases.split(",") if c.strip()]
    for c in cases:
        parse_case(c)
    log(f"peer_gpu.py: torch {torch.__version__} on {device}"
        + (f" ({torch.cuda.get_device_name(device)})" if device.type == "cuda" else ""))
    for p in [p.strip() for p in args.precisions.split(",") if p.strip()]:
        for c in cases:
            row = {"case": c, "precision": p, "device": str(device)}
            try:
                step, impl = make_case(torch, c, dtypes[p], device)
                ms = time_case(torch, step, device, args.warmup, args.repeats)
                row.update(median_ms=round(statistics.median(ms), 4), min_ms=round(min(ms), 4),
                           max_ms=round(max(ms), 4), n=len(ms), implementation=impl)
                log(f"  {c} {p}: median {row['median_ms']:.3f} ms ({impl})")
            except Exception as e:                           # noqa: BLE001 (OOM and friends)
                row["error"] = f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
                log(f"  {c} {p}: failed: {row['error']}")
            step = None
            if device.type == "cuda":
                torch.cuda.empty_cache()
            out.write(json.dumps(row) + "\n")
            out.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())

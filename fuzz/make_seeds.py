"""Writes the seed inputs of the fuzz targets (fuzz/seeds/*) from the repository's own files.

Run from the repository root: python3 fuzz/make_seeds.py
"""
import json
import pathlib
import struct



ROOT = pathlib.Path(__file__).resolve().parent.parent
SEEDS = ROOT / "fuzz" / "seeds"


def safetensors(tensors, metadata=None):
    """tensors: name -> (dtype, shape, raw bytes)"""
    header, offset, blobs = {}, 0, []
    for name in sorted(tensors):
        dtype, shape, raw = tensors[name]
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [offset, offset + len(raw)]}
        offset += len(raw)
        blobs.append(raw)
    if metadata:
        header["__metadata__"] = metadata
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)
    return struct.pack("<Q", len(h)) + h + b"".join(blobs)


def f32(shape, seed=1.0):
    n = 1
    for s in shape:
        n *= s
    return ("F32", shape, struct.pack(f"<{n}f", *[(seed * (i + 1)) % 1.7 - 0.8 for i in range(n)]))


def tiny_dit(dtype="F32"):
    """The fuzz model: D = 4, in = out = 1, text 2, freq 2, ffn 3, 1 block, patch (1, 1, 1)."""
    d, ffn, text, freq = 4, 3, 2, 2
    shapes = {
        "patch_embedding.weight": [d, 1, 1, 1, 1],
        "patch_embedding.bias": [d],
        "condition_embedder.text_embedder.linear_1.weight": [d, text],
        "condition_embedder.text_embedder.linear_1.bias": [d],
        "condition_embedder.text_embedder.linear_2.weight": [d, d],
        "condition_embedder.text_embedder.linear_2.bias": [d],
        "condition_embedder.time_embedder.linear_1.weight": [d, freq],
        "condition_embedder.time_embedder.linear_1.bias": [d],
        "condition_embedder.time_embedder.linear_2.weight": [d, d],
        "condition_embedder.time_embedder.linear_2.bias": [d],
        "condition_embedder.time_proj.weight": [6 * d, d],
        "condition_embedder.time_proj.bias": [6 * d],
        "proj_out.weight": [1, d],
        "proj_out.bias": [1],
        "scale_shift_table": [1, 2, d],
        "blocks.0.scale_shift_table": [1, 6, d],
        "blocks.0.norm2.weight": [d],
        "blocks.0.norm2.bias": [d],
        "blocks.0.ffn.net.0.proj.weight": [ffn, d],
        "blocks.0.ffn.net.0.proj.bias": [ffn],
        "blocks.0.ffn.net.2.weight": [d, ffn],
        "blocks.0.ffn.net.2.bias": [d],
    }
    for a in ("attn1", "attn2"):
        shapes[f"blocks.0.{a}.norm_q.weight"] = [d]
        shapes[f"blocks.0.{a}.norm_k.weight"] = [d]
        for p in ("to_q", "to_k", "to_v", "to_out.0"):
            shapes[f"blocks.0.{a}.{p}.weight"] = [d, d]
            shapes[f"blocks.0.{a}.{p}.bias"] = [d]
    out = {}
    for i, (k, s) in enumerate(sorted(shapes.items())):
        t = f32(s, 0.37 + i * 0.01)
        if dtype == "F16":
            vals = struct.unpack(f"<{len(t[2]) // 4}f", t[2])
            t = ("F16", s, struct.pack(f"<{len(vals)}e", *vals))
        out[k] = t
    return out


def main():
    ck = SEEDS / "checkpoint"
    ck.mkdir(parents=True, exist_ok=True)
    (ck / "tiny_dit.safetensors").write_bytes(safetensors(tiny_dit()))
    meta = {
        "semgen.component": "wan_dit",
        "semgen.format_version": "1",
        "semgen.step": "12",
        "semgen.config": json.dumps({"num_layers": 1}),
    }
    (ck / "tiny_dit_semgen.safetensors").write_bytes(safetensors(tiny_dit(), meta))
    (ck / "tiny_dit_f16.safetensors").write_bytes(safetensors(tiny_dit("F16")))
    lat = {"latents": f32([1, 2, 2, 2, 2]), "z_sem": f32([1, 2, 1, 1, 1])}
    (ck / "latents.safetensors").write_bytes(safetensors(lat, {"semgen.settings": "{}"}))
    ints = {"ids": ("I64", [2, 3], struct.pack("<6q", 1, 2, 3, 4, 5, 6)), "mask": ("BOOL", [3], b"\x01\x00\x01")}
    (ck / "ints.safetensors").write_bytes(safetensors(ints))

    cf = SEEDS / "config"
    cf.mkdir(parents=True, exist_ok=True)

    def seed(kind, name, text):
        (cf / name).write_bytes(bytes([kind]) + text.encode())

    fx = ROOT / "fixtures"
    seed(0, "wan_dit.json", (fx / "wan_dit" / "config.json").read_text())
    seed(1, "qwen_vision.json", (fx / "qwen25vl_vision" / "config.json").read_text())
    seed(2, "umt5.json", (fx / "umt5_encoder" / "config.json").read_text())
    seed(3, "wan_vae.json", (fx / "wan_vae" / "config.json").read_text())
    shipped = ROOT / "checkpoints" / "shapes-small"
    for kind, file in [(4, "refiner"), (5, "semantic_dit"), (6, "compressor"), (7, "semantic_encoder")]:
        raw = (shipped / f"{file}.safetensors").read_bytes()
        n = struct.unpack("<Q", raw[:8])[0]
        header = json.loads(raw[8 : 8 + n])
        seed(kind, f"{file}.config.json", header["__metadata__"]["semgen.config"])
    seed(8, "model.json", (shipped / "model.json").read_text())
    seed(9, "refiner.toml", (ROOT / "configs" / "shapes-small" / "refiner.toml").read_text())
    seed(10, "semantic.toml", (ROOT / "configs" / "shapes-small" / "semantic.toml").read_text())
    seed(11, "vae.toml", (ROOT / "semgen-vae" / "configs" / "shapes-small.toml").read_text())
    seed(12, "tokenizer.json", (shipped / "tokenizer.json").read_text())
    seed(13, "device.txt", "cuda:1")
    seed(13, "sampler.json", json.dumps({"kind": "unipc", "steps": 10, "shift": 5.0}))


if __name__ == "__main__":
    main()

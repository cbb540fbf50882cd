import json, sys, torch
from safetensors.torch import load_file
from diffusers.models.autoencoders.autoencoder_kl_wan import AutoencoderKLWan
d = sys.argv[1]
cfg = json.load(open(f"{d}/config.json")); cfg = {k:v for k,v in cfg.items() if not k.startswith("_")}
vae = AutoencoderKLWan(**cfg)
vae.load_state_dict(load_file(f"{d}/weights.safetensors"))
video = load_file(f"{d}/io.safetensors")["video"]
def pattern(shape, k):
    n = 1
    for s in shape: n *= s
    return torch.sin(torch.arange(n, dtype=torch.float64) * k).float().reshape(shape)
# Rust used f32 i*k; mimic
def pattern32(shape, k):
    n = 1
    for s in shape: n *= s
    i = torch.arange(n, dtype=torch.float32)
    return torch.sin(i * torch.tensor(k, dtype=torch.float32)).reshape(shape)
moments = vae._encode(video)
z = cfg["z_dim"]
mu = moments[:, :z]
vae.clear_cache()
x = vae.post_quant_conv(mu)
outs = []
for i in range(x.shape[2]):
    vae._conv_idx = [0]
    outs.append(vae.decoder(x[:, :, i:i+1], feat_cache=vae._feat_map, feat_idx=vae._conv_idx, first_chunk=(i == 0)))
recon = torch.cat(outs, 2)
loss = (recon * pattern32(recon.shape, 0.37)).sum() + (moments * pattern32(moments.shape, 0.11)).sum()
print("loss", loss.item())
loss.backward()
g = load_file(sys.argv[2])
worst = []
for name, p in vae.named_parameters():
    key = name if name in g else name.replace("resample.1.", "resample_conv.")
    if key not in g:
        print("missing", name); continue
    a = p.grad.detach(); b = g[key].reshape(a.shape)
    rel = ((a-b).norm() / (a.norm() + 1e-12)).item()
    worst.append((rel, name, a.norm().item(), b.norm().item()))
worst.sort(reverse=True)
for w in worst[:15]: print(f"rel {w[0]:.2e}  {w[1]}  |torch| {w[2]:.3e} |burn| {w[3]:.3e}")
print("n params", len(worst), "median rel", sorted(w[0] for w in worst)[len(worst)//2])

import sys, time, math, argparse, numpy as np, torch
from diffusers.models.autoencoders.autoencoder_kl_wan import AutoencoderKLWan
p = argparse.ArgumentParser()
p.add_argument("--lr", type=float, default=3e-4); p.add_argument("--steps", type=int, default=300)
p.add_argument("--warmup", type=int, default=0); p.add_argument("--clip", type=float, default=0)
p.add_argument("--sample", type=int, default=1); p.add_argument("--bs", type=int, default=4)
p.add_argument("--crop", type=int, default=32); p.add_argument("--frames", type=int, default=9)
p.add_argument("--eps", type=float, default=1e-5); p.add_argument("--b2", type=float, default=0.999)
p.add_argument("--kl", type=float, default=1e-6); p.add_argument("--seed", type=int, default=0)
p.add_argument("--mse", type=float, default=1.0); p.add_argument("--l1", type=float, default=1.0)
p.add_argument("--save", default=""); p.add_argument("--fixed", type=int, default=0); p.add_argument("--b1", type=float, default=0.9); p.add_argument("--nobias", type=int, default=0); p.add_argument("--zeroinit", type=int, default=0); p.add_argument("--center", type=int, default=0); p.add_argument("--every", type=int, default=100); p.add_argument("--gn", type=int, default=0); p.add_argument("--inflate", type=int, default=0); p.add_argument("--load", default=""); p.add_argument("--anchor", type=float, default=0); p.add_argument("--anchor_steps", type=int, default=10**9); p.add_argument("--iface", type=float, default=0); p.add_argument("--base", type=int, default=16)
a = p.parse_args()
torch.manual_seed(a.seed); torch.set_num_threads(int(__import__("os").environ.get("NT","2")))
tr = np.fromfile("data/train.u8", dtype=np.uint8).reshape(-1, 9, 64, 64, 3)
va = np.fromfile("data/val.u8", dtype=np.uint8).reshape(-1, 17, 64, 64, 3)
def tens(x): return torch.from_numpy(x).float().div(127.5).sub(1).permute(0, 4, 1, 2, 3).contiguous()
vae = AutoencoderKLWan(base_dim=a.base, z_dim=8, dim_mult=[1,2,2,2], num_res_blocks=1, attn_scales=[], temperal_downsample=[False,True,True],
                       latents_mean=[0.0]*8, latents_std=[1.0]*8)
print("params", sum(p.numel() for p in vae.parameters()))
if a.zeroinit:
    for n_, p_ in vae.named_parameters():
        if n_.endswith("bias"): p_.data.zero_()
        if "conv2.weight" in n_ or "proj.weight" in n_: p_.data.zero_()
if a.iface:
    with torch.no_grad():
        vae.quant_conv.weight.mul_(a.iface); vae.quant_conv.bias.zero_()
        vae.post_quant_conv.weight.copy_(torch.eye(8).reshape(8, 8, 1, 1, 1)); vae.post_quant_conv.bias.zero_()
if a.load: vae.load_state_dict(torch.load(a.load))
if a.inflate:
    import diffusers.models.autoencoders.autoencoder_kl_wan as w_
    with torch.no_grad():
        for n_, m_ in vae.named_modules():
            if isinstance(m_, w_.WanCausalConv3d) and m_.weight.shape[2] == 3:
                w = m_.weight
                if w.shape[3] == 3:
                    w[:, :, 2] *= 3 ** 0.5; w[:, :, :2] = 0
                else:  # time_conv (3,1,1)
                    co, ci = w.shape[:2]; w.zero_(); m_.bias.zero_()
                    for j in range(co): w[j, j % ci, 2, 0, 0] = 1.0
if a.gn:
    import diffusers.models.autoencoders.autoencoder_kl_wan as w_
    import torch.nn.functional as F_
    def fwd(self, x):
        sh = x.shape
        y = F_.group_norm(x.reshape(sh[0], sh[1], -1), 8)
        return y.reshape(sh) * self.gamma + self.bias
    w_.WanRMS_norm.forward = fwd
if a.center:
    import diffusers.models.autoencoders.autoencoder_kl_wan as w_
    import torch.nn.functional as F_
    def fwd(self, x):
        x = x - x.mean(dim=1, keepdim=True)
        return F_.normalize(x, dim=1) * self.scale * self.gamma + self.bias
    w_.WanRMS_norm.forward = fwd
if a.nobias:
    for n_, p_ in vae.named_parameters():
        if n_.endswith("bias") and "decoder.conv_out" not in n_:
            p_.data.zero_(); p_.requires_grad_(False)
opt = torch.optim.AdamW([p_ for p_ in vae.parameters() if p_.requires_grad], lr=a.lr, weight_decay=1e-4, eps=a.eps, betas=(a.b1, a.b2))
def decode(z):
    vae.clear_cache(); x = vae.post_quant_conv(z); outs = []
    for i in range(x.shape[2]):
        vae._conv_idx = [0]
        outs.append(vae.decoder(x[:, :, i:i+1], feat_cache=vae._feat_map, feat_idx=vae._conv_idx, first_chunk=(i == 0)))
    vae.clear_cache(); return torch.cat(outs, 2)
def evaluate():
    with torch.no_grad():
        x = tens(va[:8]); m = vae._encode(x); r = decode(m[:, :8]).clamp(-1, 1)
        mse = ((r - x) ** 2).mean(dim=(1, 2, 3, 4)); psnr = (10 * torch.log10(4 / mse)).mean().item()
        return psnr, r.std(0).mean().item(), m[:, :8].std(0).mean().item()
rng = np.random.default_rng(a.seed); t0 = time.time(); acc = []
for step in range(a.steps):
    idx = np.arange(step * a.bs, (step + 1) * a.bs) % (a.fixed or len(tr))
    x = tens(tr[idx, :a.frames])
    if a.crop < 64:
        y0 = 8 * rng.integers(0, (64 - a.crop) // 8 + 1); x0 = 8 * rng.integers(0, (64 - a.crop) // 8 + 1)
        x = x[..., y0:y0 + a.crop, x0:x0 + a.crop]
    lr = a.lr * min(1.0, (step + 1) / a.warmup) if a.warmup else a.lr
    for g in opt.param_groups: g["lr"] = lr
    m = vae._encode(x); mu, lv = m[:, :8], m[:, 8:].clamp(-30, 20)
    z = mu + torch.exp(0.5 * lv) * torch.randn_like(mu) if a.sample else mu
    r = decode(z); d = r - x
    kl = 0.5 * (mu ** 2 + lv.exp() - lv - 1).mean()
    loss = a.l1 * d.abs().mean() + a.mse * (d ** 2).mean() + a.kl * kl
    if a.anchor and step < a.anchor_steps:
        import torch.nn.functional as F_
        first = F_.avg_pool3d(x[:, :, :1], (1, 8, 8))
        rest = F_.avg_pool3d(x[:, :, 1:], (4, 8, 8)) if x.shape[2] > 1 else first[:, :, :0]
        tgt = torch.cat([first, rest], 2)
        loss = loss + a.anchor * (mu[:, :3] - tgt).abs().mean()
    opt.zero_grad(); loss.backward()
    gn = torch.nn.utils.clip_grad_norm_(vae.parameters(), a.clip if a.clip else 1e9).item()
    opt.step(); acc.append(loss.item())
    if (step + 1) % 25 == 0:
        print(f"step {step+1} loss {np.mean(acc):.4f} gn {gn:.3f} kl {kl.item():.3f} {time.time()-t0:.0f}s", flush=True); acc = []
    if (step + 1) % a.every == 0:
        with torch.no_grad():
            pf = 10 * torch.log10(4 / ((decode(vae._encode(x)[:, :8]).clamp(-1, 1) - x) ** 2).mean(dim=(0, 1, 3, 4)))
        print("  batch psnr per frame", [round(v, 1) for v in pf.tolist()], flush=True)
        ps, ostd, mstd = evaluate(); print(f"  eval psnr {ps:.2f} out-std-across-clips {ostd:.4f} mu-std {mstd:.4f}", flush=True)
if a.save: torch.save(vae.state_dict(), a.save)
if a.save:
    from PIL import Image
    with torch.no_grad():
        x = tens(va[:4]); m = vae._encode(x); r = decode(m[:, :8]).clamp(-1, 1)
    rows = []
    for b in range(4):
        row = [x[b, :, t] for t in (0, 8, 16)] + [r[b, :, t] for t in (0, 8, 16)]
        rows.append(torch.cat(row, 2))
    g = torch.cat(rows, 1)
    Image.fromarray(((g.permute(1, 2, 0) + 1) * 127.5).clamp(0, 255).byte().numpy()).resize((6*128, 4*128), 0).save(a.save + ".png")

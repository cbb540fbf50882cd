import numpy as np, torch
exec(open("common.py").read())
torch.manual_seed(0)
import sys
import diffusers.models.autoencoders.autoencoder_kl_wan as w_
if len(sys.argv) > 1:
  with torch.no_grad():
    for n_, m_ in vae.named_modules():
        if isinstance(m_, w_.WanCausalConv3d) and m_.weight.shape[2] == 3:
            w = m_.weight
            if w.shape[3] == 3:
                w[:, :, 2] *= 3 ** 0.5; w[:, :, :2] = 0
            else:
                co, ci = w.shape[:2]; w.zero_(); m_.bias.zero_()
                for j in range(co): w[j, j % ci, 2, 0, 0] = 1.0
tr = np.fromfile("data/train.u8", dtype=np.uint8).reshape(-1, 9, 64, 64, 3)
x = tens(tr[:2])
with torch.no_grad():
    m0 = vae._encode(x)[:, :8]
    for f in [0, 1, 4, 5, 8]:
        x2 = x.clone(); x2[:, :, f] = -x2[:, :, f]
        m = vae._encode(x2)[:, :8]
        print("flip input frame", f, "-> latent change per latent frame", [round(v, 4) for v in (m - m0).abs().mean(dim=(0, 1, 3, 4)).tolist()])
    r0 = decode(m0)
    for k in range(3):
        z = m0.clone(); z[:, :, k] += 1.0
        r = decode(z)
        print("bump latent frame", k, "-> output change per frame", [round(v, 3) for v in (r - r0).abs().mean(dim=(0, 1, 3, 4)).tolist()])

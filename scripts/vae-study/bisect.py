import sys, numpy as np, torch, torch.nn.functional as F
exec(open("common.py").read())
torch.manual_seed(0); torch.set_num_threads(1)
tr = np.fromfile("data/train.u8", dtype=np.uint8).reshape(-1, 9, 64, 64, 3)
part = sys.argv[1]
params = [p for n, p in vae.named_parameters() if (n.startswith("decoder") or n.startswith("post")) == (part == "dec")]
opt = torch.optim.AdamW(params, lr=3e-4, weight_decay=1e-4, eps=1e-5)
acc = []
for s in range(150):
    x = tens(tr[np.arange(s * 16, s * 16 + 16) % len(tr), :1])
    pooled = F.avg_pool3d(x, (1, 8, 8))  # [b,3,1,8,8]
    target_z = torch.cat([pooled, torch.zeros_like(pooled), torch.zeros_like(pooled[:, :2])], 1)  # 8 ch
    if part == "dec":
        r = decode(target_z); d = r - x; loss = d.abs().mean() + (d ** 2).mean()
    else:
        m = vae._encode(x); d = m[:, :8] - target_z; loss = d.abs().mean() + (d ** 2).mean()
    opt.zero_grad(); loss.backward(); opt.step(); acc.append(loss.item())
    if (s + 1) % 25 == 0: print(part, s + 1, round(np.mean(acc), 4), flush=True); acc = []

import numpy as np, torch
from diffusers.models.autoencoders.autoencoder_kl_wan import AutoencoderKLWan
va = np.fromfile("data/val.u8", dtype=np.uint8).reshape(-1, 17, 64, 64, 3)
def tens(x): return torch.from_numpy(x).float().div(127.5).sub(1).permute(0, 4, 1, 2, 3).contiguous()
vae = AutoencoderKLWan(base_dim=16, z_dim=8, dim_mult=[1,2,2,2], num_res_blocks=1, attn_scales=[], temperal_downsample=[False,True,True], latents_mean=[0.0]*8, latents_std=[1.0]*8)
def decode(z):
    vae.clear_cache(); x = vae.post_quant_conv(z); outs = []
    for i in range(x.shape[2]):
        vae._conv_idx = [0]
        outs.append(vae.decoder(x[:, :, i:i+1], feat_cache=vae._feat_map, feat_idx=vae._conv_idx, first_chunk=(i == 0)))
    vae.clear_cache(); return torch.cat(outs, 2)

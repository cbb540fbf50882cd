//! The Wan2.1 diffusion transformer backbone (diffusers `WanTransformer3DModel` layout).
//!
//! Read top to bottom: config and presets, embedders (patch, time, text), attention, feed-forward,
//! block, the model with its token-level API, and the checkpoint key table.
//!
//! Both SemanticGen stages build on this backbone: the semantic generator uses it on the semantic
//! grid; the refiner appends semantic tokens to the VAE tokens through the in-context hook
//! ([`WanDit::layout`] with extra token positions, then [`WanDit::forward_tokens`]). Self-attention
//! runs per layer in full or temporal-window mode ([`AttentionMode`]).
//!
//! Numerics follow diffusers exactly (NOTES §4b): QK RMSNorm across heads (eps 1e-6) before the
//! head split in self- and cross-attention; 3D interleaved RoPE in self-attention only;
//! `x += attn1(LN(x)·(1+scale)+shift)·gate`, `x += attn2(norm2(x), text)` (no gate),
//! `x += ffn(LN(x)·(1+c_scale)+c_shift)·c_gate`; the head modulates with `temb`, not the 6-way
//! projection.

use crate::attention::{sdpa, AttentionMode, WindowPlan};
use crate::checkpoint::KeyRule;
use crate::layers::{
    gelu_tanh, layer_norm, modulate, timestep_embedding, token_rows, AffineLayerNorm,
    AffineLayerNormConfig, RmsNorm, RmsNormConfig,
};
use crate::rope::{grid_positions, Rope3d, RopeTables, TokenRope};
use crate::ConfigError;
use burn::module::Param;
use burn::nn::conv::{Conv3d, Conv3dConfig};
use burn::nn::{Linear, LinearConfig};
use burn::prelude::*;
use burn::tensor::activation::silu;

// ---------------------------------------------------------------------------------------------
// Config and presets
// ---------------------------------------------------------------------------------------------

/// Configuration of the Wan DiT. Field names follow diffusers' `config.json`; `attn_window` and
/// `rope_theta` are semgen additions.
#[derive(Config, Debug, PartialEq)]
pub struct WanDitConfig {
    /// `(p_t, p_h, p_w)` patch of the Conv3d patch embedding (kernel = stride).
    pub patch_size: [usize; 3],
    pub num_attention_heads: usize,
    pub attention_head_dim: usize,
    pub in_channels: usize,
    pub out_channels: usize,
    pub text_dim: usize,
    pub freq_dim: usize,
    pub ffn_dim: usize,
    pub num_layers: usize,
    /// Affine LayerNorm before cross-attention (diffusers `norm2`).
    #[config(default = true)]
    pub cross_attn_norm: bool,
    #[config(default = 1e-6)]
    pub eps: f64,
    #[config(default = 10000.0)]
    pub rope_theta: f64,
    /// Temporal window in (patched) frames for self-attention; `None` = full attention in every
    /// layer. Odd layers shift their windows by half a window (paper §2).
    #[config(default = "None")]
    pub attn_window: Option<usize>,
}

impl WanDitConfig {
    /// The fixture config (`reference/fixtures/wan_dit/config.json`): D = 40, 2 heads × 20, L = 2.
    pub fn tiny() -> Self {
        Self::new([1, 2, 2], 2, 20, 4, 4, 16, 32, 64, 2)
    }

    /// The "DiT small" of NOTES §6 (5.89M params): D = 256, 2 heads × 128, L = 4, ffn 1024,
    /// 16 latent channels, text_dim 4096.
    pub fn small() -> Self {
        Self::new([1, 2, 2], 2, 128, 16, 16, 4096, 256, 1024, 4)
    }

    /// Wan2.1-T2V-1.3B (diffusers `Wan-AI/Wan2.1-T2V-1.3B-Diffusers/transformer/config.json`):
    /// D = 1536, 12 heads × 128, L = 30, ffn 8960, text_dim 4096 (umT5-XXL), freq 256.
    pub fn wan21_1_3b() -> Self {
        Self::new([1, 2, 2], 12, 128, 16, 16, 4096, 256, 8960, 30)
    }

    /// Wan2.1-T2V-14B: D = 5120, 40 heads × 128, L = 40, ffn 13824.
    pub fn wan21_14b() -> Self {
        Self::new([1, 2, 2], 40, 128, 16, 16, 4096, 256, 13824, 40)
    }

    /// Model width `D = heads · head_dim`.
    pub fn dim(&self) -> usize {
        self.num_attention_heads * self.attention_head_dim
    }

    /// Attention mode of layer `i`.
    pub fn attention_mode(&self, layer: usize) -> AttentionMode {
        match self.attn_window {
            None => AttentionMode::Full,
            Some(frames) => AttentionMode::Window {
                frames,
                shifted: layer % 2 == 1,
            },
        }
    }

    /// Reads a diffusers `WanTransformer3DModel` `config.json`. Unknown keys are ignored; keys
    /// that change the architecture in ways semgen does not implement are refused.
    pub fn from_diffusers_json(text: &str) -> Result<Self, ConfigError> {
        let v: serde_json::Value = serde_json::from_str(text).map_err(|e| ConfigError::Parse {
            what: "WanTransformer3DModel config.json".into(),
            reason: e.to_string(),
        })?;
        let get_usize = |k: &str| -> Result<usize, ConfigError> {
            v.get(k)
                .and_then(|x| x.as_u64())
                .map(|x| x as usize)
                .ok_or_else(|| {
                    ConfigError::invalid(format!("config.json: '{k}' missing or not an integer"))
                })
        };
        let patch: Vec<usize> = match v.get("patch_size").and_then(|p| p.as_array()) {
            Some(a) if a.len() == 3 && a.iter().all(|x| x.as_u64().is_some()) => {
                a.iter().map(|x| x.as_u64().unwrap() as usize).collect()
            }
            _ => {
                return Err(ConfigError::invalid(
                    "config.json: 'patch_size' must be a list of 3 integers",
                ))
            }
        };
        for k in ["image_dim", "added_kv_proj_dim", "pos_embed_seq_len"] {
            if v.get(k).is_some_and(|x| !x.is_null()) {
                return Err(ConfigError::invalid(format!(
                    "config.json: '{k}' is set; image-conditioned Wan variants are not supported"
                )));
            }
        }
        match v.get("qk_norm").and_then(|x| x.as_str()) {
            None | Some("rms_norm_across_heads") => {}
            Some(other) => {
                return Err(ConfigError::invalid(format!(
                    "config.json: qk_norm '{other}' is not supported (only 'rms_norm_across_heads')"
                )))
            }
        }
        let mut cfg = Self::new(
            [patch[0], patch[1], patch[2]],
            get_usize("num_attention_heads")?,
            get_usize("attention_head_dim")?,
            get_usize("in_channels")?,
            get_usize("out_channels").or_else(|_| get_usize("in_channels"))?,
            get_usize("text_dim")?,
            get_usize("freq_dim")?,
            get_usize("ffn_dim")?,
            get_usize("num_layers")?,
        );
        if let Some(b) = v.get("cross_attn_norm").and_then(|x| x.as_bool()) {
            cfg.cross_attn_norm = b;
        }
        if let Some(e) = v.get("eps").and_then(|x| x.as_f64()) {
            cfg.eps = e;
        }
        cfg.validate()?;
        Ok(cfg)
    }

    /// Checks every invariant the model relies on.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let nonzero = [
            ("num_attention_heads", self.num_attention_heads),
            ("attention_head_dim", self.attention_head_dim),
            ("in_channels", self.in_channels),
            ("out_channels", self.out_channels),
            ("text_dim", self.text_dim),
            ("freq_dim", self.freq_dim),
            ("ffn_dim", self.ffn_dim),
        ];
        for (k, v) in nonzero {
            if v == 0 {
                return Err(ConfigError::invalid(format!("{k} must be positive")));
            }
        }
        if self.patch_size.iter().any(|&p| p == 0) {
            return Err(ConfigError::invalid(format!(
                "patch_size {:?} must be positive",
                self.patch_size
            )));
        }
        if self.freq_dim % 2 != 0 {
            return Err(ConfigError::invalid(format!(
                "freq_dim {} must be even",
                self.freq_dim
            )));
        }
        if self.attn_window == Some(0) {
            return Err(ConfigError::invalid("attn_window must be at least 1 frame"));
        }
        Rope3d::new(
            self.attention_head_dim,
            crate::rope::wan_rope_axes(self.attention_head_dim),
            self.rope_theta,
        )
        .map(|_| ())
    }

    /// Builds the model with freshly initialised weights.
    pub fn init<B: Backend>(&self, device: &B::Device) -> Result<WanDit<B>, ConfigError> {
        self.validate()?;
        let d = self.dim();
        let p = self.patch_size;
        let linear = |i, o| LinearConfig::new(i, o).init(device);
        Ok(WanDit {
            patch_embedding: Conv3dConfig::new([self.in_channels, d], p)
                .with_stride(p)
                .init(device),
            condition_embedder: WanConditionEmbedder {
                time_embedder: MlpPair {
                    linear_1: linear(self.freq_dim, d),
                    linear_2: linear(d, d),
                },
                time_proj: linear(d, 6 * d),
                text_embedder: MlpPair {
                    linear_1: linear(self.text_dim, d),
                    linear_2: linear(d, d),
                },
            },
            blocks: (0..self.num_layers)
                .map(|_| self.init_block(device))
                .collect(),
            scale_shift_table: Param::from_tensor(
                Tensor::random(
                    [1, 2, d],
                    burn::tensor::Distribution::Normal(0.0, 1.0),
                    device,
                ) / (d as f64).sqrt(),
            ),
            proj_out: linear(d, self.out_channels * p.iter().product::<usize>()),
            config: self.clone(),
        })
    }

    fn init_block<B: Backend>(&self, device: &B::Device) -> WanBlock<B> {
        let d = self.dim();
        let linear = |i, o| LinearConfig::new(i, o).init(device);
        let attn = || WanAttention {
            to_q: linear(d, d),
            to_k: linear(d, d),
            to_v: linear(d, d),
            to_out: linear(d, d),
            norm_q: RmsNormConfig::new(d).with_eps(self.eps).init(device),
            norm_k: RmsNormConfig::new(d).with_eps(self.eps).init(device),
            heads: self.num_attention_heads,
        };
        WanBlock {
            scale_shift_table: Param::from_tensor(
                Tensor::random(
                    [1, 6, d],
                    burn::tensor::Distribution::Normal(0.0, 1.0),
                    device,
                ) / (d as f64).sqrt(),
            ),
            attn1: attn(),
            attn2: attn(),
            norm2: self.cross_attn_norm.then(|| {
                AffineLayerNormConfig::new(d)
                    .with_eps(self.eps)
                    .init(device)
            }),
            ffn: FeedForward {
                proj_in: linear(d, self.ffn_dim),
                proj_out: linear(self.ffn_dim, d),
            },
            eps: self.eps,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Embedders
// ---------------------------------------------------------------------------------------------

/// Two linears with an activation between them (`linear_1`, `linear_2`, upstream names).
#[derive(Module, Debug)]
pub struct MlpPair<B: Backend> {
    pub linear_1: Linear<B>,
    pub linear_2: Linear<B>,
}

/// Time and text embedders (diffusers `WanTimeTextImageEmbedding`, without the image branch).
#[derive(Module, Debug)]
pub struct WanConditionEmbedder<B: Backend> {
    /// `linear_2(SiLU(linear_1(sinusoid(t))))`
    pub time_embedder: MlpPair<B>,
    /// `Linear(D, 6D)` on `SiLU(temb)`: the per-block modulation.
    pub time_proj: Linear<B>,
    /// `linear_2(GELU_tanh(linear_1(text)))`
    pub text_embedder: MlpPair<B>,
}

// ---------------------------------------------------------------------------------------------
// Attention and feed-forward
// ---------------------------------------------------------------------------------------------

/// Self- or cross-attention with QK RMSNorm across heads (diffusers `WanAttention`).
#[derive(Module, Debug)]
pub struct WanAttention<B: Backend> {
    pub to_q: Linear<B>,
    pub to_k: Linear<B>,
    pub to_v: Linear<B>,
    pub to_out: Linear<B>,
    pub norm_q: RmsNorm<B>,
    pub norm_k: RmsNorm<B>,
    #[module(skip)]
    pub heads: usize,
}

impl<B: Backend> WanAttention<B> {
    fn split_heads(&self, x: Tensor<B, 3>) -> Tensor<B, 4> {
        let [b, n, d] = x.dims();
        x.reshape([b, n, self.heads, d / self.heads])
            .swap_dims(1, 2)
    }

    fn merge_heads(x: Tensor<B, 4>) -> Tensor<B, 3> {
        let [b, h, n, dh] = x.dims();
        x.swap_dims(1, 2).reshape([b, n, h * dh])
    }

    /// Self-attention with RoPE, full or windowed according to `plan`.
    pub fn forward_self(
        &self,
        x: Tensor<B, 3>,
        rope: &TokenRope<B>,
        plan: &WindowPlan,
    ) -> Tensor<B, 3> {
        // Token-major throughout: RoPE and the window gathers act on `[B, N, H·D]` rows (see
        // `TokenRope` and `WindowPlan::attend_tokens`).
        let q = rope.apply(self.norm_q.forward(self.to_q.forward(x.clone())));
        let k = rope.apply(self.norm_k.forward(self.to_k.forward(x.clone())));
        let v = self.to_v.forward(x);
        self.to_out.forward(plan.attend_tokens(q, k, v, self.heads))
    }

    /// Cross-attention from `x` to the embedded text `ctx` (no RoPE, no mask: upstream attends
    /// to the zero-padded text positions too).
    pub fn forward_cross(&self, x: Tensor<B, 3>, ctx: Tensor<B, 3>) -> Tensor<B, 3> {
        let q = self.split_heads(self.norm_q.forward(self.to_q.forward(x)));
        let k = self.split_heads(self.norm_k.forward(self.to_k.forward(ctx.clone())));
        let v = self.split_heads(self.to_v.forward(ctx));
        self.to_out.forward(Self::merge_heads(sdpa(q, k, v)))
    }
}

impl<B: Backend> WanAttention<B> {
    /// Per-segment cross-attention: `text` is `[B, S, L, D]` (embedded), and the tokens of
    /// segment `s` (per `plan`) attend only to `text[:, s]`.
    pub fn forward_cross_segmented(
        &self,
        x: Tensor<B, 3>,
        text: Tensor<B, 4>,
        plan: &WindowPlan,
    ) -> Tensor<B, 3> {
        let [b, s, l, d] = text.dims();
        let ctx = text.reshape([b * s, l, d]);
        let q = self.split_heads(self.norm_q.forward(self.to_q.forward(x)));
        let k = self.split_heads(self.norm_k.forward(self.to_k.forward(ctx.clone())));
        let v = self.split_heads(self.to_v.forward(ctx));
        self.to_out
            .forward(Self::merge_heads(plan.attend_cross(q, k, v)))
    }
}

/// The text a block's cross-attention reads (already embedded to width `D`).
#[derive(Debug, Clone)]
pub enum TextCondition<B: Backend> {
    /// One prompt for every token: `[B, L, D]`.
    Shared(Tensor<B, 3>),
    /// One prompt per segment (long "story" videos): `[B, S, L, D]`; `plan` assigns each token to
    /// its segment (see [`TokenLayout::segment_plan`]).
    Segmented {
        text: Tensor<B, 4>,
        plan: std::sync::Arc<WindowPlan>,
    },
}

/// GELU-tanh feed-forward (`ffn.net.0.proj`, `ffn.net.2` upstream).
#[derive(Module, Debug)]
pub struct FeedForward<B: Backend> {
    pub proj_in: Linear<B>,
    pub proj_out: Linear<B>,
}

impl<B: Backend> FeedForward<B> {
    pub fn forward(&self, x: Tensor<B, 3>) -> Tensor<B, 3> {
        self.proj_out.forward(gelu_tanh(self.proj_in.forward(x)))
    }
}

// ---------------------------------------------------------------------------------------------
// Block
// ---------------------------------------------------------------------------------------------

/// One transformer block (diffusers `WanTransformerBlock`).
#[derive(Module, Debug)]
pub struct WanBlock<B: Backend> {
    /// `(1, 6, D)`: shift, scale, gate for attention and for the FFN.
    pub scale_shift_table: Param<Tensor<B, 3>>,
    pub attn1: WanAttention<B>,
    pub attn2: WanAttention<B>,
    pub norm2: Option<AffineLayerNorm<B>>,
    pub ffn: FeedForward<B>,
    #[module(skip)]
    pub eps: f64,
}

impl<B: Backend> WanBlock<B> {
    /// `x`: `[B, N, D]`; `tproj`: `[B, 6, D]`; `text`: `[B, L, D]`.
    pub fn forward(
        &self,
        x: Tensor<B, 3>,
        tproj: Tensor<B, 3>,
        text: &TextCondition<B>,
        rope: &TokenRope<B>,
        plan: &WindowPlan,
    ) -> Tensor<B, 3> {
        let n = x.dims()[1];
        let m = (self.scale_shift_table.val() + tproj).chunk(6, 1);
        let h = modulate(layer_norm(x.clone(), self.eps), m[0].clone(), m[1].clone());
        let x = x + self.attn1.forward_self(h, rope, plan) * token_rows(m[2].clone(), n);
        let h = match &self.norm2 {
            Some(n) => n.forward(x.clone()),
            None => x.clone(),
        };
        let cross = match text {
            TextCondition::Shared(t) => self.attn2.forward_cross(h, t.clone()),
            TextCondition::Segmented { text, plan } => {
                self.attn2.forward_cross_segmented(h, text.clone(), plan)
            }
        };
        let x = x.clone() + cross;
        let h = modulate(layer_norm(x.clone(), self.eps), m[3].clone(), m[4].clone());
        x + self.ffn.forward(h) * token_rows(m[5].clone(), n)
    }
}

// ---------------------------------------------------------------------------------------------
// Model
// ---------------------------------------------------------------------------------------------

/// The Wan DiT. See the module docs.
#[derive(Module, Debug)]
pub struct WanDit<B: Backend> {
    pub patch_embedding: Conv3d<B>,
    pub condition_embedder: WanConditionEmbedder<B>,
    pub blocks: Vec<WanBlock<B>>,
    /// `(1, 2, D)`: shift and scale of the output head.
    pub scale_shift_table: Param<Tensor<B, 3>>,
    pub proj_out: Linear<B>,
    #[module(skip)]
    pub config: WanDitConfig,
}

/// Token positions and per-layer window plans for one sequence layout. Build it once per input
/// shape with [`WanDit::layout`] and reuse it for every step of a sampling loop.
#[derive(Debug, Clone)]
pub struct TokenLayout<B: Backend> {
    /// The rotary tables of every token, built once for all layers and steps.
    pub rope: RopeTables<B>,
    /// One plan per layer (shared by reference when equal).
    plans: Vec<std::sync::Arc<WindowPlan>>,
    /// Number of tokens of the main (patched) grid; extra tokens follow them.
    pub main_tokens: usize,
    /// The patched grid `(f, h, w)`.
    pub grid: [usize; 3],
    /// Main-grid frame of every token (main tokens, then extra tokens).
    pub frames: Vec<usize>,
}

impl<B: Backend> TokenLayout<B> {
    pub fn plan(&self, layer: usize) -> &WindowPlan {
        &self.plans[layer]
    }

    pub fn num_tokens(&self) -> usize {
        self.rope.num_tokens()
    }

    /// Assigns tokens to prompt segments by frame: segment `s` holds frames
    /// `[s·frames_per_segment, (s+1)·frames_per_segment)` (the last segment takes any rest, up
    /// to `segments − 1`).
    pub fn segment_plan(
        &self,
        frames_per_segment: usize,
        segments: usize,
    ) -> std::sync::Arc<WindowPlan> {
        let fps = frames_per_segment.max(1);
        let ids = self
            .frames
            .iter()
            .map(|&f| (f / fps).min(segments.saturating_sub(1)))
            .collect();
        std::sync::Arc::new(WindowPlan::from_ids(ids))
    }
}

/// Extra in-context tokens appended after the main grid: their RoPE positions (in patched-grid
/// units, fractional allowed) and the main-grid frame each belongs to for windowing.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ExtraTokens {
    pub positions: Vec<[f64; 3]>,
    pub frames: Vec<usize>,
}

impl<B: Backend> WanDit<B> {
    pub fn dim(&self) -> usize {
        self.config.dim()
    }

    /// `(temb [B, D], timestep_proj [B, 6, D])` from timesteps `[B]` (in [0, 1000]).
    pub fn embed_timestep(&self, t: Tensor<B, 1>) -> (Tensor<B, 2>, Tensor<B, 3>) {
        let ce = &self.condition_embedder;
        let f = timestep_embedding(t, self.config.freq_dim, true, 0.0);
        let temb = ce
            .time_embedder
            .linear_2
            .forward(silu(ce.time_embedder.linear_1.forward(f)));
        let tproj = ce.time_proj.forward(silu(temb.clone()));
        let [b, _] = tproj.dims();
        (temb, tproj.reshape([b, 6, self.dim()]))
    }

    /// Text features `[B, L, text_dim]` → `[B, L, D]`.
    pub fn embed_text(&self, text: Tensor<B, 3>) -> Tensor<B, 3> {
        let te = &self.condition_embedder.text_embedder;
        te.linear_2.forward(gelu_tanh(te.linear_1.forward(text)))
    }

    /// Patched grid size for a latent of `[C, F, H, W]` (errors if not divisible by the patch).
    pub fn patched_grid(&self, f: usize, h: usize, w: usize) -> Result<[usize; 3], ConfigError> {
        let p = self.config.patch_size;
        if f % p[0] != 0 || h % p[1] != 0 || w % p[2] != 0 {
            return Err(ConfigError::invalid(format!(
                "latent grid {f}x{h}x{w} is not divisible by the patch size {p:?}"
            )));
        }
        Ok([f / p[0], h / p[1], w / p[2]])
    }

    /// Latents `[B, C, F, H, W]` → tokens `[B, N, D]` in `(f, h, w)` row-major order.
    pub fn patchify(&self, x: Tensor<B, 5>) -> Tensor<B, 3> {
        let y = self.patch_embedding.forward(x);
        let [b, d, f, h, w] = y.dims();
        y.reshape([b, d, f * h * w]).swap_dims(1, 2)
    }

    /// Builds RoPE tables and window plans for the main grid plus optional extra tokens.
    pub fn layout(
        &self,
        grid: [usize; 3],
        extra: Option<&ExtraTokens>,
        device: &B::Device,
    ) -> TokenLayout<B> {
        let [f, h, w] = grid;
        let mut positions = grid_positions(f, h, w);
        let mut frames: Vec<usize> = (0..f)
            .flat_map(|t| std::iter::repeat(t).take(h * w))
            .collect();
        if let Some(e) = extra {
            positions.extend_from_slice(&e.positions);
            frames.extend(e.frames.iter().map(|&t| t.min(f.saturating_sub(1))));
        }
        let rope = Rope3d::new(
            self.config.attention_head_dim,
            crate::rope::wan_rope_axes(self.config.attention_head_dim),
            self.config.rope_theta,
        )
        .expect("validated in init");
        let (cos, sin) = rope.cos_sin::<B>(&positions, device);
        let mut cache: Vec<(AttentionMode, std::sync::Arc<WindowPlan>)> = Vec::new();
        let plans = (0..self.blocks.len())
            .map(|i| {
                let mode = self.config.attention_mode(i);
                if let Some((_, p)) = cache.iter().find(|(m, _)| *m == mode) {
                    return p.clone();
                }
                let p = std::sync::Arc::new(WindowPlan::new(&frames, f, mode));
                cache.push((mode, p.clone()));
                p
            })
            .collect();
        TokenLayout {
            rope: RopeTables::interleaved(cos, sin),
            plans,
            main_tokens: f * h * w,
            grid,
            frames,
        }
    }

    /// Runs the blocks over a token sequence (main tokens first, then any extra tokens).
    pub fn forward_tokens(
        &self,
        mut x: Tensor<B, 3>,
        layout: &TokenLayout<B>,
        tproj: Tensor<B, 3>,
        text: &TextCondition<B>,
    ) -> Tensor<B, 3> {
        let rope = layout
            .rope
            .for_tokens(x.dims()[0], self.config.num_attention_heads);
        for (i, block) in self.blocks.iter().enumerate() {
            x = block.forward(x, tproj.clone(), text, &rope, layout.plan(i));
        }
        x
    }

    /// Per-segment text features `[B, S, L, text_dim]` → `[B, S, L, D]`.
    pub fn embed_segment_text(&self, text: Tensor<B, 4>) -> Tensor<B, 4> {
        let [b, s, l, c] = text.dims();
        let e = self.embed_text(text.reshape([b * s, l, c]));
        e.reshape([b, s, l, self.dim()])
    }

    /// Output head on main tokens `[B, N, D]` → `[B, N, C_out·p_t·p_h·p_w]`.
    pub fn head(&self, x: Tensor<B, 3>, temb: Tensor<B, 2>) -> Tensor<B, 3> {
        let m = (self.scale_shift_table.val() + temb.unsqueeze_dim(1)).chunk(2, 1);
        self.proj_out.forward(modulate(
            layer_norm(x, self.config.eps),
            m[0].clone(),
            m[1].clone(),
        ))
    }

    /// `[B, N, C·p_t·p_h·p_w]` → `[B, C, F, H, W]` (diffusers' unpatchify, done at rank ≤ 6).
    pub fn unpatchify(&self, y: Tensor<B, 3>, grid: [usize; 3]) -> Tensor<B, 5> {
        let [b, _, _] = y.dims();
        let [f, h, w] = grid;
        let [pt, ph, pw] = self.config.patch_size;
        let c = self.config.out_channels;
        let y = y
            .reshape([b, f, h, w, pt, ph * pw * c])
            .permute([0, 1, 4, 2, 3, 5])
            .reshape([b, f * pt, h, w, ph, pw * c])
            .permute([0, 1, 2, 4, 3, 5])
            .reshape([b, f * pt, h * ph, w * pw, c]);
        y.permute([0, 4, 1, 2, 3])
    }

    /// Velocity prediction for latents `[B, C, F, H, W]` at timesteps `[B]` given text features
    /// `[B, L, text_dim]`. Errors if the latent grid is not divisible by the patch size.
    pub fn forward(
        &self,
        x: Tensor<B, 5>,
        timestep: Tensor<B, 1>,
        text: Tensor<B, 3>,
    ) -> Result<Tensor<B, 5>, ConfigError> {
        let [_, _, f, h, w] = x.dims();
        let grid = self.patched_grid(f, h, w)?;
        let layout = self.layout(grid, None, &x.device());
        Ok(self.forward_with_layout(x, timestep, text, &layout))
    }

    /// [`WanDit::forward`] with a prebuilt layout (no per-call RoPE/plan work).
    pub fn forward_with_layout(
        &self,
        x: Tensor<B, 5>,
        timestep: Tensor<B, 1>,
        text: Tensor<B, 3>,
        layout: &TokenLayout<B>,
    ) -> Tensor<B, 5> {
        let tokens = self.patchify(x);
        let (temb, tproj) = self.embed_timestep(timestep);
        let text = TextCondition::Shared(self.embed_text(text));
        let out = self.forward_tokens(tokens, layout, tproj, &text);
        self.unpatchify(self.head(out, temb), layout.grid)
    }
}

// ---------------------------------------------------------------------------------------------
// Checkpoint keys
// ---------------------------------------------------------------------------------------------

/// diffusers key fragments → semgen field names (the only renames; everything else matches).
pub const DIFFUSERS_KEYS: &[KeyRule] = &[
    KeyRule::new("ffn.net.0.proj", "ffn.proj_in"),
    KeyRule::new("ffn.net.2", "ffn.proj_out"),
    KeyRule::new("to_out.0", "to_out"),
];

/// Original Wan2.1 key fragments → diffusers names (from diffusers' `single_file_utils.py`).
/// Apply these first, then [`DIFFUSERS_KEYS`]. Note the swap: original `norm3` (the affine
/// cross-attention norm) is diffusers `norm2`.
pub const ORIGINAL_WAN_KEYS: &[KeyRule] = &[
    KeyRule::new(
        "time_embedding.0",
        "condition_embedder.time_embedder.linear_1",
    ),
    KeyRule::new(
        "time_embedding.2",
        "condition_embedder.time_embedder.linear_2",
    ),
    KeyRule::new(
        "text_embedding.0",
        "condition_embedder.text_embedder.linear_1",
    ),
    KeyRule::new(
        "text_embedding.2",
        "condition_embedder.text_embedder.linear_2",
    ),
    KeyRule::new("time_projection.1", "condition_embedder.time_proj"),
    KeyRule::new("head.modulation", "scale_shift_table"),
    KeyRule::new("head.head", "proj_out"),
    KeyRule::new("modulation", "scale_shift_table"),
    KeyRule::new("self_attn", "attn1"),
    KeyRule::new("cross_attn", "attn2"),
    KeyRule::new("q", "to_q"),
    KeyRule::new("k", "to_k"),
    KeyRule::new("v", "to_v"),
    KeyRule::new("o", "to_out.0"),
    KeyRule::new("norm3", "norm2"),
    KeyRule::new("ffn.0", "ffn.net.0.proj"),
    KeyRule::new("ffn.2", "ffn.net.2"),
];

// ---------------------------------------------------------------------------------------------
// Growing a trained model
// ---------------------------------------------------------------------------------------------

/// Zeroes a linear layer (weight and bias): a residual branch ending in it adds nothing. The
/// parameters stay trainable (a fresh zero tensor would not be marked for gradients).
pub fn zero_linear<B: Backend>(mut l: Linear<B>) -> Linear<B> {
    fn zero<B: Backend, const D: usize>(t: Tensor<B, D>) -> Tensor<B, D> {
        let trainable = t.is_require_grad();
        t.zeros_like().set_require_grad(trainable)
    }
    l.weight = l.weight.map(zero);
    l.bias = l.bias.map(|b| b.map(zero));
    l
}

impl<B: Backend> WanBlock<B> {
    /// This block as the identity: the output projections of its self-attention,
    /// cross-attention and FFN are zero, so each residual branch adds nothing, while the rest
    /// keeps its (random) initialisation and the zeroed projections still receive gradients.
    pub fn into_identity(mut self) -> Self {
        self.attn1.to_out = zero_linear(self.attn1.to_out);
        self.attn2.to_out = zero_linear(self.attn2.to_out);
        self.ffn.proj_out = zero_linear(self.ffn.proj_out);
        self
    }
}

impl<B: Backend> WanDit<B> {
    /// Grows this trained model to the depth of `deeper` (the same config with more layers):
    /// this model's blocks first, then `deeper`'s extra blocks turned into identities
    /// ([`WanBlock::into_identity`]), every other weight this model's. The grown model computes
    /// exactly what this one did, so a fine-tune starts from the trained function with more
    /// capacity (progressive depth growth). Errors when `deeper` differs in anything but a
    /// larger `num_layers`.
    pub fn grown_to(self, deeper: WanDit<B>) -> Result<WanDit<B>, ConfigError> {
        let (have, want) = (self.config.num_layers, deeper.config.num_layers);
        let mut same = deeper.config.clone();
        same.num_layers = have;
        if same != self.config || want < have {
            return Err(ConfigError::invalid(format!(
                "can only grow a model in depth: stored {:?}, wanted {:?}",
                self.config, deeper.config
            )));
        }
        let mut blocks = self.blocks;
        blocks.extend(
            deeper
                .blocks
                .into_iter()
                .skip(have)
                .map(WanBlock::into_identity),
        );
        Ok(WanDit {
            blocks,
            config: deeper.config,
            ..self
        })
    }
}

/// True if the keys look like an original Wan2.1 checkpoint rather than diffusers'.
pub fn is_original_wan_layout<'a>(mut keys: impl Iterator<Item = &'a str>) -> bool {
    keys.any(|k| k.starts_with("head.head.") || k.starts_with("time_embedding."))
}

impl<B: Backend> WanDit<B> {
    /// Builds a model for `config` and loads a diffusers or original-Wan2.1 safetensors state
    /// dict into it (strict: every parameter present, no unexpected tensor).
    pub fn load(
        config: &WanDitConfig,
        path: &std::path::Path,
        device: &B::Device,
    ) -> Result<(Self, crate::checkpoint::LoadReport), crate::checkpoint::LoadError> {
        use crate::checkpoint::{load_into, parse_safetensors, LoadError, LoadOptions};
        let model = config
            .init::<B>(device)
            .map_err(|e| LoadError::Invalid(e.to_string()))?;
        let file = parse_safetensors(path)?;
        let names: Vec<String> = file.tensors().into_iter().map(|(k, _)| k).collect();
        let rules: Vec<KeyRule> = if is_original_wan_layout(names.iter().map(String::as_str)) {
            ORIGINAL_WAN_KEYS
                .iter()
                .chain(DIFFUSERS_KEYS)
                .copied()
                .collect()
        } else {
            DIFFUSERS_KEYS.to_vec()
        };
        load_into(model, &file, &rules, &LoadOptions::default())
    }
}

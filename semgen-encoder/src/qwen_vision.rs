//! The semantic video encoder: a port of transformers' `Qwen2_5_VisionTransformerPretrainedModel`
//! (transformers 5.23, `models/qwen2_5_vl/modeling_qwen2_5_vl.py` and `vision_utils.py`), plus the
//! processor's patchify. Reading order: config → host-side plan (positions, window order, attention
//! segments) → patchify → modules → forward → the clip API.
//!
//! Upstream works on one *packed* sequence: the patches of every image and video of a batch are
//! concatenated (`pixel_values: [N, C·tps·p·p]`) with a list of grids `grid_thw`. Tokens are
//! permuted once into window order (merge units of `m×m` patches stay contiguous), every block
//! attends inside segments of that order (4×4-merge-unit windows, or "full" = one temporal slice
//! of one item), and the merger output is permuted back with `argsort(window_index)`.
//!
//! Attention inside segments is batched dense attention over re-blocked tokens: segments of equal
//! length are gathered into one `[n_segments, heads, len, head_dim]` batch and run through one
//! fused call (`semgen_core::attention::WindowPlan`); there is no `N×N` mask.

use crate::error::EncodeError;
use burn::module::Param;
use burn::nn::{Linear, LinearConfig};
use burn::prelude::*;
use burn::tensor::activation::silu;
use semgen_core::attention::{index_tensor, WindowPlan};
use semgen_core::checkpoint::{KeyRule, LoadError, LoadOptions, LoadReport};
use semgen_core::layers::{gelu_erf, RmsNorm, RmsNormConfig};
use semgen_core::rope::{qwen_rope_2d, RopeTables, TokenRope};
use semgen_core::ConfigError;
use std::path::Path;

/// OpenAI CLIP normalisation used by the Qwen2.5-VL processor (after rescaling to [0, 1]).
pub const CLIP_MEAN: [f64; 3] = [0.481_454_66, 0.457_827_5, 0.408_210_73];
/// See [`CLIP_MEAN`].
pub const CLIP_STD: [f64; 3] = [0.268_629_54, 0.261_302_58, 0.275_777_11];

/// RMSNorm epsilon of every norm in the tower (hard-coded upstream, not in the config).
const RMS_EPS: f64 = 1e-6;

// ---------------------------------------------------------------------------------------------
// Config
// ---------------------------------------------------------------------------------------------

/// Sizes of the vision tower, named as in `Qwen2_5_VLVisionConfig`.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct QwenVisionConfig {
    pub depth: usize,
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub num_heads: usize,
    pub in_channels: usize,
    pub patch_size: usize,
    pub spatial_merge_size: usize,
    pub temporal_patch_size: usize,
    /// Window side in pixels (112 upstream = 4×4 merge units of 28 px).
    pub window_size: usize,
    pub out_hidden_size: usize,
    /// Blocks that attend over whole temporal slices instead of windows.
    pub fullatt_block_indexes: Vec<usize>,
    pub rope_theta: f64,
}

impl QwenVisionConfig {
    /// The fixture-sized tower (`fixtures/qwen25vl_vision`): 4 blocks of width 32.
    pub fn tiny() -> Self {
        Self {
            depth: 4,
            hidden_size: 32,
            intermediate_size: 64,
            num_heads: 2,
            in_channels: 3,
            patch_size: 2,
            spatial_merge_size: 2,
            temporal_patch_size: 2,
            window_size: 8,
            out_hidden_size: 48,
            fullatt_block_indexes: vec![1, 3],
            rope_theta: 10000.0,
        }
    }

    /// The real Qwen2.5-VL-7B vision tower (1280 wide, 32 blocks, output 3584).
    pub fn qwen25vl_7b() -> Self {
        Self {
            depth: 32,
            hidden_size: 1280,
            intermediate_size: 3420,
            num_heads: 16,
            in_channels: 3,
            patch_size: 14,
            spatial_merge_size: 2,
            temporal_patch_size: 2,
            window_size: 112,
            out_hidden_size: 3584,
            fullatt_block_indexes: vec![7, 15, 23, 31],
            rope_theta: 10000.0,
        }
    }

    /// A small tower for 64×64 Shapes clips: 8-px patches, so a merged token covers 16×16 px (the
    /// DiT's 2×2 patch of 8×-downsampled latents) and a frame pair becomes a 4×4 grid; windows of
    /// 2×2 merge units, every other block full.
    pub fn shapes() -> Self {
        Self {
            depth: 4,
            hidden_size: 128,
            intermediate_size: 256,
            num_heads: 4,
            in_channels: 3,
            patch_size: 8,
            spatial_merge_size: 2,
            temporal_patch_size: 2,
            window_size: 32,
            out_hidden_size: 64,
            fullatt_block_indexes: vec![1, 3],
            rope_theta: 10000.0,
        }
    }

    /// Reads a transformers config: a standalone vision config, or a full Qwen2.5-VL config
    /// (its `vision_config`). Sizes come from the file; the class defaults of 5.23 are not the
    /// real widths (NOTES §4c), so a missing size is an error, not a default.
    pub fn from_transformers_json(text: &str) -> Result<Self, ConfigError> {
        let root: serde_json::Value =
            serde_json::from_str(text).map_err(|e| ConfigError::Parse {
                what: "Qwen2.5-VL vision config.json".into(),
                reason: e.to_string(),
            })?;
        let v = root.get("vision_config").unwrap_or(&root);
        let get = |k: &str| -> Result<usize, ConfigError> {
            v.get(k)
                .and_then(|x| x.as_u64())
                .map(|x| x as usize)
                .ok_or_else(|| {
                    ConfigError::invalid(format!("config.json: '{k}' missing or not an integer"))
                })
        };
        if let Some(act) = v.get("hidden_act").and_then(|a| a.as_str()) {
            if act != "silu" {
                return Err(ConfigError::invalid(format!(
                    "config.json: hidden_act '{act}' is not supported (Qwen2.5-VL vision uses 'silu')"
                )));
            }
        }
        let fullatt = v
            .get("fullatt_block_indexes")
            .and_then(|a| a.as_array())
            .ok_or_else(|| ConfigError::invalid("config.json: 'fullatt_block_indexes' missing"))?
            .iter()
            .map(|x| x.as_u64().map(|x| x as usize))
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| {
                ConfigError::invalid("config.json: 'fullatt_block_indexes' must hold integers")
            })?;
        let rope_theta = v
            .get("rope_parameters")
            .and_then(|r| r.get("rope_theta"))
            .or_else(|| v.get("rope_theta"))
            .and_then(|x| x.as_f64())
            .unwrap_or(10000.0);
        let config = Self {
            depth: get("depth")?,
            hidden_size: get("hidden_size")?,
            intermediate_size: get("intermediate_size")?,
            num_heads: get("num_heads")?,
            in_channels: get("in_channels")?,
            patch_size: get("patch_size")?,
            spatial_merge_size: get("spatial_merge_size")?,
            temporal_patch_size: get("temporal_patch_size")?,
            window_size: get("window_size")?,
            out_hidden_size: get("out_hidden_size")?,
            fullatt_block_indexes: fullatt,
            rope_theta,
        };
        config.validate()?;
        Ok(config)
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        let positive = [
            ("depth", self.depth),
            ("hidden_size", self.hidden_size),
            ("intermediate_size", self.intermediate_size),
            ("num_heads", self.num_heads),
            ("in_channels", self.in_channels),
            ("patch_size", self.patch_size),
            ("spatial_merge_size", self.spatial_merge_size),
            ("temporal_patch_size", self.temporal_patch_size),
            ("out_hidden_size", self.out_hidden_size),
        ];
        if let Some((k, _)) = positive.iter().find(|(_, v)| *v == 0) {
            return Err(ConfigError::invalid(format!("{k} must be positive")));
        }
        if !self.hidden_size.is_multiple_of(self.num_heads) {
            return Err(ConfigError::invalid(format!(
                "hidden_size {} is not divisible by num_heads {}",
                self.hidden_size, self.num_heads
            )));
        }
        // The 2D rotary splits the head in four: [h | w] frequencies, duplicated for rotate_half.
        if !self.head_dim().is_multiple_of(4) {
            return Err(ConfigError::invalid(format!(
                "head_dim {} must be a multiple of 4 for the 2D rotary",
                self.head_dim()
            )));
        }
        if self.merger_window() == 0 {
            return Err(ConfigError::invalid(format!(
                "window_size {} is smaller than patch_size·spatial_merge_size = {}",
                self.window_size,
                self.patch_size * self.spatial_merge_size
            )));
        }
        if self.rope_theta.is_nan() || self.rope_theta <= 0.0 {
            return Err(ConfigError::invalid("rope_theta must be positive"));
        }
        Ok(())
    }

    pub fn head_dim(&self) -> usize {
        self.hidden_size / self.num_heads
    }

    /// Length of one patch vector: `C · tps · p · p`.
    pub fn patch_dim(&self) -> usize {
        self.in_channels * self.temporal_patch_size * self.patch_size * self.patch_size
    }

    /// Tokens per merge unit (`m²`).
    pub fn merge_unit(&self) -> usize {
        self.spatial_merge_size * self.spatial_merge_size
    }

    /// Window side in merge units (`window_size / m / p`, integer division as upstream).
    pub fn merger_window(&self) -> usize {
        self.window_size / self.spatial_merge_size / self.patch_size
    }

    /// Pixels covered by one merged token along each spatial axis (`p·m`).
    pub fn pixels_per_token(&self) -> usize {
        self.patch_size * self.spatial_merge_size
    }

    pub fn init<B: Backend>(&self, device: &B::Device) -> Result<QwenVision<B>, ConfigError> {
        self.validate()?;
        let d = self.hidden_size;
        let linear = |i: usize, o: usize| LinearConfig::new(i, o).init::<B>(device);
        let blocks = (0..self.depth)
            .map(|_| VisionBlock {
                norm1: RmsNormConfig::new(d).with_eps(RMS_EPS).init(device),
                norm2: RmsNormConfig::new(d).with_eps(RMS_EPS).init(device),
                attn: VisionAttention {
                    qkv: linear(d, 3 * d),
                    proj: linear(d, d),
                    num_heads: self.num_heads,
                },
                mlp: SwiGlu {
                    gate_proj: linear(d, self.intermediate_size),
                    up_proj: linear(d, self.intermediate_size),
                    down_proj: linear(self.intermediate_size, d),
                },
            })
            .collect();
        let merged = d * self.merge_unit();
        let k = self.patch_dim();
        let w = Tensor::<B, 2>::random(
            [d, k],
            burn::tensor::Distribution::Normal(0.0, 1.0 / (k as f64).sqrt()),
            device,
        );
        Ok(QwenVision {
            patch_embed: PatchEmbed {
                proj: PatchProj {
                    weight: Param::from_tensor(w.reshape([
                        d,
                        self.in_channels,
                        self.temporal_patch_size,
                        self.patch_size,
                        self.patch_size,
                    ])),
                },
            },
            blocks,
            merger: PatchMerger {
                ln_q: RmsNormConfig::new(d).with_eps(RMS_EPS).init(device),
                fc1: linear(merged, merged),
                fc2: linear(merged, self.out_hidden_size),
            },
            config: self.clone(),
        })
    }
}

// ---------------------------------------------------------------------------------------------
// Host-side plan: positions, window order, attention segments
// ---------------------------------------------------------------------------------------------

/// One item of a packed batch: `(t, h, w)` in patches (`t` in temporal patches), as upstream's
/// `grid_thw` rows.
pub type GridThw = [usize; 3];

/// Everything upstream derives from `grid_thw` on the host (`vision_utils.py`).
#[derive(Debug, Clone, PartialEq)]
pub struct VisionPlan {
    pub grid_thw: Vec<GridThw>,
    /// `(h, w)` rotary position of every patch token, original order, block-major over merge
    /// units (`get_vision_position_ids`).
    pub position_ids: Vec<[usize; 2]>,
    /// Merge units in window order (`get_vision_window_index`).
    pub window_index: Vec<usize>,
    /// Window boundaries over window-ordered tokens.
    pub cu_window_seqlens: Vec<usize>,
    /// Temporal-slice boundaries (`h·w` repeated `t` times per item).
    pub cu_seqlens: Vec<usize>,
    window_segments: WindowPlan,
    full_segments: WindowPlan,
    /// Patch tokens in window order (`window_index` expanded by the merge unit).
    token_order: Vec<usize>,
    /// `argsort(window_index)`.
    reverse: Vec<usize>,
}

impl VisionPlan {
    /// Checks every grid against the config (h and w divisible by the merge size, t ≥ 1).
    pub fn new(config: &QwenVisionConfig, grid_thw: &[GridThw]) -> Result<Self, EncodeError> {
        let m = config.spatial_merge_size;
        if grid_thw.is_empty() {
            return Err(EncodeError::PackedInput("no grids".into()));
        }
        for (i, &[t, h, w]) in grid_thw.iter().enumerate() {
            if t == 0 || h == 0 || w == 0 || h % m != 0 || w % m != 0 {
                return Err(EncodeError::PackedInput(format!(
                    "grid {i} = ({t}, {h}, {w}): t, h, w must be positive and h, w multiples of the merge size {m}"
                )));
            }
        }
        let mut position_ids = Vec::new();
        for &[t, h, w] in grid_thw {
            let mut frame = Vec::with_capacity(h * w);
            for bh in 0..h / m {
                for bw in 0..w / m {
                    for i in 0..m {
                        for j in 0..m {
                            frame.push([bh * m + i, bw * m + j]);
                        }
                    }
                }
            }
            for _ in 0..t {
                position_ids.extend_from_slice(&frame);
            }
        }

        let ws = config.merger_window();
        let unit = config.merge_unit();
        let mut window_index = Vec::new();
        let mut cu_window_seqlens = vec![0usize];
        let mut offset = 0;
        for &[t, h, w] in grid_thw {
            let (lh, lw) = (h / m, w / m);
            for ti in 0..t {
                for wy in 0..lh.div_ceil(ws) {
                    for wx in 0..lw.div_ceil(ws) {
                        let start = window_index.len();
                        for y in wy * ws..((wy + 1) * ws).min(lh) {
                            for x in wx * ws..((wx + 1) * ws).min(lw) {
                                window_index.push(offset + (ti * lh + y) * lw + x);
                            }
                        }
                        let last = *cu_window_seqlens.last().unwrap();
                        cu_window_seqlens.push(last + (window_index.len() - start) * unit);
                    }
                }
            }
            offset += t * lh * lw;
        }
        let mut cu_seqlens = vec![0usize];
        for &[t, h, w] in grid_thw {
            for _ in 0..t {
                cu_seqlens.push(cu_seqlens.last().unwrap() + h * w);
            }
        }
        let token_order: Vec<usize> = window_index
            .iter()
            .flat_map(|&u| (0..unit).map(move |k| u * unit + k))
            .collect();
        let mut reverse = vec![0; window_index.len()];
        for (pos, &u) in window_index.iter().enumerate() {
            reverse[u] = pos;
        }
        Ok(Self {
            grid_thw: grid_thw.to_vec(),
            window_segments: WindowPlan::from_boundaries(&cu_window_seqlens),
            full_segments: WindowPlan::from_boundaries(&cu_seqlens),
            position_ids,
            window_index,
            cu_window_seqlens,
            cu_seqlens,
            token_order,
            reverse,
        })
    }

    /// Number of patch tokens.
    pub fn num_tokens(&self) -> usize {
        self.position_ids.len()
    }

    /// The attention segments of block `i`.
    pub fn segments(&self, config: &QwenVisionConfig, block: usize) -> &WindowPlan {
        if config.fullatt_block_indexes.contains(&block) {
            &self.full_segments
        } else {
            &self.window_segments
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Patchify (the processor)
// ---------------------------------------------------------------------------------------------

/// Flat source index of every element of the patchified matrix of one item, following the
/// processor's `permute(gt, gh/m, gw/m, m, m, C, tps, p, p)`. `strides` are the element strides
/// of (t, c, y, x) in the source and `base` its offset; frames past the end repeat the last one.
fn patchify_indices(
    config: &QwenVisionConfig,
    frames: usize,
    height: usize,
    width: usize,
    strides: [usize; 4],
    base: usize,
    out: &mut Vec<usize>,
) -> GridThw {
    let (p, m, tps, c) = (
        config.patch_size,
        config.spatial_merge_size,
        config.temporal_patch_size,
        config.in_channels,
    );
    let gt = frames.div_ceil(tps);
    let (gh, gw) = (height / p, width / p);
    for it in 0..gt {
        for bh in 0..gh / m {
            for bw in 0..gw / m {
                for my in 0..m {
                    for mx in 0..m {
                        for ch in 0..c {
                            for tt in 0..tps {
                                let t = (it * tps + tt).min(frames - 1);
                                for py in 0..p {
                                    let y = (bh * m + my) * p + py;
                                    for px in 0..p {
                                        let x = (bw * m + mx) * p + px;
                                        out.push(
                                            base + t * strides[0]
                                                + ch * strides[1]
                                                + y * strides[2]
                                                + x * strides[3],
                                        );
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    }
    [gt, gh, gw]
}

fn check_frames(
    config: &QwenVisionConfig,
    frames: usize,
    c: usize,
    h: usize,
    w: usize,
) -> Result<(), EncodeError> {
    if frames == 0 {
        return Err(EncodeError::EmptyClip);
    }
    if c != config.in_channels {
        return Err(EncodeError::Channels {
            expected: config.in_channels,
            found: c,
        });
    }
    let multiple = config.pixels_per_token();
    if h == 0 || w == 0 || !h.is_multiple_of(multiple) || !w.is_multiple_of(multiple) {
        return Err(EncodeError::FrameSize {
            height: h,
            width: w,
            multiple,
        });
    }
    Ok(())
}

/// Patchifies one image or video `[T, C, H, W]` (already normalised) as the Qwen2.5-VL processor
/// does: the frame count is padded to a multiple of the temporal patch by repeating the last frame
/// (an image becomes 2 frames), each `m×m` merge group is contiguous, each patch vector is ordered
/// (C, t, y, x). Returns `[t·h·w, C·tps·p·p]` and the grid.
pub fn patchify_frames<B: Backend>(
    config: &QwenVisionConfig,
    frames: Tensor<B, 4>,
) -> Result<(Tensor<B, 2>, GridThw), EncodeError> {
    let [t, c, h, w] = frames.dims();
    check_frames(config, t, c, h, w)?;
    let mut idx = Vec::new();
    let grid = patchify_indices(config, t, h, w, [c * h * w, h * w, w, 1], 0, &mut idx);
    let device = frames.device();
    let flat = frames.reshape([t * c * h * w]);
    let rows = grid[0] * grid[1] * grid[2];
    Ok((
        flat.select(0, index_tensor::<B>(&idx, &device))
            .reshape([rows, config.patch_dim()]),
        grid,
    ))
}

/// Patchifies a batch of clips `[B, C, T, H, W]` (semgen's layout) into one packed sequence,
/// one grid per clip.
pub fn patchify_clips<B: Backend>(
    config: &QwenVisionConfig,
    video: Tensor<B, 5>,
) -> Result<(Tensor<B, 2>, Vec<GridThw>), EncodeError> {
    let [b, c, t, h, w] = video.dims();
    check_frames(config, t, c, h, w)?;
    let mut idx = Vec::new();
    let mut grids = Vec::with_capacity(b);
    for i in 0..b {
        grids.push(patchify_indices(
            config,
            t,
            h,
            w,
            [h * w, t * h * w, w, 1],
            i * c * t * h * w,
            &mut idx,
        ));
    }
    let device = video.device();
    let rows = idx.len() / config.patch_dim();
    let flat = video.reshape([b * c * t * h * w]);
    Ok((
        flat.select(0, index_tensor::<B>(&idx, &device))
            .reshape([rows, config.patch_dim()]),
        grids,
    ))
}

/// Maps semgen's pixel range [-1, 1] to the processor's input: rescale to [0, 1], then CLIP
/// mean/std per channel. `channel_dim` is the axis holding the 3 channels.
pub fn clip_normalize<B: Backend, const D: usize>(
    x: Tensor<B, D>,
    channel_dim: usize,
) -> Tensor<B, D> {
    let device = x.device();
    let mut shape = [1usize; D];
    shape[channel_dim] = 3;
    let mean = Tensor::<B, 1>::from_floats(CLIP_MEAN.map(|v| v as f32), &device).reshape(shape);
    let std = Tensor::<B, 1>::from_floats(CLIP_STD.map(|v| v as f32), &device).reshape(shape);
    ((x + 1.0) * 0.5 - mean) / std
}

// ---------------------------------------------------------------------------------------------
// Modules (fields named after the upstream keys)
// ---------------------------------------------------------------------------------------------

/// `patch_embed.proj`: upstream's bias-free Conv3d with kernel = stride, kept in its 5-D layout
/// `(D, C, tps, p, p)` so checkpoints load unchanged, and applied as a matmul on patch vectors.
#[derive(Module, Debug)]
pub struct PatchProj<B: Backend> {
    pub weight: Param<Tensor<B, 5>>,
}

#[derive(Module, Debug)]
pub struct PatchEmbed<B: Backend> {
    pub proj: PatchProj<B>,
}

impl<B: Backend> PatchEmbed<B> {
    /// `[N, C·tps·p·p]` → `[N, D]`.
    pub fn forward(&self, patches: Tensor<B, 2>) -> Tensor<B, 2> {
        let [d, c, t, p, q] = self.proj.weight.dims();
        let w = self.proj.weight.val().reshape([d, c * t * p * q]);
        patches.matmul(w.transpose())
    }
}

#[derive(Module, Debug)]
pub struct VisionAttention<B: Backend> {
    pub qkv: Linear<B>,
    pub proj: Linear<B>,
    #[module(skip)]
    pub num_heads: usize,
}

impl<B: Backend> VisionAttention<B> {
    pub fn forward(&self, x: Tensor<B, 2>, rope: &TokenRope<B>, plan: &WindowPlan) -> Tensor<B, 2> {
        let [n, dim] = x.dims();
        let h = self.num_heads;
        let qkv = self.qkv.forward(x).reshape([n, 3, dim]);
        // One of q, k, v as token-major `[1, N, H·D]`: RoPE and the window gathers act on
        // whole token rows there (see `TokenRope` and `WindowPlan::attend_tokens`).
        let part = |i: usize| qkv.clone().narrow(1, i, 1).reshape([1, n, dim]);
        let q = rope.apply(part(0));
        let k = rope.apply(part(1));
        let o = plan.attend_tokens(q, k, part(2), h);
        self.proj.forward(o.reshape([n, dim]))
    }
}

/// The SwiGLU MLP with biases: `down(SiLU(gate(x)) · up(x))`.
#[derive(Module, Debug)]
pub struct SwiGlu<B: Backend> {
    pub gate_proj: Linear<B>,
    pub up_proj: Linear<B>,
    pub down_proj: Linear<B>,
}

impl<B: Backend> SwiGlu<B> {
    pub fn forward(&self, x: Tensor<B, 2>) -> Tensor<B, 2> {
        self.down_proj
            .forward(silu(self.gate_proj.forward(x.clone())) * self.up_proj.forward(x))
    }
}

#[derive(Module, Debug)]
pub struct VisionBlock<B: Backend> {
    pub norm1: RmsNorm<B>,
    pub norm2: RmsNorm<B>,
    pub attn: VisionAttention<B>,
    pub mlp: SwiGlu<B>,
}

impl<B: Backend> VisionBlock<B> {
    pub fn forward(&self, x: Tensor<B, 2>, rope: &TokenRope<B>, plan: &WindowPlan) -> Tensor<B, 2> {
        let x = x.clone() + self.attn.forward(self.norm1.forward(x), rope, plan);
        x.clone() + self.mlp.forward(self.norm2.forward(x))
    }
}

/// `merger`: RMSNorm, groups of `m²` consecutive tokens viewed as one vector, then
/// `Linear → exact GELU → Linear` (upstream `mlp.0` / `mlp.2`, renamed `fc1` / `fc2`).
#[derive(Module, Debug)]
pub struct PatchMerger<B: Backend> {
    pub ln_q: RmsNorm<B>,
    pub fc1: Linear<B>,
    pub fc2: Linear<B>,
}

impl<B: Backend> PatchMerger<B> {
    pub fn forward(&self, x: Tensor<B, 2>, unit: usize) -> Tensor<B, 2> {
        let [n, d] = x.dims();
        let x = self.ln_q.forward(x).reshape([n / unit, unit * d]);
        self.fc2.forward(gelu_erf(self.fc1.forward(x)))
    }
}

/// Upstream key fragments → semgen field names (the only renames; every other key is a field
/// path as it is). Full Qwen2.5-VL checkpoints add the `visual.` prefix, stripped by
/// [`QwenVision::load`].
pub const QWEN_VISION_KEYS: &[KeyRule] = &[
    KeyRule::new("merger.mlp.0", "merger.fc1"),
    KeyRule::new("merger.mlp.2", "merger.fc2"),
];

/// The vision tower.
#[derive(Module, Debug)]
pub struct QwenVision<B: Backend> {
    pub patch_embed: PatchEmbed<B>,
    pub blocks: Vec<VisionBlock<B>>,
    pub merger: PatchMerger<B>,
    #[module(skip)]
    pub config: QwenVisionConfig,
}

/// What [`QwenVision::forward`] returns.
#[derive(Debug, Clone)]
pub struct VisionOutput<B: Backend> {
    /// Merged tokens in original order, `[Σ t·h·w/m², out_hidden_size]` (upstream `pooler_output`).
    pub merged: Tensor<B, 2>,
    /// Pre-merger tokens in window order, `[Σ t·h·w, hidden_size]` (upstream `last_hidden_state`).
    pub last_hidden_state_window_order: Tensor<B, 2>,
}

/// The encoder output for a batch of clips.
#[derive(Debug, Clone)]
pub struct SemanticGrid<B: Backend> {
    /// `[B, out_hidden_size, T_s/tps, H/(p·m), W/(p·m)]`.
    pub features: Tensor<B, 5>,
    /// `(t, y, x)` of the grid: temporal patches, merged rows, merged columns.
    pub grid: [usize; 3],
    /// `(t, y, x)` index of every token in row-major grid order (the same for each clip).
    /// Token `(t, y, x)` covers input frames `[t·tps, (t+1)·tps)` and pixel rows
    /// `[y·p·m, (y+1)·p·m)`, columns `[x·p·m, (x+1)·p·m)`.
    pub positions: Vec<[usize; 3]>,
}

impl<B: Backend> QwenVision<B> {
    /// Builds the tower for `config` and loads an upstream safetensors state dict: standalone
    /// (`patch_embed.…`) or a full Qwen2.5-VL checkpoint (`visual.patch_embed.…`, whose other
    /// tensors are ignored). Strict on the vision tensors: every one present, shapes checked.
    pub fn load(
        config: &QwenVisionConfig,
        path: &Path,
        device: &B::Device,
    ) -> Result<(Self, LoadReport), LoadError> {
        let model = config
            .init::<B>(device)
            .map_err(|e| LoadError::Invalid(e.to_string()))?;
        let file = semgen_core::checkpoint::parse_safetensors(path)?;
        let prefixed = file.tensors().iter().any(|(k, _)| k.starts_with("visual."));
        let options = if prefixed {
            LoadOptions {
                strip_prefix: Some("visual.".into()),
                allow_unexpected: true,
                ..Default::default()
            }
        } else {
            LoadOptions::default()
        };
        let (model, report) =
            semgen_core::checkpoint::load_into(model, &file, QWEN_VISION_KEYS, &options)?;
        // Under the prefix, only the language model may be left over, never a `visual.` tensor.
        if let Some(stray) = report.unexpected.iter().find(|k| k.starts_with("visual.")) {
            return Err(LoadError::UnexpectedKeys {
                path: path.to_path_buf(),
                keys: vec![stray.clone()],
            });
        }
        Ok((model, report))
    }

    /// The host-side plan of a packed batch.
    pub fn plan(&self, grid_thw: &[GridThw]) -> Result<VisionPlan, EncodeError> {
        VisionPlan::new(&self.config, grid_thw)
    }

    /// The upstream forward on packed patches `[N, C·tps·p·p]` with their grids.
    pub fn forward(
        &self,
        pixel_values: Tensor<B, 2>,
        grid_thw: &[GridThw],
    ) -> Result<VisionOutput<B>, EncodeError> {
        let plan = self.plan(grid_thw)?;
        self.forward_with_plan(pixel_values, &plan)
    }

    pub fn forward_with_plan(
        &self,
        pixel_values: Tensor<B, 2>,
        plan: &VisionPlan,
    ) -> Result<VisionOutput<B>, EncodeError> {
        let cfg = &self.config;
        let [n, k] = pixel_values.dims();
        if k != cfg.patch_dim() {
            return Err(EncodeError::PackedInput(format!(
                "patch vectors have length {k}, the config needs C·tps·p·p = {}",
                cfg.patch_dim()
            )));
        }
        if n != plan.num_tokens() {
            return Err(EncodeError::PackedInput(format!(
                "{n} patch rows, but the grids hold {} patches",
                plan.num_tokens()
            )));
        }
        let device = pixel_values.device();
        let x = self.patch_embed.forward(pixel_values);
        let x = x.select(0, index_tensor::<B>(&plan.token_order, &device));
        let positions: Vec<[f64; 2]> = plan
            .token_order
            .iter()
            .map(|&i| plan.position_ids[i].map(|v| v as f64))
            .collect();
        let (cos, sin) = qwen_rope_2d::<B>(cfg.head_dim(), cfg.rope_theta, &positions, &device);
        let rope = RopeTables::rotate_half(cos, sin).for_tokens(1, cfg.num_heads);
        let mut x = x;
        for (i, block) in self.blocks.iter().enumerate() {
            x = block.forward(x, &rope, plan.segments(cfg, i));
        }
        let merged = self
            .merger
            .forward(x.clone(), cfg.merge_unit())
            .select(0, index_tensor::<B>(&plan.reverse, &device));
        Ok(VisionOutput {
            merged,
            last_hidden_state_window_order: x,
        })
    }

    /// Encodes clips `[B, C, T, H, W]` with pixels in [-1, 1] (semgen's layout; already sampled at
    /// the encoder's frame rate), CLIP-normalised here as the processor does (RGB only). Needs
    /// at least one temporal patch of frames; a count that is not a multiple of it is padded by
    /// repeating the last frame, as upstream. Returns the merged-token grid.
    pub fn encode_clip(&self, video: Tensor<B, 5>) -> Result<SemanticGrid<B>, EncodeError> {
        let cfg = &self.config;
        let [b, c, t, h, w] = video.dims();
        if t == 0 {
            return Err(EncodeError::EmptyClip);
        }
        if t < cfg.temporal_patch_size {
            return Err(EncodeError::ClipTooShort {
                frames: t,
                needed: cfg.temporal_patch_size,
            });
        }
        check_frames(cfg, t, c, h, w)?;
        // CLIP statistics exist for RGB only; other channel counts are taken as already normalised.
        let video = if c == 3 {
            clip_normalize(video, 1)
        } else {
            video
        };
        let (patches, grids) = patchify_clips(cfg, video)?;
        let out = self.forward(patches, &grids)?;
        let [gt, gh, gw] = grids[0];
        let (mh, mw) = (gh / cfg.spatial_merge_size, gw / cfg.spatial_merge_size);
        let features = out
            .merged
            .reshape([b, gt * mh * mw, cfg.out_hidden_size])
            .swap_dims(1, 2)
            .reshape([b, cfg.out_hidden_size, gt, mh, mw]);
        let positions = (0..gt)
            .flat_map(|t| (0..mh).flat_map(move |y| (0..mw).map(move |x| [t, y, x])))
            .collect();
        Ok(SemanticGrid {
            features,
            grid: [gt, mh, mw],
            positions,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::NdArray;
    use burn::tensor::{Distribution, Tolerance};
    use semgen_core::attention::reference_attention;
    type TB = NdArray;

    #[test]
    fn window_plan_matches_upstream_fixture_values() {
        // grid (2,6,10) + (1,4,4), window 8 px, patch 2, merge 2 (the fixture's values).
        let plan = VisionPlan::new(&QwenVisionConfig::tiny(), &[[2, 6, 10], [1, 4, 4]]).unwrap();
        assert_eq!(plan.cu_seqlens, vec![0, 60, 120, 136]);
        assert_eq!(
            plan.cu_window_seqlens,
            vec![0, 16, 32, 40, 48, 56, 60, 76, 92, 100, 108, 116, 120, 136]
        );
        assert_eq!(&plan.window_index[..10], &[0, 1, 5, 6, 2, 3, 7, 8, 4, 9]);
        assert_eq!(
            &plan.position_ids[..5],
            &[[0, 0], [0, 1], [1, 0], [1, 1], [0, 2]]
        );
    }

    #[test]
    fn segment_attention_equals_masked_reference() {
        let d = Default::default();
        let cu = [0, 3, 7, 10, 14, 15];
        let plan = WindowPlan::from_boundaries(&cu);
        assert_eq!(plan.num_windows(), 5);
        let n = 15;
        let q = Tensor::<TB, 3>::random([n, 2, 4], Distribution::Normal(0.0, 1.0), &d);
        let k = Tensor::<TB, 3>::random([n, 2, 4], Distribution::Normal(0.0, 1.0), &d);
        let v = Tensor::<TB, 3>::random([n, 2, 4], Distribution::Normal(0.0, 1.0), &d);
        let seg = |i: usize| cu.windows(2).position(|w| w[0] <= i && i < w[1]).unwrap();
        let mask: Vec<bool> = (0..n * n).map(|x| seg(x / n) != seg(x % n)).collect();
        let mask = Tensor::<TB, 2, Bool>::from_data(TensorData::new(mask, [n, n]), &d)
            .reshape([1, 1, n, n]);
        let to4 = |x: Tensor<TB, 3>| x.swap_dims(0, 1).unsqueeze::<4>();
        let want = reference_attention(to4(q.clone()), to4(k.clone()), to4(v.clone()), Some(mask));
        plan.attend(to4(q), to4(k), to4(v))
            .into_data()
            .assert_approx_eq::<f32>(&want.into_data(), Tolerance::absolute(1e-5));
    }

    #[test]
    fn clip_output_grid_shape() {
        let d = Default::default();
        let model = QwenVisionConfig::tiny().init::<TB>(&d).unwrap();
        let video = Tensor::<TB, 5>::random([2, 3, 5, 8, 12], Distribution::Uniform(-1.0, 1.0), &d);
        let out = model.encode_clip(video).unwrap();
        // 5 frames -> 3 temporal patches (last frame repeated), 8x12 px / (2·2) -> 2x3.
        assert_eq!(out.features.dims(), [2, 48, 3, 2, 3]);
        assert_eq!(out.grid, [3, 2, 3]);
        assert_eq!(out.positions.len(), 18);
        assert_eq!(out.positions[4], [0, 1, 1]);
    }

    #[test]
    fn config_rejects_bad_sizes() {
        let mut c = QwenVisionConfig::tiny();
        c.num_heads = 3;
        assert!(c.validate().is_err());
        let mut c = QwenVisionConfig::tiny();
        c.window_size = 2;
        assert!(c.validate().is_err());
        let err = QwenVisionConfig::from_transformers_json(
            r#"{"depth": 2, "fullatt_block_indexes": []}"#,
        )
        .unwrap_err();
        assert!(err.to_string().contains("hidden_size"), "{err}");
    }
}

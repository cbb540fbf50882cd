//! The Wan2.1 causal 3D VAE, a port of diffusers' `AutoencoderKLWan` (`is_residual=False`).
//!
//! Read top to bottom: the causal feature cache, the layers (causal Conv3d, channel L2 norm,
//! residual block, per-frame attention, resampling), the encoder and decoder, and the model with
//! its chunked `encode` / frame-by-frame `decode`.
//!
//! Parameter paths equal diffusers' state-dict keys except `resample.1` (a `Sequential` index),
//! which is `resample_conv` here (see [`crate::keys`]). Because Burn cannot name a `Vec` element
//! by its type, the encoder's flat `down_blocks` list (residual blocks and resamplers mixed, as
//! upstream) holds [`DownLayer`]s whose parts are optional.

use crate::config::WanVaeConfig;
use crate::VaeError;
use burn::module::Param;
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::PaddingConfig2d;
use burn::prelude::*;
use burn::tensor::activation::silu;
use burn::tensor::module::conv3d;
use burn::tensor::ops::ConvOptions;
use burn::tensor::Distribution;
use semgen_core::attention::sdpa;
use semgen_core::layers::channel_l2_norm;

/// Frames each causal conv keeps from its previous call (upstream `CACHE_T`).
const CACHE_T: usize = 2;

// ---------------------------------------------------------------------------------------------
// The causal feature cache (upstream `feat_cache` + `feat_idx`)
// ---------------------------------------------------------------------------------------------

/// One cache slot. `Rep` is upstream's marker for "the first chunk skipped this upsampler's
/// `time_conv`".
#[derive(Debug, Clone)]
enum Slot<B: Backend> {
    Empty,
    Rep,
    Frames(Tensor<B, 5>),
}

/// The temporal state of one chunked encode or decode: one slot per cached layer, visited in a
/// fixed order on every chunk. It holds at most 2 frames per layer, so its size does not grow
/// with the clip length.
#[derive(Debug, Clone)]
pub struct FeatCache<B: Backend> {
    slots: Vec<Slot<B>>,
    cursor: usize,
}

impl<B: Backend> Default for FeatCache<B> {
    fn default() -> Self {
        Self::new()
    }
}

impl<B: Backend> FeatCache<B> {
    pub fn new() -> Self {
        Self {
            slots: Vec::new(),
            cursor: 0,
        }
    }

    /// Starts a new chunk (upstream resets `feat_idx = [0]` before every chunk).
    fn rewind(&mut self) {
        self.cursor = 0;
    }

    /// Number of layers that have state.
    pub fn len(&self) -> usize {
        self.slots.len()
    }

    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// Elements held (for memory checks).
    pub fn numel(&self) -> usize {
        self.slots
            .iter()
            .map(|s| match s {
                Slot::Frames(t) => t.shape().num_elements(),
                _ => 0,
            })
            .sum()
    }

    /// The next slot's index, created empty on the first chunk.
    fn next(&mut self) -> usize {
        let i = self.cursor;
        if i == self.slots.len() {
            self.slots.push(Slot::Empty);
        }
        self.cursor += 1;
        i
    }

    /// A causal conv with a cached front: upstream's block
    /// `cache_x = x[:, :, -2:]; (prepend prev's last frame if cache_x has 1 frame); conv(x, prev)`.
    /// `x` is the conv's input, i.e. taken after norm + SiLU where those precede the conv.
    fn conv(&mut self, conv: &CausalConv3d<B>, x: Tensor<B, 5>) -> Tensor<B, 5> {
        let i = self.next();
        let prev = match &self.slots[i] {
            Slot::Frames(p) => Some(p.clone()),
            _ => None,
        };
        let keep = keep_for_cache(&x, prev.as_ref());
        let out = conv.forward(x, prev);
        self.slots[i] = Slot::Frames(keep);
        out
    }
}

/// The last `CACHE_T` frames of `x`; a 1-frame chunk is completed with the previous cache's last
/// frame (upstream: "cache last frame of last two chunk").
fn keep_for_cache<B: Backend>(x: &Tensor<B, 5>, prev: Option<&Tensor<B, 5>>) -> Tensor<B, 5> {
    let t = x.dims()[2];
    let n = t.min(CACHE_T);
    let keep = x.clone().narrow(2, t - n, n);
    match prev {
        Some(p) if n < CACHE_T => Tensor::cat(vec![last_frame(p), keep], 2),
        _ => keep,
    }
}

fn last_frame<B: Backend>(x: &Tensor<B, 5>) -> Tensor<B, 5> {
    let t = x.dims()[2];
    x.clone().narrow(2, t - 1, 1)
}

// ---------------------------------------------------------------------------------------------
// Layers
// ---------------------------------------------------------------------------------------------

/// Uniform init in `±1/√fan_in`, torch's default for Conv weights and biases.
fn torch_uniform<B: Backend, const D: usize>(
    shape: [usize; D],
    fan_in: usize,
    device: &B::Device,
) -> Tensor<B, D> {
    let bound = 1.0 / (fan_in as f64).sqrt();
    Tensor::random(shape, Distribution::Uniform(-bound, bound), device)
}

/// A Conv2d with eager torch-default init (Burn's own init is lazy: a clone of an untouched
/// module would draw its weights independently).
fn conv2d<B: Backend>(
    cin: usize,
    cout: usize,
    k: usize,
    stride: usize,
    padding: PaddingConfig2d,
    device: &B::Device,
) -> Conv2d<B> {
    let mut conv = Conv2dConfig::new([cin, cout], [k, k])
        .with_stride([stride, stride])
        .with_padding(padding)
        .init(device);
    let fan_in = cin * k * k;
    conv.weight = Param::from_tensor(torch_uniform([cout, cin, k, k], fan_in, device));
    conv.bias = Some(Param::from_tensor(torch_uniform([cout], fan_in, device)));
    conv
}

/// `WanCausalConv3d`: zero padding `2·p_t` frames in front only (none behind), symmetric
/// spatial padding. With a cache, the cached frames replace that many padding frames.
#[derive(Module, Debug)]
pub struct CausalConv3d<B: Backend> {
    /// `[out, in, kt, kh, kw]`, torch layout.
    pub weight: Param<Tensor<B, 5>>,
    pub bias: Param<Tensor<B, 1>>,
    #[module(skip)]
    stride: [usize; 3],
    /// `(p_t, p_h, p_w)` of upstream's `padding` argument.
    #[module(skip)]
    padding: [usize; 3],
}

impl<B: Backend> CausalConv3d<B> {
    pub fn new(
        cin: usize,
        cout: usize,
        kernel: [usize; 3],
        stride: [usize; 3],
        padding: [usize; 3],
        device: &B::Device,
    ) -> Self {
        let fan_in = cin * kernel.iter().product::<usize>();
        Self {
            weight: Param::from_tensor(torch_uniform(
                [cout, cin, kernel[0], kernel[1], kernel[2]],
                fan_in,
                device,
            )),
            bias: Param::from_tensor(torch_uniform([cout], fan_in, device)),
            stride,
            padding,
        }
    }

    /// Keeps only the newest temporal tap (the one that sees the current frame): the conv then
    /// treats every frame as a still image, which is all that training on single frames taught
    /// it (with the front zero padding, a lone frame only meets the last tap).
    fn inflate_image(self) -> Self {
        let [_, _, kt, _, _] = self.weight.dims();
        if kt == 1 {
            return self;
        }
        let weight = self.weight.map(|w| {
            let last = w.clone().narrow(2, kt - 1, 1);
            Tensor::cat(vec![w.narrow(2, 0, kt - 1).zeros_like(), last], 2)
        });
        Self { weight, ..self }
    }

    /// A `(kt,1,1)` time conv that copies the newest frame into each group of `in` output
    /// channels (output channel `j` = input channel `j mod in`), with zero bias: a downsampling
    /// time conv keeps the last frame of each pair, an upsampling one (2·C out, interleaved)
    /// repeats each frame. With [`Self::inflate_image`] this makes the video VAE equal to the
    /// image VAE applied to frames 0, 4, 8, … and repeated.
    fn inflate_time_copy(self) -> Self {
        let [cout, cin, kt, kh, kw] = self.weight.dims();
        let device = self.weight.device();
        let mut w = vec![0.0f32; cout * cin * kt * kh * kw];
        for j in 0..cout {
            w[((j * cin + j % cin) * kt + kt - 1) * kh * kw] = 1.0;
        }
        let weight = self
            .weight
            .map(|_| Tensor::from_data(TensorData::new(w, [cout, cin, kt, kh, kw]), &device));
        let bias = self.bias.map(|b| b.zeros_like());
        Self {
            weight,
            bias,
            ..self
        }
    }

    /// `k×k×k` with padding `k/2` (upstream `WanCausalConv3d(cin, cout, k, padding=k//2)`).
    pub fn cube(cin: usize, cout: usize, k: usize, device: &B::Device) -> Self {
        Self::new(cin, cout, [k; 3], [1; 3], [k / 2; 3], device)
    }

    pub fn forward(&self, x: Tensor<B, 5>, cache: Option<Tensor<B, 5>>) -> Tensor<B, 5> {
        let mut front = 2 * self.padding[0];
        let kt = self.weight.dims()[2];
        if cache.is_none() && x.dims()[2] == 1 && front == kt - 1 && kt > 1 {
            // A lone frame behind front zero padding meets only the newest tap: convolve with
            // that tap alone (same result, same gradients, a `kt`-th of the work). Every first
            // chunk of encode/decode and every still-image training step takes this path.
            let options = ConvOptions::new(
                self.stride,
                [0, self.padding[1], self.padding[2]],
                [1, 1, 1],
                1,
            );
            let newest = self.weight.val().narrow(2, kt - 1, 1);
            return conv3d(x, newest, Some(self.bias.val()), options);
        }
        let mut x = x;
        if let Some(c) = cache {
            if front > 0 {
                front -= c.dims()[2].min(front);
                x = Tensor::cat(vec![c, x], 2);
            }
        }
        if front > 0 {
            let [b, c, _, h, w] = x.dims();
            x = Tensor::cat(vec![Tensor::zeros([b, c, front, h, w], &x.device()), x], 2);
        }
        let options = ConvOptions::new(
            self.stride,
            [0, self.padding[1], self.padding[2]],
            [1, 1, 1],
            1,
        );
        conv3d(x, self.weight.val(), Some(self.bias.val()), options)
    }
}

/// `WanRMS_norm(images=False)` on `[B, C, T, H, W]`: `x / max(‖x‖₂, 1e-12) · √C · γ` over
/// channels, `γ` of shape `(C, 1, 1, 1)`.
#[derive(Module, Debug)]
pub struct ChannelNorm3d<B: Backend> {
    pub gamma: Param<Tensor<B, 4>>,
}

impl<B: Backend> ChannelNorm3d<B> {
    pub fn new(c: usize, device: &B::Device) -> Self {
        Self {
            gamma: Param::from_tensor(Tensor::ones([c, 1, 1, 1], device)),
        }
    }

    pub fn forward(&self, x: Tensor<B, 5>) -> Tensor<B, 5> {
        channel_l2_norm(x, 1, self.gamma.val().unsqueeze())
    }
}

/// `WanRMS_norm(images=True)` on `[N, C, H, W]`, `γ` of shape `(C, 1, 1)`.
#[derive(Module, Debug)]
pub struct ChannelNorm2d<B: Backend> {
    pub gamma: Param<Tensor<B, 3>>,
}

impl<B: Backend> ChannelNorm2d<B> {
    pub fn new(c: usize, device: &B::Device) -> Self {
        Self {
            gamma: Param::from_tensor(Tensor::ones([c, 1, 1], device)),
        }
    }

    pub fn forward(&self, x: Tensor<B, 4>) -> Tensor<B, 4> {
        channel_l2_norm(x, 1, self.gamma.val().unsqueeze())
    }
}

/// `WanResidualBlock`: `shortcut(x) + conv2(SiLU(norm2(conv1(SiLU(norm1(x))))))`; both 3×3×3
/// convs are cached, the 1×1×1 shortcut is not.
#[derive(Module, Debug)]
pub struct ResidualBlock<B: Backend> {
    pub norm1: ChannelNorm3d<B>,
    pub conv1: CausalConv3d<B>,
    pub norm2: ChannelNorm3d<B>,
    pub conv2: CausalConv3d<B>,
    pub conv_shortcut: Option<CausalConv3d<B>>,
}

impl<B: Backend> ResidualBlock<B> {
    fn inflate_image(self) -> Self {
        Self {
            conv1: self.conv1.inflate_image(),
            conv2: self.conv2.inflate_image(),
            ..self
        }
    }

    pub fn new(cin: usize, cout: usize, device: &B::Device) -> Self {
        Self {
            norm1: ChannelNorm3d::new(cin, device),
            conv1: CausalConv3d::cube(cin, cout, 3, device),
            norm2: ChannelNorm3d::new(cout, device),
            conv2: CausalConv3d::cube(cout, cout, 3, device),
            conv_shortcut: (cin != cout).then(|| CausalConv3d::cube(cin, cout, 1, device)),
        }
    }

    pub fn forward(&self, x: Tensor<B, 5>, cache: &mut FeatCache<B>) -> Tensor<B, 5> {
        residual(
            &self.norm1,
            &self.conv1,
            &self.norm2,
            &self.conv2,
            self.conv_shortcut.as_ref(),
            x,
            cache,
        )
    }
}

fn residual<B: Backend>(
    norm1: &ChannelNorm3d<B>,
    conv1: &CausalConv3d<B>,
    norm2: &ChannelNorm3d<B>,
    conv2: &CausalConv3d<B>,
    shortcut: Option<&CausalConv3d<B>>,
    x: Tensor<B, 5>,
    cache: &mut FeatCache<B>,
) -> Tensor<B, 5> {
    let h = match shortcut {
        Some(s) => s.forward(x.clone(), None),
        None => x.clone(),
    };
    let x = cache.conv(conv1, silu(norm1.forward(x)));
    let x = cache.conv(conv2, silu(norm2.forward(x)));
    x + h
}

/// `WanAttentionBlock`: single-head self-attention over the `H·W` positions of each frame
/// separately (no temporal mixing), with a residual.
#[derive(Module, Debug)]
pub struct AttentionBlock<B: Backend> {
    pub norm: ChannelNorm2d<B>,
    pub to_qkv: Conv2d<B>,
    pub proj: Conv2d<B>,
}

impl<B: Backend> AttentionBlock<B> {
    pub fn new(c: usize, device: &B::Device) -> Self {
        Self {
            norm: ChannelNorm2d::new(c, device),
            to_qkv: conv2d(c, 3 * c, 1, 1, PaddingConfig2d::Valid, device),
            proj: conv2d(c, c, 1, 1, PaddingConfig2d::Valid, device),
        }
    }

    pub fn forward(&self, x: Tensor<B, 5>) -> Tensor<B, 5> {
        let [b, c, t, h, w] = x.dims();
        let frames = to_frames(x.clone());
        let qkv = self.to_qkv.forward(self.norm.forward(frames));
        // [N, 3C, H, W] -> [N, 1, HW, 3C]; the first C channels are q, then k, then v.
        let qkv = qkv.reshape([b * t, 1, 3 * c, h * w]).swap_dims(2, 3);
        let q = qkv.clone().narrow(3, 0, c);
        let k = qkv.clone().narrow(3, c, c);
        let v = qkv.narrow(3, 2 * c, c);
        let o = sdpa(q, k, v).swap_dims(2, 3).reshape([b * t, c, h, w]);
        from_frames(self.proj.forward(o), b) + x
    }
}

/// `[B, C, T, H, W]` -> `[B·T, C, H, W]` (upstream's per-frame 2D layers).
fn to_frames<B: Backend>(x: Tensor<B, 5>) -> Tensor<B, 4> {
    let [b, c, t, h, w] = x.dims();
    x.swap_dims(1, 2).reshape([b * t, c, h, w])
}

/// `[B·T, C, H, W]` -> `[B, C, T, H, W]`.
fn from_frames<B: Backend>(x: Tensor<B, 4>, b: usize) -> Tensor<B, 5> {
    let [n, c, h, w] = x.dims();
    x.reshape([b, n / b, c, h, w]).swap_dims(1, 2)
}

/// Nearest ×2 spatial upsampling, equal to torch's `nearest-exact` at scale 2
/// (source index `⌊(i + 0.5)/2⌋ = ⌊i/2⌋`).
fn upsample_nearest2x<B: Backend>(x: Tensor<B, 4>) -> Tensor<B, 4> {
    // Burn's nearest picks source ⌊i/2⌋ at scale 2, as torch's `nearest-exact`. The backend's
    // own kernel: 8× faster on the CPU than the equal rank-6 broadcast (docs/benchmarks.md).
    let [_, _, h, w] = x.dims();
    burn::tensor::module::interpolate(
        x,
        [2 * h, 2 * w],
        burn::tensor::ops::InterpolateOptions::new(burn::tensor::ops::InterpolateMode::Nearest),
    )
}

/// The kind of a [`Resample`] layer (upstream's `mode` string).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResampleMode {
    Upsample2d,
    Upsample3d,
    Downsample2d,
    Downsample3d,
}

/// `WanResample`: per-frame spatial resampling plus, in the `3d` modes, a temporal `time_conv`.
#[derive(Module, Debug)]
pub struct Resample<B: Backend> {
    /// Upstream `resample.1`: a 3×3 Conv2d (stride 2 after a right/bottom zero pad when
    /// downsampling; padding 1 after nearest ×2 when upsampling, to `C/2` channels).
    pub resample_conv: Conv2d<B>,
    pub time_conv: Option<CausalConv3d<B>>,
    #[module(skip)]
    pub mode: ResampleMode,
}

impl<B: Backend> Resample<B> {
    pub fn new(c: usize, mode: ResampleMode, device: &B::Device) -> Self {
        let (resample_conv, time_conv) = match mode {
            ResampleMode::Upsample2d | ResampleMode::Upsample3d => (
                conv2d(
                    c,
                    c / 2,
                    3,
                    1,
                    PaddingConfig2d::Explicit(1, 1, 1, 1),
                    device,
                ),
                (mode == ResampleMode::Upsample3d)
                    .then(|| CausalConv3d::new(c, 2 * c, [3, 1, 1], [1, 1, 1], [1, 0, 0], device)),
            ),
            ResampleMode::Downsample2d | ResampleMode::Downsample3d => (
                // ZeroPad2d((0, 1, 0, 1)): one column right, one row below; (top, left, bottom, right).
                conv2d(c, c, 3, 2, PaddingConfig2d::Explicit(0, 0, 1, 1), device),
                (mode == ResampleMode::Downsample3d)
                    .then(|| CausalConv3d::new(c, c, [3, 1, 1], [2, 1, 1], [0, 0, 0], device)),
            ),
        };
        Self {
            resample_conv,
            time_conv,
            mode,
        }
    }

    pub fn forward(&self, x: Tensor<B, 5>, cache: &mut FeatCache<B>) -> Tensor<B, 5> {
        resample(
            self.mode,
            &self.resample_conv,
            self.time_conv.as_ref(),
            x,
            cache,
        )
    }
}

fn resample<B: Backend>(
    mode: ResampleMode,
    conv: &Conv2d<B>,
    time_conv: Option<&CausalConv3d<B>>,
    x: Tensor<B, 5>,
    cache: &mut FeatCache<B>,
) -> Tensor<B, 5> {
    let mut x = x;
    if let (ResampleMode::Upsample3d, Some(tc)) = (mode, time_conv) {
        let i = cache.next();
        match cache.slots[i].clone() {
            // The first chunk skips time_conv: that frame stays one frame.
            Slot::Empty => cache.slots[i] = Slot::Rep,
            prev => {
                let [b, c, t, h, w] = x.dims();
                let mut keep = x.clone().narrow(2, t - t.min(CACHE_T), t.min(CACHE_T));
                if keep.dims()[2] < CACHE_T {
                    let front = match &prev {
                        Slot::Frames(p) => last_frame(p),
                        _ => Tensor::zeros([b, c, 1, h, w], &x.device()),
                    };
                    keep = Tensor::cat(vec![front, keep], 2);
                }
                // After "Rep" the conv pads with zeros, so the first frame is never context here.
                let cached = match prev {
                    Slot::Frames(p) => Some(p),
                    _ => None,
                };
                x = tc.forward(x, cached);
                cache.slots[i] = Slot::Frames(keep);
                // [B, 2C, T] -> [B, 2, C, T] -> interleave in time: frames (t, 0), (t, 1), ...
                x = x
                    .reshape([b, 2, c, t, h, w])
                    .permute([0, 2, 3, 1, 4, 5])
                    .reshape([b, c, 2 * t, h, w]);
            }
        }
    }
    let b = x.dims()[0];
    let frames = to_frames(x);
    let frames = match mode {
        ResampleMode::Upsample2d | ResampleMode::Upsample3d => upsample_nearest2x(frames),
        _ => frames,
    };
    let mut x = from_frames(conv.forward(frames), b);
    if let (ResampleMode::Downsample3d, Some(tc)) = (mode, time_conv) {
        let i = cache.next();
        match cache.slots[i].clone() {
            // The first chunk skips time_conv and caches its output.
            Slot::Empty | Slot::Rep => cache.slots[i] = Slot::Frames(x.clone()),
            Slot::Frames(p) => {
                let keep = last_frame(&x);
                x = tc.forward(Tensor::cat(vec![last_frame(&p), x], 2), None);
                cache.slots[i] = Slot::Frames(keep);
            }
        }
    }
    x
}

/// One entry of the encoder's flat `down_blocks` list: a residual block (the `norm1` … `conv2`
/// parts) or a resampler (`resample_conv`, `time_conv`). Upstream mixes both classes in one
/// `ModuleList`; optional parts give the same parameter paths.
#[derive(Module, Debug)]
pub struct DownLayer<B: Backend> {
    pub norm1: Option<ChannelNorm3d<B>>,
    pub conv1: Option<CausalConv3d<B>>,
    pub norm2: Option<ChannelNorm3d<B>>,
    pub conv2: Option<CausalConv3d<B>>,
    pub conv_shortcut: Option<CausalConv3d<B>>,
    pub resample_conv: Option<Conv2d<B>>,
    pub time_conv: Option<CausalConv3d<B>>,
    #[module(skip)]
    pub mode: Option<ResampleMode>,
}

impl<B: Backend> DownLayer<B> {
    fn residual(block: ResidualBlock<B>) -> Self {
        Self {
            norm1: Some(block.norm1),
            conv1: Some(block.conv1),
            norm2: Some(block.norm2),
            conv2: Some(block.conv2),
            conv_shortcut: block.conv_shortcut,
            resample_conv: None,
            time_conv: None,
            mode: None,
        }
    }

    fn resample(r: Resample<B>) -> Self {
        Self {
            norm1: None,
            conv1: None,
            norm2: None,
            conv2: None,
            conv_shortcut: None,
            resample_conv: Some(r.resample_conv),
            time_conv: r.time_conv,
            mode: Some(r.mode),
        }
    }

    pub fn forward(&self, x: Tensor<B, 5>, cache: &mut FeatCache<B>) -> Tensor<B, 5> {
        match (
            &self.norm1,
            &self.conv1,
            &self.norm2,
            &self.conv2,
            &self.resample_conv,
            self.mode,
        ) {
            (Some(n1), Some(c1), Some(n2), Some(c2), None, None) => {
                residual(n1, c1, n2, c2, self.conv_shortcut.as_ref(), x, cache)
            }
            (None, None, None, None, Some(conv), Some(mode)) => {
                resample(mode, conv, self.time_conv.as_ref(), x, cache)
            }
            // Only the constructors build DownLayers, so the parts always come as one of the two sets.
            _ => unreachable!("a DownLayer is either a residual block or a resampler"),
        }
    }
}

/// `WanMidBlock`: residual, attention, residual.
#[derive(Module, Debug)]
pub struct MidBlock<B: Backend> {
    pub resnets: Vec<ResidualBlock<B>>,
    pub attentions: Vec<AttentionBlock<B>>,
}

impl<B: Backend> MidBlock<B> {
    pub fn new(c: usize, device: &B::Device) -> Self {
        Self {
            resnets: vec![
                ResidualBlock::new(c, c, device),
                ResidualBlock::new(c, c, device),
            ],
            attentions: vec![AttentionBlock::new(c, device)],
        }
    }

    pub fn forward(&self, x: Tensor<B, 5>, cache: &mut FeatCache<B>) -> Tensor<B, 5> {
        let mut x = self.resnets[0].forward(x, cache);
        for (attn, res) in self.attentions.iter().zip(&self.resnets[1..]) {
            x = res.forward(attn.forward(x), cache);
        }
        x
    }
}

// ---------------------------------------------------------------------------------------------
// Encoder and decoder
// ---------------------------------------------------------------------------------------------

/// `WanEncoder3d`: conv_in, the flat down list, mid block, `norm_out` + SiLU + `conv_out` to
/// `2·z_dim` channels.
#[derive(Module, Debug)]
pub struct Encoder<B: Backend> {
    pub conv_in: CausalConv3d<B>,
    pub down_blocks: Vec<DownLayer<B>>,
    pub mid_block: MidBlock<B>,
    pub norm_out: ChannelNorm3d<B>,
    pub conv_out: CausalConv3d<B>,
}

impl<B: Backend> Encoder<B> {
    fn new(cfg: &WanVaeConfig, device: &B::Device) -> Self {
        let dims = cfg.encoder_dims();
        let levels = cfg.dim_mult.len();
        let mut down_blocks = Vec::new();
        for i in 0..levels {
            let mut cin = dims[i];
            for _ in 0..cfg.num_res_blocks {
                down_blocks.push(DownLayer::residual(ResidualBlock::new(
                    cin,
                    dims[i + 1],
                    device,
                )));
                cin = dims[i + 1];
            }
            if i != levels - 1 {
                let mode = if cfg.temperal_downsample[i] {
                    ResampleMode::Downsample3d
                } else {
                    ResampleMode::Downsample2d
                };
                down_blocks.push(DownLayer::resample(Resample::new(
                    dims[i + 1],
                    mode,
                    device,
                )));
            }
        }
        let c = dims[levels];
        Self {
            conv_in: CausalConv3d::cube(cfg.in_channels, dims[0], 3, device),
            down_blocks,
            mid_block: MidBlock::new(c, device),
            norm_out: ChannelNorm3d::new(c, device),
            conv_out: CausalConv3d::cube(c, 2 * cfg.z_dim, 3, device),
        }
    }

    /// One chunk (1 or 4 frames) through the encoder, updating `cache`.
    pub fn forward(&self, x: Tensor<B, 5>, cache: &mut FeatCache<B>) -> Tensor<B, 5> {
        cache.rewind();
        let mut x = cache.conv(&self.conv_in, x);
        for layer in &self.down_blocks {
            x = layer.forward(x, cache);
        }
        let x = self.mid_block.forward(x, cache);
        cache.conv(&self.conv_out, silu(self.norm_out.forward(x)))
    }
}

/// `WanUpBlock`: `num_res_blocks + 1` residual blocks and an optional upsampler.
#[derive(Module, Debug)]
pub struct UpBlock<B: Backend> {
    pub resnets: Vec<ResidualBlock<B>>,
    pub upsamplers: Vec<Resample<B>>,
}

/// `WanDecoder3d`: conv_in from `z_dim`, mid block, up blocks, `norm_out` + SiLU + `conv_out`.
#[derive(Module, Debug)]
pub struct Decoder<B: Backend> {
    pub conv_in: CausalConv3d<B>,
    pub mid_block: MidBlock<B>,
    pub up_blocks: Vec<UpBlock<B>>,
    pub norm_out: ChannelNorm3d<B>,
    pub conv_out: CausalConv3d<B>,
}

impl<B: Backend> Decoder<B> {
    fn new(cfg: &WanVaeConfig, device: &B::Device) -> Self {
        let levels = cfg.dim_mult.len();
        let up = cfg.temperal_upsample();
        let c0 = cfg.decoder_level_dims(0).0;
        let mut up_blocks = Vec::new();
        let mut cout = c0;
        for i in 0..levels {
            let (mut cin, out) = cfg.decoder_level_dims(i);
            cout = out;
            let mut resnets = Vec::new();
            for _ in 0..=cfg.num_res_blocks {
                resnets.push(ResidualBlock::new(cin, cout, device));
                cin = cout;
            }
            let upsamplers = if i != levels - 1 {
                let mode = if up[i] {
                    ResampleMode::Upsample3d
                } else {
                    ResampleMode::Upsample2d
                };
                vec![Resample::new(cout, mode, device)]
            } else {
                vec![]
            };
            up_blocks.push(UpBlock {
                resnets,
                upsamplers,
            });
        }
        Self {
            conv_in: CausalConv3d::cube(cfg.z_dim, c0, 3, device),
            mid_block: MidBlock::new(c0, device),
            up_blocks,
            norm_out: ChannelNorm3d::new(cout, device),
            conv_out: CausalConv3d::cube(cout, cfg.out_channels, 3, device),
        }
    }

    /// One latent frame (after `post_quant_conv`) to 1 (first call) or `temporal_factor`
    /// frames, updating `cache`. Not clamped.
    pub fn forward(&self, x: Tensor<B, 5>, cache: &mut FeatCache<B>) -> Tensor<B, 5> {
        cache.rewind();
        let mut x = cache.conv(&self.conv_in, x);
        x = self.mid_block.forward(x, cache);
        for block in &self.up_blocks {
            for res in &block.resnets {
                x = res.forward(x, cache);
            }
            for up in &block.upsamplers {
                x = up.forward(x, cache);
            }
        }
        cache.conv(&self.conv_out, silu(self.norm_out.forward(x)))
    }
}

// ---------------------------------------------------------------------------------------------
// The model
// ---------------------------------------------------------------------------------------------

/// The Wan2.1 VAE (`AutoencoderKLWan`).
#[derive(Module, Debug)]
pub struct WanVae<B: Backend> {
    pub encoder: Encoder<B>,
    /// 1×1×1 conv on the encoder output: `[mu | logvar]`.
    pub quant_conv: CausalConv3d<B>,
    pub post_quant_conv: CausalConv3d<B>,
    pub decoder: Decoder<B>,
    #[module(skip)]
    pub config: WanVaeConfig,
}

impl WanVaeConfig {
    /// Builds the model with freshly initialised weights (torch's default init).
    pub fn init<B: Backend>(
        &self,
        device: &B::Device,
    ) -> Result<WanVae<B>, semgen_core::ConfigError> {
        self.validate()?;
        let z = self.z_dim;
        Ok(WanVae {
            encoder: Encoder::new(self, device),
            quant_conv: CausalConv3d::cube(2 * z, 2 * z, 1, device),
            post_quant_conv: CausalConv3d::cube(z, z, 1, device),
            decoder: Decoder::new(self, device),
            config: self.clone(),
        })
    }
}

impl<B: Backend> WanVae<B> {
    /// Turns a VAE trained on single frames into a video VAE that starts as that image VAE per
    /// latent frame (Wan2.1 trains its VAE the same way: a 2D image VAE of the same structure
    /// first, then inflated to 3D): every 3×3×3 causal conv keeps only its newest temporal tap,
    /// and every time conv copies the newest frame (see `CausalConv3d::inflate_time_copy`).
    /// Encoding then keeps frames 0, 4, 8, … and decoding repeats each latent frame 4 times;
    /// training on clips then teaches the temporal taps.
    pub fn inflate_image(self) -> Self {
        let down = |l: DownLayer<B>| DownLayer {
            conv1: l.conv1.map(CausalConv3d::inflate_image),
            conv2: l.conv2.map(CausalConv3d::inflate_image),
            time_conv: l.time_conv.map(CausalConv3d::inflate_time_copy),
            ..l
        };
        let mid = |m: MidBlock<B>| MidBlock {
            resnets: m
                .resnets
                .into_iter()
                .map(ResidualBlock::inflate_image)
                .collect(),
            ..m
        };
        let encoder = Encoder {
            conv_in: self.encoder.conv_in.inflate_image(),
            down_blocks: self.encoder.down_blocks.into_iter().map(down).collect(),
            mid_block: mid(self.encoder.mid_block),
            conv_out: self.encoder.conv_out.inflate_image(),
            ..self.encoder
        };
        let up = |b: UpBlock<B>| UpBlock {
            resnets: b
                .resnets
                .into_iter()
                .map(ResidualBlock::inflate_image)
                .collect(),
            upsamplers: b
                .upsamplers
                .into_iter()
                .map(|r| Resample {
                    time_conv: r.time_conv.map(CausalConv3d::inflate_time_copy),
                    ..r
                })
                .collect(),
        };
        let decoder = Decoder {
            conv_in: self.decoder.conv_in.inflate_image(),
            mid_block: mid(self.decoder.mid_block),
            up_blocks: self.decoder.up_blocks.into_iter().map(up).collect(),
            conv_out: self.decoder.conv_out.inflate_image(),
            ..self.decoder
        };
        Self {
            encoder,
            decoder,
            ..self
        }
    }

    /// Checks a `[B, C, T, H, W]` video: `C = in_channels`, `T = 1 + 4k`, `H` and `W` multiples
    /// of the spatial factor.
    pub fn check_video(&self, dims: [usize; 5]) -> Result<(), VaeError> {
        let [_, c, t, h, w] = dims;
        let f = self.config.spatial_factor();
        if c != self.config.in_channels {
            return Err(VaeError::Channels {
                what: "video",
                expected: self.config.in_channels,
                found: c,
            });
        }
        if t == 0 || (t - 1) % 4 != 0 {
            return Err(VaeError::FrameCount { frames: t });
        }
        if h == 0 || w == 0 || h % f != 0 || w % f != 0 {
            return Err(VaeError::Size {
                height: h,
                width: w,
                factor: f,
            });
        }
        Ok(())
    }

    /// Checks a `[B, z_dim, T, h, w]` latent.
    pub fn check_latent(&self, dims: [usize; 5]) -> Result<(), VaeError> {
        let [_, c, t, h, w] = dims;
        if c != self.config.z_dim {
            return Err(VaeError::Channels {
                what: "latent",
                expected: self.config.z_dim,
                found: c,
            });
        }
        if t == 0 || h == 0 || w == 0 {
            return Err(VaeError::EmptyLatent {
                dims: dims.to_vec(),
            });
        }
        Ok(())
    }

    /// The moments `[B, 2·z_dim, T_lat, H/8, W/8]` = `[mu | logvar]` (upstream `_encode`):
    /// the encoder runs on frame chunks `[0]`, `[1..5)`, `[5..9)`, … with a shared cache.
    pub fn encode_moments(&self, video: Tensor<B, 5>) -> Result<Tensor<B, 5>, VaeError> {
        self.check_video(video.dims())?;
        let t = video.dims()[2];
        let mut cache = FeatCache::new();
        let mut outs = vec![self
            .encoder
            .forward(video.clone().narrow(2, 0, 1), &mut cache)];
        for i in 0..(t - 1) / 4 {
            outs.push(
                self.encoder
                    .forward(video.clone().narrow(2, 1 + 4 * i, 4), &mut cache),
            );
        }
        Ok(self.quant_conv.forward(Tensor::cat(outs, 2), None))
    }

    /// The posterior mode `mu` (upstream `encode(x).latent_dist.mode()`), not normalised.
    pub fn encode(&self, video: Tensor<B, 5>) -> Result<Tensor<B, 5>, VaeError> {
        let moments = self.encode_moments(video)?;
        Ok(moments.narrow(1, 0, self.config.z_dim))
    }

    /// Decodes `[B, z_dim, T_lat, h, w]` to `[B, out_channels, 1 + 4(T_lat - 1), 8h, 8w]` in
    /// `[-1, 1]`, one latent frame at a time (upstream `_decode`). Not normalised: see
    /// [`Self::denormalize`].
    pub fn decode(&self, z: Tensor<B, 5>) -> Result<Tensor<B, 5>, VaeError> {
        Ok(self.decode_unclamped(z)?.clamp(-1.0, 1.0))
    }

    /// [`Self::decode`] without the final clamp (training: the clamp has no gradient outside).
    pub fn decode_unclamped(&self, z: Tensor<B, 5>) -> Result<Tensor<B, 5>, VaeError> {
        self.check_latent(z.dims())?;
        let x = self.post_quant_conv.forward(z, None);
        let mut cache = FeatCache::new();
        let outs: Vec<_> = (0..x.dims()[2])
            .map(|i| self.decoder.forward(x.clone().narrow(2, i, 1), &mut cache))
            .collect();
        Ok(Tensor::cat(outs, 2))
    }

    /// Pipeline normalisation of a latent: `(mu - latents_mean) / latents_std` per channel.
    pub fn normalize(&self, mu: Tensor<B, 5>) -> Tensor<B, 5> {
        let (mean, std) = self.latent_stats(&mu.device());
        (mu - mean) / std
    }

    /// Inverse of [`Self::normalize`]: `z · latents_std + latents_mean`.
    pub fn denormalize(&self, z: Tensor<B, 5>) -> Tensor<B, 5> {
        let (mean, std) = self.latent_stats(&z.device());
        z * std + mean
    }

    fn latent_stats(&self, device: &B::Device) -> (Tensor<B, 5>, Tensor<B, 5>) {
        let shape = [1, self.config.z_dim, 1, 1, 1];
        let t = |v: &[f32]| Tensor::<B, 1>::from_floats(v, device).reshape(shape);
        (t(&self.config.latents_mean), t(&self.config.latents_std))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::NdArray;
    use burn::tensor::Distribution;

    /// The lone-frame shortcut (newest tap only) equals the explicit front zero padding, for
    /// 3×3×3 convs with and without spatial stride.
    #[test]
    fn lone_frame_shortcut_equals_zero_padding() {
        let device = Default::default();
        for stride in [[1, 1, 1], [1, 2, 2]] {
            let conv = CausalConv3d::<NdArray>::new(4, 5, [3, 3, 3], stride, [1, 1, 1], &device);
            let x = Tensor::<NdArray, 5>::random([2, 4, 1, 6, 6], Distribution::Default, &device);
            let fast = conv.forward(x.clone(), None);
            // Two zero frames passed as the cache take the general path with the same padding.
            let zeros = Tensor::zeros([2, 4, 2, 6, 6], &device);
            let slow = conv.forward(x, Some(zeros));
            assert_eq!(fast.dims(), slow.dims());
            let err = (fast - slow).abs().max().into_scalar();
            assert!(err < 1e-5, "stride {stride:?}: {err}");
        }
    }
}

//! The GPU-scale rows of issue 10 (`cargo xtask bench gpu`): the attention kernel's achieved
//! TFLOP/s at FlashAttention's benchmark shapes, and a Wan2.1-1.3B block's forward and training
//! step at thousands of tokens (tokens/s, TFLOP/s, model FLOPs utilisation), in f32 and bf16.
//!
//! The suite's rows ([`crate::suite`]) are sized for a 2-core CPU; on a GPU they are launch-bound
//! and say nothing about throughput. These cases are sized like the workloads a GPU trains on.
//! FLOPs are counted analytically (multiply-add = 2), as FlashAttention's benchmarks and the MFU
//! literature count them, so the same count divides semgen's and PyTorch's times
//! (`bench/peer/peer_gpu.py` runs the same cases).

use crate::suite::{Timing, Workload};
use anyhow::{bail, Context, Result};
use burn::prelude::*;
use burn::tensor::backend::AutodiffBackend;
use rand::SeedableRng;
use semgen_core::wan_dit::WanDitConfig;

/// Attention cases: `[batch, heads, tokens, head_dim]` with batch·tokens = 16k and 16 heads of
/// 128 (FlashAttention-2/3's benchmark shapes, hidden 2048).
pub const ATTN_TOTAL_TOKENS: usize = 16384;
pub const ATTN_HEADS: usize = 16;
pub const ATTN_HEAD_DIM: usize = 128;

/// Text tokens of the block cases (Wan's umT5 context length).
pub const BLOCK_TEXT_LEN: usize = 512;

/// What one case measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// The attention op forward.
    AttnFwd,
    /// Attention forward and backward (gradients of q, k and v).
    AttnTrain,
    /// A Wan2.1-1.3B block slice (1 layer), forward.
    BlockFwd,
    /// The same block, one training step (forward, MSE, backward, AdamW).
    BlockTrain,
}

/// One case: a kind at a token count, named `attn-fwd-4096`, `block-train-8192`, ….
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Case {
    pub kind: Kind,
    pub tokens: usize,
}

/// The default cases, in report order.
pub const DEFAULT_CASES: &[&str] = &[
    "attn-fwd-1024",
    "attn-fwd-4096",
    "attn-fwd-16384",
    "attn-train-1024",
    "attn-train-4096",
    "block-fwd-4096",
    "block-train-1024",
    "block-train-4096",
    "block-train-8192",
];

impl std::str::FromStr for Case {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> Result<Self> {
        let (kind, n) = s
            .rsplit_once('-')
            .with_context(|| format!("case '{s}': expected KIND-TOKENS, e.g. attn-fwd-4096"))?;
        let tokens: usize = n
            .parse()
            .with_context(|| format!("case '{s}': '{n}' is not a token count"))?;
        let kind = match kind {
            "attn-fwd" => Kind::AttnFwd,
            "attn-train" => Kind::AttnTrain,
            "block-fwd" => Kind::BlockFwd,
            "block-train" => Kind::BlockTrain,
            other => bail!(
                "case '{s}': unknown kind '{other}' (attn-fwd, attn-train, block-fwd, block-train)"
            ),
        };
        let case = Case { kind, tokens };
        case.check()?;
        Ok(case)
    }
}

impl std::fmt::Display for Case {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let k = match self.kind {
            Kind::AttnFwd => "attn-fwd",
            Kind::AttnTrain => "attn-train",
            Kind::BlockFwd => "block-fwd",
            Kind::BlockTrain => "block-train",
        };
        write!(f, "{k}-{}", self.tokens)
    }
}

/// The Wan2.1-1.3B sizes with one layer (as the suite's `wan13b-block-*` rows).
pub fn block_config() -> WanDitConfig {
    crate::suite::wan13b_block()
}

impl Case {
    fn check(&self) -> Result<()> {
        match self.kind {
            Kind::AttnFwd | Kind::AttnTrain => {
                if self.tokens == 0 || ATTN_TOTAL_TOKENS % self.tokens != 0 {
                    bail!(
                        "attention cases take a token count that divides {ATTN_TOTAL_TOKENS}, not {}",
                        self.tokens
                    );
                }
            }
            Kind::BlockFwd | Kind::BlockTrain => {
                if self.tokens == 0 || self.tokens % 1024 != 0 {
                    bail!(
                        "block cases take a multiple of 1024 tokens (frames of 64×64 latents), not {}",
                        self.tokens
                    );
                }
            }
        }
        Ok(())
    }

    /// `[batch, heads, tokens, head_dim]` of an attention case.
    pub fn attention_shape(&self) -> [usize; 4] {
        [
            ATTN_TOTAL_TOKENS / self.tokens,
            ATTN_HEADS,
            self.tokens,
            ATTN_HEAD_DIM,
        ]
    }

    /// `[1, 16, frames, 64, 64]` latents of a block case: patch (1, 2, 2) makes 1024 tokens a
    /// frame.
    pub fn block_latents(&self) -> [usize; 5] {
        [1, 16, self.tokens / 1024, 64, 64]
    }

    /// Tokens processed per iteration (batch × sequence).
    pub fn tokens_per_iter(&self) -> usize {
        match self.kind {
            Kind::AttnFwd | Kind::AttnTrain => ATTN_TOTAL_TOKENS,
            Kind::BlockFwd | Kind::BlockTrain => self.tokens,
        }
    }

    /// FLOPs of one iteration. Attention: 4·b·h·n²·d forward (two matmuls), backward 2.5× that
    /// (FlashAttention's convention). Block: every matmul and the attention scores, training =
    /// 3× forward (the MFU convention: the backward computes two products per forward one).
    pub fn flops(&self) -> f64 {
        match self.kind {
            Kind::AttnFwd | Kind::AttnTrain => {
                let [b, h, n, d] = self.attention_shape().map(|v| v as f64);
                let fwd = 4.0 * b * h * n * n * d;
                if self.kind == Kind::AttnFwd {
                    fwd
                } else {
                    3.5 * fwd
                }
            }
            Kind::BlockFwd | Kind::BlockTrain => {
                let fwd = block_forward_flops(&block_config(), self.tokens, BLOCK_TEXT_LEN);
                if self.kind == Kind::BlockFwd {
                    fwd
                } else {
                    3.0 * fwd
                }
            }
        }
    }
}

/// Forward FLOPs of a Wan DiT on `n` video tokens and `l` text tokens: patch embedding, text
/// and time embedders, per layer self-attention (q, k, v, o and the n² scores), cross-attention
/// (q, o on video tokens, k, v on text, n·l scores) and the FFN, and the output head. Norms,
/// RoPE and modulation are elementwise and left out, as in the MFU literature.
pub fn block_forward_flops(c: &WanDitConfig, n: usize, l: usize) -> f64 {
    let d = (c.num_attention_heads * c.attention_head_dim) as f64;
    let [pt, ph, pw] = c.patch_size;
    let patch = (c.in_channels * pt * ph * pw) as f64;
    let out = (c.out_channels * pt * ph * pw) as f64;
    let (n, l) = (n as f64, l as f64);
    let ffn = c.ffn_dim as f64;
    let mm = |rows: f64, k: f64, m: f64| 2.0 * rows * k * m;
    let embed = mm(n, patch, d)
        + mm(l, c.text_dim as f64, d)
        + mm(l, d, d)
        + mm(1.0, c.freq_dim as f64, d)
        + mm(1.0, d, d)
        + mm(1.0, d, 6.0 * d);
    let layer = mm(n, d, 4.0 * d)          // self-attention q, k, v, o
        + 4.0 * n * n * d                      // its scores and weighted sum
        + mm(n, d, 2.0 * d)                    // cross-attention q, o
        + mm(l, d, 2.0 * d)                    // cross-attention k, v (text)
        + 4.0 * n * l * d                      // cross scores
        + mm(n, d, ffn) + mm(n, ffn, d); // FFN
    embed + c.num_layers as f64 * layer + mm(n, d, out)
}

fn sync<B: Backend>(device: &B::Device) -> Result<()> {
    B::sync(device).map_err(|e| anyhow::anyhow!("backend sync failed: {e:?}"))
}

fn attention_fwd<B: Backend>(case: Case, device: &B::Device) -> Workload {
    let mut rng = rand::rngs::StdRng::seed_from_u64(0);
    let shape = case.attention_shape();
    let (q, k, v) = (
        crate::suite::random::<B, 4>(&mut rng, shape, device),
        crate::suite::random::<B, 4>(&mut rng, shape, device),
        crate::suite::random::<B, 4>(&mut rng, shape, device),
    );
    let device = device.clone();
    Box::new(move || {
        let out = semgen_core::attention::sdpa(q.clone(), k.clone(), v.clone());
        // A slice, not a sum: the timed work is the kernel, not a reduction over its output.
        let s = out
            .slice([0..1, 0..1, 0..1, 0..1])
            .into_scalar()
            .elem::<f32>();
        sync::<B>(&device)?;
        Ok(s)
    })
}

fn attention_train<B: AutodiffBackend>(case: Case, device: &B::Device) -> Workload {
    let mut rng = rand::rngs::StdRng::seed_from_u64(0);
    let shape = case.attention_shape();
    let mut leaf = || crate::suite::random::<B, 4>(&mut rng, shape, device).require_grad();
    let (q, k, v) = (leaf(), leaf(), leaf());
    let g = crate::suite::random::<B, 4>(&mut rng, shape, device);
    let device = device.clone();
    Box::new(move || {
        let out = semgen_core::attention::sdpa(q.clone(), k.clone(), v.clone());
        // ⟨out, g⟩ as the loss: its gradient with respect to out is g, a dense upstream
        // gradient as in training.
        let loss = (out * g.clone()).sum();
        let grads = loss.backward();
        let dq = q.grad(&grads).context("no gradient for q")?;
        let dk = k.grad(&grads).context("no gradient for k")?;
        let dv = v.grad(&grads).context("no gradient for v")?;
        let s = dq
            .slice([0..1, 0..1, 0..1, 0..1])
            .into_scalar()
            .elem::<f32>()
            + dk.slice([0..1, 0..1, 0..1, 0..1])
                .into_scalar()
                .elem::<f32>()
            + dv.slice([0..1, 0..1, 0..1, 0..1])
                .into_scalar()
                .elem::<f32>();
        sync::<B::InnerBackend>(&device)?;
        Ok(s)
    })
}

/// Builds case `case` on backend `B` (forward cases on its inner backend, without autodiff).
pub fn build<B: AutodiffBackend>(case: Case, device: &B::Device) -> Result<Workload> {
    type I<B> = <B as AutodiffBackend>::InnerBackend;
    let text = [1, BLOCK_TEXT_LEN, block_config().text_dim];
    Ok(match case.kind {
        Kind::AttnFwd => attention_fwd::<I<B>>(case, device),
        Kind::AttnTrain => attention_train::<B>(case, device),
        Kind::BlockFwd => {
            crate::suite::dit_forward::<I<B>>(block_config(), case.block_latents(), text, device)?
        }
        Kind::BlockTrain => {
            crate::suite::dit_train::<B>(block_config(), case.block_latents(), text, device)?
        }
    })
}

/// `warmup` (at least 1) untimed iterations (the GPU backends compile and autotune kernels for
/// each new shape on first use), then `repeats` timed ones.
pub fn time(step: &mut Workload, warmup: usize, repeats: usize) -> Result<Timing> {
    for _ in 0..warmup.max(1) {
        std::hint::black_box(step()?);
    }
    crate::suite::timed(step, repeats)
}

/// Peak dense TFLOP/s of the H100/H200 SXM's tensor cores in bf16 (NVIDIA's datasheet: 989.4
/// without sparsity), the denominator of the MFU column unless `--peak-tflops` says otherwise.
pub const H100_BF16_PEAK_TFLOPS: f64 = 989.4;

/// FlashAttention-3's forward at head dim 128, 16k tokens, on an H100 (Shah et al. 2024, fp16:
/// up to 740 TFLOP/s), the attention goal of issue 10.
pub const FA3_TFLOPS: f64 = 740.0;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cases_parse_print_and_reject_impossible_sizes() {
        for name in DEFAULT_CASES {
            let c: Case = name.parse().unwrap();
            assert_eq!(&c.to_string(), name);
        }
        assert!("attn-fwd-3000".parse::<Case>().is_err());
        assert!("block-train-1000".parse::<Case>().is_err());
        assert!("conv-fwd-1024".parse::<Case>().is_err());
        assert!("attn-fwd".parse::<Case>().is_err());
    }

    #[test]
    fn flop_counts_follow_the_formulas() {
        let a: Case = "attn-fwd-4096".parse().unwrap();
        assert_eq!(a.attention_shape(), [4, 16, 4096, 128]);
        assert_eq!(a.flops(), 4.0 * 4.0 * 16.0 * 4096.0 * 4096.0 * 128.0);
        let t: Case = "attn-train-4096".parse().unwrap();
        assert_eq!(t.flops(), 3.5 * a.flops());
        // A block on n tokens: the weight FLOPs are 2·n·(params touched per token) plus the
        // n² attention term; doubling n more than doubles them.
        let c = block_config();
        let f1 = block_forward_flops(&c, 1024, 512);
        let f2 = block_forward_flops(&c, 2048, 512);
        assert!(f2 > 2.0 * f1 - block_forward_flops(&c, 0, 512));
        let d = 1536.0;
        let per_token = 2.0 * (4.0 * d * d + 2.0 * d * d + 2.0 * d * 8960.0 + 64.0 * d + d * 64.0);
        let quad = 4.0 * d;
        let expect_diff = per_token * 1024.0
            + quad * (2048.0f64.powi(2) - 1024.0f64.powi(2))
            + 4.0 * 1024.0 * 512.0 * d;
        assert!((f2 - f1 - expect_diff).abs() / expect_diff < 1e-9);
        let b: Case = "block-train-4096".parse().unwrap();
        assert_eq!(b.block_latents(), [1, 16, 4, 64, 64]);
        assert_eq!(b.flops(), 3.0 * block_forward_flops(&c, 4096, 512));
    }
}

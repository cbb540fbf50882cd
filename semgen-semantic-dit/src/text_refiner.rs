//! A small self-attention stack over the prompt's tokens, trained with the generator (in the
//! spirit of HunyuanVideo's token refiner): it lets each token take in its neighbours, so that
//! "moving up" in "a red square moving up and a blue ring moving down" carries *which* object
//! moves up before the semantic tokens cross-attend to it.
//!
//! Why stage 1 needs it: the Shapes text encoder is trained contrastively (`semgen-encoder`),
//! and in-batch negatives almost never differ only in which object does what, so its token
//! features bind attributes to objects weakly. Without a refiner the generator gave two-object
//! prompts each other's motion about as often as their own (docs/results.md, session 27).
//!
//! Trained by the generator's loss alone it stayed the identity (session 27). An optional
//! attribute head ([`TextRefinerConfig::attribute_groups`], [`TextRefiner::attribute_loss`])
//! gives it the signal directly: each token of an object's phrase learns to name that object's
//! attributes. With it, the refined words name their own object and not the other, and the
//! generator learns to use that (docs/results.md, session 28).
//!
//! Positions are a sinusoidal embedding of the token index through a learned projection, added
//! to the attention input only. The output projections of attention and FFN start at zero, so a
//! fresh refiner is the identity: grafted onto a trained generator it starts from that
//! generator's function.

use burn::nn::{Linear, LinearConfig};
use burn::prelude::*;
use semgen_core::attention::sdpa;
use semgen_core::layers::{gelu_tanh, timestep_embedding, AffineLayerNorm, AffineLayerNormConfig};
use semgen_core::train::grouped_cross_entropy_sum;
use semgen_core::wan_dit::zero_linear;
use semgen_core::ConfigError;

/// Width of the sinusoidal position features before their projection.
const POSITION_FEATURES: usize = 64;

/// Configuration of [`TextRefiner`].
#[derive(Config, Debug, PartialEq)]
pub struct TextRefinerConfig {
    /// Width of the text features (the text encoder's `d_model`).
    pub dim: usize,
    #[config(default = 2)]
    pub layers: usize,
    #[config(default = 4)]
    pub heads: usize,
    /// Hidden width of each block's FFN; 0 = `4 · dim`.
    #[config(default = 0)]
    pub ffn: usize,
    #[config(default = 1e-6)]
    pub eps: f64,
    /// Multiplier on each residual branch's output. The output projections start at zero, so
    /// under Adam this is a learning-rate multiplier for them (StyleGAN's equalised learning
    /// rate): a refiner grafted onto a trained generator needs to move faster than the
    /// generator's fine-tuning rate lets a plain layer move (at gain 1 and lr 2e-4 it stayed
    /// within 1 % of the identity over 2000 steps; docs/results.md, session 27).
    #[config(default = 1.0)]
    pub output_gain: f64,
    /// Class counts of an attribute head on the refined tokens (e.g. colour, shape, size and
    /// motion); empty = no head. A training signal only: each token of an object's phrase is
    /// taught to name that object's attributes (see [`TextRefiner::attribute_logits`]), which
    /// puts *which object* into its features where the generator's loss alone did not.
    #[config(default = "Vec::new()")]
    pub attribute_groups: Vec<usize>,
}

impl TextRefinerConfig {
    fn ffn_width(&self) -> usize {
        if self.ffn == 0 {
            4 * self.dim
        } else {
            self.ffn
        }
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.dim == 0 || self.layers == 0 || self.heads == 0 {
            return Err(ConfigError::invalid(format!(
                "text refiner: dim, layers and heads must be positive (got {}, {}, {})",
                self.dim, self.layers, self.heads
            )));
        }
        if !self.dim.is_multiple_of(self.heads) {
            return Err(ConfigError::invalid(format!(
                "text refiner: {} heads do not divide the text width {}",
                self.heads, self.dim
            )));
        }
        if !(self.eps.is_finite() && self.eps > 0.0) {
            return Err(ConfigError::invalid("text refiner: eps must be positive"));
        }
        if !(self.output_gain.is_finite() && self.output_gain > 0.0) {
            return Err(ConfigError::invalid(format!(
                "text refiner: output_gain must be positive, got {}",
                self.output_gain
            )));
        }
        if self.attribute_groups.contains(&0) {
            return Err(ConfigError::invalid(format!(
                "text refiner: attribute groups need at least one class each, got {:?}",
                self.attribute_groups
            )));
        }
        Ok(())
    }

    /// A refiner that is the identity until trained (zero output projections).
    pub fn init<B: Backend>(&self, device: &B::Device) -> Result<TextRefiner<B>, ConfigError> {
        self.validate()?;
        let d = self.dim;
        let linear = |i, o| LinearConfig::new(i, o).init::<B>(device);
        let zeroed = |i, o| zero_linear(linear(i, o));
        let blocks = (0..self.layers)
            .map(|_| TextRefinerBlock {
                norm1: AffineLayerNormConfig::new(d)
                    .with_eps(self.eps)
                    .init(device),
                to_q: linear(d, d),
                to_k: linear(d, d),
                to_v: linear(d, d),
                to_out: zeroed(d, d),
                norm2: AffineLayerNormConfig::new(d)
                    .with_eps(self.eps)
                    .init(device),
                ffn_in: linear(d, self.ffn_width()),
                ffn_out: zeroed(self.ffn_width(), d),
                heads: self.heads,
                gain: self.output_gain,
            })
            .collect();
        Ok(TextRefiner {
            pos_embed: linear(POSITION_FEATURES, d),
            blocks,
            attribute_head: (!self.attribute_groups.is_empty())
                .then(|| linear(d, self.attribute_groups.iter().sum())),
        })
    }
}

/// One pre-norm block: self-attention (positions added to its input), then an FFN.
#[derive(Module, Debug)]
pub struct TextRefinerBlock<B: Backend> {
    pub norm1: AffineLayerNorm<B>,
    pub to_q: Linear<B>,
    pub to_k: Linear<B>,
    pub to_v: Linear<B>,
    pub to_out: Linear<B>,
    pub norm2: AffineLayerNorm<B>,
    pub ffn_in: Linear<B>,
    pub ffn_out: Linear<B>,
    #[module(skip)]
    pub heads: usize,
    #[module(skip)]
    pub gain: f64,
}

impl<B: Backend> TextRefinerBlock<B> {
    fn forward(&self, x: Tensor<B, 3>, pos: Tensor<B, 3>) -> Tensor<B, 3> {
        let [b, l, d] = x.dims();
        let (h, hd) = (self.heads, d / self.heads);
        let u = self.norm1.forward(x.clone()) + pos;
        let split = |t: Tensor<B, 3>| t.reshape([b, l, h, hd]).swap_dims(1, 2);
        let a = sdpa(
            split(self.to_q.forward(u.clone())),
            split(self.to_k.forward(u.clone())),
            split(self.to_v.forward(u)),
        )
        .swap_dims(1, 2)
        .reshape([b, l, d]);
        let x = x + self.to_out.forward(a) * self.gain;
        let f = self.ffn_out.forward(gelu_tanh(
            self.ffn_in.forward(self.norm2.forward(x.clone())),
        ));
        x + f * self.gain
    }
}

/// The text refiner: `[B, L, dim]` → `[B, L, dim]`.
#[derive(Module, Debug)]
pub struct TextRefiner<B: Backend> {
    pub pos_embed: Linear<B>,
    pub blocks: Vec<TextRefinerBlock<B>>,
    /// The attribute head (training only; see [`TextRefinerConfig::attribute_groups`]).
    pub attribute_head: Option<Linear<B>>,
}

impl<B: Backend> TextRefiner<B> {
    pub fn forward(&self, text: Tensor<B, 3>) -> Tensor<B, 3> {
        let [_, l, _] = text.dims();
        let device = text.device();
        let index = Tensor::<B, 1, Int>::arange(0..l as i64, &device).float();
        let pos = self
            .pos_embed
            .forward(timestep_embedding(index, POSITION_FEATURES, true, 0.0))
            .unsqueeze_dim::<3>(0);
        self.blocks
            .iter()
            .fold(text, |x, block| block.forward(x, pos.clone()))
    }

    /// The attribute head's logits `[B, L, sum(groups)]` on refined tokens; `None` without a head.
    pub fn attribute_logits(&self, refined: Tensor<B, 3>) -> Option<Tensor<B, 3>> {
        self.attribute_head.as_ref().map(|h| h.forward(refined))
    }

    /// Cross-entropy of the attribute head on the refined `text` `[B, L, dim]` against one-hot
    /// `targets` `[B, L, sum(groups)]` (one block per group; the rows of tokens that describe no
    /// object are all zero and count for nothing), summed over groups and averaged over the
    /// labelled tokens. An error without a head or with targets of another shape.
    pub fn attribute_loss(
        &self,
        text: Tensor<B, 3>,
        targets: Tensor<B, 3>,
        groups: &[usize],
    ) -> Result<Tensor<B, 1>, ConfigError> {
        let logits = self
            .attribute_logits(self.forward(text))
            .ok_or_else(|| ConfigError::invalid("text refiner: no attribute head"))?;
        let [b, l, k] = logits.dims();
        if targets.dims() != [b, l, k] || groups.iter().sum::<usize>() != k {
            return Err(ConfigError::invalid(format!(
                "text refiner: attribute targets {:?} (groups {groups:?}) do not match the head's logits {:?}",
                targets.dims(),
                [b, l, k]
            )));
        }
        let total = grouped_cross_entropy_sum(logits, targets.clone(), groups);
        // Each labelled token has one 1 per group.
        let labelled = (targets.sum() / groups.len().max(1) as f64).clamp_min(1.0);
        Ok(total / labelled)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::NdArray;
    use burn::tensor::Distribution;
    type TB = NdArray;

    #[test]
    fn fresh_refiner_is_the_identity_and_heads_must_divide_the_width() {
        let device = Default::default();
        let refiner = TextRefinerConfig::new(16).init::<TB>(&device).unwrap();
        let x = Tensor::<TB, 3>::random([2, 5, 16], Distribution::Normal(0.0, 1.0), &device);
        let y = refiner.forward(x.clone());
        y.into_data()
            .assert_approx_eq::<f32>(&x.into_data(), burn::tensor::Tolerance::absolute(1e-6));
        let err = TextRefinerConfig::new(16)
            .with_heads(3)
            .init::<TB>(&device)
            .unwrap_err();
        assert!(err.to_string().contains("3 heads do not divide"), "{err}");
        assert!(TextRefinerConfig::new(16)
            .with_layers(0)
            .validate()
            .is_err());
    }

    #[test]
    fn the_attribute_loss_reads_labelled_tokens_only_and_needs_a_head() {
        let device = Default::default();
        let x = Tensor::<TB, 3>::random([1, 3, 8], Distribution::Normal(0.0, 1.0), &device);
        let groups = [2, 3];
        let r = TextRefinerConfig::new(8)
            .with_attribute_groups(groups.to_vec())
            .init::<TB>(&device)
            .unwrap();
        // Token 0 names class 0 of the first group and class 2 of the second; tokens 1 and 2
        // describe no object.
        let mut t = vec![0.0f32; 15];
        t[0] = 1.0;
        t[4] = 1.0;
        let targets = Tensor::<TB, 3>::from_data(TensorData::new(t, [1, 3, 5]), &device);
        let loss = r
            .attribute_loss(x.clone(), targets.clone(), &groups)
            .unwrap()
            .into_scalar();
        let logits = r
            .attribute_logits(r.forward(x.clone()))
            .unwrap()
            .into_data()
            .to_vec::<f32>()
            .unwrap();
        let log_softmax = |v: &[f32], i: usize| {
            let m = v.iter().cloned().fold(f32::MIN, f32::max);
            v[i] - m - v.iter().map(|a| (a - m).exp()).sum::<f32>().ln()
        };
        // Only token 0's logits enter, averaged over one labelled token.
        let want = -(log_softmax(&logits[0..2], 0) + log_softmax(&logits[2..5], 2));
        assert!((loss - want).abs() < 1e-5, "{loss} vs {want}");
        let err = TextRefinerConfig::new(8)
            .init::<TB>(&device)
            .unwrap()
            .attribute_loss(x.clone(), targets.clone(), &groups)
            .unwrap_err();
        assert!(err.to_string().contains("no attribute head"), "{err}");
        let err = r.attribute_loss(x, targets, &[2, 2]).unwrap_err();
        assert!(err.to_string().contains("do not match"), "{err}");
        assert!(TextRefinerConfig::new(8)
            .with_attribute_groups(vec![3, 0])
            .validate()
            .is_err());
    }

    #[test]
    fn output_gain_scales_each_residual_branch() {
        // One block with a single non-zero branch: what it adds to its input scales with the
        // gain, for the attention branch and for the FFN branch alike.
        let device = Default::default();
        let x = Tensor::<TB, 3>::random([1, 4, 16], Distribution::Normal(0.0, 1.0), &device);
        let r = TextRefinerConfig::new(16)
            .with_layers(1)
            .with_output_gain(3.0)
            .init::<TB>(&device)
            .unwrap();
        assert_eq!(r.blocks[0].gain, 3.0);
        for attention in [true, false] {
            let mut r = r.clone();
            if attention {
                r.blocks[0].to_out = LinearConfig::new(16, 16).init(&device);
            } else {
                r.blocks[0].ffn_out = LinearConfig::new(64, 16).init(&device);
            }
            let three = r.forward(x.clone()) - x.clone();
            r.blocks[0].gain = 1.0;
            let one = r.forward(x.clone()) - x.clone();
            assert!(one.clone().abs().max().into_scalar() > 1e-3);
            (one * 3.0).into_data().assert_approx_eq::<f32>(
                &three.into_data(),
                burn::tensor::Tolerance::absolute(1e-5),
            );
        }
    }

    #[test]
    fn trained_refiner_mixes_tokens_by_position() {
        <TB as Backend>::seed(&Default::default(), 27);
        // With non-zero output projections a token's output depends on the other tokens and on
        // where it sits: the same token at two positions of a constant sequence differs.
        let device = Default::default();
        let mut refiner = TextRefinerConfig::new(16)
            .with_layers(1)
            .init::<TB>(&device)
            .unwrap();
        refiner.blocks[0].to_out = LinearConfig::new(16, 16).init(&device);
        // Sharper attention, so that where a query sits moves its weights well above the
        // tolerance whatever the random draws.
        refiner.blocks[0].to_q.weight = refiner.blocks[0].to_q.weight.clone().map(|w| w * 8.0);
        let row = Tensor::<TB, 1>::random([16], Distribution::Normal(0.0, 1.0), &device);
        let x = row.reshape([1, 1, 16]).repeat_dim(1, 4);
        let y = refiner.forward(x.clone());
        let first = y.clone().slice([0..1, 0..1, 0..16]);
        let last = y.clone().slice([0..1, 3..4, 0..16]);
        let diff: f32 = (first - last).abs().max().into_scalar();
        assert!(diff > 1e-4, "positions ignored: {diff}");
        // Changing one token changes another token's output.
        let mut x2 = x.clone();
        x2 = x2.slice_assign(
            [0..1, 0..1, 0..16],
            Tensor::random([1, 1, 16], Distribution::Normal(0.0, 1.0), &device),
        );
        let y2 = refiner.forward(x2);
        let moved: f32 = (y2.slice([0..1, 2..3, 0..16]) - y.slice([0..1, 2..3, 0..16]))
            .abs()
            .max()
            .into_scalar();
        assert!(moved > 1e-4, "tokens not mixed: {moved}");
    }
}

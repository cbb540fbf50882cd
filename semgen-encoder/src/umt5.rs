//! The text encoder: a port of transformers' `UMT5EncoderModel` (transformers 5.23,
//! `models/umt5/modeling_umt5.py`), the encoder Wan2.1 conditions on.
//!
//! Differences from a textbook transformer that a port must match (NOTES §4d):
//! - every layer has its own relative-position-bias table (T5 has one, in layer 0);
//! - buckets are bidirectional (keys after the query use the upper half), exact below
//!   `num_buckets/4`, log-spaced up to `max_distance` with a float32 log truncated toward zero;
//! - no `1/√d` score scaling; padded keys get an additive `finfo(f32).min`;
//! - T5 RMS norm (no mean, no bias), gated-GELU(tanh) FFN `wo(gelu_tanh(wi_0 x) · wi_1 x)`,
//!   no biases anywhere, no embedding scaling, a final RMS norm.

use burn::nn::{Embedding, EmbeddingConfig, Linear, LinearConfig};
use burn::prelude::*;
use burn::tensor::activation::{relu, silu};
use semgen_core::attention::{index_tensor, sdpa_with_bias};
use semgen_core::checkpoint::{KeyRule, LoadError, LoadOptions, LoadReport};
use semgen_core::layers::{gelu_erf, gelu_tanh, RmsNorm, RmsNormConfig};
use semgen_core::ConfigError;
use std::path::Path;

// ---------------------------------------------------------------------------------------------
// Config
// ---------------------------------------------------------------------------------------------

/// The FFN activation (`dense_act_fn`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum FfnActivation {
    /// `gelu_new` / `gelu_pytorch_tanh`: GELU with the tanh approximation (umT5).
    GeluTanh,
    /// `gelu`: exact GELU.
    Gelu,
    Relu,
    Silu,
}

impl FfnActivation {
    fn from_name(name: &str) -> Result<Self, ConfigError> {
        Ok(match name {
            "gelu_new" | "gelu_pytorch_tanh" | "gelu_fast" => Self::GeluTanh,
            "gelu" => Self::Gelu,
            "relu" => Self::Relu,
            "silu" | "swish" => Self::Silu,
            other => {
                return Err(ConfigError::invalid(format!(
                    "unsupported FFN activation '{other}'"
                )))
            }
        })
    }

    fn apply<B: Backend, const D: usize>(self, x: Tensor<B, D>) -> Tensor<B, D> {
        match self {
            Self::GeluTanh => gelu_tanh(x),
            Self::Gelu => gelu_erf(x),
            Self::Relu => relu(x),
            Self::Silu => silu(x),
        }
    }
}

/// Sizes of the encoder, named as in `UMT5Config`.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Umt5Config {
    pub vocab_size: usize,
    pub d_model: usize,
    pub d_kv: usize,
    pub d_ff: usize,
    pub num_layers: usize,
    pub num_heads: usize,
    pub relative_attention_num_buckets: usize,
    pub relative_attention_max_distance: usize,
    pub layer_norm_epsilon: f64,
    /// `wo(act(wi_0 x) · wi_1 x)` when true, `wo(act(wi x))` otherwise.
    pub gated: bool,
    pub activation: FfnActivation,
}

impl Umt5Config {
    /// The fixture-sized encoder (`fixtures/umt5_encoder`).
    pub fn tiny() -> Self {
        Self {
            vocab_size: 96,
            d_model: 32,
            d_kv: 8,
            d_ff: 64,
            num_layers: 2,
            num_heads: 4,
            relative_attention_num_buckets: 32,
            relative_attention_max_distance: 128,
            layer_norm_epsilon: 1e-6,
            gated: true,
            activation: FfnActivation::GeluTanh,
        }
    }

    /// The umT5-XXL encoder of Wan2.1 (4096 wide, 24 layers, 64 heads).
    pub fn umt5_xxl() -> Self {
        Self {
            vocab_size: 256_384,
            d_model: 4096,
            d_kv: 64,
            d_ff: 10240,
            num_layers: 24,
            num_heads: 64,
            relative_attention_num_buckets: 32,
            relative_attention_max_distance: 128,
            layer_norm_epsilon: 1e-6,
            gated: true,
            activation: FfnActivation::GeluTanh,
        }
    }

    /// A small encoder for the Shapes world, sized for its word-level vocabulary
    /// ([`crate::tokenizer::shapes_vocab`] fits in 64 ids).
    pub fn shapes() -> Self {
        Self {
            vocab_size: 64,
            d_model: 64,
            d_kv: 16,
            d_ff: 128,
            num_layers: 2,
            num_heads: 4,
            relative_attention_num_buckets: 32,
            relative_attention_max_distance: 128,
            layer_norm_epsilon: 1e-6,
            gated: true,
            activation: FfnActivation::GeluTanh,
        }
    }

    /// Reads a transformers `UMT5Config` / `T5Config` JSON. `feed_forward_proj` decides the FFN as
    /// upstream: `"gated-gelu"` means gated with `gelu_new`; otherwise `"[gated-]act"`.
    pub fn from_transformers_json(text: &str) -> Result<Self, ConfigError> {
        let v: serde_json::Value = serde_json::from_str(text).map_err(|e| ConfigError::Parse {
            what: "UMT5 config.json".into(),
            reason: e.to_string(),
        })?;
        let get = |k: &str| -> Result<usize, ConfigError> {
            v.get(k)
                .and_then(|x| x.as_u64())
                .map(|x| x as usize)
                .ok_or_else(|| {
                    ConfigError::invalid(format!("config.json: '{k}' missing or not an integer"))
                })
        };
        let proj = v
            .get("feed_forward_proj")
            .and_then(|x| x.as_str())
            .unwrap_or("gated-gelu");
        let parts: Vec<&str> = proj.split('-').collect();
        let (gated, act_name) = match parts.as_slice() {
            [act] => (false, *act),
            ["gated", act] => (true, *act),
            _ => {
                return Err(ConfigError::invalid(format!(
                    "config.json: feed_forward_proj '{proj}' is not '[gated-]act'"
                )))
            }
        };
        // transformers maps "gated-gelu" to gelu_new (tanh) for backwards compatibility.
        let act_name = if proj == "gated-gelu" {
            "gelu_new"
        } else {
            act_name
        };
        let c = Self {
            vocab_size: get("vocab_size")?,
            d_model: get("d_model")?,
            d_kv: get("d_kv")?,
            d_ff: get("d_ff")?,
            num_layers: get("num_layers")?,
            num_heads: get("num_heads")?,
            relative_attention_num_buckets: get("relative_attention_num_buckets").unwrap_or(32),
            relative_attention_max_distance: get("relative_attention_max_distance").unwrap_or(128),
            layer_norm_epsilon: v
                .get("layer_norm_epsilon")
                .and_then(|x| x.as_f64())
                .unwrap_or(1e-6),
            gated,
            activation: FfnActivation::from_name(act_name)?,
        };
        c.validate()?;
        Ok(c)
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        let sizes = [
            ("vocab_size", self.vocab_size),
            ("d_model", self.d_model),
            ("d_kv", self.d_kv),
            ("d_ff", self.d_ff),
            ("num_layers", self.num_layers),
            ("num_heads", self.num_heads),
        ];
        if let Some((k, _)) = sizes.iter().find(|(_, v)| *v == 0) {
            return Err(ConfigError::invalid(format!("{k} must be positive")));
        }
        // Bidirectional buckets: half per direction, half of those exact.
        if self.relative_attention_num_buckets < 4
            || self.relative_attention_max_distance * 4 <= self.relative_attention_num_buckets
        {
            return Err(ConfigError::invalid(format!(
                "relative attention buckets {} / max distance {} are unusable",
                self.relative_attention_num_buckets, self.relative_attention_max_distance
            )));
        }
        Ok(())
    }

    pub fn inner_dim(&self) -> usize {
        self.num_heads * self.d_kv
    }

    pub fn init<B: Backend>(&self, device: &B::Device) -> Result<Umt5Encoder<B>, ConfigError> {
        self.validate()?;
        let (d, inner) = (self.d_model, self.inner_dim());
        let linear =
            |i: usize, o: usize| LinearConfig::new(i, o).with_bias(false).init::<B>(device);
        let norm = || {
            RmsNormConfig::new(d)
                .with_eps(self.layer_norm_epsilon)
                .init::<B>(device)
        };
        let block = (0..self.num_layers)
            .map(|_| Umt5Block {
                attn_layer: SelfAttentionLayer {
                    self_attention: Umt5Attention {
                        q: linear(d, inner),
                        k: linear(d, inner),
                        v: linear(d, inner),
                        o: linear(inner, d),
                        relative_attention_bias: EmbeddingConfig::new(
                            self.relative_attention_num_buckets,
                            self.num_heads,
                        )
                        .init(device),
                        num_heads: self.num_heads,
                    },
                    layer_norm: norm(),
                },
                ff_layer: FeedForwardLayer {
                    dense_relu_dense: DenseActDense {
                        wi_0: self.gated.then(|| linear(d, self.d_ff)),
                        wi_1: self.gated.then(|| linear(d, self.d_ff)),
                        wi: (!self.gated).then(|| linear(d, self.d_ff)),
                        wo: linear(self.d_ff, d),
                        activation: self.activation,
                    },
                    layer_norm: norm(),
                },
            })
            .collect();
        Ok(Umt5Encoder {
            encoder: Umt5Stack {
                embed_tokens: EmbeddingConfig::new(self.vocab_size, d).init(device),
                block,
                final_layer_norm: norm(),
            },
            config: self.clone(),
        })
    }
}

// ---------------------------------------------------------------------------------------------
// Relative position buckets
// ---------------------------------------------------------------------------------------------

/// The bidirectional bucket of `relative = key − query`, as `_relative_position_bucket` of an
/// encoder: the upper half of the buckets for keys after the query, exact buckets below
/// `num_buckets/4`, then `max_exact + trunc(ln(|r|/max_exact)/ln(max_distance/max_exact)·(n −
/// max_exact))` computed in float32, capped at the last bucket.
pub fn relative_position_bucket(relative: i64, num_buckets: usize, max_distance: usize) -> usize {
    let half = num_buckets / 2;
    let mut bucket = if relative > 0 { half } else { 0 };
    let r = relative.unsigned_abs() as usize;
    let max_exact = half / 2;
    if r < max_exact {
        return bucket + r;
    }
    // float32 throughout, like torch: the tensor log is f32, the Python-float divisor is cast.
    let log_ratio =
        (r as f32 / max_exact as f32).ln() / ((max_distance as f64 / max_exact as f64).ln() as f32);
    let large = max_exact + (log_ratio * (half - max_exact) as f32) as usize;
    bucket += large.min(half - 1);
    bucket
}

/// The `[q_len, k_len]` bucket table (row = query position).
pub fn bucket_table(
    q_len: usize,
    k_len: usize,
    num_buckets: usize,
    max_distance: usize,
) -> Vec<usize> {
    (0..q_len)
        .flat_map(|q| {
            (0..k_len).map(move |k| {
                relative_position_bucket(k as i64 - q as i64, num_buckets, max_distance)
            })
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Modules (fields named after upstream keys, see UMT5_KEYS)
// ---------------------------------------------------------------------------------------------

#[derive(Module, Debug)]
pub struct Umt5Attention<B: Backend> {
    pub q: Linear<B>,
    pub k: Linear<B>,
    pub v: Linear<B>,
    pub o: Linear<B>,
    /// `[num_buckets, heads]`.
    pub relative_attention_bias: Embedding<B>,
    #[module(skip)]
    pub num_heads: usize,
}

impl<B: Backend> Umt5Attention<B> {
    /// This layer's bias `[1, H, q_len, k_len]` for a bucket table.
    pub fn position_bias(
        &self,
        buckets: &Tensor<B, 1, Int>,
        q_len: usize,
        k_len: usize,
    ) -> Tensor<B, 4> {
        let h = self.num_heads;
        self.relative_attention_bias
            .weight
            .val()
            .select(0, buckets.clone())
            .reshape([q_len, k_len, h])
            .permute([2, 0, 1])
            .unsqueeze::<4>()
    }

    /// `x: [B, L, d]`; `bias: [B, H, L, L]` (position bias plus key mask).
    pub fn forward(&self, x: Tensor<B, 3>, bias: Tensor<B, 4>) -> Tensor<B, 3> {
        let [b, l, _] = x.dims();
        let h = self.num_heads;
        let split = |t: Tensor<B, 3>| {
            let inner = t.dims()[2];
            t.reshape([b, l, h, inner / h]).swap_dims(1, 2)
        };
        let q = split(self.q.forward(x.clone()));
        let k = split(self.k.forward(x.clone()));
        let v = split(self.v.forward(x));
        // umT5 does not scale scores: the scale is 1, not 1/√d_kv.
        let o = sdpa_with_bias(q, k, v, Some(bias), Some(1.0));
        let [_, _, _, dk] = o.dims();
        self.o.forward(o.swap_dims(1, 2).reshape([b, l, h * dk]))
    }
}

#[derive(Module, Debug)]
pub struct SelfAttentionLayer<B: Backend> {
    pub self_attention: Umt5Attention<B>,
    pub layer_norm: RmsNorm<B>,
}

/// `DenseReluDense`: gated (`wi_0`, `wi_1`) or plain (`wi`), then `wo`.
#[derive(Module, Debug)]
pub struct DenseActDense<B: Backend> {
    pub wi_0: Option<Linear<B>>,
    pub wi_1: Option<Linear<B>>,
    pub wi: Option<Linear<B>>,
    pub wo: Linear<B>,
    #[module(skip)]
    pub activation: FfnActivation,
}

impl<B: Backend> DenseActDense<B> {
    pub fn forward(&self, x: Tensor<B, 3>) -> Tensor<B, 3> {
        let h = match (&self.wi_0, &self.wi_1, &self.wi) {
            (Some(w0), Some(w1), _) => self.activation.apply(w0.forward(x.clone())) * w1.forward(x),
            (_, _, Some(wi)) => self.activation.apply(wi.forward(x)),
            _ => unreachable!("init builds either the gated or the plain FFN"),
        };
        self.wo.forward(h)
    }
}

#[derive(Module, Debug)]
pub struct FeedForwardLayer<B: Backend> {
    pub dense_relu_dense: DenseActDense<B>,
    pub layer_norm: RmsNorm<B>,
}

/// Upstream `block.{i}`: `layer.0` self-attention, `layer.1` feed-forward.
#[derive(Module, Debug)]
pub struct Umt5Block<B: Backend> {
    pub attn_layer: SelfAttentionLayer<B>,
    pub ff_layer: FeedForwardLayer<B>,
}

impl<B: Backend> Umt5Block<B> {
    pub fn forward(&self, x: Tensor<B, 3>, bias: Tensor<B, 4>) -> Tensor<B, 3> {
        let a = &self.attn_layer;
        let x = x.clone() + a.self_attention.forward(a.layer_norm.forward(x), bias);
        let f = &self.ff_layer;
        x.clone() + f.dense_relu_dense.forward(f.layer_norm.forward(x))
    }
}

#[derive(Module, Debug)]
pub struct Umt5Stack<B: Backend> {
    pub embed_tokens: Embedding<B>,
    pub block: Vec<Umt5Block<B>>,
    pub final_layer_norm: RmsNorm<B>,
}

/// Upstream key fragments → semgen field names. `layer.0`/`layer.1` are heterogeneous upstream
/// (a `ModuleList` of two different layer types), so they become named fields.
pub const UMT5_KEYS: &[KeyRule] = &[
    KeyRule::new("layer.0", "attn_layer"),
    KeyRule::new("layer.1", "ff_layer"),
    KeyRule::new("SelfAttention", "self_attention"),
    KeyRule::new("DenseReluDense", "dense_relu_dense"),
];

/// The umT5 encoder (`UMT5EncoderModel`).
#[derive(Module, Debug)]
pub struct Umt5Encoder<B: Backend> {
    pub encoder: Umt5Stack<B>,
    #[module(skip)]
    pub config: Umt5Config,
}

/// File keys an encoder-only load may skip: the tied copy of the embedding and, in full
/// encoder–decoder checkpoints, the decoder and LM head.
fn ignorable(key: &str) -> bool {
    key == "shared.weight" || key.starts_with("decoder.") || key.starts_with("lm_head.")
}

impl<B: Backend> Umt5Encoder<B> {
    /// Builds the encoder for `config` and loads an upstream state dict. The embedding is tied
    /// upstream and saved under both `shared.weight` and `encoder.embed_tokens.weight`: the
    /// latter is used when present, otherwise `shared.weight` is loaded in its place. Decoder and
    /// LM-head tensors of full checkpoints are skipped (and listed in the report); any other
    /// unexpected tensor is an error.
    pub fn load(
        config: &Umt5Config,
        path: &Path,
        device: &B::Device,
    ) -> Result<(Self, LoadReport), LoadError> {
        let model = config
            .init::<B>(device)
            .map_err(|e| LoadError::Invalid(e.to_string()))?;
        let file = semgen_core::checkpoint::parse_safetensors(path)?;
        let has_embed = file
            .tensors()
            .iter()
            .any(|(k, _)| k == "encoder.embed_tokens.weight");
        let mut rules = UMT5_KEYS.to_vec();
        if !has_embed {
            rules.insert(0, KeyRule::new("shared", "encoder.embed_tokens"));
        }
        let options = LoadOptions {
            allow_unexpected: true,
            ..Default::default()
        };
        let (model, report) = semgen_core::checkpoint::load_into(model, &file, &rules, &options)?;
        let stray: Vec<String> = report
            .unexpected
            .iter()
            .filter(|k| !ignorable(k))
            .cloned()
            .collect();
        if !stray.is_empty() {
            return Err(LoadError::UnexpectedKeys {
                path: path.to_path_buf(),
                keys: stray,
            });
        }
        Ok((model, report))
    }

    /// The bucket table of a length as an index tensor (shared by every layer).
    pub fn buckets(&self, len: usize, device: &B::Device) -> Tensor<B, 1, Int> {
        let c = &self.config;
        index_tensor::<B>(
            &bucket_table(
                len,
                len,
                c.relative_attention_num_buckets,
                c.relative_attention_max_distance,
            ),
            device,
        )
    }

    /// Layer `layer`'s position bias `[1, H, L, L]`.
    pub fn position_bias(&self, layer: usize, len: usize, device: &B::Device) -> Tensor<B, 4> {
        let buckets = self.buckets(len, device);
        self.encoder.block[layer]
            .attn_layer
            .self_attention
            .position_bias(&buckets, len, len)
    }

    /// `input_ids`, `attention_mask`: `[B, L]` (mask 1 = real token, 0 = padding). Returns
    /// `last_hidden_state` `[B, L, d_model]`; padded rows are computed as upstream (non-zero).
    /// Ids must be below `vocab_size` ([`crate::text_encoder::TextEncoder`] checks this).
    pub fn forward(
        &self,
        input_ids: Tensor<B, 2, Int>,
        attention_mask: Tensor<B, 2, Int>,
    ) -> Tensor<B, 3> {
        let [b, l] = input_ids.dims();
        let device = input_ids.device();
        let h = self.config.num_heads;
        // Additive mask on padded keys: finfo(float32).min, as transformers' eager path.
        let mask = attention_mask
            .equal_elem(0)
            .float()
            .mul_scalar(f32::MIN)
            .reshape([b, 1, 1, l]);
        let buckets = self.buckets(l, &device);
        let mut x = self.encoder.embed_tokens.forward(input_ids);
        for block in &self.encoder.block {
            let bias = block
                .attn_layer
                .self_attention
                .position_bias(&buckets, l, l)
                + mask.clone();
            // Fused attention backends want the bias at full shape.
            x = block.forward(x, bias.expand([b, h, l, l]));
        }
        self.encoder.final_layer_norm.forward(x)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::NdArray;
    type TB = NdArray;

    #[test]
    fn buckets_match_the_notes_row() {
        // NOTES §4d: row 0 of the 40x40 table is 0,17,18,…,24,24,24,24,25,…
        let row: Vec<usize> = bucket_table(1, 13, 32, 128);
        assert_eq!(row, vec![0, 17, 18, 19, 20, 21, 22, 23, 24, 24, 24, 24, 25]);
        // Keys before the query use the lower half; far distances saturate at the last bucket.
        assert_eq!(relative_position_bucket(-3, 32, 128), 3);
        assert_eq!(relative_position_bucket(-1000, 32, 128), 15);
        assert_eq!(relative_position_bucket(1000, 32, 128), 31);
    }

    #[test]
    fn forward_shape_and_padding_independence() {
        let d = Default::default();
        let model = Umt5Config::tiny().init::<TB>(&d).unwrap();
        // The same 4 tokens with and without 3 padded positions give the same real-token outputs:
        // masked keys contribute exactly zero and the position bias depends only on distance.
        let short =
            Tensor::<TB, 2, Int>::from_data(TensorData::new(vec![5i64, 6, 7, 1], [1, 4]), &d);
        let long = Tensor::<TB, 2, Int>::from_data(
            TensorData::new(vec![5i64, 6, 7, 1, 0, 0, 0], [1, 7]),
            &d,
        );
        let m_short = Tensor::<TB, 2, Int>::ones([1, 4], &d);
        let m_long = Tensor::<TB, 2, Int>::from_data(
            TensorData::new(vec![1i64, 1, 1, 1, 0, 0, 0], [1, 7]),
            &d,
        );
        let a = model.forward(short, m_short);
        let b = model.forward(long, m_long);
        assert_eq!(b.dims(), [1, 7, 32]);
        b.narrow(1, 0, 4)
            .into_data()
            .assert_approx_eq::<f32>(&a.into_data(), burn::tensor::Tolerance::absolute(1e-5));
    }

    #[test]
    fn config_reads_feed_forward_proj() {
        let j = r#"{"vocab_size": 10, "d_model": 8, "d_kv": 4, "d_ff": 16, "num_layers": 1, "num_heads": 2, "feed_forward_proj": "relu"}"#;
        let c = Umt5Config::from_transformers_json(j).unwrap();
        assert!(!c.gated);
        assert_eq!(c.activation, FfnActivation::Relu);
        let j = j.replace("\"relu\"", "\"gated-gelu\"");
        let c = Umt5Config::from_transformers_json(&j).unwrap();
        assert!(c.gated);
        assert_eq!(c.activation, FfnActivation::GeluTanh);
        assert!(Umt5Config::from_transformers_json(r#"{"d_model": 8}"#).is_err());
    }
}

//! Prompt → conditioning tensor, as Wan's pipeline does it: tokenise (truncating to the text
//! length), run umT5 with the attention mask, **trim each row to its real length and zero-pad to
//! the fixed text length** (512 upstream; the DiT then attends to the zero rows too).
//!
//! The encoder runs on the batch's longest prompt, not the full text length: real-token outputs
//! do not depend on how much padding follows (masked keys get weight exactly 0 and the position
//! bias depends only on distance), so the result equals upstream's and costs less.

use crate::error::EncodeError;
use crate::tokenizer::{PromptTokenizer, TextWarning};
use crate::umt5::Umt5Encoder;
use burn::prelude::*;

/// Upstream Wan's text length.
pub const WAN_TEXT_LEN: usize = 512;

/// A tokenizer, an umT5 encoder and the fixed text length.
#[derive(Debug)]
pub struct TextEncoder<B: Backend> {
    pub tokenizer: PromptTokenizer,
    pub model: Umt5Encoder<B>,
    pub text_len: usize,
}

/// Encoded prompts.
#[derive(Debug, Clone)]
pub struct TextEncoding<B: Backend> {
    /// `[B, text_len, d_model]`; rows past each prompt's length are zero.
    pub hidden: Tensor<B, 3>,
    /// Real token counts (end token included).
    pub lengths: Vec<usize>,
    /// Truncations made.
    pub warnings: Vec<TextWarning>,
}

impl<B: Backend> TextEncoder<B> {
    /// Checks that the tokenizer's ids fit the model's vocabulary.
    pub fn new(
        tokenizer: PromptTokenizer,
        model: Umt5Encoder<B>,
        text_len: usize,
    ) -> Result<Self, EncodeError> {
        if text_len < 2 {
            return Err(EncodeError::TextLength(text_len));
        }
        let vocab = model.config.vocab_size;
        if tokenizer.vocab_size() > vocab {
            return Err(EncodeError::TokenOutOfVocab {
                index: 0,
                id: tokenizer.vocab_size() as u32 - 1,
                vocab,
            });
        }
        Ok(Self {
            tokenizer,
            model,
            text_len,
        })
    }

    /// Encodes prompts to `[B, text_len, d_model]`. See the module docs for the padding rule and
    /// [`crate::tokenizer`] for empty and over-long prompts.
    pub fn encode(&self, prompts: &[&str]) -> Result<TextEncoding<B>, EncodeError> {
        let batch = self.tokenizer.tokenize(prompts, self.text_len)?;
        let vocab = self.model.config.vocab_size;
        for (index, row) in batch.ids.iter().enumerate() {
            if let Some(&id) = row.iter().find(|&&id| id as usize >= vocab) {
                return Err(EncodeError::TokenOutOfVocab { index, id, vocab });
            }
        }
        let lengths = batch.lengths();
        let longest = lengths.iter().copied().max().unwrap_or(1);
        let b = prompts.len();
        let device = self.model.encoder.embed_tokens.weight.device();
        let (ids, mask) = batch.padded(longest, self.tokenizer.pad_id());
        let ids = Tensor::<B, 2, Int>::from_data(TensorData::new(ids, [b, longest]), &device);
        let mask_t =
            Tensor::<B, 2, Int>::from_data(TensorData::new(mask.clone(), [b, longest]), &device);
        let hidden = self.model.forward(ids, mask_t);
        // Trim: zero every padded row; pad: append zero rows up to the text length.
        let keep = Tensor::<B, 2, Int>::from_data(TensorData::new(mask, [b, longest]), &device)
            .float()
            .unsqueeze_dim::<3>(2);
        let hidden = hidden * keep;
        let d = self.model.config.d_model;
        let hidden = if longest < self.text_len {
            Tensor::cat(
                vec![
                    hidden,
                    Tensor::zeros([b, self.text_len - longest, d], &device),
                ],
                1,
            )
        } else {
            hidden
        };
        Ok(TextEncoding {
            hidden,
            lengths,
            warnings: batch.warnings,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::umt5::Umt5Config;
    use burn::backend::NdArray;
    type TB = NdArray;

    fn encoder(text_len: usize) -> TextEncoder<TB> {
        let d = Default::default();
        let model = Umt5Config::shapes().init::<TB>(&d).unwrap();
        TextEncoder::new(PromptTokenizer::shapes(), model, text_len).unwrap()
    }

    #[test]
    fn zero_padded_to_text_length_and_batch_independent() {
        let enc = encoder(16);
        let out = enc
            .encode(&[
                "a red circle staying still on a navy background",
                "a small blue ring",
            ])
            .unwrap();
        assert_eq!(out.hidden.dims(), [2, 16, 64]);
        assert_eq!(out.lengths, vec![10, 5]);
        let rows = out
            .hidden
            .clone()
            .abs()
            .sum_dim(2)
            .into_data()
            .to_vec::<f32>()
            .unwrap();
        for (i, r) in rows.iter().enumerate() {
            let real = i < 10 || (16..21).contains(&i);
            assert_eq!(*r > 0.0, real, "row {i}: {r}");
        }
        // The short prompt alone gives the same rows as inside the batch.
        let alone = enc.encode(&["a small blue ring"]).unwrap();
        alone.hidden.into_data().assert_approx_eq::<f32>(
            &out.hidden.narrow(0, 1, 1).into_data(),
            burn::tensor::Tolerance::absolute(1e-5),
        );
    }

    #[test]
    fn bad_prompts_are_typed_errors_or_warnings() {
        let enc = encoder(6);
        assert!(matches!(
            enc.encode(&[""]),
            Err(EncodeError::EmptyPrompt { index: 0 })
        ));
        let out = enc
            .encode(&["a large red circle moving left slowly on a navy background"])
            .unwrap();
        assert_eq!(out.hidden.dims(), [1, 6, 64]);
        assert_eq!(out.lengths, vec![6]);
        assert_eq!(out.warnings.len(), 1);
    }

    #[test]
    fn tokenizer_larger_than_vocab_is_rejected() {
        let d = Default::default();
        let mut c = Umt5Config::shapes();
        c.vocab_size = 8;
        let model = c.init::<TB>(&d).unwrap();
        assert!(matches!(
            TextEncoder::new(PromptTokenizer::shapes(), model, 16),
            Err(EncodeError::TokenOutOfVocab { .. })
        ));
        let model = Umt5Config::shapes().init::<TB>(&d).unwrap();
        assert!(matches!(
            TextEncoder::new(PromptTokenizer::shapes(), model, 1),
            Err(EncodeError::TextLength(1))
        ));
    }
}

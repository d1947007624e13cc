//! Token states to one vector per text: sentence-transformers' Pooling (mean over the
//! attention mask, or the `[CLS]` token) and Normalize modules, in candle.

use candle_core::{Result, Tensor};
use torchbridge_core::{EmbeddingConfig, Pooling};

/// `states` `[texts, tokens, hidden]`, `mask` `[texts, tokens]` (FP32) → `[texts, hidden]`.
pub(crate) fn pool(states: &Tensor, mask: &Tensor, config: &EmbeddingConfig) -> Result<Tensor> {
    let pooled = match config.pooling {
        Pooling::Mean => {
            let mask = mask.unsqueeze(2)?;
            let sum = states.broadcast_mul(&mask)?.sum(1)?;
            // As sentence-transformers: a text with no unmasked token pools to zeros.
            let count = mask.sum(1)?.clamp(1e-9f32, f32::MAX)?;
            sum.broadcast_div(&count)?
        }
        Pooling::Cls => states.narrow(1, 0, 1)?.squeeze(1)?,
    };
    if !config.normalize {
        return Ok(pooled);
    }
    // torch.nn.functional.normalize: divide by max(‖x‖₂, 1e-12).
    let norm = pooled
        .sqr()?
        .sum_keepdim(1)?
        .sqrt()?
        .clamp(1e-12f32, f32::MAX)?;
    pooled.broadcast_div(&norm)
}

#[cfg(test)]
mod tests {
    use candle_core::Device;

    use super::*;

    fn states() -> Tensor {
        // Two texts of three tokens, hidden size 2.
        let values = [1f32, 2., 3., 4., 100., 100., 3., 4., 0., 0., 0., 0.];
        Tensor::from_slice(&values, (2, 3, 2), &Device::Cpu).unwrap()
    }

    fn run(pooling: Pooling, normalize: bool, mask: &[f32]) -> Vec<Vec<f32>> {
        let mask = Tensor::from_slice(mask, (2, 3), &Device::Cpu).unwrap();
        let config = EmbeddingConfig { pooling, normalize };
        pool(&states(), &mask, &config).unwrap().to_vec2().unwrap()
    }

    #[test]
    fn mean_skips_masked_tokens() {
        let out = run(Pooling::Mean, false, &[1., 1., 0., 1., 0., 0.]);
        assert_eq!(out, vec![vec![2., 3.], vec![3., 4.]]);
    }

    #[test]
    fn a_fully_masked_text_pools_to_zeros() {
        let out = run(Pooling::Mean, false, &[1., 1., 1., 0., 0., 0.]);
        assert_eq!(out[1], vec![0., 0.]);
        let out = run(Pooling::Mean, true, &[1., 1., 1., 0., 0., 0.]);
        assert_eq!(out[1], vec![0., 0.]);
    }

    #[test]
    fn cls_takes_the_first_token_and_normalize_gives_unit_norm() {
        let out = run(Pooling::Cls, true, &[1., 1., 1., 1., 1., 1.]);
        let expected = [1. / 5f32.sqrt(), 2. / 5f32.sqrt()];
        assert!((out[0][0] - expected[0]).abs() < 1e-6, "{out:?}");
        assert!((out[0][1] - expected[1]).abs() < 1e-6, "{out:?}");
        assert!((out[1][0] - 0.6).abs() < 1e-6 && (out[1][1] - 0.8).abs() < 1e-6);
    }
}

//! Property tests (issue 11) of the Qwen2.5-VL patchify: it equals the processor's
//! reshape/permute formula for any patch, merge and temporal-patch size, inverting that formula
//! gives the frames back, a batch of clips is the clips one after another, and the window order
//! of the tower's plan is a partition of the merge units.

use burn::backend::NdArray;
use burn::prelude::*;
use proptest::prelude::*;
use rand::{Rng, SeedableRng};
use semgen_encoder::qwen_vision::{patchify_clips, patchify_frames, QwenVisionConfig, VisionPlan};

type B = NdArray;

/// The processor's permutation of `[gt, tps, C, gh/m, m, p, gw/m, m, p]`.
const PERM: [usize; 9] = [0, 3, 6, 4, 7, 2, 1, 5, 8];
/// Its inverse.
const INV: [usize; 9] = [0, 6, 5, 1, 3, 7, 2, 4, 8];

fn config(c: usize, p: usize, m: usize, tps: usize) -> QwenVisionConfig {
    QwenVisionConfig {
        in_channels: c,
        patch_size: p,
        spatial_merge_size: m,
        temporal_patch_size: tps,
        window_size: p * m * 2,
        ..QwenVisionConfig::tiny()
    }
}

/// `data` of `shape` permuted as `torch.permute(perm)` (output axis `i` is input axis `perm[i]`).
fn permute(data: &[f32], shape: &[usize], perm: &[usize]) -> (Vec<f32>, Vec<usize>) {
    let rank = shape.len();
    let mut strides = vec![1usize; rank];
    for i in (0..rank.saturating_sub(1)).rev() {
        strides[i] = strides[i + 1] * shape[i + 1];
    }
    let out_shape: Vec<usize> = perm.iter().map(|&a| shape[a]).collect();
    let mut out = Vec::with_capacity(data.len());
    let mut index = vec![0usize; rank];
    for _ in 0..data.len() {
        let src: usize = (0..rank).map(|i| index[i] * strides[perm[i]]).sum();
        out.push(data[src]);
        for i in (0..rank).rev() {
            index[i] += 1;
            if index[i] < out_shape[i] {
                break;
            }
            index[i] = 0;
        }
    }
    (out, out_shape)
}

fn frames(shape: [usize; 4], seed: u64) -> Tensor<B, 4> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let n = shape.iter().product();
    let v: Vec<f32> = (0..n).map(|_| rng.random_range(-1.0f32..1.0)).collect();
    Tensor::from_data(TensorData::new(v, shape), &Default::default())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, .. ProptestConfig::default() })]

    #[test]
    fn qwen_patchify_is_the_processor_formula_and_inverts(
        c in 1usize..4, p in 1usize..4, m in 1usize..3, tps in 1usize..3,
        t in 1usize..6, bh in 1usize..3, bw in 1usize..3, seed in any::<u64>(),
    ) {
        let cfg = config(c, p, m, tps);
        let (h, w) = (bh * m * p, bw * m * p);
        let x = frames([t, c, h, w], seed);
        let (patches, grid) = patchify_frames(&cfg, x.clone()).unwrap();
        let gt = t.div_ceil(tps);
        let (gh, gw) = (h / p, w / p);
        prop_assert_eq!(grid, [gt, gh, gw]);
        prop_assert_eq!(patches.dims(), [gt * gh * gw, c * tps * p * p]);

        // Upstream: pad time by repeating the last frame, then one reshape and permute (done on
        // the host: the 9-D permute is beyond NdArray's 6 dimensions).
        let xs = x.into_data().to_vec::<f32>().unwrap();
        let frame = c * h * w;
        let mut padded = xs.clone();
        for _ in t..gt * tps {
            padded.extend_from_slice(&xs[(t - 1) * frame..t * frame]);
        }
        let split = [gt, tps, c, gh / m, m, p, gw / m, m, p];
        let (want, _) = permute(&padded, &split, &PERM);
        prop_assert_eq!(&patches.into_data().to_vec::<f32>().unwrap(), &want);

        // The inverse permutation gives the (padded) frames back.
        let grouped = [gt, gh / m, gw / m, m, m, c, tps, p, p];
        let (back, shape) = permute(&want, &grouped, &INV);
        prop_assert_eq!(shape, split.to_vec());
        prop_assert_eq!(&back, &padded);
        prop_assert_eq!(&back[..t * frame], &xs[..]);
    }

    #[test]
    fn a_batch_of_clips_is_the_clips_one_after_another(
        batch in 1usize..4, c in 1usize..4, p in 1usize..3, m in 1usize..3, tps in 1usize..3,
        t in 1usize..5, seed in any::<u64>(),
    ) {
        let cfg = config(c, p, m, tps);
        let (h, w) = (m * p * 2, m * p);
        let clips: Tensor<B, 5> = frames([batch * c, t, h, w], seed).reshape([batch, c, t, h, w]);
        let (packed, grids) = patchify_clips(&cfg, clips.clone()).unwrap();
        prop_assert_eq!(grids.len(), batch);
        let mut rows = Vec::new();
        for i in 0..batch {
            let one: Tensor<B, 4> = clips.clone().narrow(0, i, 1).reshape([c, t, h, w]).swap_dims(0, 1);
            let (p1, g1) = patchify_frames(&cfg, one).unwrap();
            prop_assert_eq!(g1, grids[i]);
            rows.push(p1);
        }
        packed.into_data().assert_eq(&Tensor::cat(rows, 0).into_data(), true);
    }

    /// The window order is a permutation of the merge units (so the merger's `argsort` restores
    /// the original order) and the window boundaries cover every token once.
    #[test]
    fn window_order_partitions_the_merge_units(
        m in 1usize..3, ws in 1usize..4, grids in proptest::collection::vec((1usize..3, 1usize..6, 1usize..6), 1..3),
    ) {
        let p = 2;
        let cfg = QwenVisionConfig { patch_size: p, spatial_merge_size: m, window_size: ws * m * p, ..QwenVisionConfig::tiny() };
        let grid_thw: Vec<[usize; 3]> = grids.iter().map(|&(t, h, w)| [t, h * m, w * m]).collect();
        let plan = VisionPlan::new(&cfg, &grid_thw).unwrap();
        let units: usize = grid_thw.iter().map(|g| g[0] * g[1] * g[2]).sum::<usize>() / (m * m);
        let mut order = plan.window_index.clone();
        order.sort();
        prop_assert_eq!(order, (0..units).collect::<Vec<_>>());
        prop_assert_eq!(plan.cu_window_seqlens[0], 0);
        prop_assert!(plan.cu_window_seqlens.windows(2).all(|w| w[1] > w[0]));
        prop_assert_eq!(*plan.cu_window_seqlens.last().unwrap(), plan.num_tokens());
        prop_assert_eq!(*plan.cu_seqlens.last().unwrap(), plan.num_tokens());
    }
}

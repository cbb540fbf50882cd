//! Property tests (issue 11): the DiT's patchify/unpatchify, the window partition/merge of
//! [`WindowPlan`], and the flow-matching σ schedules. (RoPE norm preservation and window
//! membership are in `tests/attention.rs`.)

use burn::backend::NdArray;
use burn::module::Param;
use burn::prelude::*;
use burn::tensor::Tolerance;
use proptest::prelude::*;
use rand::{Rng, SeedableRng};
use semgen_core::attention::{reference_attention, AttentionMode, WindowPlan};
use semgen_core::sampling::{SamplerConfig, SamplerKind, MAX_SHIFT};
use semgen_core::wan_dit::{WanDit, WanDitConfig};

type B = NdArray;

fn host_values(n: usize, seed: u64) -> Vec<f32> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    (0..n).map(|_| rng.random_range(-1.0f32..1.0)).collect()
}

/// A DiT whose patch embedding only rearranges: token channel `((kt·p_h + kh)·p_w + kw)·C + c`
/// holds input channel `c` at kernel offset `(kt, kh, kw)`, which is the order diffusers'
/// unpatchify reads the head's output in.
fn rearranging_dit(c: usize, p: [usize; 3]) -> WanDit<B> {
    let d = c * p[0] * p[1] * p[2];
    let config = WanDitConfig::new(p, 1, d, c, c, 4, 4, 4, 1);
    let mut dit = config.init::<B>(&Default::default()).unwrap();
    let mut w = vec![0f32; d * d];
    for ci in 0..c {
        for kt in 0..p[0] {
            for kh in 0..p[1] {
                for kw in 0..p[2] {
                    let o = ((kt * p[1] + kh) * p[2] + kw) * c + ci;
                    let i = ((ci * p[0] + kt) * p[1] + kh) * p[2] + kw;
                    w[o * d + i] = 1.0;
                }
            }
        }
    }
    let device = Default::default();
    dit.patch_embedding.weight = Param::from_tensor(Tensor::from_data(
        TensorData::new(w, [d, c, p[0], p[1], p[2]]),
        &device,
    ));
    dit.patch_embedding.bias = Some(Param::from_tensor(Tensor::zeros([d], &device)));
    dit
}

/// `from_ids` plans, or `new` plans from frames and a window mode.
fn plan() -> impl Strategy<Value = WindowPlan> {
    prop_oneof![
        proptest::collection::vec(0usize..6, 1..28).prop_map(WindowPlan::from_ids),
        (
            1usize..8,
            1usize..4,
            1usize..6,
            any::<bool>(),
            proptest::collection::vec(0usize..8, 0..4)
        )
            .prop_map(|(t, s, tw, shifted, extra)| {
                let mut frames: Vec<usize> =
                    (0..t).flat_map(|f| std::iter::repeat_n(f, s)).collect();
                frames.extend(extra.into_iter().map(|e| e % t));
                WindowPlan::new(
                    &frames,
                    t,
                    AttentionMode::Window {
                        frames: tw,
                        shifted,
                    },
                )
            }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 32, .. ProptestConfig::default() })]

    /// `unpatchify(patchify(x)) == x` for any patch size, channel count and grid when the patch
    /// embedding is a pure rearrangement: the token order (f, h, w row-major) and the channel
    /// order inside a token agree between the Conv3d patchify and diffusers' unpatchify.
    #[test]
    fn dit_unpatchify_inverts_patchify(
        c in 1usize..4, pt in 1usize..3, ph in 1usize..4, pw in 1usize..4,
        f in 1usize..4, h in 1usize..4, w in 1usize..4, batch in 1usize..3, seed in any::<u64>(),
    ) {
        // An even model width (one head of width D) keeps the 3D RoPE split valid.
        let c = if (c * pt * ph * pw) % 2 == 1 { c + 1 } else { c };
        let dit = rearranging_dit(c, [pt, ph, pw]);
        let shape = [batch, c, f * pt, h * ph, w * pw];
        let n = shape.iter().product();
        let x = Tensor::<B, 5>::from_data(TensorData::new(host_values(n, seed), shape), &Default::default());
        let grid = dit.patched_grid(f * pt, h * ph, w * pw).unwrap();
        prop_assert_eq!(grid, [f, h, w]);
        let tokens = dit.patchify(x.clone());
        prop_assert_eq!(tokens.dims(), [batch, f * h * w, c * pt * ph * pw]);
        // Token (t, y, x) holds the patch at that grid cell.
        let tok = tokens.clone().into_data().to_vec::<f32>().unwrap();
        let xs = x.clone().into_data().to_vec::<f32>().unwrap();
        let (t, y, xx, ci) = (f - 1, h / 2, w - 1, c - 1);
        let token = (t * h + y) * w + xx;
        let channel = (((pt - 1) * ph + (ph - 1)) * pw + (pw - 1)) * c + ci;
        let src = ((ci * f * pt + t * pt + pt - 1) * h * ph + y * ph + ph - 1) * w * pw + xx * pw + pw - 1;
        prop_assert!((tok[token * c * pt * ph * pw + channel] - xs[src]).abs() < 1e-6);
        dit.unpatchify(tokens, grid)
            .into_data()
            .assert_approx_eq::<f32>(&x.into_data(), Tolerance::absolute(1e-6));
        // A grid the patch does not divide is a typed error, not a panic.
        if ph > 1 {
            prop_assert!(dit.patched_grid(f * pt, h * ph + 1, w * pw).is_err());
        }
    }

    /// The token-major form (`attend_tokens`, what the DiT and the Qwen encoder run) is
    /// attention restricted to each token's window, for any plan, batch and head count: it
    /// equals the plain reference with the plan's mask on the split heads.
    #[test]
    fn token_major_attention_is_masked_attention(
        plan in plan(), b in 1usize..3, heads in 1usize..4, d in 1usize..5, seed in any::<u64>(),
    ) {
        let device = Default::default();
        let n = plan.window_ids().len();
        let t = |s: u64| {
            Tensor::<B, 3>::from_data(TensorData::new(host_values(b * n * heads * d, s), [b, n, heads * d]), &device)
        };
        let (q, k, v) = (t(seed), t(seed ^ 1), t(seed ^ 2));
        let split = |x: Tensor<B, 3>| x.reshape([b, n, heads, d]).swap_dims(1, 2);
        let mask: Vec<bool> = (0..n * n).map(|x| !plan.allowed(x / n, x % n)).collect();
        let mask = Tensor::<B, 2, Bool>::from_data(TensorData::new(mask, [n, n]), &device)
            .reshape([1, 1, n, n])
            .expand([b, heads, n, n]);
        let want = reference_attention(split(q.clone()), split(k.clone()), split(v.clone()), Some(mask))
            .swap_dims(1, 2)
            .reshape([b, n, heads * d]);
        let got = plan.attend_tokens(q, k, v, heads);
        got.into_data().assert_approx_eq::<f32>(&want.into_data(), Tolerance::absolute(1e-5));
    }

    /// Window partition and merge: with attention that only sees the token itself (one-hot
    /// queries and keys), the windowed output is exactly the input values in their original
    /// places, for any plan; with uniform attention (zero keys) each token gets the mean of the
    /// values of its own window and of nothing else.
    #[test]
    fn window_partition_then_merge_restores_every_token(plan in plan(), d in 1usize..4, seed in any::<u64>()) {
        let device = Default::default();
        let n = plan.window_ids().len();
        let v = host_values(n * d, seed);
        let values = Tensor::<B, 4>::from_data(TensorData::new(v.clone(), [1, 1, n, d]), &device);
        // One-hot queries and keys in the first n channels, the values in the last d: q, k and
        // v share the head dimension n + d.
        let mut qk = vec![0f32; n * (n + d)];
        for i in 0..n {
            qk[i * (n + d) + i] = 40.0;
        }
        let q = Tensor::<B, 4>::from_data(TensorData::new(qk, [1, 1, n, n + d]), &device);
        let vpad = Tensor::cat(vec![Tensor::zeros([1, 1, n, n], &device), values.clone()], 3);
        let out = plan.attend(q.clone(), q, vpad).narrow(3, n, d);
        out.into_data().assert_approx_eq::<f32>(&values.clone().into_data(), Tolerance::absolute(1e-5));

        let zeros = Tensor::<B, 4>::zeros([1, 1, n, d], &device);
        let out = plan.attend(zeros.clone(), zeros, values).into_data().to_vec::<f32>().unwrap();
        let ids = plan.window_ids();
        for i in 0..n {
            let members: Vec<usize> = (0..n).filter(|&j| ids[j] == ids[i]).collect();
            for k in 0..d {
                let mean = members.iter().map(|&j| v[j * d + k]).sum::<f32>() / members.len() as f32;
                prop_assert!((out[i * d + k] - mean).abs() < 1e-5, "token {} channel {}", i, k);
            }
        }
        // Every token is in exactly one window.
        let mut distinct: Vec<usize> = ids.to_vec();
        distinct.sort();
        distinct.dedup();
        prop_assert_eq!(plan.num_windows(), distinct.len());
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, .. ProptestConfig::default() })]

    /// The σ schedule of every sampler config that validates is monotone: it starts at most 1,
    /// decreases strictly at every step (a flat step would do nothing) and ends at 0; the model
    /// timesteps decrease with it and stay in [0, 1000]. (This found that shifts above ~1000 give
    /// flat f32 steps near σ = 1; `SamplerConfig::validate` now refuses shifts above 100.)
    #[test]
    fn flow_sigmas_are_monotone_for_any_shift_and_step_count(
        steps in 1usize..=1000,
        log_shift in -3.0f64..6.0,
        unipc in any::<bool>(),
    ) {
        let config = SamplerConfig {
            kind: if unipc { SamplerKind::Unipc } else { SamplerKind::Euler },
            steps,
            shift: 10f64.powf(log_shift),
        };
        if config.validate().is_err() {
            // Only shifts so large that the f32 schedule would go flat are refused.
            prop_assert!(config.shift > MAX_SHIFT, "{:?} refused", config);
            return Ok(());
        }
        let sched = config.build::<B, 1>().unwrap();
        let sigmas = sched.sigmas();
        prop_assert_eq!(sigmas.len(), steps + 1);
        prop_assert!(sigmas[0] <= 1.0 && sigmas[0] > 0.0, "{:?}", &sigmas[..2]);
        prop_assert_eq!(sigmas[steps], 0.0);
        for (i, w) in sigmas.windows(2).enumerate() {
            prop_assert!(w[1] < w[0], "{:?}: σ[{}] = {} then {}", config, i, w[0], w[1]);
        }
        let ts = sched.timesteps();
        prop_assert_eq!(ts.len(), steps);
        prop_assert!(ts.windows(2).all(|w| w[1] <= w[0]));
        prop_assert!(ts.iter().all(|&t| (0.0..=1000.0).contains(&t)));
    }
}

//! Forward and backward cost of the VAE's convolutions on the CPU backend (Flex), the
//! measurement behind docs/benchmarks.md "VAE training: the convolution's backward":
//!
//! ```text
//! cargo run --release -p semgen-pipeline --example conv_grad
//! ```
//!
//! For the shapes of the shipped VAE's decoder (channels, frames incl. the causal padding,
//! side), the median of 5 runs after a warm-up: a 3×3×3 `conv3d` forward; forward + backward
//! for the input and the weight; the input gradient alone; the weight gradient alone; and the
//! same for the per-frame 3×3 `conv2d` the resampling layers use; and the same 3×3×3 conv
//! written as im2col + one matmul out of plain tensor ops (pad, 27 slices, a stack, a
//! matmul), whose backward Autodiff builds from slice-assigns and two gemms (session 24).

use burn::backend::{Autodiff, Flex};
use burn::tensor::backend::Backend;
use burn::tensor::module::{conv2d, conv3d};
use burn::tensor::ops::ConvOptions;
use burn::tensor::{Distribution, Tensor};
use std::time::Instant;

type B = Flex;
type A = Autodiff<Flex>;

fn median_ms(mut f: impl FnMut()) -> f64 {
    f();
    let mut times: Vec<f64> = (0..5)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed().as_secs_f64() * 1e3
        })
        .collect();
    times.sort_by(f64::total_cmp);
    times[2]
}

/// `conv3d` with kernel 3, stride 1, padding (0, 1, 1), no bias, as im2col + one matmul:
/// x [1, C, T, H, W], w [O, C, 3, 3, 3] → [1, O, T - 2, H, W].
fn conv3d_im2col<X: Backend>(x: Tensor<X, 5>, w: Tensor<X, 5>) -> Tensor<X, 5> {
    let [_, c, t, h, wd] = x.dims();
    let o = w.dims()[0];
    let xp = x.pad((1, 1, 1, 1), burn::tensor::ops::PadMode::Constant(0.0));
    let mut cols = Vec::with_capacity(27);
    for kt in 0..3 {
        for kh in 0..3 {
            for kw in 0..3 {
                cols.push(
                    xp.clone()
                        .slice([0..1, 0..c, kt..kt + t - 2, kh..kh + h, kw..kw + wd]),
                );
            }
        }
    }
    // [1, C, 27, T', H, W]: input channel major, kernel offset minor, as w's [O, C·27] rows.
    let n = (t - 2) * h * wd;
    let cols = Tensor::stack::<6>(cols, 2).reshape([c * 27, n]);
    w.reshape([o, c * 27])
        .matmul(cols)
        .reshape([1, o, t - 2, h, wd])
}

/// Median ms of `conv` forward + backward on Autodiff, reading the gradients asked for.
fn grad_ms(
    x: &Tensor<B, 5>,
    w: &Tensor<B, 5>,
    xg: bool,
    wg: bool,
    conv: impl Fn(Tensor<A, 5>, Tensor<A, 5>) -> Tensor<A, 5>,
) -> f64 {
    let xa = Tensor::<A, 5>::from_inner(x.clone());
    let wa = Tensor::<A, 5>::from_inner(w.clone());
    let xa = if xg { xa.require_grad() } else { xa };
    let wa = if wg { wa.require_grad() } else { wa };
    median_ms(|| {
        let g = conv(xa.clone(), wa.clone()).sum().backward();
        if xg {
            let _ = xa.grad(&g).unwrap().into_data();
        }
        if wg {
            let _ = wa.grad(&g).unwrap().into_data();
        }
    })
}

fn main() {
    let d = Default::default();
    println!(
        "| shape (C, T, H=W) | op | forward | fwd + bwd (x and w) | x grad only | w grad only |"
    );
    println!("|---|---|---|---|---|---|");
    for (c, t, h) in [
        (16usize, 11usize, 64usize),
        (32, 11, 32),
        (32, 7, 16),
        (32, 5, 8),
    ] {
        let x = Tensor::<B, 5>::random([1, c, t, h, h], Distribution::Normal(0.0, 1.0), &d);
        let w = Tensor::<B, 5>::random([c, c, 3, 3, 3], Distribution::Normal(0.0, 0.1), &d);
        let opt = ConvOptions::new([1, 1, 1], [0, 1, 1], [1, 1, 1], 1);
        let run = |xg: bool, wg: bool| {
            grad_ms(&x, &w, xg, wg, |xa, wa| conv3d(xa, wa, None, opt.clone()))
        };
        let fwd = median_ms(|| {
            let _ = conv3d(x.clone(), w.clone(), None, opt.clone()).into_data();
        });
        println!(
            "| {c}, {t}, {h} | conv3d 3×3×3 | {fwd:.1} | {:.1} | {:.1} | {:.1} |",
            run(true, true),
            run(true, false),
            run(false, true)
        );
        let x2 = Tensor::<B, 4>::random([t, c, h, h], Distribution::Normal(0.0, 1.0), &d);
        let w2 = Tensor::<B, 4>::random([c, c, 3, 3], Distribution::Normal(0.0, 0.1), &d);
        let o2 = ConvOptions::new([1, 1], [1, 1], [1, 1], 1);
        let fwd2 = median_ms(|| {
            let _ = conv2d(x2.clone(), w2.clone(), None, o2.clone()).into_data();
        });
        let xa2 = Tensor::<A, 4>::from_inner(x2.clone()).require_grad();
        let wa2 = Tensor::<A, 4>::from_inner(w2.clone()).require_grad();
        let both2 = median_ms(|| {
            let g = conv2d(xa2.clone(), wa2.clone(), None, o2.clone())
                .sum()
                .backward();
            let _ = wa2.grad(&g).unwrap().into_data();
        });
        println!("| {c}, {t}, {h} | conv2d 3×3 per frame | {fwd2:.1} | {both2:.1} | | |");
        let reference = conv3d(x.clone(), w.clone(), None, opt.clone());
        let diff = conv3d_im2col(x.clone(), w.clone())
            .sub(reference)
            .abs()
            .max()
            .into_scalar();
        assert!(diff < 1e-3, "im2col conv3d differs from conv3d by {diff}");
        let fwd3 = median_ms(|| {
            let _ = conv3d_im2col(x.clone(), w.clone()).into_data();
        });
        let run3 = |xg: bool, wg: bool| grad_ms(&x, &w, xg, wg, conv3d_im2col);
        println!(
            "| {c}, {t}, {h} | conv3d 3×3×3 as im2col + matmul | {fwd3:.1} | {:.1} | {:.1} | {:.1} |",
            run3(true, true),
            run3(true, false),
            run3(false, true)
        );
    }
}

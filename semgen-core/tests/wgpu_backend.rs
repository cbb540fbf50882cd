//! The attention and DiT checks on the wgpu backend (Mesa lavapipe on CPU-only CI machines).
//! Built only with `--features test-wgpu`; `scripts/install-deps.sh` installs lavapipe.
#![cfg(feature = "test-wgpu")]

mod common;

use burn::backend::wgpu::{Wgpu, WgpuDevice};
use common::*;
use semgen_core::attention::{AttentionKernel, AttentionMode};

type B = Wgpu;

#[test]
fn wgpu_attention_and_dit() {
    // One test so the (slow, software) device is initialised once and kernels compile once.
    let d = WgpuDevice::DefaultDevice;
    // A GPU backend takes Burn's attention op with and without autodiff (session 25: the
    // composed kernel's 1 MiB chunks would be hundreds of small launches there).
    assert_eq!(
        AttentionKernel::for_backend::<B>(&d),
        AttentionKernel::Fused
    );
    assert_eq!(
        AttentionKernel::for_backend::<burn::backend::Autodiff<B>>(&d),
        AttentionKernel::Fused
    );
    fused_matches_reference::<B>(&d, 2, 2, 17, 17, 16);
    let frames = token_frames(7, 3, &[0, 2, 4, 6]);
    for shifted in [false, true] {
        windowed_matches_masked_reference::<B>(
            &d,
            &frames,
            7,
            AttentionMode::Window { frames: 3, shifted },
        );
    }
    windowed_matches_masked_reference::<B>(
        &d,
        &frames,
        7,
        AttentionMode::Window {
            frames: 7,
            shifted: true,
        },
    );
    wan_dit_parity::<B>(&d);
}

//! Streaming decode: equal to the whole-clip decode, causal, constant state, and tiling.

use burn::backend::NdArray;
use burn::tensor::{Distribution, Tensor};
use semgen_vae::{StreamDecoder, TileConfig, VaeError, WanVae, WanVaeConfig};
use std::path::Path;

type B = NdArray;

fn fixture_vae() -> WanVae<B> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures/wan_vae");
    let config = WanVaeConfig::from_diffusers_json(
        &std::fs::read_to_string(dir.join("config.json")).unwrap(),
    )
    .unwrap();
    WanVae::load(
        &config,
        &dir.join("weights.safetensors"),
        &Default::default(),
    )
    .unwrap()
    .0
}

fn values(t: Tensor<B, 5>) -> Vec<f32> {
    t.into_data().to_vec::<f32>().unwrap()
}

fn max_diff(a: Tensor<B, 5>, b: Tensor<B, 5>) -> f32 {
    assert_eq!(a.dims(), b.dims());
    values(a)
        .iter()
        .zip(values(b))
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

fn latents(t: usize, h: usize, w: usize, seed: u64) -> Tensor<B, 5> {
    <B as burn::tensor::backend::Backend>::seed(&Default::default(), seed);
    Tensor::random(
        [1, 4, t, h, w],
        Distribution::Normal(0.0, 1.0),
        &Default::default(),
    )
}

#[test]
fn streaming_equals_whole_clip_decode_exactly() {
    let vae = fixture_vae();
    let z = latents(5, 4, 4, 1);
    let whole = vae.decode(z.clone()).unwrap();
    let mut stream = StreamDecoder::new(&vae);
    let mut parts = Vec::new();
    for i in 0..5 {
        let out = stream.push(z.clone().narrow(2, i, 1)).unwrap();
        assert_eq!(out.dims()[2], if i == 0 { 1 } else { 4 });
        parts.push(out);
    }
    let streamed = Tensor::cat(parts, 2);
    assert_eq!(streamed.dims(), [1, 3, 17, 32, 32]);
    assert_eq!(values(streamed), values(whole));
}

#[test]
fn decoding_a_prefix_gives_exactly_the_first_frames() {
    let vae = fixture_vae();
    let z = latents(4, 4, 4, 2);
    let whole = vae.decode(z.clone()).unwrap();
    for k in 1..=4 {
        let prefix = vae.decode(z.clone().narrow(2, 0, k)).unwrap();
        let n = 1 + 4 * (k - 1);
        assert_eq!(prefix.dims()[2], n);
        assert_eq!(
            values(prefix),
            values(whole.clone().narrow(2, 0, n)),
            "first {k} latent frames"
        );
    }
}

#[test]
fn stream_state_stays_constant_and_iterator_matches() {
    let vae = fixture_vae();
    let z = latents(7, 2, 2, 3);
    let mut stream = StreamDecoder::new(&vae);
    let mut sizes = Vec::new();
    for i in 0..7 {
        stream.push(z.clone().narrow(2, i, 1)).unwrap();
        sizes.push(stream.cache_numel());
    }
    // Every cached layer holds 2 frames from the third latent frame on (the first leaves some
    // layers with 1 frame and the upsamplers' "Rep" marker).
    assert!(sizes[0] < sizes[1], "{sizes:?}");
    assert!(sizes[2..].iter().all(|&s| s == sizes[2]), "{sizes:?}");

    let frames: Vec<_> = (0..7).map(|i| z.clone().narrow(2, i, 1)).collect();
    let out: Vec<_> = StreamDecoder::new(&vae)
        .decode_iter(frames)
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(values(Tensor::cat(out, 2)), values(vae.decode(z).unwrap()));
}

#[test]
fn stream_rejects_mismatched_frames() {
    let vae = fixture_vae();
    let mut stream = StreamDecoder::new(&vae);
    stream.push(latents(1, 2, 2, 4)).unwrap();
    assert!(matches!(
        stream.push(latents(1, 3, 2, 4)),
        Err(VaeError::LatentFrame { .. })
    ));
    assert!(matches!(
        stream.push(latents(2, 2, 2, 4)),
        Err(VaeError::LatentFrame { .. })
    ));
    let wrong_channels = Tensor::<B, 5>::zeros([1, 5, 1, 2, 2], &Default::default());
    assert!(matches!(
        stream.push(wrong_channels),
        Err(VaeError::Channels {
            expected: 4,
            found: 5,
            ..
        })
    ));
    assert!(matches!(
        StreamDecoder::tiled(
            &vae,
            TileConfig {
                tile: 20,
                stride: 16
            }
        ),
        Err(VaeError::Tiling(_))
    ));
    assert!(matches!(
        StreamDecoder::tiled(
            &vae,
            TileConfig {
                tile: 16,
                stride: 24
            }
        ),
        Err(VaeError::Tiling(_))
    ));
}

fn decode_tiled(vae: &WanVae<B>, z: &Tensor<B, 5>, tiling: TileConfig) -> Tensor<B, 5> {
    let mut stream = StreamDecoder::tiled(vae, tiling).unwrap();
    let parts: Vec<_> = (0..z.dims()[2])
        .map(|i| stream.push(z.clone().narrow(2, i, 1)).unwrap())
        .collect();
    Tensor::cat(parts, 2)
}

#[test]
fn one_tile_covering_the_frame_is_exact() {
    let vae = fixture_vae();
    let z = latents(2, 4, 4, 5);
    let tiled = decode_tiled(
        &vae,
        &z,
        TileConfig {
            tile: 32,
            stride: 32,
        },
    );
    assert_eq!(values(tiled), values(vae.decode(z).unwrap()));
}

#[test]
fn blended_tiles_beat_hard_seams_on_a_large_frame() {
    let vae = fixture_vae();
    // A smooth latent (a broad ramp plus small noise) on a 64x64 frame, larger than the tiles.
    let d = Default::default();
    let ramp = Tensor::<B, 1>::from_floats([0.0, 0.15, 0.3, 0.45, 0.6, 0.75, 0.9, 1.05], &d)
        .reshape([1, 1, 1, 1, 8]);
    let z = ramp.expand([1, 4, 2, 8, 8]) + latents(2, 8, 8, 6) * 0.1;
    let untiled = vae.decode(z.clone()).unwrap();
    let err = |t: TileConfig| {
        let tiled = decode_tiled(&vae, &z, t);
        assert_eq!(tiled.dims(), [1, 3, 5, 64, 64]);
        let max = max_diff(tiled.clone(), untiled.clone());
        let mean = (tiled - untiled.clone()).abs().mean().into_scalar();
        println!(
            "tile {} stride {}: max err {max:.4}, mean err {mean:.5}",
            t.tile, t.stride
        );
        mean
    };
    let hard = err(TileConfig {
        tile: 32,
        stride: 32,
    });
    let blended = err(TileConfig {
        tile: 48,
        stride: 32,
    });
    // The fixture's random weights give the decoder a frame-wide receptive field (and the mid
    // attention is global), so tiling is approximate; blending must still clearly help.
    assert!(
        blended < 0.8 * hard,
        "blended {blended} vs hard seams {hard}"
    );
    assert!(blended < 0.1, "blended mean err {blended}");
}

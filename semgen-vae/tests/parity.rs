//! Parity with diffusers' `AutoencoderKLWan` on the reference fixture, at the manifest's atol.

use burn::backend::NdArray;
use semgen_core::fixture::Fixture;
use std::path::Path;

#[test]
fn wan_vae_fixture_matches_diffusers() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures/wan_vae");
    let fx = Fixture::open(&dir).expect("fixture folder");
    let rows =
        semgen_vae::parity::run_wan_vae::<NdArray>(&fx, &Default::default()).expect("parity run");
    let names: Vec<&str> = rows.iter().map(|r| r.comparison.name.as_str()).collect();
    assert_eq!(
        names,
        fx.manifest
            .outputs
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>()
    );
    for r in &rows {
        let c = &r.comparison;
        println!(
            "{}: max abs err {:.3e} (atol {:.0e})",
            c.name, c.max_abs_err, c.atol
        );
    }
    for r in &rows {
        assert!(
            r.comparison.passed(),
            "{} failed: {:?}",
            r.comparison.name,
            r.comparison
        );
    }
}

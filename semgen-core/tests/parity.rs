//! Numerical parity with the upstream reference fixtures (diffusers), on the CPU backend.

use burn::backend::NdArray;
use semgen_core::fixture::Fixture;
use semgen_core::parity::{run_schedulers, run_wan_dit, ParityRow};
use std::path::PathBuf;

type B = NdArray;

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../fixtures")
}

fn assert_rows(rows: &[ParityRow]) {
    assert!(rows.iter().any(|r| r.gating), "no output compared");
    for r in rows {
        let c = &r.comparison;
        eprintln!(
            "{:<16} max|err| {:.3e} (atol {:.0e}){}",
            c.name,
            c.max_abs_err,
            c.atol,
            if r.gating { "" } else { " intermediate" }
        );
        assert!(
            c.passed(),
            "{} differs by {:e} > {:e}",
            c.name,
            c.max_abs_err,
            c.atol
        );
    }
}

#[test]
fn wan_dit_matches_diffusers() {
    let fx = Fixture::open(&fixtures().join("wan_dit")).unwrap();
    assert_eq!(fx.manifest.component, "wan_dit");
    let rows = run_wan_dit::<B>(&fx, &Default::default()).unwrap();
    assert!(
        rows.len() >= 4,
        "expected out plus intermediates, got {rows:?}"
    );
    assert_rows(&rows);
}

#[test]
fn schedulers_match_diffusers() {
    let rows = run_schedulers::<B>(
        &fixtures().join("schedulers.safetensors"),
        1e-5,
        &Default::default(),
    )
    .unwrap();
    // 2 × (timesteps + sigmas + 10 intermediate samples)
    assert_eq!(rows.len(), 24);
    assert_rows(&rows);
}

//! The parts of `cargo xtask` that other targets share: the benchmark suite of issue 10, used by
//! `cargo xtask bench suite` and by the criterion benchmarks (`cargo bench -p xtask`), and the
//! GPU-scale cases of `cargo xtask bench gpu`.

pub mod gpu;
pub mod suite;

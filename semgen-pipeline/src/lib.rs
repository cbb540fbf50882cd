//! # semgen-pipeline
//!
//! Composition of the SemanticGen stages and the run-time backend selection shared by the
//! binaries (`semgen`, `cargo xtask`).
//!
//! [`backend`] is the one place in semgen that names concrete Burn backends: the model crates
//! are generic over `B: Backend`, and the binaries pick a backend at run time from
//! `--device cpu | wgpu[:N] | cuda[:N]`, each compiled in by a cargo feature (`wgpu`, `cuda`;
//! the CPU backend is always present).
//!
//! ```
//! use burn::prelude::*;
//! use semgen_core::device::DeviceSpec;
//! use semgen_pipeline::backend::{dispatch, BackendTask};
//!
//! struct SumOnes;
//! impl BackendTask for SumOnes {
//!     type Output = f32;
//!     fn run<B: Backend>(self, device: B::Device) -> f32 {
//!         Tensor::<B, 1>::ones([4], &device).sum().into_scalar().elem()
//!     }
//! }
//! assert_eq!(dispatch(DeviceSpec::Cpu, SumOnes).unwrap(), 4.0);
//! ```

pub mod backend;
pub mod model;
pub mod pipeline;
pub mod train;

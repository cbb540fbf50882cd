//! Run-time backend selection: `--device cpu | wgpu[:N] | cuda[:N]`.
//!
//! | device | backend | cargo feature |
//! |---|---|---|
//! | `cpu` | `Flex` (f32; measured faster than `NdArray`, docs/benchmarks.md) | always |
//! | `wgpu[:N]` | `Wgpu` (Vulkan/Metal/DX12; lavapipe on CPU-only Linux) | `wgpu` |
//! | `cuda[:N]` | `Cuda` (NVRTC kernels, driver loaded at run time) | `cuda` |
//!
//! A task is written once, generic over the backend ([`BackendTask`] / [`AutodiffTask`]), and
//! [`dispatch`] / [`dispatch_autodiff`] instantiate it for the requested device. A device that is
//! not compiled in, or that is compiled in but absent on this machine, is a
//! [`BackendError`], not a panic.

use burn::backend::Autodiff;
use burn::prelude::*;
use burn::tensor::backend::AutodiffBackend;
use semgen_core::device::DeviceSpec;

/// Keeps the process's freed tensor buffers for reuse instead of handing them back to the OS
/// (glibc only; elsewhere it does nothing). The binaries call it first thing.
///
/// Why: a CPU forward allocates and frees a few hundred buffers, many above glibc's
/// (adaptive) mmap threshold or left at the top of the heap, which glibc unmaps or trims on
/// free; the next allocation then page-faults every page again. On the 2-core machine page
/// faults were 14 % of a DiT small forward's samples, and with the buffers kept that forward
/// takes a quarter less time (52 → 40 ms; docs/benchmarks.md, session 22, fix 10). Cost: the
/// heap stays at its peak until the process ends, which a generation or a training run
/// reaches anyway.
/// `SEMGEN_KEEP_FREED_MEMORY=0` leaves glibc's defaults (to compare, or to share a machine).
pub fn keep_freed_memory() {
    if std::env::var("SEMGEN_KEEP_FREED_MEMORY").as_deref() == Ok("0") {
        return;
    }
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets allocator parameters (under glibc's own lock); no memory is
    // touched.
    unsafe {
        // Blocks up to 1 GiB (attention scores, VAE activations) come from the heap.
        libc::mallopt(libc::M_MMAP_THRESHOLD, 1 << 30);
        // Free memory at the top of the heap is kept up to 1 GiB.
        libc::mallopt(libc::M_TRIM_THRESHOLD, 1 << 30);
    }
}

/// Why a device cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BackendError {
    #[error(
        "device '{device}' is not compiled into this binary: rebuild with `--features {feature}`"
    )]
    NotCompiled {
        device: String,
        feature: &'static str,
    },
    #[error("device '{device}' is not available on this machine: {reason}")]
    Unavailable { device: String, reason: String },
}

/// Work that can run on any backend.
pub trait BackendTask {
    type Output;
    fn run<B: Backend>(self, device: B::Device) -> Self::Output;
}

/// Work that needs gradients (training).
pub trait AutodiffTask {
    type Output;
    fn run<B: AutodiffBackend>(self, device: B::Device) -> Self::Output;
}

/// The backends compiled into this binary, for `--help` texts and errors.
pub fn compiled_devices() -> Vec<&'static str> {
    let mut v = vec!["cpu"];
    if cfg!(feature = "wgpu") {
        v.push("wgpu");
    }
    if cfg!(feature = "cuda") {
        v.push("cuda");
    }
    v
}

/// Runs a tiny op on the device and turns a backend panic (no adapter, no driver) into an error.
#[allow(dead_code)]
fn probe<B: Backend>(spec: DeviceSpec, device: &B::Device) -> Result<(), BackendError> {
    let device = device.clone();
    self_test(spec, move || {
        let x = Tensor::<B, 1>::ones([2], &device);
        x.sum().into_scalar().elem::<f32>()
    })
}

/// Runs `ones(2).sum()` computed by `f` with the panic message silenced: `Ok` when it gives 2,
/// otherwise [`BackendError::Unavailable`] carrying the panic message (how a backend reports a
/// missing adapter or driver).
#[allow(dead_code)]
fn self_test(spec: DeviceSpec, f: impl FnOnce() -> f32) -> Result<(), BackendError> {
    match semgen_core::guard::catch_panic_silently(f) {
        Ok(v) if v == 2.0 => Ok(()),
        Ok(v) => Err(BackendError::Unavailable {
            device: spec.to_string(),
            reason: format!("a self-test computed {v} instead of 2"),
        }),
        Err(reason) => Err(BackendError::Unavailable {
            device: spec.to_string(),
            reason,
        }),
    }
}

#[cfg(feature = "wgpu")]
fn wgpu_device(i: usize) -> burn::backend::wgpu::WgpuDevice {
    use burn::backend::wgpu::WgpuDevice;
    // Index 0 is "the best adapter there is" (a discrete GPU, else integrated, else lavapipe).
    if i == 0 {
        WgpuDevice::DefaultDevice
    } else {
        WgpuDevice::DiscreteGpu(i)
    }
}

/// Runs `task` on the requested device.
pub fn dispatch<T: BackendTask>(spec: DeviceSpec, task: T) -> Result<T::Output, BackendError> {
    match spec {
        DeviceSpec::Cpu => Ok(task.run::<burn::backend::Flex>(Default::default())),
        #[cfg(feature = "wgpu")]
        DeviceSpec::Wgpu(i) => {
            let d = wgpu_device(i);
            probe::<burn::backend::Wgpu>(spec, &d)?;
            Ok(task.run::<burn::backend::Wgpu>(d))
        }
        #[cfg(feature = "cuda")]
        DeviceSpec::Cuda(i) => {
            let d = burn::backend::cuda::CudaDevice::new(i);
            probe::<burn::backend::Cuda>(spec, &d)?;
            Ok(task.run::<burn::backend::Cuda>(d))
        }
        #[allow(unreachable_patterns)]
        other => Err(not_compiled(other)),
    }
}

/// Runs `task` on the requested device with autodiff.
pub fn dispatch_autodiff<T: AutodiffTask>(
    spec: DeviceSpec,
    task: T,
) -> Result<T::Output, BackendError> {
    match spec {
        DeviceSpec::Cpu => Ok(task.run::<Autodiff<burn::backend::Flex>>(Default::default())),
        #[cfg(feature = "wgpu")]
        DeviceSpec::Wgpu(i) => {
            let d = wgpu_device(i);
            probe::<burn::backend::Wgpu>(spec, &d)?;
            Ok(task.run::<Autodiff<burn::backend::Wgpu>>(d))
        }
        #[cfg(feature = "cuda")]
        DeviceSpec::Cuda(i) => {
            let d = burn::backend::cuda::CudaDevice::new(i);
            probe::<burn::backend::Cuda>(spec, &d)?;
            Ok(task.run::<Autodiff<burn::backend::Cuda>>(d))
        }
        #[allow(unreachable_patterns)]
        other => Err(not_compiled(other)),
    }
}

#[allow(dead_code)]
fn not_compiled(spec: DeviceSpec) -> BackendError {
    BackendError::NotCompiled {
        device: spec.to_string(),
        feature: match spec {
            DeviceSpec::Cpu => "flex",
            DeviceSpec::Wgpu(_) => "wgpu",
            DeviceSpec::Cuda(_) => "cuda",
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Dims;
    impl BackendTask for Dims {
        type Output = [usize; 2];
        fn run<B: Backend>(self, device: B::Device) -> [usize; 2] {
            Tensor::<B, 2>::zeros([2, 3], &device).dims()
        }
    }

    #[test]
    fn cpu_is_always_there() {
        assert_eq!(dispatch(DeviceSpec::Cpu, Dims).unwrap(), [2, 3]);
        assert!(compiled_devices().contains(&"cpu"));
    }

    #[test]
    fn a_backend_that_panics_at_start_is_unavailable_not_a_panic() {
        let e = self_test(DeviceSpec::Wgpu(3), || {
            panic!("No possible adapter available")
        })
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            "device 'wgpu:3' is not available on this machine: No possible adapter available"
        );
        let e = self_test(DeviceSpec::Cuda(1), || {
            panic!("{}", String::from("CUDA_ERROR_INVALID_DEVICE"))
        })
        .unwrap_err();
        assert!(
            matches!(&e, BackendError::Unavailable { device, reason }
                if device == "cuda:1" && reason == "CUDA_ERROR_INVALID_DEVICE"),
            "{e}"
        );
        assert!(matches!(
            self_test(DeviceSpec::Cuda(0), || 3.0),
            Err(BackendError::Unavailable { .. })
        ));
        assert_eq!(self_test(DeviceSpec::Cpu, || 2.0), Ok(()));
    }

    #[cfg(not(feature = "cuda"))]
    #[test]
    fn missing_backend_is_a_clear_error() {
        let e = dispatch(DeviceSpec::Cuda(0), Dims).unwrap_err();
        assert_eq!(
            e.to_string(),
            "device 'cuda:0' is not compiled into this binary: rebuild with `--features cuda`"
        );
    }
}

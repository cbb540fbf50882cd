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

/// How long the first tiny computation on a GPU may take (context creation and one kernel
/// compilation; seconds in practice) before the device counts as unavailable.
pub const PROBE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(120);

/// Runs a tiny op on the device and turns a backend panic (no adapter, no driver) or a device
/// that never answers into an error.
#[allow(dead_code)]
fn probe<B: Backend>(spec: DeviceSpec, device: &B::Device) -> Result<(), BackendError> {
    let device = device.clone();
    self_test(spec, PROBE_TIMEOUT, move || {
        let x = Tensor::<B, 1>::ones([2], &device);
        x.sum().into_scalar().elem::<f32>()
    })
}

/// Runs `ones(2).sum()` computed by `f` on a helper thread with its panic message silenced:
/// `Ok` when it gives 2, otherwise [`BackendError::Unavailable`] carrying the panic message (how
/// a backend reports a missing adapter or driver), or saying that no answer came within
/// `timeout`. Why the timeout: the CUDA backend runs each device on its own server thread; when
/// that thread dies (its panic is printed: only the caller's thread is silenced), the caller
/// waits for an answer forever. Session 25's first run on a GPU hung that way, with no message.
#[allow(dead_code)]
fn self_test(
    spec: DeviceSpec,
    timeout: std::time::Duration,
    f: impl FnOnce() -> f32 + Send + 'static,
) -> Result<(), BackendError> {
    let unavailable = |reason: String| BackendError::Unavailable {
        device: spec.to_string(),
        reason,
    };
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::Builder::new()
        .name("semgen-device-probe".into())
        .spawn(move || {
            let _ = tx.send(semgen_core::guard::catch_panic_silently(f));
        })
        .map_err(|e| unavailable(format!("cannot start the probe thread: {e}")))?;
    match rx.recv_timeout(timeout) {
        Ok(Ok(v)) if v == 2.0 => Ok(()),
        Ok(Ok(v)) => Err(unavailable(format!(
            "a self-test computed {v} instead of 2"
        ))),
        Ok(Err(reason)) => Err(unavailable(reason)),
        Err(_) => Err(unavailable(format!(
            "a first tiny computation gave no answer within {} s (a panic of the backend's own \
             threads, if any, is printed above)",
            timeout.as_secs_f64()
        ))),
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
        let t = PROBE_TIMEOUT;
        let e = self_test(DeviceSpec::Wgpu(3), t, || {
            panic!("No possible adapter available")
        })
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            "device 'wgpu:3' is not available on this machine: No possible adapter available"
        );
        let e = self_test(DeviceSpec::Cuda(1), t, || {
            panic!("{}", String::from("CUDA_ERROR_INVALID_DEVICE"))
        })
        .unwrap_err();
        assert!(
            matches!(&e, BackendError::Unavailable { device, reason }
                if device == "cuda:1" && reason == "CUDA_ERROR_INVALID_DEVICE"),
            "{e}"
        );
        assert!(matches!(
            self_test(DeviceSpec::Cuda(0), t, || 3.0),
            Err(BackendError::Unavailable { .. })
        ));
        assert_eq!(self_test(DeviceSpec::Cpu, t, || 2.0), Ok(()));
    }

    #[test]
    fn a_device_that_never_answers_is_unavailable_not_a_hang() {
        let e = self_test(
            DeviceSpec::Cuda(0),
            std::time::Duration::from_millis(200),
            || {
                // A device thread that died: the answer never comes.
                std::thread::sleep(std::time::Duration::from_secs(3600));
                2.0
            },
        )
        .unwrap_err();
        assert!(
            matches!(&e, BackendError::Unavailable { device, reason }
                if device == "cuda:0" && reason.contains("no answer within 0.2 s")),
            "{e}"
        );
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

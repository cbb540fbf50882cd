//! Host-side tensors read from and written to safetensors files (fixture inputs, saved latents).
//!
//! Model weights go through [`crate::checkpoint`]; this module is for plain named arrays.

use crate::checkpoint::{parse_safetensors, LoadError};
use burn::prelude::*;
use safetensors::Dtype;
use std::collections::BTreeMap;
use std::path::Path;

/// The values of a host tensor.
#[derive(Debug, Clone, PartialEq)]
pub enum HostData {
    F32(Vec<f32>),
    I64(Vec<i64>),
}

/// A named array on the host: shape plus values (floats widened/narrowed to f32, ints to i64).
#[derive(Debug, Clone, PartialEq)]
pub struct HostTensor {
    pub shape: Vec<usize>,
    pub data: HostData,
}

impl HostTensor {
    pub fn f32(shape: Vec<usize>, data: Vec<f32>) -> Self {
        Self {
            shape,
            data: HostData::F32(data),
        }
    }

    /// Values as f32 (ints are converted).
    pub fn to_f32(&self) -> Vec<f32> {
        match &self.data {
            HostData::F32(v) => v.clone(),
            HostData::I64(v) => v.iter().map(|&x| x as f32).collect(),
        }
    }

    /// Values as i64 (floats are truncated).
    pub fn to_i64(&self) -> Vec<i64> {
        match &self.data {
            HostData::F32(v) => v.iter().map(|&x| x as i64).collect(),
            HostData::I64(v) => v.clone(),
        }
    }

    /// A float tensor of rank `D`; errors if the rank differs.
    pub fn to_tensor<B: Backend, const D: usize>(
        &self,
        device: &B::Device,
    ) -> Result<Tensor<B, D>, LoadError> {
        if self.shape.len() != D {
            return Err(LoadError::Invalid(format!(
                "expected a rank-{D} tensor, found shape {:?}",
                self.shape
            )));
        }
        Ok(Tensor::from_data(
            TensorData::new(self.to_f32(), self.shape.clone()),
            device,
        ))
    }

    /// Reads a float tensor back from the device.
    pub fn from_tensor<B: Backend, const D: usize>(t: &Tensor<B, D>) -> Self {
        let shape = t.dims().to_vec();
        let data = t
            .to_data()
            .convert::<f32>()
            .to_vec::<f32>()
            .unwrap_or_default();
        Self::f32(shape, data)
    }
}

/// Reads every tensor of a safetensors file (F32/F16/BF16/F64 as f32; I64/I32/U8/Bool as i64).
pub fn read_safetensors(path: &Path) -> Result<BTreeMap<String, HostTensor>, LoadError> {
    let file = parse_safetensors(path)?;
    let mut out = BTreeMap::new();
    for (name, view) in file.tensors() {
        let shape = view.shape().to_vec();
        let data = match view.dtype() {
            Dtype::I64
            | Dtype::I32
            | Dtype::U8
            | Dtype::BOOL
            | Dtype::I16
            | Dtype::I8
            | Dtype::U32 => HostData::I64(crate::checkpoint::ints_from_view(&name, &view)?),
            _ => HostData::F32(crate::checkpoint::floats_from_view(&name, &view)?),
        };
        out.insert(name, HostTensor { shape, data });
    }
    Ok(out)
}

/// Writes named f32 tensors to a safetensors file atomically, with string metadata.
pub fn write_safetensors(
    path: &Path,
    tensors: &BTreeMap<String, HostTensor>,
    metadata: Option<std::collections::HashMap<String, String>>,
) -> Result<(), LoadError> {
    let bytes: Vec<(String, Vec<usize>, Vec<u8>)> = tensors
        .iter()
        .map(|(k, t)| {
            let b: Vec<u8> = t.to_f32().iter().flat_map(|x| x.to_le_bytes()).collect();
            (k.clone(), t.shape.clone(), b)
        })
        .collect();
    crate::checkpoint::write_f32_safetensors(path, &bytes, metadata)
}

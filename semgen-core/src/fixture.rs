//! Reference-fixture folders (`config.json`, `weights.safetensors`, `io.safetensors`,
//! `manifest.json`), as described in the repository's `fixtures/README.md`.
//!
//! The parity contract: load any folder of this shape (whatever the component's config), run the
//! component on `inputs`, and compare every name in `outputs` at `atol`.

use crate::checkpoint::LoadError;
use crate::tensor_io::{read_safetensors, HostTensor};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Why a fixture folder cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum FixtureError {
    #[error("{0} is not a folder")]
    NotADir(PathBuf),
    #[error("{dir}: missing {file}")]
    MissingFile { dir: PathBuf, file: String },
    #[error("{file}: malformed manifest: {reason}")]
    Manifest { file: PathBuf, reason: String },
    #[error("{dir}: the manifest lists '{name}' but io.safetensors has no such tensor")]
    MissingTensor { dir: PathBuf, name: String },
    #[error(transparent)]
    Load(#[from] LoadError),
}

/// A parsed `manifest.json`.
#[derive(Debug, Clone, PartialEq, serde::Deserialize)]
pub struct Manifest {
    pub component: String,
    pub inputs: Vec<String>,
    pub outputs: Vec<String>,
    #[serde(default)]
    pub intermediates: Vec<String>,
    pub atol: f64,
}

/// A fixture folder with its manifest and io tensors loaded.
#[derive(Debug, Clone)]
pub struct Fixture {
    pub dir: PathBuf,
    pub manifest: Manifest,
    pub config_json: String,
    pub io: BTreeMap<String, HostTensor>,
}

impl Fixture {
    /// Opens a component folder (with `config.json` and `weights.safetensors`).
    pub fn open(dir: &Path) -> Result<Self, FixtureError> {
        if !dir.is_dir() {
            return Err(FixtureError::NotADir(dir.to_path_buf()));
        }
        let need = |f: &str| -> Result<PathBuf, FixtureError> {
            let p = dir.join(f);
            if p.is_file() {
                Ok(p)
            } else {
                Err(FixtureError::MissingFile {
                    dir: dir.to_path_buf(),
                    file: f.to_string(),
                })
            }
        };
        let manifest_path = need("manifest.json")?;
        let text = std::fs::read_to_string(&manifest_path).map_err(|e| FixtureError::Manifest {
            file: manifest_path.clone(),
            reason: e.to_string(),
        })?;
        let manifest: Manifest =
            serde_json::from_str(&text).map_err(|e| FixtureError::Manifest {
                file: manifest_path.clone(),
                reason: e.to_string(),
            })?;
        if !(manifest.atol.is_finite() && manifest.atol >= 0.0) {
            return Err(FixtureError::Manifest {
                file: manifest_path,
                reason: format!("atol {} must be a non-negative number", manifest.atol),
            });
        }
        let config_json =
            std::fs::read_to_string(need("config.json")?).map_err(|e| FixtureError::Manifest {
                file: dir.join("config.json"),
                reason: e.to_string(),
            })?;
        need("weights.safetensors")?;
        let io = read_safetensors(&need("io.safetensors")?)?;
        for name in manifest.inputs.iter().chain(&manifest.outputs) {
            if !io.contains_key(name) {
                return Err(FixtureError::MissingTensor {
                    dir: dir.to_path_buf(),
                    name: name.clone(),
                });
            }
        }
        Ok(Self {
            dir: dir.to_path_buf(),
            manifest,
            config_json,
            io,
        })
    }

    pub fn weights_path(&self) -> PathBuf {
        self.dir.join("weights.safetensors")
    }

    pub fn tensor(&self, name: &str) -> Result<&HostTensor, FixtureError> {
        self.io
            .get(name)
            .ok_or_else(|| FixtureError::MissingTensor {
                dir: self.dir.clone(),
                name: name.to_string(),
            })
    }
}

/// The comparison of one output.
#[derive(Debug, Clone, PartialEq)]
pub struct Comparison {
    pub name: String,
    pub max_abs_err: f64,
    pub atol: f64,
}

impl Comparison {
    pub fn passed(&self) -> bool {
        self.max_abs_err <= self.atol
    }
}

/// Max-abs error between two host tensors; a shape mismatch is an infinite error.
pub fn max_abs_err(got: &HostTensor, want: &HostTensor) -> f64 {
    if got.shape != want.shape {
        return f64::INFINITY;
    }
    got.to_f32()
        .iter()
        .zip(want.to_f32())
        .map(|(a, b)| {
            if a.is_nan() || b.is_nan() {
                f64::INFINITY
            } else {
                (*a as f64 - b as f64).abs()
            }
        })
        .fold(0.0, f64::max)
}

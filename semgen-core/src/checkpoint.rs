//! Checkpoint I/O.
//!
//! **Loading** reads a safetensors file with upstream key names, renames keys through a model's
//! documented [`KeyRule`] table, checks every tensor against the model (missing, unexpected,
//! shape, dtype) and applies the weights through burn-store (`ModuleSnapshot::apply` with
//! `PyTorchToBurnAdapter`, which transposes Linear weights). Every failure is a typed
//! [`LoadError`] naming the file and, where relevant, the key and both shapes.
//!
//! **Saving** writes semgen's own checkpoints in the same upstream layout (so diffusers-style
//! tools can read them) with metadata (component, format version, training step, config JSON)
//! in the safetensors header, atomically: temp file in the same folder, fsync, rename. A crash
//! mid-write leaves the previous checkpoint untouched.

use burn::module::Module;
use burn::module::ParamId;
use burn::prelude::*;
use burn::store::{BurnToPyTorchAdapter, ModuleSnapshot, PyTorchToBurnAdapter, TensorSnapshot};
use safetensors::tensor::TensorView;
use safetensors::{Dtype, SafeTensorError, SafeTensors};
use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::path::{Path, PathBuf};

/// Version of semgen's checkpoint format (bumped on incompatible layout changes).
pub const FORMAT_VERSION: u32 = 1;

/// Why a checkpoint could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("checkpoint file not found: {0}")]
    NotFound(PathBuf),
    #[error("cannot read {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} is not a safetensors file: {reason}")]
    NotSafetensors { path: PathBuf, reason: String },
    #[error("{path} is truncated or corrupt: {reason}")]
    Truncated { path: PathBuf, reason: String },
    #[error("{path}: tensor '{key}' has dtype {dtype}, which semgen cannot load (expected a float type)")]
    UnsupportedDtype {
        path: PathBuf,
        key: String,
        dtype: String,
    },
    #[error("{path}: shape mismatch for '{key}': the checkpoint has {found:?}, the model expects {expected:?}")]
    ShapeMismatch {
        path: PathBuf,
        key: String,
        expected: Vec<usize>,
        found: Vec<usize>,
    },
    #[error("{path}: {} tensor(s) the model needs are missing, e.g. {}", .keys.len(), preview(.keys))]
    MissingKeys { path: PathBuf, keys: Vec<String> },
    #[error("{path}: {} unexpected tensor(s) not used by the model, e.g. {}", .keys.len(), preview(.keys))]
    UnexpectedKeys { path: PathBuf, keys: Vec<String> },
    #[error("{path} is a '{found}' checkpoint, but a '{expected}' checkpoint was expected")]
    WrongComponent {
        path: PathBuf,
        expected: String,
        found: String,
    },
    #[error("{path}: checkpoint format version {found} is not supported (this semgen reads version {FORMAT_VERSION})")]
    UnsupportedVersion { path: PathBuf, found: String },
    #[error("{0}")]
    Invalid(String),
}

fn preview(keys: &[String]) -> String {
    let shown: Vec<&str> = keys.iter().take(5).map(String::as_str).collect();
    let more = if keys.len() > 5 {
        format!(" (+{} more)", keys.len() - 5)
    } else {
        String::new()
    };
    format!("[{}]{more}", shown.join(", "))
}

/// A key rename between an upstream layout and semgen's field names, as dotted fragments matched
/// on whole path segments (`"ffn.net.2"` matches `blocks.0.ffn.net.2.weight`, not `xffn.net.2`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyRule {
    pub upstream: &'static str,
    pub semgen: &'static str,
}

impl KeyRule {
    pub const fn new(upstream: &'static str, semgen: &'static str) -> Self {
        Self { upstream, semgen }
    }
}

fn replace_segments(key: &str, from: &str, to: &str) -> String {
    let padded = format!(".{key}.");
    let pat = format!(".{from}.");
    if !padded.contains(&pat) {
        return key.to_string();
    }
    let out = padded.replace(&pat, &format!(".{to}."));
    out[1..out.len() - 1].to_string()
}

/// Upstream key → semgen key through `rules` (applied in order).
pub fn to_semgen_key(key: &str, rules: &[KeyRule]) -> String {
    rules.iter().fold(key.to_string(), |k, r| {
        replace_segments(&k, r.upstream, r.semgen)
    })
}

/// semgen key → upstream key (rules applied in reverse).
pub fn to_upstream_key(key: &str, rules: &[KeyRule]) -> String {
    rules.iter().rev().fold(key.to_string(), |k, r| {
        replace_segments(&k, r.semgen, r.upstream)
    })
}

/// What a load did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LoadReport {
    /// semgen keys that received a tensor.
    pub applied: Vec<String>,
    /// semgen keys of the model that the file did not have (only when allowed).
    pub missing: Vec<String>,
    /// File keys (upstream names) that the model did not use (only when allowed).
    pub unexpected: Vec<String>,
}

/// How strict a load is.
#[derive(Debug, Clone, Default)]
pub struct LoadOptions {
    /// Leave parameters the file lacks at their initial values instead of failing.
    pub allow_missing: bool,
    /// Ignore file tensors the model has no place for instead of failing.
    pub allow_unexpected: bool,
    /// Key prefix to strip from file keys first (e.g. `"visual."`); keys without it are unexpected.
    pub strip_prefix: Option<String>,
}

/// Metadata stored in the header of semgen's own checkpoints.
#[derive(Debug, Clone, PartialEq)]
pub struct CheckpointMeta {
    pub component: String,
    pub format_version: u32,
    pub step: u64,
    pub config: serde_json::Value,
}

impl CheckpointMeta {
    pub fn new(component: impl Into<String>, step: u64, config: serde_json::Value) -> Self {
        Self {
            component: component.into(),
            format_version: FORMAT_VERSION,
            step,
            config,
        }
    }

    fn to_header(&self) -> HashMap<String, String> {
        HashMap::from([
            ("semgen.component".to_string(), self.component.clone()),
            (
                "semgen.format_version".to_string(),
                self.format_version.to_string(),
            ),
            ("semgen.step".to_string(), self.step.to_string()),
            ("semgen.config".to_string(), self.config.to_string()),
        ])
    }

    fn from_header(path: &Path, h: &HashMap<String, String>) -> Result<Option<Self>, LoadError> {
        let Some(component) = h.get("semgen.component") else {
            return Ok(None);
        };
        let bad = |what: &str| {
            LoadError::Invalid(format!(
                "{}: corrupt semgen metadata ({what})",
                path.display()
            ))
        };
        let version = h
            .get("semgen.format_version")
            .ok_or_else(|| bad("no format version"))?;
        let format_version: u32 = version.parse().map_err(|_| bad("format version"))?;
        if format_version != FORMAT_VERSION {
            return Err(LoadError::UnsupportedVersion {
                path: path.to_path_buf(),
                found: version.clone(),
            });
        }
        let step = h
            .get("semgen.step")
            .map(|s| s.parse::<u64>())
            .transpose()
            .map_err(|_| bad("step"))?
            .unwrap_or(0);
        let config = match h.get("semgen.config") {
            Some(c) => serde_json::from_str(c).map_err(|_| bad("config JSON"))?,
            None => serde_json::Value::Null,
        };
        Ok(Some(Self {
            component: component.clone(),
            format_version,
            step,
            config,
        }))
    }
}

// ---------------------------------------------------------------------------------------------
// Reading safetensors
// ---------------------------------------------------------------------------------------------

/// A parsed safetensors file that owns its bytes.
pub struct SafetensorsFile {
    path: PathBuf,
    bytes: Vec<u8>,
    metadata: HashMap<String, String>,
}

impl SafetensorsFile {
    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn metadata(&self) -> &HashMap<String, String> {
        &self.metadata
    }

    /// The parsed view (cheap: re-parses the header only).
    pub fn view(&self) -> SafeTensors<'_> {
        SafeTensors::deserialize(&self.bytes).expect("validated when opened")
    }

    /// All `(name, view)` pairs sorted by name.
    pub fn tensors(&self) -> Vec<(String, TensorView<'_>)> {
        let mut v = self.view().tensors();
        v.sort_by(|a, b| a.0.cmp(&b.0));
        v
    }

    /// semgen metadata, if this is a semgen checkpoint.
    pub fn semgen_meta(&self) -> Result<Option<CheckpointMeta>, LoadError> {
        CheckpointMeta::from_header(&self.path, &self.metadata)
    }

    /// semgen metadata, which must be there.
    pub fn require_meta(&self) -> Result<CheckpointMeta, LoadError> {
        self.semgen_meta()?.ok_or_else(|| {
            LoadError::Invalid(format!(
                "{} has no semgen metadata (not a semgen checkpoint)",
                self.path.display()
            ))
        })
    }

    /// semgen metadata of a checkpoint that must hold `component`.
    pub fn component_meta(&self, component: &str) -> Result<CheckpointMeta, LoadError> {
        let meta = self.require_meta()?;
        if meta.component != component {
            return Err(LoadError::WrongComponent {
                path: self.path.clone(),
                expected: component.to_string(),
                found: meta.component,
            });
        }
        Ok(meta)
    }
}

/// Reads and validates a safetensors file: missing file, I/O errors, non-safetensors content and
/// truncation are distinguished.
pub fn parse_safetensors(path: &Path) -> Result<SafetensorsFile, LoadError> {
    if !path.exists() {
        return Err(LoadError::NotFound(path.to_path_buf()));
    }
    if path.is_dir() {
        return Err(LoadError::NotSafetensors {
            path: path.to_path_buf(),
            reason: "it is a directory".into(),
        });
    }
    let bytes = std::fs::read(path).map_err(|source| LoadError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    parse_safetensors_bytes(path, bytes)
}

/// Validates the bytes of a safetensors file already in memory; `path` only names it in errors.
/// Never panics, whatever the bytes (fuzzed: `fuzz/fuzz_targets/checkpoint.rs`).
pub fn parse_safetensors_bytes(path: &Path, bytes: Vec<u8>) -> Result<SafetensorsFile, LoadError> {
    let not_st = |reason: String| LoadError::NotSafetensors {
        path: path.to_path_buf(),
        reason,
    };
    if bytes.is_empty() {
        return Err(not_st("the file is empty".into()));
    }
    if bytes.len() < 8 {
        return Err(not_st(format!(
            "only {} bytes, shorter than the 8-byte header length",
            bytes.len()
        )));
    }
    let header_len = u64::from_le_bytes(bytes[..8].try_into().unwrap());
    let starts_like_json = bytes.get(8) == Some(&b'{');
    if !starts_like_json {
        return Err(not_st("no JSON header after the length prefix".into()));
    }
    if header_len > 100_000_000 {
        return Err(not_st(format!("header length {header_len} is implausible")));
    }
    if 8 + header_len as usize > bytes.len() {
        return Err(LoadError::Truncated {
            path: path.to_path_buf(),
            reason: format!(
                "the header needs {} bytes but the file has only {}",
                8 + header_len,
                bytes.len()
            ),
        });
    }
    let (_, meta) = SafeTensors::read_metadata(&bytes).map_err(|e| match e {
        SafeTensorError::MetadataIncompleteBuffer => LoadError::Truncated {
            path: path.to_path_buf(),
            reason: "the tensor data is shorter than the header declares".into(),
        },
        other => not_st(other.to_string()),
    })?;
    SafeTensors::deserialize(&bytes).map_err(|e| match e {
        SafeTensorError::MetadataIncompleteBuffer | SafeTensorError::InvalidOffset(_) => {
            LoadError::Truncated {
                path: path.to_path_buf(),
                reason: e.to_string(),
            }
        }
        other => not_st(other.to_string()),
    })?;
    let metadata = meta.metadata().clone().unwrap_or_default();
    Ok(SafetensorsFile {
        path: path.to_path_buf(),
        bytes,
        metadata,
    })
}

/// Float values of a tensor view as f32 (F32, F16, BF16, F64).
pub fn floats_from_view(name: &str, view: &TensorView<'_>) -> Result<Vec<f32>, LoadError> {
    let b = view.data();
    Ok(match view.dtype() {
        Dtype::F32 => b
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
            .collect(),
        Dtype::F16 => b
            .chunks_exact(2)
            .map(|c| half::f16::from_le_bytes([c[0], c[1]]).to_f32())
            .collect(),
        Dtype::BF16 => b
            .chunks_exact(2)
            .map(|c| half::bf16::from_le_bytes([c[0], c[1]]).to_f32())
            .collect(),
        Dtype::F64 => b
            .chunks_exact(8)
            .map(|c| f64::from_le_bytes(c.try_into().unwrap()) as f32)
            .collect(),
        other => {
            return Err(LoadError::UnsupportedDtype {
                path: PathBuf::new(),
                key: name.to_string(),
                dtype: format!("{other:?}"),
            })
        }
    })
}

/// Integer values of a tensor view as i64.
pub fn ints_from_view(name: &str, view: &TensorView<'_>) -> Result<Vec<i64>, LoadError> {
    let b = view.data();
    Ok(match view.dtype() {
        Dtype::I64 => b
            .chunks_exact(8)
            .map(|c| i64::from_le_bytes(c.try_into().unwrap()))
            .collect(),
        Dtype::I32 => b
            .chunks_exact(4)
            .map(|c| i32::from_le_bytes(c.try_into().unwrap()) as i64)
            .collect(),
        Dtype::U32 => b
            .chunks_exact(4)
            .map(|c| u32::from_le_bytes(c.try_into().unwrap()) as i64)
            .collect(),
        Dtype::I16 => b
            .chunks_exact(2)
            .map(|c| i16::from_le_bytes([c[0], c[1]]) as i64)
            .collect(),
        Dtype::I8 => b.iter().map(|&x| x as i8 as i64).collect(),
        Dtype::U8 | Dtype::BOOL => b.iter().map(|&x| x as i64).collect(),
        other => {
            return Err(LoadError::UnsupportedDtype {
                path: PathBuf::new(),
                key: name.to_string(),
                dtype: format!("{other:?}"),
            })
        }
    })
}

// ---------------------------------------------------------------------------------------------
// Loading into a module
// ---------------------------------------------------------------------------------------------

/// Expected parameters of a module in upstream (PyTorch) layout: semgen key → (shape, dtype).
fn expected_params<B: Backend, M: Module<B> + ModuleSnapshot<B>>(
    module: &M,
) -> BTreeMap<String, (Vec<usize>, burn::tensor::DType)> {
    module
        .collect(None, Some(Box::new(BurnToPyTorchAdapter)), false)
        .into_iter()
        .map(|s| (s.full_path(), (s.shape.to_vec(), s.dtype)))
        .collect()
}

/// Loads a safetensors file into `module`. See the module docs.
pub fn load_into<B, M>(
    mut module: M,
    file: &SafetensorsFile,
    rules: &[KeyRule],
    options: &LoadOptions,
) -> Result<(M, LoadReport), LoadError>
where
    B: Backend,
    M: Module<B> + ModuleSnapshot<B>,
{
    let path = file.path().to_path_buf();
    let expected = expected_params::<B, M>(&module);
    let mut report = LoadReport::default();
    let mut snapshots = Vec::new();
    let mut seen = std::collections::BTreeSet::new();
    for (name, view) in file.tensors() {
        let stripped = match &options.strip_prefix {
            Some(p) => match name.strip_prefix(p.as_str()) {
                Some(s) => s.to_string(),
                None => {
                    report.unexpected.push(name.clone());
                    continue;
                }
            },
            None => name.clone(),
        };
        let key = to_semgen_key(&stripped, rules);
        let Some((shape, dtype)) = expected.get(&key) else {
            report.unexpected.push(name.clone());
            continue;
        };
        if view.shape() != shape.as_slice() {
            return Err(LoadError::ShapeMismatch {
                path,
                key: name.clone(),
                expected: shape.clone(),
                found: view.shape().to_vec(),
            });
        }
        let values = floats_from_view(&name, &view).map_err(|e| match e {
            LoadError::UnsupportedDtype { key, dtype, .. } => LoadError::UnsupportedDtype {
                path: path.clone(),
                key,
                dtype,
            },
            other => other,
        })?;
        let data = TensorData::new(values, shape.clone()).convert_dtype(*dtype);
        let path_stack: Vec<String> = key.split('.').map(str::to_string).collect();
        snapshots.push(TensorSnapshot::from_data(
            data,
            path_stack,
            vec![],
            ParamId::new(),
        ));
        seen.insert(key);
    }
    report.missing = expected
        .keys()
        .filter(|k| !seen.contains(*k))
        .cloned()
        .collect();
    if !report.missing.is_empty() && !options.allow_missing {
        return Err(LoadError::MissingKeys {
            path,
            keys: report
                .missing
                .iter()
                .map(|k| to_upstream_key(k, rules))
                .collect(),
        });
    }
    if !report.unexpected.is_empty() && !options.allow_unexpected {
        return Err(LoadError::UnexpectedKeys {
            path,
            keys: report.unexpected.clone(),
        });
    }
    let result = module.apply(snapshots, None, Some(Box::new(PyTorchToBurnAdapter)), false);
    if let Some(err) = result.errors.first() {
        return Err(LoadError::Invalid(format!("{}: {err}", path.display())));
    }
    report.applied = result.applied;
    Ok((module, report))
}

/// Opens `path` and loads it into `module` (upstream or semgen checkpoint).
pub fn load_file<B, M>(
    module: M,
    path: &Path,
    rules: &[KeyRule],
    options: &LoadOptions,
) -> Result<(M, LoadReport), LoadError>
where
    B: Backend,
    M: Module<B> + ModuleSnapshot<B>,
{
    let file = parse_safetensors(path)?;
    load_into(module, &file, rules, options)
}

/// Loads one of semgen's own checkpoints, checking that it holds `component`. Strict: every
/// parameter must be present and every tensor used.
pub fn load_checkpoint<B, M>(
    module: M,
    path: &Path,
    component: &str,
    rules: &[KeyRule],
) -> Result<(M, CheckpointMeta), LoadError>
where
    B: Backend,
    M: Module<B> + ModuleSnapshot<B>,
{
    let file = parse_safetensors(path)?;
    let meta = file.component_meta(component)?;
    let (module, _) = load_into(module, &file, rules, &LoadOptions::default())?;
    Ok((module, meta))
}

/// Reads only the metadata of a semgen checkpoint.
pub fn read_meta(path: &Path) -> Result<CheckpointMeta, LoadError> {
    parse_safetensors(path)?.require_meta()
}

// ---------------------------------------------------------------------------------------------
// Saving
// ---------------------------------------------------------------------------------------------

/// Why a checkpoint or output could not be written.
#[derive(Debug, thiserror::Error)]
pub enum SaveError {
    #[error("cannot write {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot serialise {path}: {reason}")]
    Serialize { path: PathBuf, reason: String },
}

/// Writes `bytes` to `path` atomically: a temp file in the same folder, fsync, rename, then an
/// fsync of the folder. The previous file (if any) stays intact until the rename.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), SaveError> {
    let io = |source| SaveError::Io {
        path: path.to_path_buf(),
        source,
    };
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let name = path.file_name().ok_or_else(|| {
        io(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "no file name",
        ))
    })?;
    let tmp = dir.join(format!(
        ".{}.{}.tmp",
        name.to_string_lossy(),
        std::process::id()
    ));
    let result = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)?;
        if let Ok(d) = std::fs::File::open(&dir) {
            let _ = d.sync_all();
        }
        Ok(())
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result.map_err(io)
}

/// Serialises named little-endian f32 buffers to a safetensors file atomically.
pub(crate) fn write_f32_safetensors(
    path: &Path,
    tensors: &[(String, Vec<usize>, Vec<u8>)],
    metadata: Option<HashMap<String, String>>,
) -> Result<(), LoadError> {
    let views: Vec<(String, TensorView<'_>)> = tensors
        .iter()
        .map(|(k, s, b)| {
            TensorView::new(Dtype::F32, s.clone(), b)
                .map(|v| (k.clone(), v))
                .map_err(|e| LoadError::Invalid(format!("tensor '{k}': {e}")))
        })
        .collect::<Result<_, _>>()?;
    let bytes =
        safetensors::serialize(views, &metadata).map_err(|e| LoadError::Invalid(e.to_string()))?;
    write_atomic(path, &bytes).map_err(|e| LoadError::Invalid(e.to_string()))
}

/// Saves `module` as a semgen checkpoint at `path` (upstream key layout through `rules`, f32,
/// metadata in the header), atomically.
pub fn save_checkpoint<B, M>(
    module: &M,
    path: &Path,
    rules: &[KeyRule],
    meta: &CheckpointMeta,
) -> Result<(), SaveError>
where
    B: Backend,
    M: Module<B> + ModuleSnapshot<B>,
{
    let mut tensors = Vec::new();
    for s in module.collect(None, Some(Box::new(BurnToPyTorchAdapter)), false) {
        let key = to_upstream_key(&s.full_path(), rules);
        let data = s.to_data().map_err(|e| SaveError::Serialize {
            path: path.to_path_buf(),
            reason: format!("{key}: {e}"),
        })?;
        let values = data
            .convert::<f32>()
            .to_vec::<f32>()
            .map_err(|e| SaveError::Serialize {
                path: path.to_path_buf(),
                reason: format!("{key}: {e:?}"),
            })?;
        let bytes: Vec<u8> = values.iter().flat_map(|x| x.to_le_bytes()).collect();
        tensors.push((key, s.shape.to_vec(), bytes));
    }
    tensors.sort_by(|a, b| a.0.cmp(&b.0));
    write_f32_safetensors(path, &tensors, Some(meta.to_header())).map_err(|e| {
        SaveError::Serialize {
            path: path.to_path_buf(),
            reason: e.to_string(),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_rules_round_trip_on_segments() {
        let rules = crate::wan_dit::DIFFUSERS_KEYS;
        let k = "blocks.3.ffn.net.0.proj.weight";
        let s = to_semgen_key(k, rules);
        assert_eq!(s, "blocks.3.ffn.proj_in.weight");
        assert_eq!(to_upstream_key(&s, rules), k);
        assert_eq!(
            to_semgen_key("blocks.0.attn1.to_out.0.bias", rules),
            "blocks.0.attn1.to_out.bias"
        );
        // Segment matching: a key that merely contains the text is untouched.
        assert_eq!(
            to_semgen_key("xffn.net.2.weight", rules),
            "xffn.net.2.weight"
        );
    }

    #[test]
    fn original_wan_names_map_to_diffusers() {
        let r = crate::wan_dit::ORIGINAL_WAN_KEYS;
        assert_eq!(
            to_semgen_key("blocks.0.self_attn.q.weight", r),
            "blocks.0.attn1.to_q.weight"
        );
        assert_eq!(
            to_semgen_key("blocks.0.cross_attn.o.bias", r),
            "blocks.0.attn2.to_out.0.bias"
        );
        assert_eq!(
            to_semgen_key("blocks.0.norm3.weight", r),
            "blocks.0.norm2.weight"
        );
        assert_eq!(
            to_semgen_key("blocks.0.self_attn.norm_q.weight", r),
            "blocks.0.attn1.norm_q.weight"
        );
        assert_eq!(to_semgen_key("head.modulation", r), "scale_shift_table");
        assert_eq!(
            to_semgen_key("blocks.1.modulation", r),
            "blocks.1.scale_shift_table"
        );
        assert_eq!(to_semgen_key("head.head.weight", r), "proj_out.weight");
        assert_eq!(
            to_semgen_key("blocks.0.ffn.0.weight", r),
            "blocks.0.ffn.net.0.proj.weight"
        );
        assert_eq!(
            to_semgen_key("time_projection.1.bias", r),
            "condition_embedder.time_proj.bias"
        );
    }
}

//! Parsing of `--device cpu | wgpu[:N] | cuda[:N]`. Which backends exist is decided by the
//! binaries' cargo features; this module only parses and names them.

/// A device requested on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeviceSpec {
    Cpu,
    Wgpu(usize),
    Cuda(usize),
}

/// A `--device` value that is not understood.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown device '{0}': expected 'cpu', 'wgpu', 'wgpu:N', 'cuda' or 'cuda:N'")]
pub struct DeviceParseError(pub String);

impl std::str::FromStr for DeviceSpec {
    type Err = DeviceParseError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || DeviceParseError(s.to_string());
        let (name, index) = match s.split_once(':') {
            Some((n, i)) => (n, Some(i.parse::<usize>().map_err(|_| err())?)),
            None => (s, None),
        };
        match (name.to_ascii_lowercase().as_str(), index) {
            ("cpu", None) => Ok(DeviceSpec::Cpu),
            ("wgpu", i) => Ok(DeviceSpec::Wgpu(i.unwrap_or(0))),
            ("cuda", i) => Ok(DeviceSpec::Cuda(i.unwrap_or(0))),
            _ => Err(err()),
        }
    }
}

impl std::fmt::Display for DeviceSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DeviceSpec::Cpu => write!(f, "cpu"),
            DeviceSpec::Wgpu(i) => write!(f, "wgpu:{i}"),
            DeviceSpec::Cuda(i) => write!(f, "cuda:{i}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_all_forms() {
        assert_eq!("cpu".parse(), Ok(DeviceSpec::Cpu));
        assert_eq!("wgpu".parse(), Ok(DeviceSpec::Wgpu(0)));
        assert_eq!("cuda:1".parse(), Ok(DeviceSpec::Cuda(1)));
        assert!("tpu".parse::<DeviceSpec>().is_err());
        assert!("cuda:x".parse::<DeviceSpec>().is_err());
        assert!("cpu:1".parse::<DeviceSpec>().is_err());
    }
}

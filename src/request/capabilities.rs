//! `NVIDIA_DRIVER_CAPABILITIES`: which driver features a container wants.
//!
//! Only two change device nodes: `compute` brings `/dev/nvidia-uvm` and
//! `/dev/nvidia-uvm-tools`, `display` brings `/dev/nvidia-modeset`. The others are
//! accepted for compatibility with NVIDIA's images. Unknown names are an error.

use super::RequestError;

/// Every capability NVIDIA's toolkit knows, in its order.
pub const KNOWN: &str = "compute,compat32,graphics,utility,video,display,ngx";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DriverCapabilities {
    names: Vec<&'static str>,
}

impl Default for DriverCapabilities {
    /// `utility,compute`, NVIDIA's default when the variable is unset or empty.
    fn default() -> Self {
        DriverCapabilities { names: vec!["compute", "utility"] }
    }
}

impl DriverCapabilities {
    /// Parses a comma list; `all` means every known capability.
    pub fn parse(value: &str) -> Result<Self, RequestError> {
        let mut names = Vec::new();
        for raw in value.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            if raw.eq_ignore_ascii_case("all") {
                return Ok(DriverCapabilities { names: KNOWN.split(',').collect() });
            }
            let known = KNOWN.split(',').find(|k| k.eq_ignore_ascii_case(raw));
            let Some(name) = known else {
                return Err(RequestError::UnknownCapability { name: super::shown(raw), known: KNOWN });
            };
            if !names.contains(&name) {
                names.push(name);
            }
        }
        if names.is_empty() {
            return Ok(Self::default());
        }
        names.sort_unstable();
        Ok(DriverCapabilities { names })
    }

    pub fn has(&self, name: &str) -> bool {
        self.names.contains(&name)
    }

    /// `/dev/nvidia-uvm*` are for CUDA.
    pub fn compute(&self) -> bool {
        self.has("compute")
    }

    /// `/dev/nvidia-modeset` is for display.
    pub fn display(&self) -> bool {
        self.has("display")
    }

    pub fn names(&self) -> &[&'static str] {
        &self.names
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_is_utility_and_compute() {
        assert_eq!(DriverCapabilities::default().names(), ["compute", "utility"]);
    }

    #[test]
    fn all_is_every_known_capability() {
        assert_eq!(DriverCapabilities::parse("all").unwrap().names().len(), 7);
    }

    #[test]
    fn compute_and_display_switch_nodes() {
        assert!(!DriverCapabilities::parse("utility").unwrap().compute());
        assert!(DriverCapabilities::parse("compute").unwrap().compute());
        assert!(DriverCapabilities::parse("display,utility").unwrap().display());
    }

    #[test]
    fn unknown_capability_is_an_error() {
        assert_eq!(
            DriverCapabilities::parse("compute,gpu").unwrap_err().to_string(),
            "NVIDIA_DRIVER_CAPABILITIES: unknown driver capability 'gpu' (known: compute,compat32,graphics,utility,video,display,ngx)"
        );
    }
}

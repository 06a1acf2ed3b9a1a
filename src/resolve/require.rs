//! Checking an image's requirements ([`crate::request::require`]) against the
//! driver, as libnvidia-container does before it sets a container up.
//!
//! Each requirement is evaluated once per selected GPU (a MIG device counts as
//! its parent GPU). With no GPU selected (`none`), it is evaluated once without
//! a device: `arch` and `brand` terms then hold, and `cuda` and `driver` are
//! checked against the driver. Alternatives are tried in order and the terms of
//! one in order, and the driver is asked only for what a term needs, once: an
//! image without requirements costs no driver call.
//!
//! A requirement that holds for no alternative refuses the start, naming the
//! first failing term of its first alternative and what the driver said:
//! `requirement cuda>=12.4 not met: the driver supports CUDA 12.2 (NVIDIA_REQUIRE_CUDA)`.

use crate::driver::{Driver, DriverError, Gpu, cuda_version_text};
use crate::request::require::{ImageEnv, RequireError, Requirement, Rule, Term, is_version};
use crate::request::shown;
use thiserror::Error;

#[derive(Debug, Error)]
pub enum RequirementError {
    #[error(transparent)]
    Parse(#[from] RequireError),
    #[error("requirement {term} not met: {found} ({origin}{others})")]
    Unmet { term: String, found: String, origin: String, others: String },
    #[error("requirement {term}: {source}")]
    Driver { term: String, source: DriverError },
    #[error("requirement {term}: {what} '{value}' is not a version requirements can compare")]
    NotAVersion { term: String, what: &'static str, value: String },
}

/// Driver facts, asked for when a term first needs them.
struct Facts<'d, D: Driver + ?Sized> {
    driver: &'d D,
    cuda: Option<String>,
    version: Option<String>,
}

/// One GPU's facts, likewise.
#[derive(Default)]
struct GpuFacts {
    brand: Option<&'static str>,
    arch: Option<String>,
}

impl<D: Driver + ?Sized> Facts<'_, D> {
    /// The value a term compares against, and how to say it; `None` when there is
    /// no device for a device rule (the term holds).
    fn found(
        &mut self,
        term: &Term<'_>,
        gpu: Option<(&Gpu, &mut GpuFacts)>,
    ) -> Result<Option<(String, String)>, RequirementError> {
        let driver_err = |source| RequirementError::Driver { term: shown(term.text), source };
        let value = match (term.rule, gpu) {
            (Rule::Cuda, _) => {
                if self.cuda.is_none() {
                    self.cuda = Some(cuda_version_text(self.driver.cuda_driver_version().map_err(driver_err)?));
                }
                let v = self.cuda.clone().unwrap_or_default();
                (format!("the driver supports CUDA {v}"), v)
            }
            (Rule::Driver, _) => {
                if self.version.is_none() {
                    self.version = Some(self.driver.driver_version().map_err(driver_err)?);
                }
                let v = self.version.clone().unwrap_or_default();
                if !is_version(&v) {
                    let value = crate::request::shown(&v);
                    return Err(RequirementError::NotAVersion {
                        term: shown(term.text),
                        what: "the driver version",
                        value,
                    });
                }
                (format!("the driver is version {v}"), v)
            }
            (Rule::Arch | Rule::Brand, None) => return Ok(None),
            (Rule::Arch, Some((gpu, facts))) => {
                if facts.arch.is_none() {
                    let (major, minor) = self.driver.compute_capability(gpu.index).map_err(driver_err)?;
                    facts.arch = Some(format!("{major}.{minor}"));
                }
                let v = facts.arch.clone().unwrap_or_default();
                (format!("GPU {} has compute capability {v}", gpu.index), v)
            }
            (Rule::Brand, Some((gpu, facts))) => {
                if facts.brand.is_none() {
                    facts.brand = Some(self.driver.gpu_brand(gpu.index).map_err(driver_err)?);
                }
                let v = facts.brand.unwrap_or_default().to_string();
                (format!("GPU {} is of brand {v}", gpu.index), v)
            }
        };
        Ok(Some(value))
    }

    /// Whether one of the alternatives holds; if none does, the first failing term
    /// of the first alternative with what was found.
    fn evaluate(
        &mut self,
        req: &Requirement<'_>,
        gpu: Option<&Gpu>,
        gpu_facts: &mut GpuFacts,
    ) -> Result<Option<(String, String)>, RequirementError> {
        let mut first_failure = None;
        for alternative in req.alternatives() {
            let mut failed = None;
            for term in alternative {
                let found = self.found(&term, gpu.map(|g| (g, &mut *gpu_facts)))?;
                if let Some((said, value)) = found
                    && !term.holds(&value)
                {
                    failed = Some((shown(term.text), said));
                    break;
                }
            }
            match failed {
                None => return Ok(None),
                Some(f) if first_failure.is_none() => first_failure = Some(f),
                Some(_) => {}
            }
        }
        Ok(first_failure)
    }
}

/// Checks every requirement of `image` against the driver for each of `gpus`
/// (the selection's GPUs, MIG parents included), or once without a device when
/// there are none. Parses the requirements first: a bad one is an error here.
pub fn check<D: Driver + ?Sized>(image: &ImageEnv, gpus: &[Gpu], driver: &D) -> Result<(), RequirementError> {
    let requirements = image.requirements()?;
    if requirements.list.is_empty() {
        return Ok(());
    }
    let mut facts = Facts { driver, cuda: None, version: None };
    let targets: Vec<Option<&Gpu>> = if gpus.is_empty() { vec![None] } else { gpus.iter().map(Some).collect() };
    for gpu in targets {
        let mut gpu_facts = GpuFacts::default();
        for req in &requirements.list {
            if let Some((term, found)) = facts.evaluate(req, gpu, &mut gpu_facts)? {
                let n = req.alternative_count();
                let others = if n > 1 { format!(", none of its {n} alternatives holds") } else { String::new() };
                return Err(RequirementError::Unmet { term, found, origin: req.source.to_string(), others });
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::driver::fake::FakeDriver;

    /// A typical CUDA 12.4 image's NVIDIA_REQUIRE_CUDA (shortened: two driver branches).
    const CUDA_12_4: &str = "cuda>=12.4 brand=tesla,driver>=470,driver<471 brand=unknown,driver>=470,driver<471 \
        brand=nvidia,driver>=470,driver<471 brand=nvidia,driver>=535,driver<536 brand=geforce,driver>=535,driver<536";

    fn gpus(d: &FakeDriver, indexes: &[u32]) -> Vec<Gpu> {
        indexes.iter().map(|i| d.gpu(*i).unwrap()).collect()
    }
    fn check_env(d: &FakeDriver, indexes: &[u32], env: &[&str]) -> Result<(), String> {
        let g = gpus(d, indexes);
        d.calls.borrow_mut().clear();
        check(&ImageEnv::from_env(env.iter().copied()), &g, d).map_err(|e| e.to_string())
    }
    fn driver(cuda: u32, version: &str) -> FakeDriver {
        FakeDriver { cuda_version: cuda, driver_version: version.into(), ..FakeDriver::a100() }
    }

    #[test]
    fn a_new_enough_driver_passes() {
        assert_eq!(
            check_env(&driver(12040, "550.54.15"), &[0], &[&format!("NVIDIA_REQUIRE_CUDA={CUDA_12_4}")]),
            Ok(())
        );
        assert_eq!(
            check_env(&driver(12060, "560.35.03"), &[0], &[&format!("NVIDIA_REQUIRE_CUDA={CUDA_12_4}")]),
            Ok(())
        );
    }

    #[test]
    fn an_old_driver_is_refused_naming_the_first_term_and_the_cuda_found() {
        assert_eq!(
            check_env(&driver(12020, "535.104.05"), &[0], &["NVIDIA_REQUIRE_CUDA=cuda>=12.4"]),
            Err("requirement cuda>=12.4 not met: the driver supports CUDA 12.2 (NVIDIA_REQUIRE_CUDA)".into())
        );
        assert_eq!(
            check_env(&driver(11080, "520.61.05"), &[0], &[&format!("NVIDIA_REQUIRE_CUDA={CUDA_12_4}")]),
            Err("requirement cuda>=12.4 not met: the driver supports CUDA 11.8 (NVIDIA_REQUIRE_CUDA, none of its 6 alternatives holds)".into())
        );
    }

    #[test]
    fn an_alternative_of_brand_and_driver_branch_lets_an_older_cuda_driver_pass() {
        // CUDA 12.2 < 12.4, but a brand=nvidia R535 driver is one of the alternatives.
        assert_eq!(
            check_env(&driver(12020, "535.104.05"), &[0], &[&format!("NVIDIA_REQUIRE_CUDA={CUDA_12_4}")]),
            Ok(())
        );
        // The same driver on a GeForce-less list of brands: refused.
        let mut d = driver(12020, "535.104.05");
        d.gpu_facts[0].0 = "Quadro";
        assert!(check_env(&d, &[0], &[&format!("NVIDIA_REQUIRE_CUDA={CUDA_12_4}")]).is_err());
        d.gpu_facts[0].0 = "GeForce";
        assert_eq!(check_env(&d, &[0], &[&format!("NVIDIA_REQUIRE_CUDA={CUDA_12_4}")]), Ok(()));
    }

    #[test]
    fn every_variable_must_hold() {
        let d = driver(12040, "550.54.15");
        let env = ["NVIDIA_REQUIRE_CUDA=cuda>=12.0", "NVIDIA_REQUIRE_DRIVER=driver>=555"];
        assert_eq!(
            check_env(&d, &[0], &env),
            Err("requirement driver>=555 not met: the driver is version 550.54.15 (NVIDIA_REQUIRE_DRIVER)".into())
        );
        assert_eq!(
            check_env(&d, &[0], &["NVIDIA_REQUIRE_CUDA=cuda>=12.0", "NVIDIA_REQUIRE_DRIVER=driver>=550"]),
            Ok(())
        );
    }

    #[test]
    fn brand_and_arch_are_checked_per_gpu_and_name_it() {
        let mut d = FakeDriver::a100();
        d.gpu_facts[2] = ("GeForce", (8, 6));
        assert_eq!(check_env(&d, &[0, 1], &["NVIDIA_REQUIRE_BRAND=brand!=geforce"]), Ok(()));
        assert_eq!(
            check_env(&d, &[0, 2], &["NVIDIA_REQUIRE_BRAND=brand!=geforce"]),
            Err("requirement brand!=geforce not met: GPU 2 is of brand GeForce (NVIDIA_REQUIRE_BRAND)".into())
        );
        assert_eq!(
            check_env(&d, &[0, 2], &["NVIDIA_REQUIRE_ARCH=arch=8.0"]),
            Err("requirement arch=8.0 not met: GPU 2 has compute capability 8.6 (NVIDIA_REQUIRE_ARCH)".into())
        );
        assert_eq!(check_env(&d, &[0, 1], &["NVIDIA_REQUIRE_ARCH=arch>=8.0,arch<9"]), Ok(()));
    }

    #[test]
    fn the_first_failing_term_of_the_first_alternative_is_named() {
        let d = driver(12040, "550.54.15");
        assert_eq!(
            check_env(&d, &[0], &["NVIDIA_REQUIRE_X=cuda>=12.0,brand=tesla,driver>=999 arch=7.0"]),
            Err("requirement brand=tesla not met: GPU 0 is of brand Nvidia (NVIDIA_REQUIRE_X, none of its 2 alternatives holds)".into())
        );
    }

    #[test]
    fn without_a_gpu_only_cuda_and_driver_are_checked() {
        let d = driver(12020, "535.104.05");
        assert_eq!(check_env(&d, &[], &["NVIDIA_REQUIRE_X=brand=tesla,arch=10.0"]), Ok(()));
        assert_eq!(*d.calls.borrow(), Vec::<String>::new());
        assert_eq!(
            check_env(&d, &[], &["NVIDIA_REQUIRE_X=brand=tesla,cuda>=12.4"]),
            Err("requirement cuda>=12.4 not met: the driver supports CUDA 12.2 (NVIDIA_REQUIRE_X)".into())
        );
    }

    #[test]
    fn the_driver_is_asked_only_what_terms_need_once() {
        let d = FakeDriver::a100();
        assert_eq!(check_env(&d, &[0, 1, 2], &["PATH=/bin"]), Ok(()));
        assert_eq!(*d.calls.borrow(), Vec::<String>::new());
        assert_eq!(
            check_env(&d, &[0, 1], &["NVIDIA_REQUIRE_CUDA=cuda>=12.0 brand=x", "NVIDIA_REQUIRE_B=cuda>=1"]),
            Ok(())
        );
        assert_eq!(*d.calls.borrow(), ["cuda-version"]);
        assert_eq!(check_env(&d, &[0, 1], &["NVIDIA_REQUIRE_B=brand=nvidia,arch>=8.0,brand!=tesla"]), Ok(()));
        assert_eq!(*d.calls.borrow(), ["brand 0", "arch 0", "brand 1", "arch 1"]);
    }

    #[test]
    fn disabled_requirements_are_not_checked() {
        let d = driver(11000, "450.80.02");
        assert_eq!(check_env(&d, &[0], &["NVIDIA_REQUIRE_CUDA=cuda>=12.4", "NVIDIA_DISABLE_REQUIRE=true"]), Ok(()));
        assert_eq!(*d.calls.borrow(), Vec::<String>::new());
    }

    #[test]
    fn a_legacy_image_requires_its_cuda_version() {
        let d = driver(12020, "535.104.05");
        assert_eq!(
            check_env(&d, &[0], &["CUDA_VERSION=12.4.1"]),
            Err("requirement cuda>=12.4 not met: the driver supports CUDA 12.2 (CUDA_VERSION=12.4.1 of an image without NVIDIA_REQUIRE_CUDA)".into())
        );
        assert_eq!(check_env(&d, &[0], &["CUDA_VERSION=12.2.0"]), Ok(()));
        assert_eq!(check_env(&d, &[0], &["CUDA_VERSION=12.4.1", "NVIDIA_REQUIRE_CUDA=cuda>=12.0"]), Ok(()));
    }

    #[test]
    fn parse_errors_and_odd_driver_values_are_errors() {
        let d = FakeDriver::a100();
        assert_eq!(
            check_env(&d, &[0], &["NVIDIA_REQUIRE_CUDA=cuda=>12"]),
            Err("NVIDIA_REQUIRE_CUDA: cuda=>12: unknown operator '=>' (one of = != < <= > >=)".into())
        );
        let d = driver(12040, "550.54.15-beta");
        assert_eq!(
            check_env(&d, &[0], &["NVIDIA_REQUIRE_D=driver>=470"]),
            Err("requirement driver>=470: the driver version '550.54.15-beta' is not a version requirements can compare".into())
        );
        let mut d = FakeDriver::a100();
        d.gpu_facts.clear();
        assert_eq!(
            check_env(&d, &[0], &["NVIDIA_REQUIRE_B=brand=tesla"]),
            Err("requirement brand=tesla: NVML nvmlDeviceGetBrand failed: Not Supported".into())
        );
    }
}

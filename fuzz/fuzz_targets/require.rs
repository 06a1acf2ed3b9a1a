//! Image requirements: the image controls every `NVIDIA_REQUIRE_*` value and its
//! `CUDA_VERSION`. Input: a requirement value, optionally `\n` and a version the
//! driver "has". Beyond "never panics": parsing whole and validating agree, every
//! term is non-empty and evaluates against any version, an error is one line,
//! version comparison is reflexive and antisymmetric, and a legacy `CUDA_VERSION`
//! gives a `major.minor` that is itself a version.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mighook::request::require::{ImageEnv, compare_versions, is_version, legacy_major_minor, parse_value, validate};
use std::cmp::Ordering;

const VAR: &str = "NVIDIA_REQUIRE_CUDA";

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let (value, found) = text.split_once('\n').unwrap_or((&text, "12.4"));

    match parse_value(VAR, value) {
        Ok(alternatives) => {
            assert_eq!(validate(VAR, value), Ok(()));
            for term in alternatives.iter().flatten() {
                assert!(!term.text.is_empty() && !term.value.is_empty(), "{term:?}");
                let _ = term.holds(found);
            }
        }
        Err(e) => {
            assert!(validate(VAR, value).is_err(), "parse_value refused what validate took: {e}");
            assert!(!e.to_string().contains('\n'), "a multi-line error: {e}");
        }
    }

    if is_version(value) && is_version(found) {
        assert_eq!(compare_versions(value, value), Ordering::Equal);
        assert_eq!(compare_versions(value, found), compare_versions(found, value).reverse());
    }
    if let Some(major_minor) = legacy_major_minor(value) {
        assert!(is_version(&major_minor), "{value:?} gave {major_minor:?}");
    }

    // The env path: every line an assignment; reading and checking never panic, errors are one line.
    let env = ImageEnv::from_env(text.split('\n'));
    if let Err(e) = env.requirements() {
        assert!(!e.to_string().contains('\n'), "a multi-line error: {e}");
    }
    let _ = (env.legacy_visible_devices(), env.legacy_capabilities());
});

//! podman and CRI-O: the OCI hooks.d registration, CRI-O's runtime drop-in,
//! and the CDI spec in /etc/cdi (written when the driver answers, else a hint).
//!
//! hooks.d `when` cannot match environment variables, so the hook runs for
//! every container (`always`) and returns at once when nothing is requested.
//! Its `env` is a PATH only: hooks.d hooks inherit nothing else.
//!
//! CRI-O runs a runtime handler with the handler's `monitor_env` and nothing of
//! its own environment (a `MIGHOOK_*` in crio.service never reaches the shim).
//! The drop-in therefore sets `monitor_env` to the PATH CRI-O would give it
//! plus `MIGHOOK_CONFIG` naming mighook's config file, so the shim reads the
//! same settings (driver root, NVML) as every other mighook command; with no
//! config file the shim uses the defaults, and setup says so.

use super::{Ctx, RUNTIME_LINK, SetupError, Step};
use serde_json::{Value, json};
use std::path::Path;

pub const HOOKS_D_JSON: &str = "/usr/share/containers/oci/hooks.d/oci-mighook-hook.json";
pub const CRIO_DROPIN: &str = "/etc/crio/crio.conf.d/99-mighook.toml";
/// podman 4 and CRI-O read CDI specs from /etc/cdi and /var/run/cdi only.
pub const CDI_SPEC: &str = "/etc/cdi/nvidia.json";
pub const HOOK_PATH_ENV: &str = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
/// The config file the packages install.
pub const PACKAGED_CONFIG: &str = "/etc/mighook/config.toml";

fn toml_str(s: &str) -> String {
    toml::Value::String(s.to_string()).to_string()
}

/// The hooks.d file for a binary (hooks/oci-mighook-hook.json is this for /usr/bin/mighook).
pub fn hook_json(binary: &Path) -> String {
    let v = json!({
        "version": "1.0.0",
        "hook": {"path": binary.to_str().unwrap_or_default(), "args": ["mighook", "prestart"], "env": [HOOK_PATH_ENV]},
        "when": {"always": true},
        "stages": ["prestart"]
    });
    serde_json::to_string_pretty(&v).expect("JSON value serializes") + "\n"
}

/// CRI-O's drop-in for a shim path and mighook's config file (hooks/crio-99-mighook.toml is
/// this for /usr/bin and /etc/mighook/config.toml, not the default).
pub fn crio_dropin(shim: &Path, config: Option<&Path>, set_as_default: bool) -> String {
    let mut out = String::from(
        "# Written by `mighook setup crio`: the \"nvidia\" runtime handler runs mighook's shim, which writes\n\
         # the requested GPUs and MIG devices into config.json and then execs runc.\n",
    );
    if set_as_default {
        out.push_str("[crio.runtime]\ndefault_runtime = \"nvidia\"\n\n");
    }
    out.push_str(&format!(
        "[crio.runtime.runtimes.nvidia]\nruntime_path = {}\nruntime_type = \"oci\"\n",
        toml_str(shim.to_str().unwrap_or_default())
    ));
    // The handler's whole environment: CRI-O passes it nothing else of its own.
    let mut env = vec![toml_str(HOOK_PATH_ENV)];
    if let Some(c) = config {
        env.push(toml_str(&format!("MIGHOOK_CONFIG={}", c.to_str().unwrap_or_default())));
    }
    out.push_str(&format!(
        "# CRI-O gives the shim only this environment: mighook's settings come from its config file.\nmonitor_env = [{}]\n",
        env.join(", ")
    ));
    out
}

/// The hooks.d step; an existing file with the same JSON (any formatting) is left alone.
fn hook_step(ctx: &Ctx) -> Result<Step, SetupError> {
    let path = ctx.host(HOOKS_D_JSON);
    let new = hook_json(&ctx.binary);
    let old = ctx.read(&path)?;
    let same =
        old.as_deref().and_then(|t| serde_json::from_str::<Value>(t).ok()) == serde_json::from_str::<Value>(&new).ok();
    Ok(if same { Step::Unchanged(path) } else { Step::Write { path, old, new } })
}

/// The CDI spec in /etc/cdi, or a hint when the driver could not be asked.
fn cdi_step(ctx: &Ctx) -> Result<Step, SetupError> {
    match &ctx.cdi_spec {
        Some(Ok(spec)) => ctx.write_step(ctx.host(CDI_SPEC), spec.clone()),
        Some(Err(why)) => Ok(Step::Hint(format!(
            "no CDI spec written ({why}); once the driver is up, for --device nvidia.com/gpu=<id>: {} cdi generate --output {CDI_SPEC}",
            ctx.binary.display()
        ))),
        None => Ok(Step::Hint(format!(
            "for --device nvidia.com/gpu=<id>: {} cdi generate --output {CDI_SPEC}",
            ctx.binary.display()
        ))),
    }
}

pub fn crio_steps(ctx: &Ctx) -> Result<Vec<Step>, SetupError> {
    let mut steps = vec![];
    super::link_steps(ctx, &[RUNTIME_LINK], &mut steps)?;
    let config = ctx.config_file.as_deref();
    if config.is_none() {
        steps.push(Step::Note(format!(
            "no mighook config file: the shim runs with the defaults (NVML through the host's ld.so.cache, driver root /); \
             CRI-O passes it no environment but monitor_env, so put settings in {PACKAGED_CONFIG} and run setup again"
        )));
    }
    steps.push(ctx.write_step(ctx.host(CRIO_DROPIN), crio_dropin(&ctx.shim_path(), config, ctx.set_as_default))?);
    steps.push(hook_step(ctx)?);
    steps.push(cdi_step(ctx)?);
    steps.push(Step::Hint(
        "restart CRI-O (systemctl restart crio); pods pick the shim with a RuntimeClass of handler \"nvidia\"".into(),
    ));
    Ok(steps)
}

pub fn podman_steps(ctx: &Ctx) -> Result<Vec<Step>, SetupError> {
    Ok(vec![hook_step(ctx)?, cdi_step(ctx)?])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hook_json_has_the_hooks_d_shape() {
        let v: Value = serde_json::from_str(&hook_json(Path::new("/opt/m/mighook"))).unwrap();
        assert_eq!(v["version"], "1.0.0");
        assert_eq!(
            v["hook"],
            json!({"path": "/opt/m/mighook", "args": ["mighook", "prestart"], "env": [HOOK_PATH_ENV]})
        );
        assert_eq!(v["when"], json!({"always": true}));
        assert_eq!(v["stages"], json!(["prestart"]));
    }

    #[test]
    fn crio_dropin_parses_and_quotes_the_path() {
        let shim = Path::new("/opt/a \"b\"/nvidia-container-runtime");
        let t: toml::Table = toml::from_str(&crio_dropin(shim, None, false)).unwrap();
        let nvidia = &t["crio"]["runtime"]["runtimes"]["nvidia"];
        assert_eq!(nvidia["runtime_path"].as_str(), Some("/opt/a \"b\"/nvidia-container-runtime"));
        assert_eq!(nvidia["runtime_type"].as_str(), Some("oci"));
        assert_eq!(nvidia["monitor_env"], toml::Value::Array(vec![HOOK_PATH_ENV.into()]));
        assert_eq!(t["crio"]["runtime"].get("default_runtime"), None);
    }

    #[test]
    fn crio_dropin_names_the_config_file_and_can_set_the_default() {
        let shim = Path::new("/usr/bin/nvidia-container-runtime");
        let t: toml::Table = toml::from_str(&crio_dropin(shim, Some(Path::new("/etc/m.toml")), true)).unwrap();
        let env = t["crio"]["runtime"]["runtimes"]["nvidia"]["monitor_env"].as_array().unwrap();
        assert_eq!(env[1].as_str(), Some("MIGHOOK_CONFIG=/etc/m.toml"));
        assert_eq!(t["crio"]["runtime"]["default_runtime"].as_str(), Some("nvidia"));
    }
}

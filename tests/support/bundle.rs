//! OCI bundles for the e2e tests: `runc spec` output, adjusted.
//!
//! Starting from the runtime's own template keeps the defaults (masked paths,
//! the deny-all device rule, the /dev tmpfs) that real engines give a
//! container; the tests change only what they are about.

use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::process::Command;

/// The PATH a hook gets: with an explicit `env`, runc and crun give a hook nothing else.
pub const HOOK_PATH_ENV: &str = "PATH=/usr/sbin:/usr/bin:/sbin:/bin";

/// A bundle dir holding `config.json`; removed on drop.
pub struct Bundle {
    dir: tempfile::TempDir,
    /// Unique container id for this bundle (parallel tests never share one).
    pub id: String,
    config: Value,
}

impl Bundle {
    /// A bundle that runs `args` in `rootfs` with the template env plus `env`.
    ///
    /// `process.terminal` is off (no tty under the test harness) and CAP_MKNOD is
    /// added so the probe can create neighbour nodes: the devices cgroup, not a
    /// missing capability, must be what stops their open().
    pub fn new(rootfs: &Path, env: &[&str], args: &[&str]) -> Bundle {
        let dir = tempfile::Builder::new().prefix("mighook-e2e-bundle").tempdir().expect("tempdir");
        let out =
            Command::new(super::tool("runc")).arg("spec").current_dir(dir.path()).output().expect("spawn runc spec");
        assert!(out.status.success(), "runc spec failed: {}", String::from_utf8_lossy(&out.stderr));
        let text = std::fs::read_to_string(dir.path().join("config.json")).expect("read runc spec output");
        let mut config: Value = serde_json::from_str(&text).expect("runc spec output is JSON");

        config["root"]["path"] = json!(rootfs.to_str().expect("utf-8 rootfs path"));
        let process = &mut config["process"];
        process["terminal"] = json!(false);
        process["args"] = json!(args);
        let env_list = process["env"].as_array_mut().expect("process.env");
        env_list.extend(env.iter().map(|e| json!(e)));
        for set in ["bounding", "effective", "permitted"] {
            let caps = process["capabilities"][set].as_array_mut().expect("capability set");
            if !caps.contains(&json!("CAP_MKNOD")) {
                caps.push(json!("CAP_MKNOD"));
            }
        }

        let bundle = Bundle { dir, id: super::unique_id("c"), config };
        bundle.write();
        bundle
    }

    /// A bundle on the shared busybox image running the probe with `probe_args`.
    pub fn probe(env: &[&str], probe_args: &[&str]) -> Bundle {
        let args: Vec<&str> = std::iter::once("/bin/openprobe").chain(probe_args.iter().copied()).collect();
        Bundle::new(&super::busybox_rootfs(), env, &args)
    }

    /// Append a prestart hook. `env` is passed as given: runtimes add nothing to it.
    pub fn with_prestart_hook(mut self, path: &Path, args: &[&str], env: &[&str]) -> Bundle {
        let hook = json!({ "path": path.to_str().expect("utf-8 hook path"), "args": args, "env": env, "timeout": 30 });
        let hooks = self.config.as_object_mut().unwrap().entry("hooks").or_insert_with(|| json!({}));
        hooks
            .as_object_mut()
            .unwrap()
            .entry("prestart")
            .or_insert_with(|| json!([]))
            .as_array_mut()
            .unwrap()
            .push(hook);
        self.write();
        self
    }

    /// Register `target/<profile>/mighook` as the prestart hook, the way the tests are specified:
    /// args `["mighook", "--nvml-lib", L, "--proc-root", P, "prestart"]`, env only a PATH.
    pub fn with_mighook(self, node: &super::SimNode) -> Bundle {
        let mut args = vec!["mighook".to_string()];
        args.extend(node.mighook_args());
        args.push("prestart".to_string());
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        self.with_prestart_hook(&super::mighook_bin(), &args, &[HOOK_PATH_ENV])
    }

    /// Edit config.json freely (then it is rewritten).
    pub fn edit(mut self, f: impl FnOnce(&mut Value)) -> Bundle {
        f(&mut self.config);
        self.write();
        self
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn config(&self) -> &Value {
        &self.config
    }

    /// The rootfs this bundle runs (absolute).
    pub fn rootfs(&self) -> PathBuf {
        PathBuf::from(self.config["root"]["path"].as_str().expect("root.path"))
    }

    /// The runtime state dir for `runtime` (`--root`), private to this bundle.
    pub fn state_dir(&self, runtime: &str) -> PathBuf {
        self.dir.path().join(format!("state-{runtime}"))
    }

    fn write(&self) {
        let text = serde_json::to_string_pretty(&self.config).expect("serialize config");
        std::fs::write(self.dir.path().join("config.json"), text).expect("write config.json");
    }
}

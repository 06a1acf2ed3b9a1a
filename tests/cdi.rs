//! `mighook cdi generate` / `cdi list` on the simulated 8×A100 node (`a100x8`), as a
//! user runs them: the built binary, pointed at the node with `--nvml-lib`,
//! `--proc-root` and a config file whose `dev-root` is the node's `dev/`.
//!
//! GPU 0 (minor 2) is in MIG mode with 7×1g.5gb; its slot 1 is GI 8 / CI 0, so
//! `0:1` = `/dev/nvidia2` + nvidia-caps 345 (gi8/access) and 346 (gi8/ci0/access).
//! GPU 6 (minor 4) is the one GPU with MIG disabled; GPU 3 is in MIG mode with
//! no MIG devices. No root needed: nothing here makes device nodes.

mod support;

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const MIG_0_1_UUID: &str = "MIG-c7384736-a75d-5afc-978f-d2f1294409fd";
const GPU_6_UUID: &str = "GPU-9bc5986e-14e1-ded8-5ccc-dd00089833bc";

/// A simulated node written by `fake-node` (no `--mknod`), plus a mighook config for it.
struct Node {
    dir: tempfile::TempDir,
}

impl Node {
    fn new(topology: &Path) -> Node {
        let dir = tempfile::Builder::new().prefix("mighook-cdi-node").tempdir().unwrap();
        let out = Command::new(support::fake_node_bin())
            .arg(topology)
            .arg(dir.path())
            .arg("--lib")
            .arg(support::fake_nvml_lib())
            .output()
            .unwrap();
        assert!(out.status.success(), "fake-node {}\n{}", topology.display(), support::runtime::describe(&out));
        std::fs::write(dir.path().join("mighook.toml"), format!("dev-root = \"{}/dev\"\n", dir.path().display()))
            .unwrap();
        Node { dir }
    }

    fn a100x8() -> Node {
        Node::new(&support::workspace_root().join("tests/topologies/a100x8.json"))
    }

    fn dev(&self) -> String {
        format!("{}/dev", self.dir.path().display())
    }

    /// `mighook --config C --nvml-lib L --proc-root P ARGS`, in `sh -c 'umask 077; exec ...'`
    /// so a written spec's mode cannot come from a friendly umask.
    fn mighook(&self, args: &[&str]) -> Output {
        let d = self.dir.path();
        Command::new("sh")
            .args(["-c", "umask 077; exec \"$@\"", "sh"])
            .arg(support::mighook_bin())
            .arg("--config")
            .arg(d.join("mighook.toml"))
            .arg("--nvml-lib")
            .arg(d.join("libnvidia-ml.so.1"))
            .arg("--proc-root")
            .arg(d.join("proc"))
            .args(args)
            .output()
            .unwrap()
    }

    fn ok(&self, args: &[&str]) -> String {
        let out = self.mighook(args);
        assert!(out.status.success(), "mighook {args:?}\n{}", support::runtime::describe(&out));
        assert_eq!(String::from_utf8_lossy(&out.stderr), "", "no warnings expected");
        String::from_utf8(out.stdout).unwrap()
    }

    fn spec(&self) -> Value {
        serde_json::from_str(&self.ok(&["cdi", "generate"])).expect("generate prints JSON")
    }
}

fn names(spec: &Value) -> Vec<&str> {
    spec["devices"].as_array().unwrap().iter().map(|d| d["name"].as_str().unwrap()).collect()
}

fn device<'a>(spec: &'a Value, name: &str) -> &'a Value {
    spec["devices"].as_array().unwrap().iter().find(|d| d["name"] == name).unwrap_or_else(|| panic!("no device {name}"))
}

/// `path major:minor fileMode permissions hostPath` per node: one comparable line each.
fn nodes(edits: &Value) -> Vec<String> {
    edits["deviceNodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| {
            assert_eq!(n["type"], "c", "{n}");
            format!(
                "{} {}:{} {:o} {} {}",
                n["path"].as_str().unwrap(),
                n["major"],
                n["minor"],
                n["fileMode"].as_u64().unwrap(),
                n["permissions"].as_str().unwrap(),
                n["hostPath"].as_str().unwrap()
            )
        })
        .collect()
}

#[test]
fn names_cover_mig_devices_the_non_mig_gpu_and_all() {
    let spec = Node::a100x8().spec();
    let n = names(&spec);
    assert!(n.contains(&"0:1"));
    assert!(n.contains(&MIG_0_1_UUID));
    assert!(n.contains(&"6"));
    assert!(n.contains(&GPU_6_UUID));
    assert!(n.contains(&"7:1"));
    assert_eq!(n.last(), Some(&"all"));
    assert!(!n.contains(&"0"), "GPU 0 is in MIG mode: no whole-GPU entry");
    assert!(!n.contains(&"GPU-066d0ced-a3fb-eefb-a347-82895e8fb78c"), "nor by UUID");
    assert!(!n.contains(&"3"), "GPU 3 is in MIG mode without MIG devices");
    assert_eq!(n.len(), 2 * (7 + 4 + 3 + 1 + 3 + 1 + 2) + 1, "21 MIG devices and 1 GPU, twice each, and all");
}

#[test]
fn kind_and_version() {
    let spec = Node::a100x8().spec();
    assert_eq!(spec["kind"], "nvidia.com/gpu");
    assert_eq!(spec["cdiVersion"], "0.5.0", "names starting with a digit and hostPath both need 0.5.0");
}

#[test]
fn mig_0_1_gets_its_parent_and_two_caps_with_host_paths() {
    let node = Node::a100x8();
    let spec = node.spec();
    let dev = node.dev();
    let want = [
        format!("/dev/nvidia-caps/nvidia-cap345 508:345 444 rw {dev}/nvidia-caps/nvidia-cap345"),
        format!("/dev/nvidia-caps/nvidia-cap346 508:346 444 rw {dev}/nvidia-caps/nvidia-cap346"),
        format!("/dev/nvidia2 195:2 666 rw {dev}/nvidia2"),
    ];
    assert_eq!(nodes(&device(&spec, "0:1")["containerEdits"]), want);
    assert_eq!(device(&spec, MIG_0_1_UUID)["containerEdits"], device(&spec, "0:1")["containerEdits"]);
}

#[test]
fn non_mig_gpu_gets_only_its_node() {
    let node = Node::a100x8();
    let spec = node.spec();
    assert_eq!(
        nodes(&device(&spec, "6")["containerEdits"]),
        [format!("/dev/nvidia4 195:4 666 rw {}/nvidia4", node.dev())]
    );
    assert_eq!(device(&spec, GPU_6_UUID)["containerEdits"], device(&spec, "6")["containerEdits"]);
}

#[test]
fn common_nodes_and_void_env_are_spec_wide() {
    let node = Node::a100x8();
    let spec = node.spec();
    let dev = node.dev();
    assert_eq!(spec["containerEdits"]["env"], serde_json::json!(["NVIDIA_VISIBLE_DEVICES=void"]));
    assert_eq!(
        nodes(&spec["containerEdits"]),
        [
            format!("/dev/nvidia-uvm 511:0 666 rw {dev}/nvidia-uvm"),
            format!("/dev/nvidia-uvm-tools 511:1 666 rw {dev}/nvidia-uvm-tools"),
            format!("/dev/nvidiactl 195:255 666 rw {dev}/nvidiactl"),
        ]
    );
    for d in spec["devices"].as_array().unwrap() {
        let paths = nodes(&d["containerEdits"]);
        assert!(
            !paths.iter().any(|p| p.starts_with("/dev/nvidiactl ") || p.starts_with("/dev/nvidia-uvm")),
            "{}: {paths:?}",
            d["name"]
        );
    }
}

#[test]
fn all_has_every_gpu_node() {
    let spec = Node::a100x8().spec();
    let all = nodes(&device(&spec, "all")["containerEdits"]);
    for minor in 0..8 {
        assert!(
            all.iter().any(|n| n.starts_with(&format!("/dev/nvidia{minor} 195:{minor} "))),
            "nvidia{minor} in all: {all:?}"
        );
    }
    assert!(all.iter().any(|n| n.starts_with("/dev/nvidia-caps/nvidia-cap345 ")));
}

#[test]
fn list_prints_the_qualified_names_of_generate() {
    let node = Node::a100x8();
    let spec = node.spec();
    let listed = node.ok(&["cdi", "list"]);
    let want: String = names(&spec).iter().map(|n| format!("nvidia.com/gpu={n}\n")).collect();
    assert_eq!(listed, want);
}

#[test]
fn yaml_is_the_same_document_as_json() {
    let node = Node::a100x8();
    let json = node.spec();
    let yaml = node.ok(&["cdi", "generate", "--format", "yaml"]);
    assert_eq!(mini_yaml::parse(&yaml), json, "our reading of the YAML");
    match python_yaml_to_json(&yaml) {
        Some(v) => assert_eq!(v, json, "PyYAML's reading of the YAML"),
        None => support::loud(
            "NOTE: yaml_is_the_same_document_as_json: python3 with PyYAML not found; checked with the built-in reader only",
        ),
    }
}

/// PyYAML's safe_load of `yaml`, as JSON; `None` when python3 or PyYAML is missing.
fn python_yaml_to_json(yaml: &str) -> Option<Value> {
    use std::io::Write;
    let python = support::find_tool("python3")?;
    let script = "import sys, json, yaml; json.dump(yaml.safe_load(sys.stdin), sys.stdout)";
    if !Command::new(&python).args(["-c", "import yaml"]).output().ok()?.status.success() {
        return None;
    }
    let mut child = Command::new(python)
        .args(["-c", script])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .ok()?;
    child.stdin.take().unwrap().write_all(yaml.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "PyYAML rejected the spec\n{}", support::runtime::describe(&out));
    Some(serde_json::from_slice(&out.stdout).unwrap())
}

#[test]
fn output_is_written_0644_whatever_the_umask_and_matches_stdout() {
    use std::os::unix::fs::PermissionsExt;
    let node = Node::a100x8();
    let out_dir = tempfile::tempdir().unwrap();
    let file = out_dir.path().join("cdi/nvidia.json");
    let said = node.ok(&["cdi", "generate", "--output", file.to_str().unwrap()]);
    assert_eq!(said, format!("wrote {} (43 devices of kind nvidia.com/gpu)\n", file.display()));
    assert_eq!(std::fs::metadata(&file).unwrap().permissions().mode() & 0o777, 0o644);
    assert_eq!(std::fs::read_to_string(&file).unwrap(), node.ok(&["cdi", "generate"]));
    let entries: Vec<_> = std::fs::read_dir(file.parent().unwrap()).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(entries, ["nvidia.json"], "no temp file left behind");
}

#[test]
fn yaml_extension_picks_yaml() {
    let node = Node::a100x8();
    let out_dir = tempfile::tempdir().unwrap();
    let file = out_dir.path().join("nvidia.yaml");
    node.ok(&["cdi", "generate", "--output", file.to_str().unwrap()]);
    assert_eq!(std::fs::read_to_string(&file).unwrap(), node.ok(&["cdi", "generate", "--format", "yaml"]));
}

/// a100x8 after a MIG reconfiguration: GPU 0's slot 6 destroyed, GPU 6 put in MIG mode with one 7g.40gb.
fn reconfigured_topology(dir: &Path) -> PathBuf {
    let text = std::fs::read_to_string(support::workspace_root().join("tests/topologies/a100x8.json")).unwrap();
    let mut t: Value = serde_json::from_str(&text).unwrap();
    let gpus = t["gpus"].as_array_mut().unwrap();
    gpus[0]["migDevices"].as_array_mut().unwrap().retain(|m| m["slot"] != 6);
    gpus[6]["migMode"] = "enabled".into();
    gpus[6]["migDevices"] = serde_json::json!([{ "slot": 0, "gi": 0, "ci": 0, "uuid": "MIG-0e0e0e0e-1111-5222-8333-444455556666", "profile": "7g.40gb", "giProfileId": 0, "ciProfileId": 4 }]);
    let path = dir.join("a100x8-reconfigured.json");
    std::fs::write(&path, serde_json::to_string_pretty(&t).unwrap()).unwrap();
    path
}

#[test]
fn check_passes_right_after_generate_and_fails_after_reconfiguration() {
    let node = Node::a100x8();
    let out_dir = tempfile::tempdir().unwrap();
    let file = out_dir.path().join("nvidia.json");
    let f = file.to_str().unwrap();
    node.ok(&["cdi", "generate", "--output", f]);
    assert_eq!(node.ok(&["cdi", "generate", "--check", "--output", f]), format!("{f} is up to date (43 devices)\n"));

    let after = Node::new(&reconfigured_topology(out_dir.path()));
    let out = after.mighook(&["cdi", "generate", "--check", "--output", f]);
    assert_eq!(out.status.code(), Some(1), "{}", support::runtime::describe(&out));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "", "a failed check prints nothing on stdout");
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        format!(
            "mighook: {f} is stale: devices added: 6:0, MIG-0e0e0e0e-1111-5222-8333-444455556666; \
             devices removed: 0:6, MIG-e1af5d78-0f7c-5ab6-8942-aa54efa4c2e5, 6, {GPU_6_UUID}\n"
        )
    );
    // Regenerating makes it pass again (what the systemd refresh unit does).
    after.ok(&["cdi", "generate", "--output", f]);
    after.ok(&["cdi", "generate", "--check", "--output", f]);
}

#[test]
fn check_of_a_yaml_spec_names_the_difference_too() {
    let node = Node::a100x8();
    let out_dir = tempfile::tempdir().unwrap();
    let f = out_dir.path().join("nvidia.yaml");
    let f = f.to_str().unwrap();
    node.ok(&["cdi", "generate", "--output", f]);
    node.ok(&["cdi", "generate", "--check", "--output", f]);
    let after = Node::new(&reconfigured_topology(out_dir.path()));
    let out = after.mighook(&["cdi", "generate", "--check", "--output", f]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.starts_with(&format!("mighook: {f} is stale: devices added: 6:0, ")), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "one line: {stderr}");
}

#[test]
fn check_of_a_missing_file_fails() {
    let node = Node::a100x8();
    let out = node.mighook(&["cdi", "generate", "--check", "--output", "/nonexistent/nvidia.json"]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(String::from_utf8_lossy(&out.stderr), "mighook: /nonexistent/nvidia.json is stale: it does not exist\n");
}

#[test]
fn check_needs_output() {
    let out = Node::a100x8().mighook(&["cdi", "generate", "--check"]);
    assert!(!out.status.success());
    assert_eq!(String::from_utf8_lossy(&out.stdout), "");
}

#[test]
fn driver_failure_is_one_line() {
    let node = Node::a100x8();
    let out = Command::new(support::mighook_bin())
        .args(["--nvml-lib", "/nonexistent/libnvidia-ml.so.1", "--proc-root"])
        .arg(node.dir.path().join("proc"))
        .args(["cdi", "generate"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.starts_with("mighook: ") && stderr.contains("/nonexistent/libnvidia-ml.so.1"), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "");
}

/// A reader for the YAML subset the generator writes (block mappings and
/// sequences, double-quoted strings, numbers, booleans, `[]`/`{}`, `#` comment
/// lines), independent of the emitter: it rejects anything else.
mod mini_yaml {
    use serde_json::{Map, Value};

    struct Line<'a> {
        indent: usize,
        text: &'a str,
    }

    pub fn parse(doc: &str) -> Value {
        let lines: Vec<Line> = doc
            .lines()
            .filter(|l| !l.trim().is_empty() && !l.trim_start().starts_with('#'))
            .map(|l| Line { indent: l.len() - l.trim_start().len(), text: l.trim_start() })
            .collect();
        let mut pos = 0;
        let v = block(&lines, &mut pos, 0);
        assert_eq!(pos, lines.len(), "trailing lines from {:?}", lines.get(pos).map(|l| l.text));
        v
    }

    fn scalar(s: &str) -> Value {
        match s {
            "[]" => Value::Array(vec![]),
            "{}" => Value::Object(Map::new()),
            "true" => Value::Bool(true),
            "false" => Value::Bool(false),
            "null" => Value::Null,
            _ if s.starts_with('"') => {
                Value::String(serde_json::from_str(s).unwrap_or_else(|e| panic!("bad string {s}: {e}")))
            }
            _ => Value::Number(s.parse().unwrap_or_else(|_| panic!("not a number or quoted string: {s:?}"))),
        }
    }

    fn key(s: &str) -> String {
        if s.starts_with('"') { serde_json::from_str(s).unwrap() } else { s.to_string() }
    }

    /// Splits `key: rest` at the colon after the key (a quoted key may contain colons).
    fn split_key(text: &str) -> (String, &str) {
        let end = match text.strip_prefix('"') {
            Some(rest) => rest.find('"').map(|i| i + 2).expect("closing quote"),
            None => text.find(':').expect("key:"),
        };
        assert_eq!(&text[end..end + 1], ":", "key must be followed by ':' in {text:?}");
        (key(&text[..end]), text[end + 1..].trim_start())
    }

    /// The block starting at `lines[*pos]`, all of whose entries sit at `indent`.
    fn block(lines: &[Line], pos: &mut usize, indent: usize) -> Value {
        let first = &lines[*pos];
        assert_eq!(first.indent, indent, "unexpected indent at {:?}", first.text);
        if first.text.starts_with('-') {
            let mut items = vec![];
            while *pos < lines.len() && lines[*pos].indent == indent && lines[*pos].text.starts_with('-') {
                let rest = lines[*pos].text[1..].trim_start();
                if rest.is_empty() {
                    *pos += 1;
                    items.push(block(lines, pos, indent + 2));
                } else if rest.starts_with('"') && !rest.contains("\":") || !rest.contains(':') {
                    items.push(scalar(rest));
                    *pos += 1;
                } else {
                    // A mapping whose first key is on the dash line: the rest sit at indent + 2.
                    let mut map = Map::new();
                    let (k, v) = split_key(rest);
                    *pos += 1;
                    map.insert(k, value_after_key(lines, pos, v, indent + 2));
                    while *pos < lines.len() && lines[*pos].indent == indent + 2 && !lines[*pos].text.starts_with('-') {
                        let (k, v) = split_key(lines[*pos].text);
                        *pos += 1;
                        map.insert(k, value_after_key(lines, pos, v, indent + 2));
                    }
                    items.push(Value::Object(map));
                }
            }
            Value::Array(items)
        } else {
            let mut map = Map::new();
            while *pos < lines.len() && lines[*pos].indent == indent && !lines[*pos].text.starts_with('-') {
                let (k, v) = split_key(lines[*pos].text);
                *pos += 1;
                map.insert(k, value_after_key(lines, pos, v, indent));
            }
            Value::Object(map)
        }
    }

    /// After `key:` at `indent`: an inline scalar, a sequence at the same indent, or a deeper mapping.
    fn value_after_key(lines: &[Line], pos: &mut usize, inline: &str, indent: usize) -> Value {
        if !inline.is_empty() {
            return scalar(inline);
        }
        let next = &lines[*pos];
        if next.text.starts_with('-') && next.indent == indent {
            block(lines, pos, indent)
        } else {
            assert!(next.indent > indent, "empty value for a key at {:?}", next.text);
            block(lines, pos, next.indent)
        }
    }

    #[test]
    fn reads_the_subset() {
        let v = parse("# c\na: 1\nb:\n- name: \"0:1\"\n  e:\n    l:\n    - \"x\"\nc: []\n\"on\": true\n");
        assert_eq!(v, serde_json::json!({"a": 1, "b": [{"name": "0:1", "e": {"l": ["x"]}}], "c": [], "on": true}));
    }
}

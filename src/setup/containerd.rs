//! containerd: the `nvidia` runtime in a drop-in, `/etc/containerd/conf.d/99-mighook.toml`,
//! imported by `/etc/containerd/config.toml`.
//!
//! config.toml is never re-serialized (a TOML round trip would drop its
//! comments): a missing `imports` gets one line added as text, checked by
//! parsing the result; an `imports` list without the drop-in is left for the
//! admin to extend, with the exact entry to add.
//!
//! containerd before 2.0 merges an imported file by replacing each plugin's
//! whole section (containerd#5837), so a drop-in holding only the runtime would
//! wipe the CRI settings already there (Debian's `cni.bin_dir`, say) and the
//! default `runc` runtime. For version 2 configs the drop-in therefore carries a
//! copy of the CRI section in effect (the last file that sets it) with the
//! runtime added. Version 3 configs (containerd 2.x merge sections key by key)
//! get the runtime alone. Either way the `nvidia` runtime starts from the
//! default runc runtime's settings (`SystemdCgroup`, say) with `BinaryName` set
//! to the shim, as NVIDIA's `nvidia-ctk` does.
//!
//! `--set-as-default` also sets the CRI plugin's `containerd.default_runtime_name`
//! to `nvidia`. CDI (`enable_cdi = true` in the CRI plugin, so that CRI
//! `CDIDevices` and `cdi.k8s.io/*` annotations are resolved from /etc/cdi) is
//! switched on where containerd has it: 1.7 and later (`containerd --version`);
//! containerd 2.x has it on by default and gets it stated explicitly.

use super::{Ctx, RUNTIME_LINK, SetupError, Step, invalid};
use std::path::{Path, PathBuf};
use toml::{Table, Value};

pub const CONFIG_TOML: &str = "/etc/containerd/config.toml";
pub const CONF_D: &str = "/etc/containerd/conf.d";
pub const DROPIN_NAME: &str = "99-mighook.toml";
/// The CRI plugin's id in version 2 configs (containerd 1.x).
pub const CRI_PLUGIN_V2: &str = "io.containerd.grpc.v1.cri";
/// The CRI runtime plugin's id in version 3 configs (containerd 2.x).
pub const CRI_PLUGIN_V3: &str = "io.containerd.cri.v1.runtime";
const RUNC_SHIM: &str = "io.containerd.runc.v2";
/// CRI hands a container's annotations to a runtime only where its `container_annotations`
/// lists them; without this entry the device plugin's cdi-annotations never reach the shim
/// (which reads them only when `annotation-prefixes` enables them).
const CDI_ANNOTATIONS: &str = "cdi.k8s.io/*";

const HEADER: &str = "# Written by `mighook setup containerd`: the \"nvidia\" runtime runs mighook's shim, which writes\n\
                      # the requested GPUs and MIG devices into config.json and then execs runc.\n";

fn plugin_id(version: i64) -> &'static str {
    if version >= 3 { CRI_PLUGIN_V3 } else { CRI_PLUGIN_V2 }
}

/// `t[k1][k2]...` as a table, created when absent; an error when something else is there.
fn sub_table<'a>(mut t: &'a mut Table, keys: &[&str]) -> Result<&'a mut Table, String> {
    for k in keys {
        t = t
            .entry(k.to_string())
            .or_insert_with(|| Value::Table(Table::new()))
            .as_table_mut()
            .ok_or_else(|| format!("{k} is not a table"))?;
    }
    Ok(t)
}

fn get_table<'a>(t: &'a Table, keys: &[&str]) -> Option<&'a Table> {
    keys.iter().try_fold(t, |t, k| t.get(*k)?.as_table())
}

/// `containerd.default_runtime_name` of a CRI section; containerd's default is `runc`.
fn default_runtime_name(section: Option<&Table>) -> String {
    let name = section
        .and_then(|s| get_table(s, &["containerd"]))
        .and_then(|c| c.get("default_runtime_name"))
        .and_then(Value::as_str);
    name.unwrap_or("runc").to_string()
}

/// The `nvidia` runtime: the default runtime's settings when that is runc, with the shim as BinaryName.
fn nvidia_runtime(section: Option<&Table>, shim: &Path) -> Result<Table, String> {
    let name = default_runtime_name(section);
    let base = section.and_then(|s| get_table(s, &["containerd", "runtimes", &name]));
    let is_runc = |t: &&Table| t.get("runtime_type").and_then(Value::as_str).is_none_or(|ty| ty == RUNC_SHIM);
    let mut rt = base.filter(is_runc).cloned().unwrap_or_default();
    rt.insert("runtime_type".into(), RUNC_SHIM.into());
    let options = sub_table(&mut rt, &["options"])?;
    options.insert("BinaryName".into(), shim.to_str().unwrap_or_default().into());
    let annotations = rt
        .entry("container_annotations")
        .or_insert_with(|| Value::Array(vec![]))
        .as_array_mut()
        .ok_or("container_annotations is not an array")?;
    if !annotations.iter().any(|a| a.as_str() == Some(CDI_ANNOTATIONS)) {
        annotations.push(CDI_ANNOTATIONS.into());
    }
    Ok(rt)
}

/// What the drop-in sets besides the runtime.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Extras {
    /// `containerd.default_runtime_name = "nvidia"`.
    pub set_as_default: bool,
    /// `enable_cdi = true` in the CRI plugin.
    pub enable_cdi: bool,
}

/// Whether a containerd of this version, with a config of this version, reads `enable_cdi`.
pub fn has_cdi(config_version: i64, containerd: Option<(u64, u64)>) -> bool {
    config_version >= 3 || containerd.is_some_and(|v| v >= (1, 7))
}

/// The drop-in for a config `version`, the CRI section in effect (from `from`), and a shim path.
/// (hooks/containerd-99-mighook.toml is this for version 2, no section, /usr/bin, no extras.)
pub fn dropin(version: i64, effective: Option<(&Table, &Path)>, shim: &Path, extras: Extras) -> Result<String, String> {
    let section_in = effective.map(|(t, _)| t);
    let nvidia = nvidia_runtime(section_in, shim)?;
    let mut section = Table::new();
    let mut header = HEADER.to_string();
    if version >= 3 {
        sub_table(&mut section, &["containerd", "runtimes"])?.insert("nvidia".into(), Value::Table(nvidia));
        if extras.set_as_default {
            sub_table(&mut section, &["containerd"])?.insert("default_runtime_name".into(), "nvidia".into());
        }
    } else {
        section = section_in.cloned().unwrap_or_default();
        let default_name = default_runtime_name(section_in);
        let runtimes = sub_table(&mut section, &["containerd", "runtimes"])?;
        // Naming any runtime replaces containerd's default map, which holds `runc`.
        if default_name == "runc" && !runtimes.contains_key("runc") {
            let mut runc = Table::new();
            runc.insert("runtime_type".into(), RUNC_SHIM.into());
            runtimes.insert("runc".into(), Value::Table(runc));
        }
        runtimes.insert("nvidia".into(), Value::Table(nvidia));
        if extras.set_as_default {
            sub_table(&mut section, &["containerd"])?.insert("default_runtime_name".into(), "nvidia".into());
        }
        if let Some((_, from)) = effective {
            header.push_str(&format!(
                "# containerd before 2.0 replaces a whole plugin section on import, so this file also carries\n\
                 # the CRI plugin settings of {}: run `mighook setup containerd` again after changing them there.\n",
                from.display()
            ));
        }
    }
    // An admin's own `enable_cdi = false` (copied in from a version 2 config) stays.
    if extras.enable_cdi && !section.contains_key("enable_cdi") {
        section.insert("enable_cdi".into(), Value::Boolean(true));
    }
    let mut plugins = Table::new();
    plugins.insert(plugin_id(version).into(), Value::Table(section));
    let mut doc = Table::new();
    doc.insert("version".into(), Value::Integer(version.max(2)));
    doc.insert("plugins".into(), Value::Table(plugins));
    let body = toml::to_string(&doc).map_err(|e| e.to_string())?;
    Ok(format!("{header}{body}"))
}

fn parse(path: &Path, text: &str) -> Result<Table, SetupError> {
    text.parse::<Table>()
        .map_err(|e| invalid(path, format!("not valid TOML: {}", e.to_string().lines().next().unwrap_or(""))))
}

/// `*` and `?` wildcards over one file name, as Go's filepath.Match (no classes).
fn wildcard(pattern: &[u8], name: &[u8]) -> bool {
    match (pattern.first(), name.first()) {
        (None, None) => true,
        (Some(b'*'), _) => wildcard(&pattern[1..], name) || (!name.is_empty() && wildcard(pattern, &name[1..])),
        (Some(b'?'), Some(_)) => wildcard(&pattern[1..], &name[1..]),
        (Some(p), Some(n)) if p == n => wildcard(&pattern[1..], &name[1..]),
        _ => false,
    }
}

fn has_wildcard(p: &Path) -> bool {
    p.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.contains(['*', '?', '[']))
}

/// An `imports` entry as a path: relative ones are relative to config.toml's directory, as in containerd.
fn resolve_entry(entry: &str, main_dir: &Path) -> PathBuf {
    if entry.starts_with('/') { PathBuf::from(entry) } else { main_dir.join(entry) }
}

/// Whether an imports entry reads `file`.
fn covers(entry: &Path, file: &Path) -> bool {
    if entry == file {
        return true;
    }
    let (Some(pat), Some(name)) = (entry.file_name(), file.file_name()) else { return false };
    use std::os::unix::ffi::OsStrExt;
    entry.parent() == file.parent() && wildcard(pat.as_bytes(), name.as_bytes())
}

/// The files an imports list reads, in containerd's order (each glob sorted).
fn import_files(entries: &[PathBuf]) -> Vec<PathBuf> {
    let mut files = vec![];
    for e in entries {
        if !has_wildcard(e) {
            if e.is_file() {
                files.push(e.clone());
            }
            continue;
        }
        let Some(dir) = e.parent() else { continue };
        let Ok(read) = std::fs::read_dir(dir) else { continue };
        let mut found: Vec<PathBuf> =
            read.filter_map(|d| d.ok()).map(|d| d.path()).filter(|p| p.is_file() && covers(e, p)).collect();
        found.sort();
        files.extend(found);
    }
    files
}

/// config.toml with `imports = [glob]` added as one line: after a top-level
/// `version = N` line, else first. `None` when the result does not parse to
/// exactly the old table plus `imports`.
fn with_imports_line(text: &str, old: &Table, glob: &str) -> Option<String> {
    let line = format!("imports = [{}]\n", Value::String(glob.to_string()));
    let mut at = 0;
    let mut offset = 0;
    for l in text.split_inclusive('\n') {
        let t = l.trim_start();
        if t.starts_with('[') {
            break;
        }
        offset += l.len();
        if t.strip_prefix("version").is_some_and(|r| r.trim_start().starts_with('=')) {
            at = offset;
            break;
        }
    }
    let (head, tail) = text.split_at(at);
    let sep = if head.is_empty() || head.ends_with('\n') { "" } else { "\n" };
    let new = format!("{head}{sep}{line}{tail}");
    let mut want = old.clone();
    want.insert("imports".into(), Value::Array(vec![Value::String(glob.to_string())]));
    (new.parse::<Table>().ok()? == want).then_some(new)
}

fn display_list(entries: &[String]) -> String {
    Value::Array(entries.iter().map(|e| Value::String(e.clone())).collect()).to_string()
}

pub fn steps(ctx: &Ctx) -> Result<Vec<Step>, SetupError> {
    let main_path = ctx.host(CONFIG_TOML);
    let main_dir = main_path.parent().unwrap_or(Path::new("/")).to_path_buf();
    let dropin_path = ctx.host(CONF_D).join(DROPIN_NAME);
    let glob = ctx
        .host(CONF_D)
        .join("*.toml")
        .to_str()
        .ok_or_else(|| invalid(&main_path, "config root is not UTF-8"))?
        .to_string();
    let main_text = ctx.read(&main_path)?;
    let main = parse(&main_path, main_text.as_deref().unwrap_or(""))?;
    let version = match (main_text.is_some(), main.get("version")) {
        (false, _) => 2,
        (true, None) => 1,
        (true, Some(Value::Integer(v))) => *v,
        (true, Some(_)) => return Err(invalid(&main_path, "version is not an integer")),
    };
    if version > 3 {
        return Err(SetupError::Refused(format!(
            "{}: config version {version} is newer than mighook knows (2 or 3)",
            main_path.display()
        )));
    }
    if version <= 1 && main.contains_key("plugins") {
        return Err(SetupError::Refused(format!(
            "{}: a version 1 config with plugin sections (short ids like plugins.cri) cannot import a version 2 drop-in: \
             add `version = 2` and use full plugin ids (plugins.\"{CRI_PLUGIN_V2}\"), then run setup again",
            main_path.display()
        )));
    }

    let mut steps = vec![];
    super::link_steps(ctx, &[RUNTIME_LINK], &mut steps)?;

    // imports: the entries containerd will read, once mighook's line is in.
    let entries: Vec<String> = match main.get("imports") {
        None => {
            let new = match &main_text {
                None => format!("{HEADER}version = 2\nimports = [{}]\n", Value::String(glob.clone())),
                Some(text) => with_imports_line(text, &main, &glob).ok_or_else(|| {
                    SetupError::Refused(format!(
                        "{}: could not add an imports line safely: add `imports = [{}]` before the first [table], then run setup again",
                        main_path.display(),
                        Value::String(glob.clone())
                    ))
                })?,
            };
            steps.push(Step::Write { path: main_path.clone(), old: main_text.clone(), new });
            vec![glob.clone()]
        }
        Some(Value::Array(list)) => {
            let entries: Vec<String> = list
                .iter()
                .map(|v| v.as_str().map(str::to_string))
                .collect::<Option<_>>()
                .ok_or_else(|| invalid(&main_path, "imports has a non-string entry"))?;
            if !entries.iter().any(|e| covers(&resolve_entry(e, &main_dir), &dropin_path)) {
                return Err(SetupError::Refused(format!(
                    "{}: imports = {} does not read {}: add {} to that list (mighook does not rewrite an existing imports list), then run setup again",
                    main_path.display(),
                    display_list(&entries),
                    dropin_path.display(),
                    Value::String(glob.clone())
                )));
            }
            steps.push(Step::Unchanged(main_path.clone()));
            entries
        }
        Some(_) => return Err(invalid(&main_path, "imports is not an array")),
    };

    // The CRI section in effect without mighook's drop-in: the last file that sets it.
    let id = plugin_id(version);
    let cri_of = |t: &Table| get_table(t, &["plugins", id]).cloned();
    let mut effective = cri_of(&main).map(|s| (s, main_path.clone()));
    let mut seen_dropin = false;
    let resolved: Vec<PathBuf> = entries.iter().map(|e| resolve_entry(e, &main_dir)).collect();
    for file in import_files(&resolved) {
        if file == dropin_path {
            seen_dropin = true;
            continue;
        }
        let text = ctx.read(&file)?.unwrap_or_default();
        let Some(section) = cri_of(&parse(&file, &text)?) else { continue };
        if seen_dropin {
            steps.push(Step::Note(format!(
                "{} also sets plugins.\"{id}\" and is read after {DROPIN_NAME}: containerd before 2.0 keeps only its section, without the nvidia runtime",
                file.display()
            )));
        } else {
            effective = Some((section, file));
        }
    }

    let enable_cdi = has_cdi(version, ctx.containerd_version);
    if !enable_cdi {
        steps.push(Step::Note(match ctx.containerd_version {
            Some((major, minor)) => format!(
                "containerd {major}.{minor} has no CDI support (1.7 and later): CRI CDIDevices and cdi.k8s.io annotations are not resolved by containerd; the nvidia runtime serves requests itself"
            ),
            None => "containerd --version did not answer: CDI (enable_cdi, containerd 1.7 and later) left as it is".into(),
        }));
    }
    let extras = Extras { set_as_default: ctx.set_as_default, enable_cdi };
    let content = dropin(version, effective.as_ref().map(|(t, p)| (t, p.as_path())), &ctx.shim_path(), extras)
        .map_err(|e| invalid(&main_path, e))?;
    steps.push(ctx.write_step(dropin_path, content)?);
    steps.push(Step::Hint("restart containerd (systemctl restart containerd); CRI picks the shim with runtime handler \"nvidia\" (RuntimeClass handler: nvidia)".into()));
    Ok(steps)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SHIM: &str = "/usr/bin/nvidia-container-runtime";

    fn table(text: &str) -> Table {
        text.parse().unwrap()
    }

    #[test]
    fn wildcards_match_like_go() {
        assert!(wildcard(b"*.toml", b"99-mighook.toml"));
        assert!(wildcard(b"99-*", b"99-mighook.toml"));
        assert!(wildcard(b"9?-mighook.toml", b"99-mighook.toml"));
        assert!(!wildcard(b"*.conf", b"99-mighook.toml"));
        assert!(!wildcard(b"*.toml", b"99-mighook.toml.bak"));
    }

    #[test]
    fn covers_exact_files_and_globs_in_the_same_directory() {
        let f = Path::new("/etc/containerd/conf.d/99-mighook.toml");
        assert!(covers(Path::new("/etc/containerd/conf.d/*.toml"), f));
        assert!(covers(f, f));
        assert!(!covers(Path::new("/etc/containerd/other/*.toml"), f));
        assert_eq!(
            resolve_entry("conf.d/*.toml", Path::new("/etc/containerd")),
            Path::new("/etc/containerd/conf.d/*.toml")
        );
    }

    #[test]
    fn imports_line_goes_after_version_and_keeps_comments() {
        let text =
            "# my containerd\nversion = 2\n\n[plugins]\n  # keep me\n  [plugins.\"io.containerd.grpc.v1.cri\"]\n";
        let new = with_imports_line(text, &table(text), "/etc/containerd/conf.d/*.toml").unwrap();
        assert_eq!(
            new,
            "# my containerd\nversion = 2\nimports = [\"/etc/containerd/conf.d/*.toml\"]\n\n[plugins]\n  # keep me\n  [plugins.\"io.containerd.grpc.v1.cri\"]\n"
        );
    }

    #[test]
    fn imports_line_goes_first_without_a_version_line() {
        let text = "root = \"/var/lib/containerd\"\n[grpc]\naddress = \"/s\"\n";
        let new = with_imports_line(text, &table(text), "/g/*.toml").unwrap();
        assert!(new.starts_with("imports = [\"/g/*.toml\"]\nroot = "), "{new}");
    }

    #[test]
    fn imports_line_is_not_added_where_it_would_change_the_meaning() {
        // `version` inside a multi-line string: inserting after that line would break the string.
        let text = "note = \"\"\"\nversion = 2\n\"\"\"\n";
        assert_eq!(with_imports_line(text, &table(text), "/g/*.toml"), None);
    }

    #[test]
    fn v2_dropin_copies_the_cri_section_and_keeps_runc() {
        let main = table("version = 2\n[plugins.\"io.containerd.grpc.v1.cri\".cni]\nbin_dir = \"/usr/lib/cni\"\n");
        let cri = get_table(&main, &["plugins", CRI_PLUGIN_V2]).unwrap();
        let d = table(
            &dropin(2, Some((cri, Path::new("/etc/containerd/config.toml"))), Path::new(SHIM), Extras::default())
                .unwrap(),
        );
        let s = get_table(&d, &["plugins", CRI_PLUGIN_V2]).unwrap();
        assert_eq!(d["version"].as_integer(), Some(2));
        assert_eq!(s["cni"]["bin_dir"].as_str(), Some("/usr/lib/cni"));
        assert_eq!(s["containerd"]["runtimes"]["runc"]["runtime_type"].as_str(), Some(RUNC_SHIM));
        assert_eq!(s["containerd"]["runtimes"]["nvidia"]["runtime_type"].as_str(), Some(RUNC_SHIM));
        assert_eq!(s["containerd"]["runtimes"]["nvidia"]["options"]["BinaryName"].as_str(), Some(SHIM));
    }

    #[test]
    fn nvidia_inherits_runc_options_but_not_another_shims() {
        let cri = table(
            "[containerd.runtimes.runc]\nruntime_type = \"io.containerd.runc.v2\"\n[containerd.runtimes.runc.options]\nSystemdCgroup = true\n",
        );
        let rt = nvidia_runtime(Some(&cri), Path::new(SHIM)).unwrap();
        assert_eq!(rt["options"]["SystemdCgroup"].as_bool(), Some(true));
        assert_eq!(rt["container_annotations"].as_array().unwrap(), &[Value::from(CDI_ANNOTATIONS)]);
        assert_eq!(rt["options"]["BinaryName"].as_str(), Some(SHIM));
        let kata = table(
            "[containerd]\ndefault_runtime_name = \"kata\"\n[containerd.runtimes.kata]\nruntime_type = \"io.containerd.kata.v2\"\n[containerd.runtimes.kata.options]\nConfigPath = \"/k\"\n",
        );
        let rt = nvidia_runtime(Some(&kata), Path::new(SHIM)).unwrap();
        assert_eq!(rt["options"].as_table().unwrap().keys().collect::<Vec<_>>(), ["BinaryName"]);
    }

    #[test]
    fn nvidia_passes_cdi_annotations_and_keeps_the_admins() {
        let cri = table("[containerd.runtimes.runc]\ncontainer_annotations = [\"example.com/*\"]\n");
        let rt = nvidia_runtime(Some(&cri), Path::new(SHIM)).unwrap();
        let want = [Value::from("example.com/*"), Value::from(CDI_ANNOTATIONS)];
        assert_eq!(rt["container_annotations"].as_array().unwrap(), &want);
        let again = table(&format!("[containerd.runtimes.runc]\ncontainer_annotations = [\"{CDI_ANNOTATIONS}\"]\n"));
        let rt = nvidia_runtime(Some(&again), Path::new(SHIM)).unwrap();
        assert_eq!(rt["container_annotations"].as_array().unwrap().len(), 1);
    }

    #[test]
    fn v3_dropin_holds_only_the_runtime() {
        let d = table(&dropin(3, None, Path::new(SHIM), Extras::default()).unwrap());
        assert_eq!(d["version"].as_integer(), Some(3));
        let s = get_table(&d, &["plugins", CRI_PLUGIN_V3]).unwrap();
        assert_eq!(s["containerd"]["runtimes"].as_table().unwrap().keys().collect::<Vec<_>>(), ["nvidia"]);
    }

    #[test]
    fn extras_set_the_default_and_cdi_in_the_cri_plugin_of_each_version() {
        let both = Extras { set_as_default: true, enable_cdi: true };
        for (version, id) in [(2, CRI_PLUGIN_V2), (3, CRI_PLUGIN_V3)] {
            let d = table(&dropin(version, None, Path::new(SHIM), both).unwrap());
            let s = get_table(&d, &["plugins", id]).unwrap();
            assert_eq!(s["containerd"]["default_runtime_name"].as_str(), Some("nvidia"), "version {version}");
            assert_eq!(s["enable_cdi"].as_bool(), Some(true), "version {version}");
        }
    }

    #[test]
    fn cdi_from_containerd_1_7_or_any_version_3_config() {
        assert!(!has_cdi(2, Some((1, 6))));
        assert!(has_cdi(2, Some((1, 7))));
        assert!(has_cdi(2, Some((2, 0))));
        assert!(!has_cdi(2, None));
        assert!(has_cdi(3, None));
    }
}

//! `fake-node <topology.json> <out-dir> [--lib <libfake_nvml.so>] [--mknod]
//! [--driver-root DIR --layout debian|rhel [--driver-version V]] [--device-files UID:GID:MODE]`
//! writes a
//! simulated NVIDIA node directory (see `fake_nvml::node`) and, with
//! `--driver-root`, a fake driver installation under DIR (see
//! `fake_nvml::driver`) whose libraries carry the topology.

use std::path::PathBuf;
use std::process::ExitCode;

const USAGE: &str = "usage: fake-node <topology.json> <out-dir> [--lib <path to libfake_nvml.so>] [--mknod] \
                     [--driver-root DIR --layout debian|rhel [--driver-version V]] \
                     [--device-files UID:GID:OCTAL-MODE (the driver's NVreg_DeviceFile*; default 0:0:0666)]";

fn main() -> ExitCode {
    match run(std::env::args_os().skip(1).collect()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(msg) => {
            eprintln!("{msg}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: Vec<std::ffi::OsString>) -> Result<(), String> {
    let mut positional = Vec::new();
    let mut lib = None;
    let mut mknod = false;
    let mut driver_root = None;
    let mut layout = None;
    let mut driver_version = None;
    let mut device_files = None;
    let mut args = args.into_iter();
    while let Some(arg) = args.next() {
        let mut value = || args.next().ok_or_else(|| format!("fake-node: {} needs a value\n{USAGE}", arg.display()));
        match arg.to_str() {
            Some("--mknod") => mknod = true,
            Some("--lib") => lib = Some(PathBuf::from(value()?)),
            Some("--driver-root") => driver_root = Some(PathBuf::from(value()?)),
            Some("--layout") => {
                let v = value()?;
                let v = v.to_str().ok_or("fake-node: --layout is debian or rhel")?;
                layout = Some(fake_nvml::driver::Layout::parse(v).map_err(|e| e.to_string())?);
            }
            Some("--driver-version") => {
                driver_version = Some(value()?.into_string().map_err(|_| "fake-node: --driver-version is not UTF-8")?)
            }
            Some("--device-files") => {
                let v = value()?;
                device_files = Some(parse_device_files(v.to_str().unwrap_or_default())?);
            }
            Some("-h" | "--help") => return Err(USAGE.into()),
            Some(s) if s.starts_with("--") => {
                return Err(format!("fake-node: unknown option {s}\n{USAGE}"));
            }
            _ => positional.push(PathBuf::from(arg)),
        }
    }
    let [topology, out] = <[PathBuf; 2]>::try_from(positional).map_err(|_| USAGE.to_string())?;
    if driver_root.is_none() && (layout.is_some() || driver_version.is_some()) {
        return Err(format!("fake-node: --layout and --driver-version go with --driver-root\n{USAGE}"));
    }
    // Default: the cdylib cargo put next to this executable.
    let lib = match lib {
        Some(lib) => lib,
        None => fake_nvml::locate::cdylib()?,
    };
    let node = fake_nvml::node::build(&topology, &out, Some(&lib), mknod).map_err(|e| e.to_string())?;
    if let Some(files) = device_files {
        fake_nvml::node::set_device_files(&node, files).map_err(|e| e.to_string())?;
    }
    if let Some(root) = driver_root {
        let layout = layout.ok_or_else(|| format!("fake-node: --driver-root needs --layout\n{USAGE}"))?;
        // Embed the file as written (build validated it), not a re-serialisation.
        let json = std::fs::read_to_string(&topology).map_err(|e| format!("{}: {e}", topology.display()))?;
        fake_nvml::driver::write(&node.topology, &json, &lib, &root, layout, driver_version.as_deref())
            .map_err(|e| e.to_string())?;
    }
    println!("{}", node.root.display());
    Ok(())
}

/// `UID:GID:MODE`, the mode in octal as an admin writes `NVreg_DeviceFileMode=0660`.
fn parse_device_files(v: &str) -> Result<fake_nvml::node::DeviceFiles, String> {
    let bad = || format!("fake-node: --device-files is UID:GID:OCTAL-MODE, not {v:?}\n{USAGE}");
    let [uid, gid, mode] = <[&str; 3]>::try_from(v.split(':').collect::<Vec<_>>()).map_err(|_| bad())?;
    Ok(fake_nvml::node::DeviceFiles {
        uid: uid.parse().map_err(|_| bad())?,
        gid: gid.parse().map_err(|_| bad())?,
        mode: u32::from_str_radix(mode, 8).map_err(|_| bad())?,
    })
}

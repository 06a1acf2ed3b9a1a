//! `fake-node <topology.json> <out-dir> [--lib <libfake_nvml.so>] [--mknod]`
//! writes a simulated NVIDIA node directory (see `fake_nvml::node`).

use std::path::PathBuf;
use std::process::ExitCode;

const USAGE: &str = "usage: fake-node <topology.json> <out-dir> [--lib <path to libfake_nvml.so>] [--mknod]";

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
    let mut args = args.into_iter();
    while let Some(arg) = args.next() {
        match arg.to_str() {
            Some("--mknod") => mknod = true,
            Some("--lib") => lib = Some(PathBuf::from(args.next().ok_or(USAGE)?)),
            Some("-h" | "--help") => return Err(USAGE.into()),
            Some(s) if s.starts_with("--") => {
                return Err(format!("fake-node: unknown option {s}\n{USAGE}"));
            }
            _ => positional.push(PathBuf::from(arg)),
        }
    }
    let [topology, out] = <[PathBuf; 2]>::try_from(positional).map_err(|_| USAGE.to_string())?;
    // Default: the cdylib cargo put next to this executable.
    let lib = match lib {
        Some(lib) => lib,
        None => fake_nvml::locate::cdylib()?,
    };
    let node = fake_nvml::node::build(&topology, &out, Some(&lib), mknod).map_err(|e| e.to_string())?;
    println!("{}", node.root.display());
    Ok(())
}

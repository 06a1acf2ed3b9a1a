//! mighook's entry point: picks the personality from argv[0], runs it, and turns
//! any error into one `mighook: ` line on stderr with exit status 1.

use clap::Parser;
use mighook::cli::{self, args::Cli};
use std::ffi::OsString;
use std::path::Path;
use std::process::ExitCode;

/// docker `--gpus` looks this name up on PATH and calls it with `prestart`.
const HOOK_NAME: &str = "nvidia-container-runtime-hook";
/// docker `--runtime=nvidia` and containerd/CRI-O runtime entries call the shim by this name.
const RUNTIME_NAME: &str = "nvidia-container-runtime";

/// Rewrites `nvidia-container-runtime-hook [-flags] prestart` into `mighook prestart`.
/// NVIDIA's single-dash flags (`-debug`, `-config=...`) mean nothing here and are dropped.
fn hook_argv(args: Vec<OsString>) -> Vec<OsString> {
    let stage = args.iter().skip(1).find(|a| matches!(a.to_str(), Some("prestart" | "poststart" | "poststop")));
    let mut argv = vec![OsString::from("mighook")];
    argv.extend(stage.cloned().or_else(|| args.get(1).cloned()));
    argv
}

/// Specs that nvidia-ctk generated run this name with a hook subcommand.
const CDI_HOOK_NAME: &str = "nvidia-cdi-hook";
/// Older specs (and the device plugin's default) run `nvidia-ctk hook <subcommand>`.
const CTK_NAME: &str = "nvidia-ctk";

/// `nvidia-cdi-hook ARGS` and `nvidia-ctk hook ARGS` become `mighook nvidia-cdi-hook ARGS`;
/// any other `nvidia-ctk` command is left for clap to refuse.
fn cdi_hook_argv(args: Vec<OsString>, skip: usize) -> Vec<OsString> {
    [OsString::from("mighook"), OsString::from(CDI_HOOK_NAME)].into_iter().chain(args.into_iter().skip(skip)).collect()
}

fn main() -> ExitCode {
    let args: Vec<OsString> = std::env::args_os().collect();
    let name = args.first().and_then(|a| Path::new(a).file_name()).and_then(|n| n.to_str()).unwrap_or("mighook");
    let argv = match name {
        HOOK_NAME => hook_argv(args),
        RUNTIME_NAME => std::iter::once(OsString::from("mighook"))
            .chain(std::iter::once(OsString::from("runtime")))
            .chain(args.into_iter().skip(1))
            .collect(),
        CDI_HOOK_NAME => cdi_hook_argv(args, 1),
        CTK_NAME if args.get(1).is_some_and(|a| a == "hook") => cdi_hook_argv(args, 2),
        CTK_NAME => {
            eprintln!("mighook: as nvidia-ctk, mighook answers only `nvidia-ctk hook <subcommand>`");
            return ExitCode::from(2);
        }
        _ => args,
    };
    let cli = match Cli::try_parse_from(argv) {
        Ok(cli) => cli,
        Err(e) if !e.use_stderr() => {
            let _ = e.print();
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            let msg = e.kind().as_str().map(str::to_string).unwrap_or_else(|| e.to_string());
            let first = e.to_string().lines().next().unwrap_or(&msg).trim_start_matches("error: ").to_string();
            eprintln!("mighook: {first}");
            return ExitCode::from(2);
        }
    };
    match cli::run(cli) {
        Ok(out) => {
            print!("{out}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            let msg = e.to_string();
            mighook::log::log(mighook::log::Level::Error, &msg);
            // One line whatever the error carries: runtimes show (and engines parse) the last line.
            eprintln!("mighook: {}", mighook::log::one_line(&msg));
            ExitCode::FAILURE
        }
    }
}

use super::*;
use crate::ldcache::{Entry, serialize};
use std::fs;
use std::os::unix::fs::symlink;
use std::os::unix::net::UnixListener;

const V: &str = "550.54.15";
const OLD: &str = "535.104.05";

/// A driver root laid out like a Debian or a RHEL host.
struct Host {
    root: tempfile::TempDir,
    /// Somewhere outside the root that holds perfectly acceptable-looking libraries.
    outside: tempfile::TempDir,
    /// The real library dir (`/usr/lib/x86_64-linux-gnu` or `/usr/lib64`).
    libdir: &'static str,
    _socket: UnixListener,
}

#[derive(Clone, Copy)]
enum Layout {
    Debian,
    Rhel,
}

impl Host {
    fn path(&self, rel: &str) -> PathBuf {
        self.root.path().join(rel.trim_start_matches('/'))
    }

    fn file(&self, rel: &str, mode: u32) {
        let path = self.path(rel);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(&path, rel).unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(mode)).unwrap();
    }

    fn link(&self, target: &str, rel: &str) {
        let path = self.path(rel);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        symlink(target, path).unwrap();
    }

    fn discover(&self, caps: &str) -> DriverFiles {
        discover(self.root.path(), V, &DriverCapabilities::parse(caps).unwrap()).unwrap()
    }
}

fn host(layout: Layout) -> Host {
    let root = tempfile::tempdir().unwrap();
    let outside = tempfile::tempdir().unwrap();
    let (libdir, alias, alias_target, cache_dir) = match layout {
        Layout::Debian => ("/usr/lib/x86_64-linux-gnu", "/lib", "usr/lib", "/lib/x86_64-linux-gnu"),
        Layout::Rhel => ("/usr/lib64", "/lib64", "usr/lib64", "/lib64"),
    };
    let socket_dir = root.path().join("run/nvidia-persistenced");
    fs::create_dir_all(&socket_dir).unwrap();
    let socket = UnixListener::bind(socket_dir.join("socket")).unwrap();
    let h = Host { root, outside, libdir, _socket: socket };
    fs::create_dir_all(h.path(libdir)).unwrap();
    h.link(alias_target, alias);
    h.link("/run", "/var/run");
    if let Layout::Rhel = layout {
        fs::create_dir_all(h.path("/usr/lib")).unwrap();
        h.link("usr/lib", "/lib");
    }
    h.link("usr/bin", "/bin");

    let mut cache = Vec::new();
    // (SONAME, real file, in vdpau/): each gets its SONAME link and a cache entry.
    let libs = [
        ("libcuda.so.1", format!("libcuda.so.{V}"), false),
        ("libnvidia-ml.so.1", format!("libnvidia-ml.so.{V}"), false),
        ("libnvidia-ptxjitcompiler.so.1", format!("libnvidia-ptxjitcompiler.so.{OLD}"), false),
        ("libnvidia-opticalflow.so.1", format!("libnvidia-opticalflow.so.{V}"), false),
        ("libGLX_nvidia.so.0", format!("libGLX_nvidia.so.{V}"), false),
        ("libvdpau_nvidia.so.1", format!("libvdpau_nvidia.so.{V}"), true),
        ("libunrelated.so.1", "libunrelated.so.1.2.3".to_owned(), false),
    ];
    for (soname, file, vdpau) in &libs {
        let dir = if *vdpau { format!("{libdir}/vdpau") } else { libdir.to_owned() };
        h.file(&format!("{dir}/{file}"), 0o755);
        h.link(file, &format!("{dir}/{soname}"));
        let cached = if *vdpau { format!("{cache_dir}/vdpau/{soname}") } else { format!("{cache_dir}/{soname}") };
        cache.push(Entry::x86_64(*soname, cached));
    }
    // SONAME = file name: no link.
    for file in [format!("libnvidia-gpucomp.so.{V}"), format!("libnvidia-pkcs11-openssl3.so.{V}")] {
        h.file(&format!("{libdir}/{file}"), 0o755);
        cache.push(Entry::x86_64(file.as_bytes(), format!("{cache_dir}/{file}")));
    }
    // The host has the libnvidia-ml.so dev link (drivers before 560).
    h.link("libnvidia-ml.so.1", &format!("{libdir}/libnvidia-ml.so"));
    // An i386 entry is never taken for x86-64.
    cache.push(Entry { flags: 0x0003, ..Entry::x86_64("libnvidia-fbc.so.1", format!("{cache_dir}/libcuda.so.1")) });

    // Links out of the root, to files that would pass every check if followed on the host.
    let nvvm = h.outside.path().join(format!("libnvidia-nvvm.so.{V}"));
    let encode = h.outside.path().join(format!("libnvidia-encode.so.{V}"));
    fs::write(&nvvm, "outside").unwrap();
    fs::write(&encode, "outside").unwrap();
    h.link(nvvm.to_str().unwrap(), &format!("{libdir}/libnvidia-nvvm.so.4"));
    let climb = "../".repeat(20) + encode.strip_prefix("/").unwrap().to_str().unwrap();
    h.link(&climb, &format!("{libdir}/libnvidia-encode.so.1"));
    h.link("/etc/passwd", &format!("{libdir}/libnvidia-allocator.so.1"));
    h.file("/etc/passwd", 0o644); // the root's own, not the host's
    for soname in ["libnvidia-nvvm.so.4", "libnvidia-encode.so.1", "libnvidia-allocator.so.1"] {
        cache.push(Entry::x86_64(soname, format!("{cache_dir}/{soname}")));
    }
    fs::write(h.path("/etc/ld.so.cache"), serialize(&LdCache { entries: cache, ..LdCache::default() })).unwrap();

    h.file("/usr/bin/nvidia-smi", 0o755);
    h.file("/usr/bin/nvidia-debugdump", 0o644); // not executable: skipped
    h.file("/usr/local/bin/nvidia-persistenced", 0o755);
    h.file("/usr/bin/nvidia-cuda-mps-control", 0o755);
    h.file("/opt/nvidia/mps-server", 0o755);
    h.link("/opt/nvidia/mps-server", "/usr/local/sbin/nvidia-cuda-mps-server");
    for fw in ["gsp_ga10x.bin", "gsp_tu10x.bin", "README"] {
        h.file(&format!("/lib/firmware/nvidia/{V}/{fw}"), 0o644);
    }
    h.file(&format!("/lib/firmware/nvidia/{OLD}/gsp_ga10x.bin"), 0o644);
    fs::create_dir_all(h.path("/tmp/nvidia-mps")).unwrap();
    h.file("/etc/vulkan/icd.d/nvidia_icd.json", 0o644);
    h.file("/usr/share/vulkan/icd.d/nvidia_icd.json", 0o644); // shadowed by /etc
    h.file("/usr/share/glvnd/egl_vendor.d/10_nvidia.json", 0o644);
    h.file("/usr/share/OpenCL/vendors/nvidia.icd", 0o644);
    h
}

fn libs(f: &DriverFiles) -> Vec<String> {
    f.libraries.iter().map(|l| format!("{} {}", l.soname, l.path.display())).collect()
}

fn files(f: &DriverFiles) -> Vec<String> {
    f.files.iter().map(|x| x.container_path.display().to_string()).collect()
}

// ---- per capability ----------------------------------------------------------------

#[test]
fn utility_alone_gives_nvml_smi_sockets_and_firmware() {
    for layout in [Layout::Debian, Layout::Rhel] {
        let h = host(layout);
        let f = h.discover("utility");
        let d = h.libdir;
        assert_eq!(libs(&f), [format!("libnvidia-ml.so.1 {d}/libnvidia-ml.so.{V}")]);
        assert_eq!(
            files(&f),
            [
                "/usr/bin/nvidia-smi".to_owned(),
                "/usr/bin/nvidia-persistenced".to_owned(),
                format!("/lib/firmware/nvidia/{V}/gsp_ga10x.bin"),
                format!("/lib/firmware/nvidia/{V}/gsp_tu10x.bin"),
                "/run/nvidia-persistenced/socket".to_owned(),
            ]
        );
        assert_eq!(f.missing, ["libnvidia-cfg.so", "libnvidia-nscq.so", "nvidia-debugdump", "nv-fabricmanager"]);
        assert_eq!(f.files[1].host_path, h.path("/usr/local/bin/nvidia-persistenced"));
        assert!(f.libraries[0].dev_link);
    }
}

#[test]
fn compute_alone_gives_cuda_without_smi() {
    for layout in [Layout::Debian, Layout::Rhel] {
        let h = host(layout);
        let f = h.discover("compute");
        let d = h.libdir;
        assert_eq!(
            libs(&f),
            [
                format!("libcuda.so.1 {d}/libcuda.so.{V}"),
                format!("libnvidia-gpucomp.so.{V} {d}/libnvidia-gpucomp.so.{V}"),
                format!("libnvidia-pkcs11-openssl3.so.{V} {d}/libnvidia-pkcs11-openssl3.so.{V}"),
            ]
        );
        assert_eq!(
            files(&f),
            [
                "/usr/bin/nvidia-cuda-mps-control".to_owned(),
                "/usr/bin/nvidia-cuda-mps-server".to_owned(),
                format!("/lib/firmware/nvidia/{V}/gsp_ga10x.bin"),
                format!("/lib/firmware/nvidia/{V}/gsp_tu10x.bin"),
                "/tmp/nvidia-mps".to_owned(),
                "/etc/OpenCL/vendors/nvidia.icd".to_owned(),
            ]
        );
        assert_eq!(f.files[1].host_path, h.path("/opt/nvidia/mps-server"), "absolute link re-rooted");
        assert_eq!(f.files[5].host_path, h.path("/usr/share/OpenCL/vendors/nvidia.icd"));
        let missing = [
            "libcudadebugger.so",
            "libnvidia-opencl.so",
            "libnvidia-ptxjitcompiler.so", // only the other driver version is there
            "libnvidia-fatbinaryloader.so",
            "libnvidia-allocator.so", // its link names the root's own /etc/passwd
            "libnvidia-compiler.so",
            "libnvidia-pkcs11.so", // the -openssl3 variant does not count
            "libnvidia-nvvm.so",   // its link leaves the root
            "libnvidia-tileiras.so",
        ];
        assert_eq!(f.missing, missing);
    }
}

#[test]
fn video_brings_compute_libs_and_mps_dir_but_not_mps_binaries() {
    let h = host(Layout::Debian);
    let f = h.discover("video");
    let d = h.libdir;
    assert_eq!(
        libs(&f),
        [
            format!("libcuda.so.1 {d}/libcuda.so.{V}"),
            format!("libnvidia-gpucomp.so.{V} {d}/libnvidia-gpucomp.so.{V}"),
            format!("libnvidia-pkcs11-openssl3.so.{V} {d}/libnvidia-pkcs11-openssl3.so.{V}"),
            format!("libvdpau_nvidia.so.1 {d}/vdpau/libvdpau_nvidia.so.{V}"),
            format!("libnvidia-opticalflow.so.1 {d}/libnvidia-opticalflow.so.{V}"),
        ]
    );
    assert_eq!(files(&f), ["/tmp/nvidia-mps", "/etc/OpenCL/vendors/nvidia.icd"]);
    assert!(f.missing.contains(&"libnvidia-encode.so".to_owned()), "its link climbs out of the root");
}

#[test]
fn graphics_gives_glx_and_config_files() {
    let h = host(Layout::Rhel);
    let f = h.discover("graphics");
    assert_eq!(libs(&f), [format!("libGLX_nvidia.so.0 /usr/lib64/libGLX_nvidia.so.{V}")]);
    assert_eq!(
        files(&f),
        [
            "/etc/vulkan/icd.d/nvidia_icd.json",
            "/usr/share/glvnd/egl_vendor.d/10_nvidia.json",
            "/etc/OpenCL/vendors/nvidia.icd"
        ]
    );
    assert_eq!(f.files[0].host_path, h.path("/etc/vulkan/icd.d/nvidia_icd.json"), "/etc first");
    assert_eq!(h.discover("display"), f);
}

#[test]
fn all_brings_everything_present_and_nothing_else() {
    for layout in [Layout::Debian, Layout::Rhel] {
        let h = host(layout);
        let f = h.discover("all");
        assert_eq!(f.libraries.len(), 7, "{:#?}", libs(&f));
        assert_eq!(f.files.len(), 11, "{:#?}", files(&f));
        let shown = format!("{f:?}");
        assert!(!shown.contains("unrelated"), "an unlisted library beside the driver's is never taken");
        assert!(!shown.contains(OLD), "another driver version is never taken");
        assert!(!shown.contains("passwd") && !shown.contains(h.outside.path().to_str().unwrap()));
        for lib in &f.libraries {
            assert!(lib.path.to_str().unwrap().ends_with(&format!(".so.{V}")), "{}", lib.path.display());
        }
    }
}

#[test]
fn nothing_asked_reads_nothing() {
    let h = host(Layout::Debian);
    fs::write(h.path("/etc/ld.so.cache"), "garbage").unwrap();
    let f = discover(h.root.path(), V, &DriverCapabilities::parse("compat32").unwrap()).unwrap();
    assert!(f.libraries.is_empty() && f.files.is_empty() && f.missing.is_empty());
}

// ---- errors ------------------------------------------------------------------------------

#[test]
fn bad_roots_versions_and_caches_are_errors_that_name_them() {
    let h = host(Layout::Debian);
    let caps = DriverCapabilities::default();
    let err = |root: &Path, version: &str| discover(root, version, &caps).unwrap_err().to_string();
    let nowhere = h.path("nowhere");
    assert_eq!(err(&nowhere, V), format!("driver root {}: No such file or directory (os error 2)", nowhere.display()));
    let passwd = h.path("etc/passwd");
    assert_eq!(err(&passwd, V), format!("driver root {}: not a directory", passwd.display()));
    assert_eq!(err(h.root.path(), "../550"), "driver version '../550' is not of the form 550.54.15");
    assert_eq!(err(h.root.path(), ""), "driver version '' is not of the form 550.54.15");
    fs::write(h.path("/etc/ld.so.cache"), "garbage").unwrap();
    let cache = h.path("etc/ld.so.cache");
    assert_eq!(err(h.root.path(), V), format!("{}: not an ld.so.cache: no known magic at offset 0", cache.display()));
}

#[test]
fn base_names_match_whole_names_only() {
    assert_eq!(base_of(b"libnvidia-pkcs11.so.550"), Some(&b"libnvidia-pkcs11.so"[..]));
    assert_eq!(base_of(b"libnvidia-pkcs11-openssl3.so.550"), Some(&b"libnvidia-pkcs11-openssl3.so"[..]));
    assert_eq!(base_of(b"libcuda.so"), Some(&b"libcuda.so"[..]));
    assert_eq!(base_of(b"libfoo.something.so.1"), Some(&b"libfoo.something.so"[..]));
    assert_eq!(base_of(b"libcuda.sox"), None);
    assert_eq!(base_of(b""), None);
}

// ---- placement -------------------------------------------------------------------------------

fn links(e: &DriverEdits) -> Vec<String> {
    e.symlinks.iter().map(|s| format!("{} -> {}", s.link.display(), s.target)).collect()
}

#[test]
fn placed_into_the_debian_dir() {
    let h = host(Layout::Rhel); // a RHEL host, a Debian image: the image decides
    let e = place(&h.discover("all"), LibraryDir::for_image(true));
    let d = "/usr/lib/x86_64-linux-gnu";
    assert_eq!(
        links(&e),
        [
            format!("{d}/libGLX_indirect.so.0 -> libGLX_nvidia.so.{V}"),
            format!("{d}/libGLX_nvidia.so.0 -> libGLX_nvidia.so.{V}"),
            format!("{d}/libcuda.so -> libcuda.so.1"),
            format!("{d}/libcuda.so.1 -> libcuda.so.{V}"),
            format!("{d}/libnvidia-ml.so -> libnvidia-ml.so.1"),
            format!("{d}/libnvidia-ml.so.1 -> libnvidia-ml.so.{V}"),
            format!("{d}/libnvidia-opticalflow.so -> libnvidia-opticalflow.so.1"),
            format!("{d}/libnvidia-opticalflow.so.1 -> libnvidia-opticalflow.so.{V}"),
            format!("{d}/vdpau/libvdpau_nvidia.so.1 -> libvdpau_nvidia.so.{V}"),
        ]
    );
    let cache: Vec<String> = e
        .ld_cache
        .iter()
        .map(|c| format!("{} {}", String::from_utf8_lossy(&c.key), String::from_utf8_lossy(&c.value)))
        .collect();
    assert_eq!(
        cache,
        [
            format!("libGLX_indirect.so.0 {d}/libGLX_indirect.so.0"),
            format!("libGLX_nvidia.so.0 {d}/libGLX_nvidia.so.0"),
            format!("libcuda.so {d}/libcuda.so"),
            format!("libcuda.so.1 {d}/libcuda.so.1"),
            format!("libnvidia-gpucomp.so.{V} {d}/libnvidia-gpucomp.so.{V}"),
            format!("libnvidia-ml.so {d}/libnvidia-ml.so"),
            format!("libnvidia-ml.so.1 {d}/libnvidia-ml.so.1"),
            format!("libnvidia-opticalflow.so {d}/libnvidia-opticalflow.so"),
            format!("libnvidia-opticalflow.so.1 {d}/libnvidia-opticalflow.so.1"),
            format!("libnvidia-pkcs11-openssl3.so.{V} {d}/libnvidia-pkcs11-openssl3.so.{V}"),
            format!("libvdpau_nvidia.so.1 {d}/vdpau/libvdpau_nvidia.so.1"),
        ]
    );
    let cuda = e.mounts.iter().find(|m| m.container_path == Path::new(d).join(format!("libcuda.so.{V}"))).unwrap();
    assert_eq!(cuda.host_path, h.path(&format!("/usr/lib64/libcuda.so.{V}")));
    assert_eq!(cuda.options(), ["ro", "nosuid", "nodev", "bind"]);
    assert_eq!(e.mounts.len(), 7 + 11);
    assert!(e.mounts.windows(2).all(|w| w[0].container_path < w[1].container_path), "sorted, no duplicates");
}

#[test]
fn placed_into_usr_lib64_for_other_images() {
    let h = host(Layout::Debian);
    let e = place(&h.discover("utility"), LibraryDir::for_image(false));
    let shown: Vec<String> =
        e.mounts.iter().map(|m| format!("{} {}", m.container_path.display(), m.options().join(","))).collect();
    assert_eq!(
        shown,
        [
            format!("/lib/firmware/nvidia/{V}/gsp_ga10x.bin ro,nosuid,nodev,bind"),
            format!("/lib/firmware/nvidia/{V}/gsp_tu10x.bin ro,nosuid,nodev,bind"),
            "/run/nvidia-persistenced/socket nosuid,nodev,noexec,bind".to_owned(),
            "/usr/bin/nvidia-persistenced ro,nosuid,nodev,bind".to_owned(),
            "/usr/bin/nvidia-smi ro,nosuid,nodev,bind".to_owned(),
            format!("/usr/lib64/libnvidia-ml.so.{V} ro,nosuid,nodev,bind"),
        ]
    );
    assert_eq!(
        e.mounts[0].host_path,
        h.path(&format!("/usr/lib/firmware/nvidia/{V}/gsp_ga10x.bin")),
        "found through /lib -> usr/lib"
    );
    assert_eq!(
        links(&e),
        [
            "/usr/lib64/libnvidia-ml.so -> libnvidia-ml.so.1",
            &format!("/usr/lib64/libnvidia-ml.so.1 -> libnvidia-ml.so.{V}")
        ]
    );
}

#[test]
fn host_relative_keeps_the_hosts_dirs_and_json_is_camel_case() {
    let h = host(Layout::Debian);
    let e = place(&h.discover("compute"), LibraryDir::HostRelative);
    let d = "/usr/lib/x86_64-linux-gnu";
    assert!(e.mounts.iter().any(|m| m.container_path == Path::new(d).join(format!("libcuda.so.{V}"))));
    let mps = e.mounts.iter().find(|m| m.container_path == Path::new("/tmp/nvidia-mps")).unwrap();
    assert_eq!(mps.options(), ["nosuid", "nodev", "noexec", "rbind"]);
    let json = serde_json::to_value(&e).unwrap();
    assert_eq!(json["mounts"][0]["containerPath"], "/etc/OpenCL/vendors/nvidia.icd");
    assert_eq!(json["mounts"][0]["options"], serde_json::json!(["ro", "nosuid", "nodev", "bind"]));
    assert!(json["mounts"][0]["hostPath"].as_str().unwrap().ends_with("/usr/share/OpenCL/vendors/nvidia.icd"));
    assert_eq!(json["symlinks"][0]["target"], "libcuda.so.1");
    assert_eq!(json["ldCache"][0]["key"], "libcuda.so");
    assert_eq!(json["ldCache"][1]["key"], "libcuda.so.1");
    assert_eq!(place(&h.discover("compute"), LibraryDir::HostRelative), e, "deterministic");
}

// ---- confinement ---------------------------------------------------------------------------------

#[test]
fn links_out_of_the_root_resolve_inside_it() {
    let h = host(Layout::Debian);
    let libdir = h.libdir;
    let (real, _) = resolve::in_root(h.root.path(), &Path::new(libdir).join("libnvidia-allocator.so.1")).unwrap();
    assert_eq!(real, Path::new("/etc/passwd"), "the root's own file");
    h.link("../../../../../../../../../../etc/shadow", &format!("{libdir}/libnvidia-cfg.so.1"));
    let err = resolve::in_root(h.root.path(), &Path::new(libdir).join("libnvidia-cfg.so.1")).unwrap_err();
    assert!(resolve::is_absent(&err), "the host's /etc/shadow is never reached: {err}");
    h.link("loop", &format!("{libdir}/loop"));
    let err = resolve::in_root(h.root.path(), &Path::new(libdir).join("loop")).unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::ELOOP));
    let err = resolve::in_root(h.root.path(), Path::new("/etc/passwd/x")).unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::ENOTDIR));
}

#[test]
fn the_remembering_resolver_answers_as_the_plain_walk() {
    let h = host(Layout::Debian);
    let mut r = resolve::Resolver::new(h.root.path());
    let d = h.libdir;
    let paths = [
        "/lib/x86_64-linux-gnu/libcuda.so.1".to_owned(),
        format!("{d}/libcuda.so.1"),
        format!("{d}/libnvidia-nvvm.so.4"),
        format!("{d}/libnvidia-encode.so.1"),
        format!("{d}/vdpau/libvdpau_nvidia.so.1"),
        format!("{d}/nothing"),
        "/nowhere/libcuda.so.1".to_owned(),
        "/etc/passwd/libcuda.so.1".to_owned(),
        "/var/run/nvidia-persistenced/socket".to_owned(),
        "/usr/local/sbin/nvidia-cuda-mps-server".to_owned(),
        "/lib/../lib/x86_64-linux-gnu/./libcuda.so.1".to_owned(),
        "/..".to_owned(),
        "/".to_owned(),
    ];
    for _ in 0..2 {
        for p in &paths {
            let plain =
                resolve::in_root(h.root.path(), Path::new(p)).map(|(real, _)| real).map_err(|e| resolve::is_absent(&e));
            let remembered = r.resolve(Path::new(p)).map(|(real, _)| real).map_err(|e| resolve::is_absent(&e));
            assert_eq!(remembered, plain, "{p}");
        }
    }
}

#[test]
fn injected_entries_win_over_the_images_in_glibcs_own_listing() {
    let h = host(Layout::Debian);
    let e = place(&h.discover("compute,utility"), LibraryDir::for_image(true));
    // The image ships a CUDA compat libcuda.so.1 of its own.
    let image = LdCache {
        entries: vec![
            Entry::x86_64("libcuda.so.1", "/usr/local/cuda/compat/libcuda.so.1"),
            Entry::x86_64("libz.so.1", "/usr/lib/x86_64-linux-gnu/libz.so.1"),
        ],
        ..LdCache::default()
    };
    let cache = tempfile::NamedTempFile::new().unwrap();
    fs::write(cache.path(), serialize(&crate::ldcache::merge(e.ld_cache.clone(), image))).unwrap();
    if !Path::new("/sbin/ldconfig").exists() {
        eprintln!("SKIPPED: /sbin/ldconfig is missing");
        return;
    }
    let out = std::process::Command::new("/sbin/ldconfig")
        .arg("-p")
        .arg("-C")
        .arg(cache.path())
        .env_clear()
        .output()
        .unwrap();
    let out = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<&str> = out.lines().skip(1).collect();
    let d = "/usr/lib/x86_64-linux-gnu";
    assert_eq!(
        lines,
        [
            "\tlibz.so.1 (libc6,x86-64) => /usr/lib/x86_64-linux-gnu/libz.so.1".to_owned(),
            format!("\tlibnvidia-pkcs11-openssl3.so.{V} (libc6,x86-64) => {d}/libnvidia-pkcs11-openssl3.so.{V}"),
            format!("\tlibnvidia-ml.so.1 (libc6,x86-64) => {d}/libnvidia-ml.so.1"),
            format!("\tlibnvidia-ml.so (libc6,x86-64) => {d}/libnvidia-ml.so"),
            format!("\tlibnvidia-gpucomp.so.{V} (libc6,x86-64) => {d}/libnvidia-gpucomp.so.{V}"),
            format!("\tlibcuda.so.1 (libc6,x86-64) => {d}/libcuda.so.1"),
            "\tlibcuda.so.1 (libc6,x86-64) => /usr/local/cuda/compat/libcuda.so.1".to_owned(),
            format!("\tlibcuda.so (libc6,x86-64) => {d}/libcuda.so"),
            "Cache generated by: mighook".to_owned(),
        ]
    );
}

// ---- SONAME from the ELF file when the cache has nothing ------------------------------------------------

/// A shared library built by gcc, or `None` (loudly) without gcc.
fn gcc_library(dir: &Path, file: &str, soname: Option<&str>) -> Option<()> {
    let src = dir.join("x.c");
    fs::write(&src, "int mighook_test(void) { return 1; }\n").unwrap();
    let mut cmd = std::process::Command::new("gcc");
    cmd.args(["-shared", "-fPIC", "-o"]).arg(dir.join(file)).arg(&src);
    if let Some(soname) = soname {
        cmd.arg(format!("-Wl,-soname,{soname}"));
    }
    match cmd.output() {
        Ok(out) if out.status.success() => Some(()),
        Ok(out) => panic!("gcc failed: {}", String::from_utf8_lossy(&out.stderr)),
        Err(e) => {
            eprintln!("SKIPPED: gcc is missing ({e})");
            None
        }
    }
}

#[test]
fn without_a_cache_the_soname_comes_from_the_elf_file() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("usr/lib64");
    fs::create_dir_all(&dir).unwrap();
    if gcc_library(&dir, &format!("libcuda.so.{V}"), Some("libcuda.so.1")).is_none() {
        return;
    }
    gcc_library(&dir, &format!("libnvidia-ml.so.{V}"), None).unwrap();
    gcc_library(&dir, &format!("libnvidia-cfg.so.{V}"), Some("libc.so.6")).unwrap();
    let caps = DriverCapabilities::parse("compute,utility").unwrap();
    let f = discover(root.path(), V, &caps).unwrap();
    assert_eq!(
        libs(&f),
        [
            format!("libnvidia-ml.so.{V} /usr/lib64/libnvidia-ml.so.{V}"), // no SONAME: the file name
            format!("libnvidia-cfg.so.{V} /usr/lib64/libnvidia-cfg.so.{V}"), // someone else's SONAME: ignored
            format!("libcuda.so.1 /usr/lib64/libcuda.so.{V}"),
        ]
    );
    let e = place(&f, LibraryDir::for_image(false));
    assert_eq!(
        links(&e),
        ["/usr/lib64/libcuda.so -> libcuda.so.1", &format!("/usr/lib64/libcuda.so.1 -> libcuda.so.{V}")]
    );
}

#[test]
fn a_broken_elf_file_is_an_error_naming_it() {
    let root = tempfile::tempdir().unwrap();
    let file = root.path().join(format!("usr/lib/libcuda.so.{V}"));
    fs::create_dir_all(file.parent().unwrap()).unwrap();
    fs::write(&file, "not elf").unwrap();
    let err = discover(root.path(), V, &DriverCapabilities::parse("compute").unwrap()).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!("cannot read the SONAME of {}: ELF header at 0+64: failed to fill whole buffer", file.display())
    );
}

/// A minimal ELF64 shared object: one PT_LOAD at vaddr 0x1000 over the whole file, a
/// PT_DYNAMIC with DT_STRTAB/DT_STRSZ/DT_SONAME.
fn tiny_elf(soname: &[u8]) -> Vec<u8> {
    let mut b = vec![0u8; 64];
    b[..4].copy_from_slice(b"\x7fELF");
    b[4] = 2;
    b[5] = 1;
    b[0x20..0x28].copy_from_slice(&64u64.to_le_bytes());
    b[0x36..0x38].copy_from_slice(&56u16.to_le_bytes());
    b[0x38..0x3a].copy_from_slice(&2u16.to_le_bytes());
    let dyn_at = 64 + 2 * 56;
    let str_at = dyn_at + 4 * 16;
    let mut strtab = vec![0u8];
    strtab.extend_from_slice(soname);
    strtab.push(0);
    let total = (str_at + strtab.len()) as u64;
    let phdr = |kind: u32, offset: u64, vaddr: u64, size: u64| {
        let mut p = vec![0u8; 56];
        p[..4].copy_from_slice(&kind.to_le_bytes());
        p[8..16].copy_from_slice(&offset.to_le_bytes());
        p[16..24].copy_from_slice(&vaddr.to_le_bytes());
        p[32..40].copy_from_slice(&size.to_le_bytes());
        p
    };
    b.extend(phdr(1, 0, 0x1000, total));
    b.extend(phdr(2, dyn_at as u64, 0x1000 + dyn_at as u64, 64));
    for (tag, val) in [(5u64, 0x1000 + str_at as u64), (10, strtab.len() as u64), (14, 1), (0, 0)] {
        b.extend_from_slice(&tag.to_le_bytes());
        b.extend_from_slice(&val.to_le_bytes());
    }
    b.extend(strtab);
    b
}

#[test]
fn elf_reader_finds_the_soname_through_the_load_segment() {
    assert_eq!(elf::soname(&tiny_elf(b"libcuda.so.1")[..]), Ok(Some(b"libcuda.so.1".to_vec())));
    let mut cut = tiny_elf(b"libcuda.so.1");
    cut.pop(); // the NUL
    assert_eq!(elf::soname(&cut[..]), Err("SONAME has no NUL within 255 bytes or the string table".into()));
    assert_eq!(elf::soname(&b"\x7fELF\x01"[..]), Err("ELF header at 0+64: unexpected end of file".into()));
}

proptest::proptest! {
    #[test]
    fn elf_reader_never_panics(at in 0usize..400, byte in proptest::num::u8::ANY, cut in 0usize..400) {
        let mut bytes = tiny_elf(b"libnvidia-ml.so.1");
        let at = at % bytes.len();
        bytes[at] = byte;
        bytes.truncate(bytes.len() - cut % bytes.len());
        let _ = elf::soname(&bytes[..]);
    }
}

//! The cgroup v2 device filter against the real kernel.
//!
//! Each test makes its own cgroup on the cgroup2 hierarchy
//! (`/sys/fs/cgroup/unified` on a hybrid host, `/sys/fs/cgroup` on a pure v2
//! one), attaches runtime-style device programs with BPF_F_ALLOW_MULTI, and
//! probes from a forked child moved into that cgroup. Char major 195 is
//! unregistered without the NVIDIA driver, so opening a 195:x node gives
//! ENXIO when the filter allows it and EPERM when it denies it; the test only
//! relies on "EPERM or not", so it also holds on a host with the driver.
//! Needs root (CAP_SYS_ADMIN, CAP_MKNOD); otherwise prints `SKIPPED:` (and
//! fails on CI, where it must run).

mod support;

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use mighook::apply::cgroup::v2::asm::DevKind;
use mighook::apply::cgroup::v2::runc::{self, FilterRule};
use mighook::apply::cgroup::v2::{ProgramChange, V2Report, allow};
use mighook::edits::DeviceRule;
use mighook::sys::LinuxSys;
use mighook::sys::bpf::{BPF_F_ALLOW_MULTI, BpfOps, Insn, ProgLoad};

const ALLOWED: &str = "allowed";
const DENIED: &str = "EPERM";

fn skip(why: &str) {
    support::skip(&format!("cgroup v2 kernel test: {why}"));
}

fn cgroup2_mount() -> Option<PathBuf> {
    let info = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    info.lines().find_map(|l| {
        let (pre, post) = l.split_once(" - ")?;
        let mount_point = pre.split(' ').nth(4)?;
        (post.split(' ').next() == Some("cgroup2")).then(|| PathBuf::from(mount_point))
    })
}

/// A fresh child cgroup, removed on drop (also when the test fails).
struct TestCgroup(PathBuf);

impl TestCgroup {
    fn new(name: &str) -> Result<TestCgroup, String> {
        let root = cgroup2_mount().ok_or("no cgroup2 file system is mounted")?;
        let dir = root.join(format!("mighook-test-{}-{name}", std::process::id()));
        std::fs::create_dir(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        Ok(TestCgroup(dir))
    }
}

impl Drop for TestCgroup {
    fn drop(&mut self) {
        // A child that just exited may still be leaving the cgroup.
        for _ in 0..200 {
            match std::fs::remove_dir(&self.0) {
                Err(e) if e.raw_os_error() == Some(libc::EBUSY) => {
                    std::thread::sleep(std::time::Duration::from_millis(10))
                }
                _ => return,
            }
        }
        eprintln!("warning: could not remove {}", self.0.display());
    }
}

/// Device nodes made by the (unfiltered) test process before any probe.
struct Nodes {
    dir: PathBuf,
}

impl Nodes {
    fn new(tag: &str) -> Nodes {
        let mut base = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
        if nodev(&base) {
            base = PathBuf::from("/dev"); // devtmpfs always honours device nodes
        }
        let dir = base.join(format!("mighook-v2-{}-{tag}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir(&dir).unwrap();
        Nodes { dir }
    }

    fn mknod(&self, name: &str, major: u32, minor: u32) -> CString {
        let path = self.path(name);
        // SAFETY: a valid C string; mknod has no other memory effects.
        let rc = unsafe { libc::mknod(path.as_ptr(), libc::S_IFCHR | 0o666, libc::makedev(major, minor)) };
        assert_eq!(rc, 0, "mknod {name}: {}", std::io::Error::last_os_error());
        path
    }

    fn path(&self, name: &str) -> CString {
        CString::new(self.dir.join(name).as_os_str().as_bytes()).unwrap()
    }
}

impl Drop for Nodes {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn nodev(dir: &Path) -> bool {
    let c = CString::new(dir.as_os_str().as_bytes()).unwrap();
    // SAFETY: valid C string and out-struct.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    unsafe { libc::statvfs(c.as_ptr(), &mut st) == 0 && st.f_flag & libc::ST_NODEV != 0 }
}

#[derive(Clone)]
enum Probe {
    /// open(O_RDWR) of a node.
    Open(CString),
    /// mknod of a char node (the cgroup's `m` access).
    Mknod(CString, u32, u32),
}

/// Runs each probe in a child that is in `cgroup`: "allowed" unless the
/// device filter refused it (EPERM).
fn probe(cgroup: &TestCgroup, probes: &[Probe]) -> Vec<&'static str> {
    let (mut go, mut res) = ([0; 2], [0; 2]);
    // SAFETY: out-arrays of two fds.
    unsafe {
        assert_eq!(libc::pipe2(go.as_mut_ptr(), libc::O_CLOEXEC), 0);
        assert_eq!(libc::pipe2(res.as_mut_ptr(), libc::O_CLOEXEC), 0);
    }
    let probes = probes.to_vec();
    // SAFETY: the child only makes async-signal-safe calls on memory prepared before fork.
    let pid = unsafe { libc::fork() };
    if pid == 0 {
        unsafe {
            let mut b = 0u8;
            if libc::read(go[0], (&mut b as *mut u8).cast(), 1) != 1 {
                libc::_exit(2);
            }
            for p in &probes {
                let rc = match p {
                    Probe::Open(path) => {
                        let fd = libc::open(path.as_ptr(), libc::O_RDWR | libc::O_CLOEXEC);
                        if fd >= 0 {
                            libc::close(fd);
                        }
                        fd
                    }
                    Probe::Mknod(path, ma, mi) => {
                        libc::mknod(path.as_ptr(), libc::S_IFCHR | 0o600, libc::makedev(*ma, *mi))
                    }
                };
                let errno: i32 = if rc >= 0 { 0 } else { *libc::__errno_location() };
                libc::write(res[1], (&errno as *const i32).cast(), 4);
            }
            libc::_exit(0);
        }
    }
    assert!(pid > 0, "fork: {}", std::io::Error::last_os_error());
    let moved = std::fs::write(cgroup.0.join("cgroup.procs"), pid.to_string());
    let mut out = Vec::new();
    if moved.is_ok() {
        // SAFETY: plain fd I/O on our pipes.
        unsafe {
            libc::write(go[1], [1u8].as_ptr().cast(), 1);
            for _ in &probes {
                let mut errno = 0i32;
                assert_eq!(libc::read(res[0], (&mut errno as *mut i32).cast(), 4), 4, "probe child died");
                out.push(if errno == libc::EPERM { DENIED } else { ALLOWED });
            }
        }
    } else {
        unsafe { libc::kill(pid, libc::SIGKILL) };
    }
    let mut status = 0;
    // SAFETY: reaping our own child; closing our own pipe fds.
    unsafe {
        libc::waitpid(pid, &mut status, 0);
        for fd in go.into_iter().chain(res) {
            libc::close(fd);
        }
    }
    moved.unwrap_or_else(|e| panic!("moving the probe into {}: {e}", cgroup.0.display()));
    out
}

/// Loads `insns` as a device program and attaches it with BPF_F_ALLOW_MULTI, as runc does.
fn attach(cgroup: &TestCgroup, insns: &[Insn]) -> u32 {
    let sys = LinuxSys;
    let cg = sys.open_cgroup(&cgroup.0).unwrap();
    let prog = sys
        .prog_load(&ProgLoad { insns, license: "Apache-2.0", name: "test_runtime" })
        .unwrap_or_else(|e| panic!("load: {e}\n{}", e.log));
    sys.prog_attach(&cg, &prog, BPF_F_ALLOW_MULTI, None).unwrap();
    sys.prog_info(&prog).unwrap().id
}

fn attached(cgroup: &TestCgroup) -> Vec<u32> {
    let sys = LinuxSys;
    let cg = sys.open_cgroup(&cgroup.0).unwrap();
    let mut ids = [0u32; 16];
    let n = sys.prog_query(&cg, false, &mut ids).unwrap().count as usize;
    ids[..n].to_vec()
}

/// Root, a cgroup2 mount and a writable cgroup, or a SKIPPED line.
fn setup(name: &str) -> Option<TestCgroup> {
    if !support::is_root() {
        skip("needs root");
        return None;
    }
    match TestCgroup::new(name) {
        Ok(cg) => Some(cg),
        Err(why) => {
            skip(&why);
            None
        }
    }
}

fn new_ids(report: &V2Report) -> Vec<Option<u32>> {
    match report {
        V2Report::Extended { programs, .. } => programs.iter().map(|p| p.new_id).collect(),
        other => panic!("expected Extended, got {other:?}"),
    }
}

#[test]
fn extending_runcs_program_grants_exactly_the_rule() {
    let Some(cg) = setup("runc") else { return };
    let nodes = Nodes::new("runc");
    let gpu2 = Probe::Open(nodes.mknod("nvidia2", 195, 2));
    let gpu3 = Probe::Open(nodes.mknod("nvidia3", 195, 3));
    let null = Probe::Open(nodes.mknod("null", 1, 3));
    let probes = [gpu2, gpu3, null];

    let runc_id = attach(&cg, &runc::filter(&runc::default_rules(), false));
    assert_eq!(probe(&cg, &probes), [DENIED, DENIED, ALLOWED], "runc's program alone");

    let report = allow(&LinuxSys, &cg.0, &[DeviceRule::allow_rw(195, 2)]).unwrap();
    let [Some(new)] = new_ids(&report)[..] else { panic!("{report:?}") };
    assert_eq!(
        report,
        V2Report::Extended {
            programs: vec![ProgramChange { old_id: runc_id, new_id: Some(new) }],
            ancestor_programs: vec![]
        }
    );
    assert_eq!(attached(&cg), [new], "swapped in place with BPF_F_REPLACE");
    assert_eq!(probe(&cg, &probes), [ALLOWED, DENIED, ALLOWED], "after granting c 195:2 rw");

    // The same rule again: recognised, nothing reloaded.
    let again = allow(&LinuxSys, &cg.0, &[DeviceRule::allow_rw(195, 2)]).unwrap();
    assert_eq!(new_ids(&again), [None]);
    assert_eq!(attached(&cg), [new]);

    // A further rule merges into the same block.
    let more = allow(&LinuxSys, &cg.0, &[DeviceRule::allow_rw(195, 3)]).unwrap();
    assert_eq!(new_ids(&more).len(), 1);
    assert_eq!(probe(&cg, &probes), [ALLOWED, ALLOWED, ALLOWED], "after also granting c 195:3 rw");
}

#[test]
fn every_allow_multi_program_is_extended_and_mknod_stays_denied() {
    let Some(cg) = setup("multi") else { return };
    let nodes = Nodes::new("multi");
    let gpu2 = Probe::Open(nodes.mknod("nvidia2", 195, 2));
    let gpu3 = Probe::Open(nodes.mknod("nvidia3", 195, 3));
    let null = Probe::Open(nodes.mknod("null", 1, 3));
    let zero = Probe::Open(nodes.mknod("zero", 1, 5));
    let mknod = Probe::Mknod(nodes.path("made-in-cgroup"), 195, 2);
    let probes = [gpu2, gpu3, null, zero, mknod];

    attach(&cg, &runc::filter(&runc::default_rules(), false));
    // A second program in the AND: only /dev/null and c 195:3, no mknod.
    let second = [
        FilterRule::allow(DevKind::Char, Some(1), Some(3), "rwm"),
        FilterRule::allow(DevKind::Char, Some(195), Some(3), "rw"),
    ];
    attach(&cg, &runc::filter(&second, false));
    assert_eq!(probe(&cg, &probes), [DENIED, DENIED, ALLOWED, DENIED, DENIED], "both programs, before");

    // BPF_PROG_QUERY with too small a buffer: ENOSPC, reported as the full count.
    let sys = LinuxSys;
    let cg_fd = sys.open_cgroup(&cg.0).unwrap();
    assert_eq!(sys.prog_query(&cg_fd, false, &mut [0u32; 1]).unwrap().count, 2);

    let report = allow(&LinuxSys, &cg.0, &[DeviceRule::allow_rw(195, 2)]).unwrap();
    assert!(new_ids(&report).iter().all(Option::is_some), "{report:?}");
    assert_eq!(attached(&cg).len(), 2);
    // 195:3 stays denied by runc's program, 1:5 by the second one, mknod by the second one.
    assert_eq!(probe(&cg, &probes), [ALLOWED, DENIED, ALLOWED, DENIED, DENIED], "both programs, after");
}

#[test]
fn a_cgroup_without_programs_is_left_alone() {
    let Some(cg) = setup("none") else { return };
    let nodes = Nodes::new("none");
    let probes = [Probe::Open(nodes.mknod("nvidia2", 195, 2))];
    let report = allow(&LinuxSys, &cg.0, &[DeviceRule::allow_rw(195, 2)]).unwrap();
    assert_eq!(report, V2Report::NoFilterAttached { ancestor_programs: vec![] });
    assert_eq!(attached(&cg), Vec::<u32>::new());
    assert_eq!(probe(&cg, &probes), [ALLOWED]);
}

#[test]
fn a_rejected_load_brings_back_the_verifier_log() {
    if !support::is_root() {
        return skip("needs root");
    }
    let no_exit = [Insn::new(0xb7, 0, 0, 0, 1)]; // r0 = 1, then nothing
    let err = LinuxSys.prog_load(&ProgLoad { insns: &no_exit, license: "Apache-2.0", name: "broken" }).unwrap_err();
    assert_eq!(err.source.raw_os_error(), Some(libc::EINVAL), "{err}");
    assert!(err.log.contains("last insn is not an exit or jmp"), "log: {}", err.log);
}

#[test]
fn a_directory_that_is_not_a_cgroup_is_refused() {
    let err = allow(&LinuxSys, Path::new("/proc"), &[DeviceRule::allow_rw(195, 2)]).unwrap_err();
    assert!(err.to_string().contains("not a cgroup2 file system"), "{err}");
}

/// `sleep` processes moved into a cgroup, killed on drop.
struct Sleepers(Vec<std::process::Child>);

impl Sleepers {
    fn into(cgroup: &TestCgroup, n: usize) -> Sleepers {
        let s = Sleepers((0..n).map(|_| std::process::Command::new("sleep").arg("60").spawn().unwrap()).collect());
        for c in &s.0 {
            std::fs::write(cgroup.0.join("cgroup.procs"), c.id().to_string()).unwrap();
        }
        s
    }

    fn pid(&self, i: usize) -> i32 {
        self.0[i].id() as i32
    }
}

impl Drop for Sleepers {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Finding 6, through the hook's own entry point: a cgroup that holds a second
/// process besides the container's init is refused, and its program stays.
#[test]
fn a_cgroup_shared_with_another_process_is_refused_and_left_alone() {
    let Some(cg) = setup("shared") else { return };
    let runc_id = attach(&cg, &runc::filter(&runc::default_rules(), false));
    let procs = Sleepers::into(&cg, 2);
    let err = mighook::apply::cgroup::allow_devices(&LinuxSys, procs.pid(0), &[DeviceRule::allow_rw(195, 2)])
        .unwrap_err()
        .to_string();
    let want = format!(
        "refusing to change device program(s) [{runc_id}] of cgroup {}: it holds processes [{}] besides the container's init {}",
        cg.0.display(),
        procs.pid(1),
        procs.pid(0)
    );
    assert!(err.starts_with(&want), "{err}");
    assert_eq!(attached(&cg), [runc_id], "the runtime's program is still the only one");
}

/// The same cgroup holding only the init is extended.
#[test]
fn a_cgroup_holding_only_the_init_is_extended() {
    let Some(cg) = setup("alone") else { return };
    let runc_id = attach(&cg, &runc::filter(&runc::default_rules(), false));
    let procs = Sleepers::into(&cg, 1);
    let report =
        mighook::apply::cgroup::allow_devices(&LinuxSys, procs.pid(0), &[DeviceRule::allow_rw(195, 2)]).unwrap();
    let v2 = report.v2.expect("v2 step ran");
    assert_eq!(v2.dir, cg.0);
    let [Some(new)] = new_ids(&v2.report)[..] else { panic!("{:?}", v2.report) };
    assert_ne!(new, runc_id);
    assert_eq!(attached(&cg), [new]);
}

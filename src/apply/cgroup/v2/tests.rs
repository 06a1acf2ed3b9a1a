//! Allow/deny tables for the generated block, the block in front of runc's
//! default program, a property test that extending never widens anything
//! else, and `allow_devices` against the recording fake.

use super::asm::{self, DevKind, Grants, access};
use super::interp::{DevCtx, Verdict, run};
use super::runc::{self, FilterRule};
use super::*;
use crate::sys::bpf::BPF_F_ALLOW_OVERRIDE;
use crate::sys::fake::bpf::{Dump, Op, RecordingBpf};
use proptest::prelude::*;

const CG: &str = "/sys/fs/cgroup/ctr";

/// "c 195:2 rw" → (type, access bits, major, minor).
fn req(s: &str) -> (DevKind, u32, u32, u32) {
    let mut it = s.split_whitespace();
    let kind = match it.next() {
        Some("c") => DevKind::Char,
        Some("b") => DevKind::Block,
        other => panic!("bad type {other:?}"),
    };
    let (ma, mi) = it.next().unwrap().split_once(':').unwrap();
    let acc = access::parse(it.next().unwrap()).unwrap();
    (kind, acc, ma.parse().unwrap(), mi.parse().unwrap())
}

fn allows(prog: &[Insn], request: &str) -> bool {
    let (kind, acc, ma, mi) = req(request);
    run(prog, &DevCtx::new(kind, acc, ma, mi)).unwrap_or_else(|e| panic!("{request}: {e}")) == Verdict::Allow
}

/// The kernel's verdict for the cgroup: every attached program must allow.
fn cgroup_allows(fake: &RecordingBpf, request: &str) -> bool {
    fake.attached(CG).iter().all(|id| allows(&fake.insns(*id), request))
}

fn grants(list: &[&str]) -> Grants {
    let mut g = Grants::new();
    for r in list {
        let (kind, acc, ma, mi) = req(r);
        g.add(kind, ma, mi, acc);
    }
    g
}

fn deny_all() -> Vec<Insn> {
    vec![asm::mov64_k(asm::R0, 0), asm::exit()]
}

fn runc_default() -> Vec<Insn> {
    runc::filter(&runc::default_rules(), false)
}

fn rw(major: u32, minor: u32) -> DeviceRule {
    DeviceRule::allow_rw(major, minor)
}

// ---- the generated block -------------------------------------------------

#[test]
fn generated_block_alone() {
    let p = asm::extend(&deny_all(), &grants(&["c 195:2 rw", "c 195:255 rw", "b 8:0 r"]));
    assert!(allows(&p, "c 195:2 rw"));
    assert!(allows(&p, "c 195:2 r"));
    assert!(allows(&p, "c 195:2 w"));
    assert!(!allows(&p, "c 195:2 m"));
    assert!(!allows(&p, "c 195:2 rwm"));
    assert!(!allows(&p, "c 195:3 rw"));
    assert!(!allows(&p, "c 195:1 r"));
    assert!(!allows(&p, "c 196:2 r"));
    assert!(!allows(&p, "b 195:2 r"));
    assert!(allows(&p, "c 195:255 rw"));
    assert!(allows(&p, "b 8:0 r"));
    assert!(!allows(&p, "b 8:0 w"));
    assert!(!allows(&p, "c 8:0 r"));
    assert!(!allows(&p, "c 0:0 r"));
}

#[test]
fn context_values_that_alias_a_dispatch_key_are_not_granted() {
    // Low 32 bits of major << 20 | minor equal those of 1:0, but the device is not 1:0.
    let p = asm::extend(&deny_all(), &grants(&["c 1:0 rw"]));
    assert!(allows(&p, "c 1:0 rw"));
    for (major, minor) in [(0, 1 << 20), (1 + 4096, 0), (4096, 1 << 20)] {
        assert_eq!(
            run(&p, &DevCtx::new(DevKind::Char, access::READ, major, minor)).unwrap(),
            Verdict::Deny,
            "{major}:{minor}"
        );
    }
}

#[test]
fn generated_block_sees_only_the_access_bits() {
    let p = asm::extend(&deny_all(), &grants(&["c 195:2 rw"]));
    // An unknown access bit (not r/w/m) is outside the grant too.
    let ctx = DevCtx { access_type: 2 | (0x8 << 16), major: 195, minor: 2 };
    assert_eq!(run(&p, &ctx), Ok(Verdict::Deny));
}

// ---- in front of runc's default program ----------------------------------

#[test]
fn runc_default_program_alone() {
    let p = runc_default();
    assert!(allows(&p, "c 1:3 rw"));
    assert!(allows(&p, "c 1:3 rwm"));
    assert!(allows(&p, "c 136:7 rw"));
    assert!(allows(&p, "c 195:2 m"));
    assert!(allows(&p, "b 8:0 m"));
    assert!(!allows(&p, "c 195:2 rw"));
    assert!(!allows(&p, "c 195:2 r"));
    assert!(!allows(&p, "b 8:0 r"));
    assert!(!allows(&p, "c 10:201 rw"));
}

#[test]
fn block_in_front_of_runc_default() {
    let p = asm::extend(&runc_default(), &grants(&["c 195:2 rw"]));
    assert!(allows(&p, "c 195:2 rw"));
    assert!(allows(&p, "c 195:2 r"));
    assert!(allows(&p, "c 195:2 m")); // runc's own `c *:* m`, not ours
    assert!(!allows(&p, "c 195:3 rw"));
    assert!(!allows(&p, "c 195:1 rw"));
    assert!(!allows(&p, "c 195:255 rw"));
    assert!(allows(&p, "c 1:3 rw"));
    assert!(allows(&p, "c 1:9 rwm"));
    assert!(allows(&p, "c 5:2 rw"));
    assert!(allows(&p, "c 136:0 rw"));
    assert!(allows(&p, "c 10:200 rw"));
    assert!(!allows(&p, "b 8:0 r"));
    assert!(allows(&p, "b 8:0 m"));
    assert!(!allows(&p, "c 4:1 rw"));
}

#[test]
fn block_in_front_of_a_program_without_mknod() {
    // crun/systemd-style program without the mknod wildcards: our grant is rw only.
    let orig = runc::filter(&[FilterRule::allow(DevKind::Char, Some(1), Some(3), "rwm")], false);
    let p = asm::extend(&orig, &grants(&["c 195:2 rw"]));
    assert!(allows(&p, "c 195:2 rw"));
    assert!(!allows(&p, "c 195:2 m"));
    assert!(!allows(&p, "c 195:2 rwm"));
    assert!(allows(&p, "c 1:3 m"));
}

#[test]
fn block_in_front_of_a_deny_list_keeps_its_denies_elsewhere() {
    // default allow with a deny rule (systemd DevicePolicy=auto style).
    let deny =
        FilterRule { allow: false, kind: Some(DevKind::Char), major: Some(195), minor: None, access: access::ALL };
    let p = asm::extend(&runc::filter(&[deny], true), &grants(&["c 195:2 rw"]));
    assert!(allows(&p, "c 195:2 rw"));
    assert!(!allows(&p, "c 195:3 rw"));
    assert!(!allows(&p, "c 195:2 m"));
    assert!(allows(&p, "b 8:0 rwm"));
}

// ---- property: extending never widens anything but the grants -----------

fn kind() -> impl Strategy<Value = DevKind> {
    prop_oneof![Just(DevKind::Char), Just(DevKind::Block)]
}
// Small number ranges so rules, grants and requests collide often.
fn num() -> impl Strategy<Value = u32> {
    prop_oneof![0u32..4, Just(195)]
}
fn rule() -> impl Strategy<Value = FilterRule> {
    (any::<bool>(), prop::option::of(kind()), prop::option::of(num()), prop::option::of(num()), 1u32..=7)
        .prop_map(|(allow, kind, major, minor, access)| FilterRule { allow, kind, major, minor, access })
}
fn grant_list() -> impl Strategy<Value = Vec<(DevKind, u32, u32, u32)>> {
    prop::collection::vec((kind(), num(), num(), 1u32..=7), 0..5)
}

proptest! {
    #[test]
    fn extending_allows_exactly_the_grants_more(
        rules in prop::collection::vec(rule(), 0..8),
        default_allow in any::<bool>(),
        list in grant_list(),
        (k, acc, ma, mi) in (kind(), 0u32..=7, num(), num()),
    ) {
        let orig = runc::filter(&rules, default_allow);
        let mut g = Grants::new();
        for &(gk, gma, gmi, gacc) in &list {
            g.add(gk, gma, gmi, gacc);
        }
        let ext = asm::extend(&orig, &g);
        let ctx = DevCtx::new(k, acc, ma, mi);
        let before = run(&orig, &ctx).unwrap();
        let after = run(&ext, &ctx).unwrap();
        // The interpreter agrees with the rules' meaning.
        prop_assert_eq!(before == Verdict::Allow, runc::decide(&rules, default_allow, k, acc, ma, mi));
        if g.allows(k, acc, ma, mi) {
            prop_assert_eq!(after, Verdict::Allow);
        } else {
            prop_assert_eq!(after, before);
        }
        // A later run finds exactly these grants and the original behind them.
        let (found, rest) = asm::split_extended(&ext);
        prop_assert_eq!(found, g);
        prop_assert_eq!(rest, &orig[..]);
    }
}

// ---- allow_devices against the fake kernel -------------------------------

/// A cgroup with runc's default program attached (ALLOW_MULTI); returns its id.
fn fake_with_runc() -> (RecordingBpf, u32) {
    let fake = RecordingBpf::new();
    fake.add_cgroup(CG, BPF_F_ALLOW_MULTI);
    let id = fake.add_prog(&runc_default());
    fake.attach_existing(CG, id);
    (fake, id)
}

fn new_id(report: &V2Report, i: usize) -> u32 {
    match report {
        V2Report::Extended { programs, .. } => programs[i].new_id.expect("replaced"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn no_program_attached_changes_nothing() {
    let fake = RecordingBpf::new();
    fake.add_cgroup(CG, 0);
    let report = allow(&fake, Path::new(CG), &[rw(195, 2)]).unwrap();
    assert_eq!(report, V2Report::NoFilterAttached { ancestor_programs: vec![] });
    assert_eq!(fake.calls_of("load"), Vec::<String>::new());
    assert_eq!(fake.calls_of("attach"), Vec::<String>::new());
    assert_eq!(fake.open_fds(), 0);
}

#[test]
fn the_guard_is_asked_only_when_a_program_is_attached_and_its_refusal_changes_nothing() {
    let fake = RecordingBpf::new();
    fake.add_cgroup(CG, 0);
    let never = |_: &[u32]| -> Result<(), V2Error> { panic!("guard asked with no program attached") };
    allow_guarded(&fake, Path::new(CG), &[rw(195, 2)], never).unwrap();

    let (fake, old) = fake_with_runc();
    let mut asked = None;
    let e = allow_guarded(&fake, Path::new(CG), &[rw(195, 2)], |ids| {
        asked = Some(ids.to_vec());
        Err(V2Error::RootCgroup { dir: CG.into(), programs: ids.to_vec() })
    })
    .unwrap_err();
    assert!(matches!(e, V2Error::RootCgroup { .. }), "{e}");
    assert_eq!(asked, Some(vec![old]));
    assert_eq!(fake.calls_of("fd_by_id"), Vec::<String>::new(), "no program read before the guard");
    assert_eq!(fake.calls_of("load"), Vec::<String>::new());
    assert_eq!(fake.calls_of("attach"), Vec::<String>::new());
    assert_eq!(fake.attached(CG), [old]);
    assert_eq!(fake.open_fds(), 0);
}

#[test]
fn runc_program_is_replaced_in_place() {
    let (fake, old) = fake_with_runc();
    let report = allow(&fake, Path::new(CG), &[rw(195, 2)]).unwrap();
    let new = new_id(&report, 0);
    assert_eq!(
        report,
        V2Report::Extended {
            programs: vec![ProgramChange { old_id: old, new_id: Some(new) }],
            ancestor_programs: vec![]
        }
    );
    assert_eq!(fake.attached(CG), [new]);
    assert_eq!(fake.attach_flags(CG), BPF_F_ALLOW_MULTI);
    assert_eq!(fake.calls_of("attach"), [format!("attach {CG} prog={new} flags=0x6 replace=Some({old})")]);
    assert_eq!(fake.license(new), LICENSE);
    assert_eq!(fake.open_fds(), 0);
    assert!(cgroup_allows(&fake, "c 195:2 rw"));
    assert!(!cgroup_allows(&fake, "c 195:3 rw"));
    assert!(cgroup_allows(&fake, "c 1:3 rw"));
    assert!(!cgroup_allows(&fake, "b 8:0 r"));
}

#[test]
fn every_attached_program_is_extended() {
    let (fake, first) = fake_with_runc();
    let only_null = runc::filter(&[FilterRule::allow(DevKind::Char, Some(1), Some(3), "rwm")], false);
    let second = fake.add_prog(&only_null);
    fake.attach_existing(CG, second);
    // Before: the AND of both programs denies the GPU.
    assert!(!cgroup_allows(&fake, "c 195:2 rw"));
    let report = allow(&fake, Path::new(CG), &[rw(195, 2)]).unwrap();
    assert_eq!(fake.attached(CG), [new_id(&report, 0), new_id(&report, 1)]);
    assert_eq!(fake.calls_of("attach").len(), 2);
    assert!(cgroup_allows(&fake, "c 195:2 rw"));
    assert!(cgroup_allows(&fake, "c 1:3 rw"));
    assert!(!cgroup_allows(&fake, "c 1:5 rw")); // runc allows it, the second program still does not
    assert!(!cgroup_allows(&fake, "c 195:3 rw"));
    assert_ne!(first, second);
    assert_eq!(fake.open_fds(), 0);
}

#[test]
fn second_run_with_the_same_rules_changes_nothing() {
    let (fake, _) = fake_with_runc();
    let first = allow(&fake, Path::new(CG), &[rw(195, 2), rw(195, 255)]).unwrap();
    let new = new_id(&first, 0);
    let again = allow(&fake, Path::new(CG), &[rw(195, 255)]).unwrap();
    assert_eq!(
        again,
        V2Report::Extended { programs: vec![ProgramChange { old_id: new, new_id: None }], ancestor_programs: vec![] }
    );
    assert_eq!(fake.attached(CG), [new]);
    assert_eq!(fake.calls_of("load").len(), 1);
    assert_eq!(fake.open_fds(), 0);
}

#[test]
fn a_new_rule_is_merged_into_the_existing_block() {
    let (fake, _) = fake_with_runc();
    allow(&fake, Path::new(CG), &[rw(195, 2)]).unwrap();
    let report = allow(&fake, Path::new(CG), &[rw(195, 3)]).unwrap();
    let prog = fake.insns(new_id(&report, 0));
    assert_eq!(prog, asm::extend(&runc_default(), &grants(&["c 195:2 rw", "c 195:3 rw"])));
    assert_eq!(prog.iter().filter(|i| **i == asm::MARKER).count(), 1);
    assert!(allows(&prog, "c 195:2 rw"));
    assert!(allows(&prog, "c 195:3 rw"));
    assert!(!allows(&prog, "c 195:4 rw"));
}

#[test]
fn a_program_extended_with_the_first_layout_is_recognised() {
    let fake = RecordingBpf::new();
    fake.add_cgroup(CG, BPF_F_ALLOW_MULTI);
    let old = fake.add_prog(&asm::extend_first_layout(&runc_default(), &grants(&["c 195:2 rw"])));
    fake.attach_existing(CG, old);
    let again = allow(&fake, Path::new(CG), &[rw(195, 2)]).unwrap();
    assert_eq!(
        again,
        V2Report::Extended { programs: vec![ProgramChange { old_id: old, new_id: None }], ancestor_programs: vec![] }
    );
    let report = allow(&fake, Path::new(CG), &[rw(195, 3)]).unwrap();
    let prog = fake.insns(new_id(&report, 0));
    assert_eq!(prog, asm::extend(&runc_default(), &grants(&["c 195:2 rw", "c 195:3 rw"])));
}

#[test]
fn ancestor_programs_are_reported() {
    let (fake, _) = fake_with_runc();
    let parent = fake.add_prog(&deny_all());
    fake.inherit(CG, parent);
    let report = allow(&fake, Path::new(CG), &[rw(195, 2)]).unwrap();
    let V2Report::Extended { ancestor_programs, .. } = &report else { panic!("{report:?}") };
    assert_eq!(ancestor_programs, &[parent]);
    assert!(report.to_string().contains("ancestor"));
}

#[test]
fn non_multi_program_is_swapped_with_its_own_flags() {
    let fake = RecordingBpf::new();
    fake.add_cgroup(CG, BPF_F_ALLOW_OVERRIDE);
    let old = fake.add_prog(&runc_default());
    fake.attach_existing(CG, old);
    let report = allow(&fake, Path::new(CG), &[rw(195, 2)]).unwrap();
    let new = new_id(&report, 0);
    assert_eq!(fake.calls_of("attach"), [format!("attach {CG} prog={new} flags=0x1 replace=None")]);
    assert_eq!(fake.attached(CG), [new]);
}

#[test]
fn query_buffer_grows_on_enospc() {
    let fake = RecordingBpf::new();
    fake.add_cgroup(CG, BPF_F_ALLOW_MULTI);
    let ids: Vec<u32> = (0..70).map(|_| fake.add_prog(&runc_default())).collect();
    for id in &ids {
        fake.attach_existing(CG, *id);
    }
    let report = allow(&fake, Path::new(CG), &[rw(195, 2)]).unwrap();
    let V2Report::Extended { programs, .. } = report else { panic!() };
    assert_eq!(programs.len(), 70);
    let queries = fake.calls_of("query");
    assert_eq!(queries[0], format!("query {CG} effective=false room=64"));
    assert_eq!(queries[1], format!("query {CG} effective=false room=70"));
    assert!(cgroup_allows(&fake, "c 195:2 rw"));
    assert_eq!(fake.open_fds(), 0);
}

/// Runs allow_devices expecting an error; checks nothing was loaded or attached and every fd closed.
fn fails(fake: &RecordingBpf) -> String {
    let before = fake.attached(CG);
    let err = allow(fake, Path::new(CG), &[rw(195, 2)]).unwrap_err().to_string();
    assert!(!err.contains('\n'), "one line: {err}");
    assert_eq!(fake.attached(CG), before);
    assert_eq!(fake.open_fds(), 0);
    err
}

#[test]
fn query_refused_is_a_clear_error() {
    let (fake, _) = fake_with_runc();
    fake.fail_next(Op::Query, libc::EPERM);
    let err = fails(&fake);
    assert!(err.contains("BPF_PROG_QUERY"), "{err}");
    assert!(err.contains("user namespace"), "{err}");
}

#[test]
fn a_locked_program_fails_closed_naming_it() {
    let (fake, old) = fake_with_runc();
    fake.refuse_open(old, libc::EPERM);
    let err = fails(&fake);
    assert!(err.contains(&format!("device program {old} ")), "{err}");
    assert!(err.contains("LSM"), "{err}");
    assert_eq!(fake.calls_of("load"), Vec::<String>::new());
}

#[test]
fn a_locked_second_program_stops_before_anything_changes() {
    let (fake, _) = fake_with_runc();
    let locked = fake.add_prog(&deny_all());
    fake.attach_existing(CG, locked);
    fake.refuse_open(locked, libc::EACCES);
    let err = fails(&fake);
    assert!(err.contains(&format!("device program {locked} ")), "{err}");
    assert_eq!(fake.calls_of("load"), Vec::<String>::new());
}

#[test]
fn unreadable_dumps_fail_closed() {
    for dump in [Dump::Zeroed, Dump::Withheld] {
        let (fake, old) = fake_with_runc();
        fake.set_dump(old, dump);
        let err = fails(&fake);
        assert!(err.contains("bpf_jit_harden"), "{dump:?}: {err}");
        assert_eq!(fake.calls_of("load"), Vec::<String>::new(), "{dump:?}");
    }
}

fn dump_error(prog: &[Insn]) -> String {
    let fake = RecordingBpf::new();
    fake.add_cgroup(CG, BPF_F_ALLOW_MULTI);
    let id = fake.add_prog(prog);
    fake.attach_existing(CG, id);
    let err = fails(&fake);
    assert_eq!(fake.calls_of("load"), Vec::<String>::new());
    err
}

#[test]
fn dumps_that_cannot_be_reloaded_fail_closed() {
    use crate::sys::bpf::opcode::*;
    let exit = asm::exit();
    let r0 = asm::mov64_k(asm::R0, 1);
    assert!(dump_error(&[r0]).contains("does not end with exit"));
    assert!(dump_error(&[Insn::new(JMP | CALL, 0, 0, 0, 1234), r0, exit]).contains("instruction 0 (a call)"));
    assert!(
        dump_error(&[Insn::new(LD | IMM | DW, 2, 1, 0, 7), Insn::default(), r0, exit])
            .contains("a map or BTF reference")
    );
    assert!(dump_error(&[Insn::new(ALU64 | MOV | K, 11, 0, 0, 5), r0, exit]).contains("constant blinding"));
    assert!(dump_error(&[asm::ja(-3), r0, exit]).contains("a jump outside the program"));
    assert!(dump_error(&[Insn::new(STX | 0xc0 | DW, 10, 1, -8, 0), r0, exit]).contains("atomic"));
}

#[test]
fn dumps_with_plain_immediates_are_fine() {
    use crate::sys::bpf::opcode::*;
    assert_eq!(check_dump(&[Insn::new(LD | IMM | DW, 0, 0, 0, 1), Insn::default(), asm::exit()]), Ok(()));
    assert_eq!(check_dump(&runc_default()), Ok(()));
}

#[test]
fn verifier_rejection_reports_the_log_tail() {
    let (fake, _) = fake_with_runc();
    fake.fail_next(Op::Load, libc::EACCES);
    let err = fails(&fake);
    assert!(err.contains("loading the extended copy"), "{err}");

    let (fake, old) = fake_with_runc();
    fake.set_load_log("0: (61) r2 = *(u32 *)(r1 +0)\n1: (b7) r0 = 0\n");
    // A program that loses its exit on the way in: the fake verifier refuses it.
    fake.set_dump(old, Dump::Exact);
    let p = prepare_swap(&fake, Path::new(CG), old, &grants(&["c 195:2 rw"])).unwrap();
    let broken: Vec<Insn> = p.new_insns.unwrap()[..10].to_vec();
    let e = fake.prog_load(&ProgLoad { insns: &broken, license: LICENSE, name: PROG_NAME }).unwrap_err();
    assert!(e.log.contains("last insn is not an exit or jmp"));
    assert_eq!(tail(&e.log, 2), "last insn is not an exit or jmp | processed 0 insns");
}

#[test]
fn load_error_line_carries_the_verifier_log() {
    let e = V2Error::Load {
        id: 7,
        source: io::Error::from_raw_os_error(libc::EINVAL),
        log_tail: "R2 !read_ok | processed 3 insns".into(),
    };
    let line = e.to_string();
    assert!(line.contains("device program 7"), "{line}");
    assert!(line.contains("verifier log: R2 !read_ok | processed 3 insns"), "{line}");
    assert_eq!(e.verifier_log(), "R2 !read_ok | processed 3 insns");
}

#[test]
fn failed_second_attach_says_how_far_it_got() {
    let (fake, _) = fake_with_runc();
    let second = fake.add_prog(&runc_default());
    fake.attach_existing(CG, second);
    fake.fail_later(Op::Attach, 1, libc::EPERM);
    let err = allow(&fake, Path::new(CG), &[rw(195, 2)]).unwrap_err().to_string();
    assert!(err.contains(&format!("replacing device program {second} ")), "{err}");
    assert!(err.contains("1 of 2 programs were replaced"), "{err}");
    // The half-done state is narrower, never wider: the second program still denies.
    assert!(!cgroup_allows(&fake, "c 195:2 rw"));
    assert!(cgroup_allows(&fake, "c 1:3 rw"));
    assert_eq!(fake.open_fds(), 0);
}

#[test]
fn replace_race_is_explained() {
    let (fake, _) = fake_with_runc();
    fake.fail_next(Op::Attach, libc::ENOENT);
    let err = fails(&fake);
    assert!(err.contains("replaced by someone else"), "{err}");
}

#[test]
fn cgroup_that_cannot_be_opened() {
    let fake = RecordingBpf::new();
    let err = allow(&fake, Path::new("/sys/fs/cgroup/nope"), &[rw(195, 2)]).unwrap_err().to_string();
    assert!(err.starts_with("cannot open cgroup /sys/fs/cgroup/nope"), "{err}");
}

#[test]
fn invalid_rules_are_refused_before_any_call() {
    let bad = |r: DeviceRule| {
        let fake = RecordingBpf::new();
        let err = allow(&fake, Path::new(CG), &[r]).unwrap_err();
        assert!(fake.calls().is_empty());
        err.to_string()
    };
    assert!(bad(DeviceRule { allow: false, ..rw(195, 2) }).contains("only allow rules"));
    assert!(bad(DeviceRule { kind: 'a', ..rw(195, 2) }).contains("type must be c or b"));
    assert!(bad(DeviceRule { access: "rx", ..rw(195, 2) }).contains("letters of rwm"));
    assert!(bad(DeviceRule { access: "", ..rw(195, 2) }).contains("letters of rwm"));
    assert!(bad(rw(4096, 0)).contains("12/20-bit"));
    assert!(bad(rw(195, 1 << 20)).contains("12/20-bit"));
}

#[test]
fn block_devices_and_mknod_can_be_granted_when_asked() {
    let (fake, _) = fake_with_runc();
    let rule = DeviceRule { allow: true, kind: 'b', major: 8, minor: 0, access: "r" };
    allow(&fake, Path::new(CG), &[rule]).unwrap();
    assert!(cgroup_allows(&fake, "b 8:0 r"));
    assert!(!cgroup_allows(&fake, "b 8:0 w"));
    assert!(!cgroup_allows(&fake, "b 8:1 r"));
}

#[test]
fn empty_rule_list_changes_nothing() {
    let (fake, old) = fake_with_runc();
    let report = allow(&fake, Path::new(CG), &[]).unwrap();
    assert_eq!(
        report,
        V2Report::Extended { programs: vec![ProgramChange { old_id: old, new_id: None }], ancestor_programs: vec![] }
    );
    assert_eq!(fake.calls_of("load"), Vec::<String>::new());
}

#[test]
fn report_lines() {
    let r = V2Report::Extended {
        programs: vec![ProgramChange { old_id: 5, new_id: Some(9) }, ProgramChange { old_id: 6, new_id: None }],
        ancestor_programs: vec![],
    };
    assert_eq!(r.to_string(), "device programs: 5→9 6 (already allowed)");
    let r = V2Report::NoFilterAttached { ancestor_programs: vec![] };
    assert_eq!(r.to_string(), "no device program attached; the cgroup already allows every device");
}

use super::read::{MAGIC_NEW, MAGIC_OLD};
use super::*;
use std::cmp::Ordering::{Equal, Greater, Less};
use std::path::Path;
use std::process::Command;

const DIR: &str = "/usr/lib/x86_64-linux-gnu";

fn entry(key: &str) -> Entry {
    Entry::x86_64(key, format!("{DIR}/{key}"))
}

fn keys(cache: &LdCache) -> Vec<String> {
    cache.entries.iter().map(|e| String::from_utf8_lossy(&e.key).into_owned()).collect()
}

fn cache(entries: Vec<Entry>) -> LdCache {
    LdCache { entries, ..LdCache::default() }
}

// ---- sort order -------------------------------------------------------------

#[test]
fn libcmp_matches_glibc() {
    assert_eq!(libcmp(b"libz3.so.4", b"libz3.so"), Greater);
    assert_eq!(libcmp(b"libfoo.so.10", b"libfoo.so.9"), Greater);
    assert_eq!(libcmp(b"libfoo.so.9", b"libfoo.so.10"), Less);
    assert_eq!(libcmp(b"libc.so.6", b"libc.so.06"), Equal);
    assert_eq!(libcmp(b"lib1", b"liba"), Greater, "a digit sorts above any other byte");
    assert_eq!(libcmp(b"liba", b"libB"), Greater);
    assert_eq!(libcmp(b"lib\x80", b"lib"), Less, "bytes compare as signed char");
    assert_eq!(libcmp(b"", b""), Equal);
    assert_eq!(libcmp(b"libcuda.so.1", b"libcuda.so.1"), Equal);
    assert_eq!(libcmp(b"libnvidia-ml.so.1", b"libnvidia-ml.so"), Greater);
}

#[test]
fn serialize_sorts_descending_like_ldconfig() {
    let c = cache(vec![entry("ld-linux-x86-64.so.2"), entry("libfoo.so.9"), entry("libz3.so"), entry("libfoo.so.10")]);
    let back = parse(&serialize(&c)).unwrap();
    assert_eq!(keys(&back), ["libz3.so", "libfoo.so.10", "libfoo.so.9", "ld-linux-x86-64.so.2"]);
}

#[test]
fn ties_go_higher_flags_then_hwcaps_then_osversion_then_insertion() {
    let i386 = Entry { flags: 0x0003, ..entry("libx.so.1") };
    let old_kernel = Entry { osversion: 0x0302_0000, value: b"/a/libx.so.1".to_vec(), ..entry("libx.so.1") };
    let hwcaps = Entry { hwcap: HWCAP_EXTENSION, value: b"/h/libx.so.1".to_vec(), ..entry("libx.so.1") };
    let first = Entry { value: b"/first/libx.so.1".to_vec(), ..entry("libx.so.1") };
    let second = Entry { value: b"/second/libx.so.1".to_vec(), ..entry("libx.so.1") };
    let c = LdCache {
        entries: vec![i386.clone(), first.clone(), old_kernel.clone(), second.clone(), hwcaps.clone()],
        hwcap_subdirs: vec![b"x86-64-v3".to_vec()],
        generator: None,
    };
    let back = parse(&serialize(&c)).unwrap();
    assert_eq!(back.entries, [hwcaps, old_kernel, first, second, i386]);
}

// ---- round trips and merge ----------------------------------------------------

#[test]
fn round_trip_keeps_entries_subdirs_and_writes_the_generator() {
    let hw = Entry { hwcap: HWCAP_EXTENSION | 1, ..entry("libm.so.6") };
    let c = LdCache {
        entries: vec![entry("libz.so.1"), hw, entry("libm.so.6")],
        hwcap_subdirs: vec![b"x86-64-v4".to_vec(), b"x86-64-v3".to_vec()],
        generator: Some(b"ldconfig".to_vec()),
    };
    let back = parse(&serialize(&c)).unwrap();
    assert_eq!(back.hwcap_subdirs, [b"x86-64-v3".to_vec(), b"x86-64-v4".to_vec()], "sorted by name");
    assert_eq!(back.entries[1].hwcap, HWCAP_EXTENSION, "renumbered to x86-64-v3's new index 0");
    assert_eq!(keys(&back), ["libz.so.1", "libm.so.6", "libm.so.6"]);
    assert_eq!(back.generator.as_deref(), Some(&b"mighook"[..]));
    assert_eq!(serialize(&back), serialize(&parse(&serialize(&back)).unwrap()), "stable under a second trip");
}

#[test]
fn hwcaps_entry_with_unknown_subdir_is_dropped_on_write() {
    let dead = Entry { hwcap: HWCAP_EXTENSION | 7, ..entry("libm.so.6") };
    let back = parse(&serialize(&cache(vec![dead, entry("libz.so.1")]))).unwrap();
    assert_eq!(keys(&back), ["libz.so.1"]);
    assert!(back.hwcap_subdirs.is_empty());
}

#[test]
fn non_utf8_strings_survive() {
    let odd = Entry::x86_64(&b"lib\xff.so.1"[..], &b"/opt/\xfe/lib\xff.so.1"[..]);
    assert_eq!(parse(&serialize(&cache(vec![odd.clone()]))).unwrap().entries, [odd]);
}

#[test]
fn merge_puts_injected_first_and_drops_identical_image_entries() {
    let image = cache(vec![
        Entry::x86_64("libcuda.so.1", "/usr/local/cuda/compat/libcuda.so.1"),
        entry("libnvidia-ml.so.1"),
        entry("libz.so.1"),
    ]);
    let injected = vec![entry("libcuda.so.1"), entry("libnvidia-ml.so.1")];
    let merged = merge(injected, image);
    assert_eq!(merged.entries.len(), 4, "the image's identical libnvidia-ml entry is dropped");
    let back = parse(&serialize(&merged)).unwrap();
    let values: Vec<_> = back.entries.iter().map(|e| String::from_utf8_lossy(&e.value).into_owned()).collect();
    assert_eq!(
        values,
        [
            "/usr/lib/x86_64-linux-gnu/libz.so.1",
            "/usr/lib/x86_64-linux-gnu/libnvidia-ml.so.1",
            "/usr/lib/x86_64-linux-gnu/libcuda.so.1",
            "/usr/local/cuda/compat/libcuda.so.1",
        ]
    );
}

// ---- old and compat formats, built by hand ---------------------------------------

/// An old-format part: header, entries, then (when `strings`) its string table.
fn old_part(entries: &[(i32, u32, u32)], strings: &[u8]) -> Vec<u8> {
    let mut out = MAGIC_OLD.to_vec();
    out.push(0);
    out.extend_from_slice(&(entries.len() as u32).to_le_bytes());
    for (flags, key, value) in entries {
        for word in [*flags as u32, *key, *value] {
            out.extend_from_slice(&word.to_le_bytes());
        }
    }
    out.extend_from_slice(strings);
    out
}

#[test]
fn old_format_offsets_count_from_the_string_table() {
    let bytes = old_part(&[(0x303, 0, 8)], b"libz.so\0/lib/libz.so\0");
    let c = parse(&bytes).unwrap();
    assert_eq!(c.entries, [Entry::x86_64("libz.so", "/lib/libz.so")]);
    assert_eq!(c.generator, None);
}

#[test]
fn compat_format_uses_the_embedded_new_part() {
    let new = serialize(&cache(vec![entry("libcuda.so.1"), entry("libz.so.1")]));
    // Two old entries (an even count, so the new header is 8-aligned), offsets into the new part.
    let mut bytes = old_part(&[(0x303, 0, 0), (0x303, 0, 0)], &[]);
    assert_eq!(bytes.len() % 8, 0);
    bytes.extend_from_slice(&new);
    let c = parse(&bytes).unwrap();
    assert_eq!(keys(&c), ["libz.so.1", "libcuda.so.1"]);
    // Extension offsets count from the start of the file, so the copied ones miss: dropped.
    assert_eq!(c.generator, None);
}

// ---- hostile input -------------------------------------------------------------

fn new_header(nlibs: u32, len_strings: u32, flags: u8) -> Vec<u8> {
    let mut out = MAGIC_NEW.to_vec();
    out.extend_from_slice(&nlibs.to_le_bytes());
    out.extend_from_slice(&len_strings.to_le_bytes());
    out.extend_from_slice(&[flags, 0, 0, 0]);
    out.extend_from_slice(&[0; 16]);
    out
}

#[test]
fn bad_inputs_are_errors() {
    let good = serialize(&cache(vec![entry("libcuda.so.1")]));
    let err = |bytes: &[u8]| parse(bytes).unwrap_err().to_string();
    assert_eq!(err(b""), "not an ld.so.cache: no known magic at offset 0");
    assert_eq!(err(&vec![0; MAX_CACHE_BYTES + 1]), "ld.so.cache is 8388609 bytes, over the limit of 8388608");
    assert_eq!(err(b"garbage garbage garbage"), "not an ld.so.cache: no known magic at offset 0");
    assert_eq!(err(&good[..30]), "ld.so.cache is truncated: new header needs bytes 0..48 of 30");
    assert_eq!(
        err(&new_header(u32::MAX, 0, 2)),
        "ld.so.cache is truncated: new entries needs bytes 48..103079215128 of 48"
    );
    assert_eq!(err(&new_header(0, 100, 2)), "ld.so.cache is truncated: string table needs bytes 48..148 of 48");
    assert_eq!(err(&new_header(0, 0, 3)), "ld.so.cache is big-endian or has invalid endianness flags 0x3");
    assert_eq!(err(&old_part(&[], &[])[..14]), "ld.so.cache is truncated: old header needs bytes 12..16 of 14");
    assert_eq!(
        err(&old_part(&[(0x303, 0, 0)], &[])[..20]),
        "ld.so.cache is truncated: old entries needs bytes 16..28 of 20"
    );
    assert_eq!(
        err(&old_part(&[(0x303, 0, 99)], b"x\0")),
        "ld.so.cache entry 0: value at offset 99: outside the string table"
    );
    assert_eq!(
        err(&old_part(&[(0x303, 0, 0)], b"no nul")),
        "ld.so.cache entry 0: key at offset 0: no NUL inside the string table"
    );
    assert_eq!(
        err(&old_part(&[(0x303, 0, 0)], &[b'a'; 5000])),
        "ld.so.cache entry 0: key at offset 0: longer than 4096 bytes"
    );
}

#[test]
fn new_format_strings_must_end_inside_the_string_table() {
    let mut bytes = new_header(1, 4, 2);
    // key at 72 = "abc\0" inside the table; value at 74 = "c\0" fine; then a copy with no NUL.
    for word in [0x303u32, 72, 74, 0, 0, 0] {
        bytes.extend_from_slice(&word.to_le_bytes());
    }
    bytes.extend_from_slice(b"abc\0");
    assert_eq!(parse(&bytes).unwrap().entries, [Entry::x86_64("abc", "c")]);
    let last = bytes.len() - 1;
    bytes[last] = b'x';
    bytes.extend_from_slice(b"\0 beyond the table");
    assert_eq!(
        parse(&bytes).unwrap_err().to_string(),
        "ld.so.cache entry 0: key at offset 72: no NUL inside the string table"
    );
    bytes[52] = 10; // key offset 10: inside the header
    assert_eq!(
        parse(&bytes).unwrap_err().to_string(),
        "ld.so.cache entry 0: key/value at offset 10: before the string table"
    );
}

#[test]
fn shared_long_strings_cannot_amplify_memory() {
    // 40,000 entries all pointing at one 4,000-byte string: 160 MB decoded from 1 MB.
    let n = 40_000u32;
    let mut bytes = new_header(n, 4001, 2);
    let table = 48 + 24 * n;
    for _ in 0..n {
        for word in [0x303u32, table, table, 0, 0, 0] {
            bytes.extend_from_slice(&word.to_le_bytes());
        }
    }
    bytes.extend_from_slice(&[b'a'; 4000]);
    bytes.push(0);
    assert!(matches!(parse(&bytes), Err(LdCacheError::Amplified { .. })));
}

#[test]
fn malformed_extensions_are_dropped_not_fatal() {
    let mut bytes = serialize(&cache(vec![entry("libz.so.1")]));
    let ext = u32::from_le_bytes(bytes[32..36].try_into().unwrap()) as usize;
    bytes[ext + 16] = 0xff; // generator offset far past EOF
    let c = parse(&bytes).unwrap();
    assert_eq!(keys(&c), ["libz.so.1"]);
    assert_eq!(c.generator, None);
    bytes[32] = 1; // extension offset not a multiple of 4
    assert_eq!(parse(&bytes).unwrap().generator, None);
}

proptest::proptest! {
    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..600)) {
        let _ = parse(&bytes);
        let mut new = MAGIC_NEW.to_vec();
        new.extend_from_slice(&bytes);
        let _ = parse(&new);
        let mut old = MAGIC_OLD.to_vec();
        old.extend_from_slice(&bytes);
        let _ = parse(&old);
    }

    #[test]
    fn mutated_caches_never_panic(at in 0usize..400, byte in proptest::num::u8::ANY, cut in 0usize..400) {
        let mut bytes = serialize(&LdCache {
            entries: vec![entry("libz.so.1"), Entry { hwcap: HWCAP_EXTENSION, ..entry("libm.so.6") }],
            hwcap_subdirs: vec![b"x86-64-v3".to_vec()],
            generator: None,
        });
        let at = at % bytes.len();
        bytes[at] = byte;
        bytes.truncate(bytes.len() - cut % bytes.len());
        if let Ok(c) = parse(&bytes) {
            // Whatever parses is written back and read again the same.
            let again = parse(&serialize(&c)).unwrap();
            proptest::prop_assert_eq!(serialize(&again), serialize(&c));
        }
    }

    #[test]
    fn any_entries_round_trip_in_sorted_order(names in proptest::collection::vec("[a-z0-9.]{1,12}", 0..20)) {
        let entries: Vec<Entry> = names.iter().map(|n| entry(n)).collect();
        let back = parse(&serialize(&cache(entries))).unwrap();
        for pair in back.entries.windows(2) {
            proptest::prop_assert_ne!(libcmp(&pair[0].key, &pair[1].key), Less);
        }
        proptest::prop_assert_eq!(back.entries.len(), names.len());
    }
}

// ---- glibc's own ldconfig reads what we write ------------------------------------

const LDCONFIG: &str = "/sbin/ldconfig";

/// `ldconfig -p -C file` output, or `None` (with a loud line) where there is no ldconfig.
fn ldconfig_print(file: Option<&Path>) -> Option<Vec<String>> {
    if !Path::new(LDCONFIG).exists() {
        eprintln!("SKIPPED: {LDCONFIG} is missing");
        return None;
    }
    let mut cmd = Command::new(LDCONFIG);
    cmd.arg("-p");
    if let Some(file) = file {
        cmd.arg("-C").arg(file);
    }
    let out = cmd.env_clear().output().unwrap();
    assert!(out.status.success(), "ldconfig -p failed: {}", String::from_utf8_lossy(&out.stderr));
    Some(String::from_utf8_lossy(&out.stdout).lines().map(str::to_owned).collect())
}

fn write_temp(bytes: &[u8]) -> tempfile::NamedTempFile {
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), bytes).unwrap();
    file
}

#[test]
fn ldconfig_lists_exactly_our_entries_in_order() {
    let c = cache(vec![
        entry("libnvidia-ml.so.1"),
        entry("libcuda.so.1"),
        entry("libcuda.so"),
        entry("libnvidia-opticalflow.so.1"),
        Entry { flags: 0x0003, ..Entry::x86_64("libcuda.so.1", "/usr/lib/i386-linux-gnu/libcuda.so.1") },
    ]);
    let file = write_temp(&serialize(&c));
    let Some(lines) = ldconfig_print(Some(file.path())) else { return };
    let head = format!("5 libs found in cache `{}'", file.path().display());
    assert_eq!(
        lines,
        [
            head.as_str(),
            "\tlibnvidia-opticalflow.so.1 (libc6,x86-64) => /usr/lib/x86_64-linux-gnu/libnvidia-opticalflow.so.1",
            "\tlibnvidia-ml.so.1 (libc6,x86-64) => /usr/lib/x86_64-linux-gnu/libnvidia-ml.so.1",
            "\tlibcuda.so.1 (libc6,x86-64) => /usr/lib/x86_64-linux-gnu/libcuda.so.1",
            "\tlibcuda.so.1 (libc6) => /usr/lib/i386-linux-gnu/libcuda.so.1",
            "\tlibcuda.so (libc6,x86-64) => /usr/lib/x86_64-linux-gnu/libcuda.so",
            "Cache generated by: mighook",
        ]
    );
}

#[test]
fn ldconfig_reads_hwcaps_entries_we_write() {
    let c = LdCache {
        entries: vec![
            entry("libz.so.1"),
            Entry { hwcap: HWCAP_EXTENSION, ..Entry::x86_64("libz.so.1", "/lib/glibc-hwcaps/x86-64-v3/libz.so.1.3") },
        ],
        hwcap_subdirs: vec![b"x86-64-v3".to_vec()],
        generator: None,
    };
    let file = write_temp(&serialize(&c));
    let Some(lines) = ldconfig_print(Some(file.path())) else { return };
    assert_eq!(lines[1], "\tlibz.so.1 (libc6,x86-64, hwcap: \"x86-64-v3\") => /lib/glibc-hwcaps/x86-64-v3/libz.so.1.3");
    assert_eq!(lines[2], "\tlibz.so.1 (libc6,x86-64) => /usr/lib/x86_64-linux-gnu/libz.so.1");
    assert_eq!(lines[3], "Cache generated by: mighook");
}

#[test]
fn host_cache_parses_and_survives_a_round_trip_through_ldconfig() {
    let host = Path::new("/etc/ld.so.cache");
    let Ok(bytes) = std::fs::read(host) else {
        eprintln!("SKIPPED: no readable /etc/ld.so.cache");
        return;
    };
    let Some(original) = ldconfig_print(None) else { return };
    let c = parse(&bytes).unwrap();
    let count: usize = original[0].split(' ').next().unwrap().parse().unwrap();
    assert_eq!(c.entries.len(), count, "{}", original[0]);
    assert_eq!(keys(&c).len(), count);

    let file = write_temp(&serialize(&c));
    let written = ldconfig_print(Some(file.path())).unwrap();
    let body = |lines: &[String]| -> Vec<String> {
        lines[1..].iter().filter(|l| !l.starts_with("Cache generated by:")).cloned().collect()
    };
    assert_eq!(body(&written), body(&original));
    assert_eq!(written.last().unwrap(), "Cache generated by: mighook");
}

#[test]
fn a_made_up_soname_maps_to_the_hosts_real_library() {
    // What the loader will be told: `libmighook-test.so.1` is the host's libm (or libz).
    let real = ["/lib/x86_64-linux-gnu/libm.so.6", "/usr/lib64/libm.so.6", "/lib64/libm.so.6"]
        .into_iter()
        .find(|p| Path::new(p).exists());
    let Some(real) = real else {
        eprintln!("SKIPPED: no host libm found");
        return;
    };
    let host = std::fs::read("/etc/ld.so.cache").ok().and_then(|b| parse(&b).ok()).unwrap_or_default();
    let host_len = host.entries.len();
    let merged = merge(vec![Entry::x86_64("libmighook-test.so.1", real)], host);
    let file = write_temp(&serialize(&merged));
    let Some(lines) = ldconfig_print(Some(file.path())) else { return };
    assert!(lines[0].starts_with(&format!("{} libs found", host_len + 1)), "{}", lines[0]);
    assert!(lines.contains(&format!("\tlibmighook-test.so.1 (libc6,x86-64) => {real}")), "{lines:?}");
}

/// How `ldconfig -p` prints an ordinary entry.
fn ldconfig_line(e: &Entry) -> String {
    let kind = match e.flags {
        FLAG_X8664_LIBC6 => "libc6,x86-64",
        0x0003 => "libc6",
        other => panic!("flags {other:#x} not printed here"),
    };
    format!("\t{} ({kind}) => {}", String::from_utf8_lossy(&e.key), String::from_utf8_lossy(&e.value))
}

/// glibc's ldconfig writes each of its three formats for a root holding two
/// libraries (`-r` keeps it, and its aux cache, inside a tempdir; it needs root
/// for the chroot); we read each as `ldconfig -p` does.
#[test]
fn caches_written_by_glibcs_ldconfig_in_every_format_parse_alike() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("usr/lib/x86_64-linux-gnu");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::create_dir_all(root.path().join("etc")).unwrap();
    std::fs::write(root.path().join("etc/ld.so.conf"), "").unwrap();
    std::fs::write(root.path().join("x.c"), "int f(void) { return 1; }\n").unwrap();
    for (soname, file) in [("libfoo.so.1", "libfoo.so.1.2"), ("libfoo.so.10", "libfoo.so.10.0")] {
        let gcc = Command::new("gcc")
            .args(["-shared", "-fPIC", &format!("-Wl,-soname,{soname}"), "-o"])
            .arg(dir.join(file))
            .arg(root.path().join("x.c"))
            .output();
        if !gcc.is_ok_and(|o| o.status.success()) {
            eprintln!("SKIPPED: gcc is missing or failed");
            return;
        }
    }
    for format in ["old", "compat", "new"] {
        let name = format!("/etc/ld.so.cache.{format}");
        let built =
            Command::new(LDCONFIG).args(["-X", "-c", format, "-C", &name, "-r"]).arg(root.path()).env_clear().output();
        if !built.is_ok_and(|o| o.status.success()) {
            eprintln!("SKIPPED: {LDCONFIG} -r cannot build a cache here (not root?)");
            return;
        }
        let file = root.path().join(name.trim_start_matches('/'));
        let c = parse(&std::fs::read(&file).unwrap()).unwrap();
        let lines = ldconfig_print(Some(&file)).unwrap();
        let listed: Vec<String> = lines[1..].iter().filter(|l| l.starts_with('\t')).cloned().collect();
        assert_eq!(c.entries.iter().map(ldconfig_line).collect::<Vec<_>>(), listed, "{format}");
        assert_eq!(listed.len(), 2, "{format}");
        let generator = c.generator.map(|g| format!("Cache generated by: {}", String::from_utf8_lossy(&g)));
        assert_eq!(generator.as_ref(), lines.last().filter(|l| l.starts_with("Cache generated")), "{format}");
        assert_eq!(generator.is_some(), format != "old", "{format}");
    }
}

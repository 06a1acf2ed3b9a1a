//! glibc's `/etc/ld.so.cache`: read, merged, written.
//!
//! The dynamic loader finds a library named without a `/` (`libcuda.so.1`) by a
//! binary search in this file, keyed by SONAME, before it tries the system dirs.
//! mighook reads two caches: the host's (under the driver root), to find the
//! driver's libraries as the host loader sees them, and the image's, to add the
//! injected libraries to it without running the image's `ldconfig`.
//!
//! - [`parse`] reads the three layouts the loader accepts: the new format
//!   (`glibc-ld.so.cache1.1`), the old one (`ld.so-1.7.0`), and "compat" (old
//!   part, then an embedded new one, which wins). An image's cache is hostile
//!   input: every offset and count is checked against the file, strings must end
//!   inside their table, and no input can panic or allocate without bound.
//!   The extension directory (generator string, glibc-hwcaps subdirs) is read
//!   leniently, as the loader does: a malformed one is dropped, not fatal.
//! - [`serialize`] writes the new format only, entries in ldconfig's order
//!   ([`compare`]); a wrong order would make the loader's binary search miss keys.
//! - [`merge`] puts injected entries before the image's, so that for the same
//!   SONAME the loader finds the injected library first.
//!
//! Layout and sort order: the driver user-space reference (`driver-user-space.md`), §6 (glibc
//! `sysdeps/generic/dl-cache.h`, `elf/cache.c`, `elf/dl-cache.c`).

mod read;
mod write;

#[cfg(test)]
mod tests;

use std::cmp::Ordering;
use thiserror::Error;

pub use read::parse;
pub use write::{GENERATOR, serialize};

/// ELF, libc6, x86-64: the only flags the x86-64 loader accepts.
pub const FLAG_X8664_LIBC6: i32 = 0x0303;

/// `hwcap` bit 62: the entry lives in a `glibc-hwcaps` subdir; the low 32 bits
/// index [`LdCache::hwcap_subdirs`].
pub const HWCAP_EXTENSION: u64 = 1 << 62;

/// A larger cache is refused: real ones are tens to hundreds of KiB (a host with
/// 500 libraries: 34 KiB). Parsing one costs at most about 10 times its size in
/// memory: decoded strings are capped at 4 times, and an entry struct is 6 times
/// an old-format entry (3 times a new one).
pub const MAX_CACHE_BYTES: usize = 8 << 20;

/// A longer key or value is refused (Linux `PATH_MAX`; the loader could not open it).
pub const MAX_STRING: usize = 4096;

#[derive(Debug, Error, PartialEq, Eq)]
pub enum LdCacheError {
    #[error("not an ld.so.cache: no known magic at offset 0")]
    NotACache,
    #[error("ld.so.cache is {len} bytes, over the limit of {max}")]
    TooLarge { len: usize, max: usize },
    #[error("ld.so.cache is big-endian or has invalid endianness flags {flags:#x}")]
    WrongEndianness { flags: u8 },
    #[error("ld.so.cache is truncated: {what} needs bytes {from}..{to} of {len}")]
    Truncated { what: &'static str, from: u64, to: u64, len: usize },
    #[error("ld.so.cache entry {index}: {field} at offset {offset}: {reason}")]
    BadString { index: usize, field: &'static str, offset: u64, reason: &'static str },
    #[error("ld.so.cache strings decode to more than {max} bytes (offsets shared too often)")]
    Amplified { max: usize },
}

/// One cache entry: the loader maps `key` (a SONAME) to `value` (a full path).
/// As JSON, key and value are shown as (lossy) UTF-8 strings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub flags: i32,
    /// The SONAME, without NUL.
    pub key: Vec<u8>,
    /// The full path of the library (in practice the SONAME link), without NUL.
    pub value: Vec<u8>,
    /// Minimum kernel from the ABI note, `os<<24 | major<<16 | minor<<8 | patch`; 0 = none.
    pub osversion: u32,
    /// 0 for ordinary entries; see [`HWCAP_EXTENSION`].
    pub hwcap: u64,
}

impl Entry {
    /// An ordinary x86-64 libc6 entry.
    pub fn x86_64(soname: impl Into<Vec<u8>>, path: impl Into<Vec<u8>>) -> Entry {
        Entry { flags: FLAG_X8664_LIBC6, key: soname.into(), value: path.into(), osversion: 0, hwcap: 0 }
    }

    /// Whether this entry is in a `glibc-hwcaps` subdir.
    pub fn is_hwcaps(&self) -> bool {
        self.hwcap & HWCAP_EXTENSION != 0
    }
}

/// A whole cache. `entries` keep file order after [`parse`]; [`serialize`] sorts.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LdCache {
    pub entries: Vec<Entry>,
    /// Names of the `glibc-hwcaps` subdirs (`x86-64-v3`), indexed by hwcaps entries.
    pub hwcap_subdirs: Vec<Vec<u8>>,
    /// The generator string (`ldconfig (GNU libc) ...`), when present.
    pub generator: Option<Vec<u8>>,
}

impl serde::Serialize for Entry {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let mut st = s.serialize_struct("Entry", 5)?;
        st.serialize_field("flags", &self.flags)?;
        st.serialize_field("key", &String::from_utf8_lossy(&self.key))?;
        st.serialize_field("value", &String::from_utf8_lossy(&self.value))?;
        st.serialize_field("osversion", &self.osversion)?;
        st.serialize_field("hwcap", &self.hwcap)?;
        st.end()
    }
}

/// The injected entries and every image entry, injected first: among entries with
/// the same key, flags and hwcap, the sort is stable, so the loader finds the
/// injected one first. An image entry equal to an injected one is dropped.
pub fn merge(injected: Vec<Entry>, image: LdCache) -> LdCache {
    let mut entries = injected;
    let injected_len = entries.len();
    for entry in image.entries {
        // Injected lists are a few dozen entries: a linear scan costs less than hashing.
        if !entries[..injected_len].contains(&entry) {
            entries.push(entry);
        }
    }
    LdCache { entries, hwcap_subdirs: image.hwcap_subdirs, generator: image.generator }
}

/// glibc's `_dl_cache_libcmp`: digit runs compare numerically and above any other
/// byte, other bytes compare as (signed) `char`, the end of a string as byte 0.
///
/// The loader accumulates digit runs in an `int` that wraps; so does this. It then
/// returns `val1 - val2`, whose sign can be wrong past 2^31; comparing the wrapped
/// values instead keeps this a total order (Rust's sort needs one) and agrees with
/// the loader on every run below 2^31.
pub fn libcmp(a: &[u8], b: &[u8]) -> Ordering {
    let (mut i, mut j) = (0, 0);
    let at = |s: &[u8], k: usize| s.get(k).copied().unwrap_or(0);
    loop {
        let (x, y) = (at(a, i), at(b, j));
        if x == 0 {
            return 0i8.cmp(&(y as i8));
        }
        match (x.is_ascii_digit(), y.is_ascii_digit()) {
            (true, true) => {
                let (mut v1, mut v2) = (0i32, 0i32);
                while at(a, i).is_ascii_digit() {
                    v1 = v1.wrapping_mul(10).wrapping_add(i32::from(at(a, i) - b'0'));
                    i += 1;
                }
                while at(b, j).is_ascii_digit() {
                    v2 = v2.wrapping_mul(10).wrapping_add(i32::from(at(b, j) - b'0'));
                    j += 1;
                }
                if v1 != v2 {
                    return v1.cmp(&v2);
                }
            }
            (true, false) => return Ordering::Greater,
            (false, true) => return Ordering::Less,
            (false, false) if x != y => return (x as i8).cmp(&(y as i8)),
            (false, false) => {
                i += 1;
                j += 1;
            }
        }
    }
}

/// ldconfig's order (glibc `elf/cache.c` `compare`): descending [`libcmp`] of the
/// key; then higher flags; hwcaps entries before ordinary ones, by subdir name;
/// then more hwcap bits, higher hwcap, higher osversion. `Equal` keeps insertion
/// order under a stable sort. A hwcaps entry's subdir is its index in `subdirs`.
pub fn compare(a: &Entry, b: &Entry, subdirs: &[Vec<u8>]) -> Ordering {
    let subdir = |e: &Entry| subdirs.get((e.hwcap & 0xffff_ffff) as usize).map(Vec::as_slice).unwrap_or_default();
    libcmp(&b.key, &a.key)
        .then(b.flags.cmp(&a.flags))
        .then_with(|| match (a.is_hwcaps(), b.is_hwcaps()) {
            (true, false) => Ordering::Less,
            (false, true) => Ordering::Greater,
            (true, true) => subdir(a).cmp(subdir(b)),
            (false, false) => {
                // ldconfig keeps no legacy hwcap for hwcaps entries, so these compare only here.
                let bits = |e: &Entry| e.hwcap.count_ones();
                bits(b).cmp(&bits(a)).then(b.hwcap.cmp(&a.hwcap))
            }
        })
        .then(b.osversion.cmp(&a.osversion))
}

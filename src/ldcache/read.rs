//! Reading a cache: which layout, then the entries, then the extensions.
//!
//! Offsets are checked in `u64` so no sum can wrap; an entry count is checked
//! against the bytes present before anything is allocated for it; decoded
//! strings are capped per string ([`MAX_STRING`]) and in total (a hostile file
//! can point every entry at one long string).

use super::{Entry, HWCAP_EXTENSION, LdCache, LdCacheError, MAX_CACHE_BYTES, MAX_STRING};

pub(super) const MAGIC_OLD: &[u8] = b"ld.so-1.7.0";
pub(super) const MAGIC_NEW: &[u8] = b"glibc-ld.so.cache1.1";
pub(super) const OLD_HEADER: u64 = 16;
pub(super) const OLD_ENTRY: u64 = 12;
pub(super) const NEW_HEADER: u64 = 48;
pub(super) const NEW_ENTRY: u64 = 24;
pub(super) const EXTENSION_MAGIC: u32 = 0xEAA4_2174;
pub(super) const TAG_GENERATOR: u32 = 0;
pub(super) const TAG_HWCAPS: u32 = 1;
/// Header flags: endianness in the low 2 bits; 2 is little.
pub(super) const ENDIAN_LITTLE: u8 = 2;

/// Parses any layout the loader accepts. See the module header for the checks.
pub fn parse(bytes: &[u8]) -> Result<LdCache, LdCacheError> {
    if bytes.len() > MAX_CACHE_BYTES {
        return Err(LdCacheError::TooLarge { len: bytes.len(), max: MAX_CACHE_BYTES });
    }
    let max = bytes.len() * 4 + (1 << 20);
    let file = File { bytes, max, budget: std::cell::Cell::new(max) };
    if bytes.starts_with(MAGIC_NEW) {
        return file.new_format(0);
    }
    if !bytes.starts_with(MAGIC_OLD) {
        return Err(LdCacheError::NotACache);
    }
    let nlibs = file.u32(12, "old header")?;
    let entries_end = OLD_HEADER + u64::from(nlibs) * OLD_ENTRY;
    file.range(OLD_HEADER, entries_end, "old entries")?;
    // Compat: the new header follows the old entries, aligned to 8 (glibc ALIGN_CACHE).
    let new_at = entries_end.next_multiple_of(8);
    if file.slice(new_at, new_at + MAGIC_NEW.len() as u64).is_some_and(|m| m == MAGIC_NEW) {
        return file.new_format(new_at);
    }
    file.old_format(nlibs, entries_end)
}

/// What the extension directory holds: hwcaps subdir names, generator string.
type Extensions = (Vec<Vec<u8>>, Option<Vec<u8>>);

struct File<'a> {
    bytes: &'a [u8],
    /// Bytes of decoded strings allowed in all, and still allowed.
    max: usize,
    budget: std::cell::Cell<usize>,
}

impl File<'_> {
    fn len(&self) -> u64 {
        self.bytes.len() as u64
    }

    fn slice(&self, from: u64, to: u64) -> Option<&[u8]> {
        let (from, to) = (usize::try_from(from).ok()?, usize::try_from(to).ok()?);
        self.bytes.get(from..to)
    }

    fn range(&self, from: u64, to: u64, what: &'static str) -> Result<&[u8], LdCacheError> {
        self.slice(from, to).ok_or(LdCacheError::Truncated { what, from, to, len: self.bytes.len() })
    }

    fn u32(&self, at: u64, what: &'static str) -> Result<u32, LdCacheError> {
        let b = self.range(at, at + 4, what)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn u64(&self, at: u64, what: &'static str) -> Result<u64, LdCacheError> {
        Ok(u64::from(self.u32(at, what)?) | (u64::from(self.u32(at + 4, what)?) << 32))
    }

    /// The NUL-terminated string at `table_from + offset`, which must end before `table_to`.
    fn string(
        &self,
        (table_from, table_to): (u64, u64),
        offset: u32,
        index: usize,
        field: &'static str,
    ) -> Result<Vec<u8>, LdCacheError> {
        let bad = |reason| LdCacheError::BadString { index, field, offset: offset.into(), reason };
        let start = table_from + u64::from(offset);
        let table = self.slice(start, table_to).ok_or_else(|| bad("outside the string table"))?;
        let window = &table[..table.len().min(MAX_STRING + 1)];
        let nul = window.iter().position(|&b| b == 0).ok_or_else(|| {
            bad(if window.len() > MAX_STRING { "longer than 4096 bytes" } else { "no NUL inside the string table" })
        })?;
        let left = self.budget.get().checked_sub(nul).ok_or(LdCacheError::Amplified { max: self.max })?;
        self.budget.set(left);
        Ok(window[..nul].to_vec())
    }

    fn old_format(&self, nlibs: u32, strings: u64) -> Result<LdCache, LdCacheError> {
        // Old-only: offsets count from the end of the entries; the table runs to EOF.
        let table = (strings, self.len());
        let mut entries = Vec::with_capacity(nlibs as usize);
        for index in 0..nlibs as usize {
            let at = OLD_HEADER + index as u64 * OLD_ENTRY;
            let flags = self.u32(at, "old entry")? as i32;
            let key = self.string(table, self.u32(at + 4, "old entry")?, index, "key")?;
            let value = self.string(table, self.u32(at + 8, "old entry")?, index, "value")?;
            entries.push(Entry { flags, key, value, osversion: 0, hwcap: 0 });
        }
        Ok(LdCache { entries, hwcap_subdirs: Vec::new(), generator: None })
    }

    /// The new format whose header is at `base` (0, or after a compat file's old part).
    fn new_format(&self, base: u64) -> Result<LdCache, LdCacheError> {
        self.range(base, base + NEW_HEADER, "new header")?;
        let nlibs = self.u32(base + 20, "new header")?;
        let len_strings = self.u32(base + 24, "new header")?;
        let flags = self.bytes[base as usize + 28];
        // 0: written before the flag existed (little-endian on this machine).
        if !matches!(flags & 3, 0 | ENDIAN_LITTLE) {
            return Err(LdCacheError::WrongEndianness { flags });
        }
        let entries_at = base + NEW_HEADER;
        let strings_at = entries_at + u64::from(nlibs) * NEW_ENTRY;
        self.range(entries_at, strings_at, "new entries")?;
        let strings_end = strings_at + u64::from(len_strings);
        self.range(strings_at, strings_end, "string table")?;
        // Key and value offsets count from the new header.
        let table = (base, strings_end);
        let mut entries = Vec::with_capacity(nlibs as usize);
        for index in 0..nlibs as usize {
            let at = entries_at + index as u64 * NEW_ENTRY;
            let flags = self.u32(at, "new entry")? as i32;
            let key_at = self.u32(at + 4, "new entry")?;
            let value_at = self.u32(at + 8, "new entry")?;
            if u64::from(key_at) + base < strings_at || u64::from(value_at) + base < strings_at {
                let offset = key_at.min(value_at).into();
                return Err(LdCacheError::BadString {
                    index,
                    field: "key/value",
                    offset,
                    reason: "before the string table",
                });
            }
            let key = self.string(table, key_at, index, "key")?;
            let value = self.string(table, value_at, index, "value")?;
            let osversion = self.u32(at + 12, "new entry")?;
            let hwcap = self.u64(at + 16, "new entry")?;
            entries.push(Entry { flags, key, value, osversion, hwcap });
        }
        let extension_offset = self.u32(base + 32, "new header")?;
        let (hwcap_subdirs, generator) = self.extensions(base, extension_offset, strings_end).unwrap_or_default();
        Ok(LdCache { entries, hwcap_subdirs, generator })
    }

    /// The extension directory, or `None` when it is malformed: the loader then
    /// ignores all extensions (and so every hwcaps entry), and so does the caller.
    /// Its offset and the section offsets count from the start of the file (glibc
    /// `cache_extension_load`), the hwcaps names' offsets from the new header.
    fn extensions(&self, base: u64, offset: u32, strings_end: u64) -> Option<Extensions> {
        if offset == 0 || !offset.is_multiple_of(4) {
            return None;
        }
        let dir = u64::from(offset);
        if self.u32(dir, "").ok()? != EXTENSION_MAGIC {
            return None;
        }
        let count = self.u32(dir + 4, "").ok()?;
        // Sections: tag, flags, offset, size.
        self.slice(dir + 8, dir + 8 + u64::from(count) * 16)?;
        let (mut subdirs, mut generator) = (Vec::new(), None);
        for i in 0..u64::from(count) {
            let at = dir + 8 + i * 16;
            let (tag, from, size) = (self.u32(at, "").ok()?, self.u32(at + 8, "").ok()?, self.u32(at + 12, "").ok()?);
            let (from, to) = (u64::from(from), u64::from(from) + u64::from(size));
            let section = self.slice(from, to)?;
            match tag {
                TAG_GENERATOR => generator = Some(section[..section.len().min(MAX_STRING)].to_vec()),
                TAG_HWCAPS => {
                    if size == 0 || !size.is_multiple_of(4) || !from.is_multiple_of(4) {
                        return None;
                    }
                    subdirs = section
                        .chunks_exact(4)
                        .enumerate()
                        .map(|(index, b)| {
                            let name = u32::from_le_bytes([b[0], b[1], b[2], b[3]]);
                            self.string((base, strings_end), name, index, "hwcaps subdir").ok()
                        })
                        .collect::<Option<Vec<_>>>()?;
                }
                _ => {}
            }
        }
        Some((subdirs, generator))
    }
}

/// Whether a hwcaps entry indexes a known subdir (the loader skips it otherwise).
pub(super) fn hwcaps_index(entry: &Entry, subdirs: usize) -> Option<usize> {
    if entry.hwcap & HWCAP_EXTENSION == 0 {
        return None;
    }
    let index = (entry.hwcap & 0xffff_ffff) as usize;
    (index < subdirs).then_some(index)
}

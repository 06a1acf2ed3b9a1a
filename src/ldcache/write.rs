//! Writing a cache in the new format, the way ldconfig lays it out: header,
//! entries, strings, padding to 4, extension directory, hwcaps array, generator.

use super::read::{
    ENDIAN_LITTLE, EXTENSION_MAGIC, MAGIC_NEW, NEW_ENTRY, NEW_HEADER, TAG_GENERATOR, TAG_HWCAPS, hwcaps_index,
};
use super::{Entry, HWCAP_EXTENSION, LdCache, compare};
use std::borrow::Cow;
use std::collections::HashMap;

/// Written into the generator section (`ldconfig -p` prints it last).
pub const GENERATOR: &[u8] = b"mighook";

/// The new-format file for `cache`, entries sorted as ldconfig sorts them (stable:
/// equal entries keep their order, which is how [`super::merge`] makes injected
/// entries win). A hwcaps entry whose subdir index is out of range is dropped:
/// the loader could never use it. The subdir names are written sorted by name, as
/// ldconfig does, and the entries renumbered to match.
///
/// Sizes fit in `u32`: [`super::parse`] bounds what an image contributes.
pub fn serialize(cache: &LdCache) -> Vec<u8> {
    // Subdirs in strcmp order; `renumber[old index] = new index`.
    let mut by_name: Vec<usize> = (0..cache.hwcap_subdirs.len()).collect();
    by_name.sort_by(|&a, &b| cache.hwcap_subdirs[a].cmp(&cache.hwcap_subdirs[b]));
    let mut renumber = vec![0u64; by_name.len()];
    for (new, &old) in by_name.iter().enumerate() {
        renumber[old] = new as u64;
    }

    // Borrowed: only a hwcaps entry, renumbered, is copied (a start merges a few hundred).
    let subdirs = cache.hwcap_subdirs.len();
    let mut entries: Vec<Cow<'_, Entry>> = Vec::with_capacity(cache.entries.len());
    for entry in &cache.entries {
        if entry.is_hwcaps() {
            let Some(old) = hwcaps_index(entry, subdirs) else { continue };
            let mut entry = entry.clone();
            entry.hwcap = (entry.hwcap & !0xffff_ffff) | renumber[old];
            entries.push(Cow::Owned(entry));
        } else {
            entries.push(Cow::Borrowed(entry));
        }
    }
    let names: Vec<Vec<u8>> = by_name.iter().map(|&i| cache.hwcap_subdirs[i].clone()).collect();
    entries.sort_by(|a, b| compare(a, b, &names));
    let uses_hwcaps = entries.iter().any(|e| e.hwcap & HWCAP_EXTENSION != 0);

    // Strings: each distinct one once (no tail merging), offsets from the file start.
    let strings_at = NEW_HEADER as usize + entries.len() * NEW_ENTRY as usize;
    let mut strings = Strings { at: strings_at, bytes: Vec::new(), offsets: HashMap::with_capacity(2 * entries.len()) };
    let mut table = Vec::with_capacity(entries.len() * NEW_ENTRY as usize);
    for e in &entries {
        let (key, value) = (strings.intern(&e.key), strings.intern(&e.value));
        table.extend_from_slice(&e.flags.to_le_bytes());
        table.extend_from_slice(&key.to_le_bytes());
        table.extend_from_slice(&value.to_le_bytes());
        table.extend_from_slice(&e.osversion.to_le_bytes());
        table.extend_from_slice(&e.hwcap.to_le_bytes());
    }
    let name_offsets: Vec<u32> = if uses_hwcaps { names.iter().map(|n| strings.intern(n)).collect() } else { vec![] };

    let strings = strings.bytes;
    let mut out = Vec::with_capacity(strings_at + strings.len() + 64 + GENERATOR.len());
    out.extend_from_slice(MAGIC_NEW);
    out.extend_from_slice(&to_u32(entries.len()).to_le_bytes());
    out.extend_from_slice(&to_u32(strings.len()).to_le_bytes());
    out.extend_from_slice(&[ENDIAN_LITTLE, 0, 0, 0]);
    let extension_at_field = out.len();
    out.extend_from_slice(&[0; 16]);
    out.extend_from_slice(&table);
    out.extend_from_slice(&strings);
    out.resize(out.len().next_multiple_of(4), 0);

    // Extension directory: magic, count, then (tag, flags, offset, size) per section.
    let extension_at = out.len();
    out[extension_at_field..extension_at_field + 4].copy_from_slice(&to_u32(extension_at).to_le_bytes());
    let sections = if uses_hwcaps { 2 } else { 1 };
    let hwcaps_at = extension_at + 8 + 16 * sections;
    let generator_at = hwcaps_at + 4 * name_offsets.len();
    out.extend_from_slice(&EXTENSION_MAGIC.to_le_bytes());
    out.extend_from_slice(&to_u32(sections).to_le_bytes());
    if uses_hwcaps {
        for word in [TAG_HWCAPS, 0, to_u32(hwcaps_at), to_u32(4 * name_offsets.len())] {
            out.extend_from_slice(&word.to_le_bytes());
        }
    }
    for word in [TAG_GENERATOR, 0, to_u32(generator_at), to_u32(GENERATOR.len())] {
        out.extend_from_slice(&word.to_le_bytes());
    }
    for offset in name_offsets {
        out.extend_from_slice(&offset.to_le_bytes());
    }
    out.extend_from_slice(GENERATOR);
    out
}

fn to_u32(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

/// The string table being built.
struct Strings<'a> {
    /// File offset of the table.
    at: usize,
    bytes: Vec<u8>,
    offsets: HashMap<&'a [u8], u32>,
}

impl<'a> Strings<'a> {
    /// The offset of `s`, added with its NUL the first time.
    fn intern(&mut self, s: &'a [u8]) -> u32 {
        if let Some(&at) = self.offsets.get(s) {
            return at;
        }
        let at = to_u32(self.at + self.bytes.len());
        self.bytes.extend_from_slice(s);
        self.bytes.push(0);
        self.offsets.insert(s, at);
        at
    }
}

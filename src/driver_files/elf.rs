//! `DT_SONAME` of an ELF64 little-endian shared library, read with a few
//! positioned reads (the driver's libraries are tens of MiB; only the headers,
//! the dynamic segment and one string are read).
//!
//! Program headers → `PT_DYNAMIC` → `DT_STRTAB` (an address, mapped to a file
//! offset through the `PT_LOAD` segment holding it), `DT_STRSZ` and `DT_SONAME`
//! (an offset into that table). Every offset and size is checked; a file that
//! does not add up is an error, never a panic.

use std::io;
use std::os::unix::fs::FileExt;

const PT_LOAD: u32 = 1;
const PT_DYNAMIC: u32 = 2;
const DT_NULL: u64 = 0;
const DT_STRTAB: u64 = 5;
const DT_STRSZ: u64 = 10;
const DT_SONAME: u64 = 14;
/// More program headers than any real library has.
const MAX_PHDRS: u64 = 256;
/// Dynamic entries read at most (real libraries have a few dozen).
const MAX_DYNAMIC: u64 = 4096;
/// A SONAME is a file name.
const MAX_NAME: u64 = 255;

/// Bytes at an offset: a file, or a slice in tests.
pub trait Source {
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()>;
    fn size(&self) -> io::Result<u64>;
}

impl Source for std::fs::File {
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        FileExt::read_exact_at(self, buf, offset)
    }

    fn size(&self) -> io::Result<u64> {
        Ok(self.metadata()?.len())
    }
}

impl Source for [u8] {
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        let from = usize::try_from(offset).ok();
        let part = from.and_then(|f| self.get(f..f.checked_add(buf.len())?));
        let part = part.ok_or_else(|| io::Error::from(io::ErrorKind::UnexpectedEof))?;
        buf.copy_from_slice(part);
        Ok(())
    }

    fn size(&self) -> io::Result<u64> {
        Ok(self.len() as u64)
    }
}

fn u16_at(b: &[u8], at: usize) -> u64 {
    u64::from(u16::from_le_bytes([b[at], b[at + 1]]))
}
fn u32_at(b: &[u8], at: usize) -> u64 {
    u64::from(u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]]))
}
fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3], b[at + 4], b[at + 5], b[at + 6], b[at + 7]])
}

fn read(src: &(impl Source + ?Sized), offset: u64, len: u64, what: &str) -> Result<Vec<u8>, String> {
    let mut buf = vec![0; len as usize];
    src.read_exact_at(&mut buf, offset).map_err(|e| format!("{what} at {offset}+{len}: {e}"))?;
    Ok(buf)
}

/// The SONAME, `None` when the library has none. The error says what did not add up.
pub fn soname(src: &(impl Source + ?Sized)) -> Result<Option<Vec<u8>>, String> {
    let header = read(src, 0, 64, "ELF header")?;
    if &header[..4] != b"\x7fELF" {
        return Err("not an ELF file".into());
    }
    if header[4] != 2 || header[5] != 1 {
        return Err("not ELF64 little-endian".into());
    }
    let (phoff, phentsize, phnum) = (u64_at(&header, 0x20), u16_at(&header, 0x36), u16_at(&header, 0x38));
    if !(56..=128).contains(&phentsize) || phnum > MAX_PHDRS {
        return Err(format!("odd program headers: {phnum} of {phentsize} bytes"));
    }
    let table = read(src, phoff, phentsize * phnum, "program headers")?;
    // (offset, vaddr, filesz) of the loads, and the dynamic segment's (offset, filesz).
    let mut loads = Vec::new();
    let mut dynamic = None;
    for ph in table.chunks_exact(phentsize as usize) {
        let (offset, vaddr, filesz) = (u64_at(ph, 8), u64_at(ph, 16), u64_at(ph, 32));
        match u32_at(ph, 0) as u32 {
            PT_LOAD => loads.push((offset, vaddr, filesz)),
            PT_DYNAMIC => dynamic = Some((offset, filesz)),
            _ => {}
        }
    }
    let Some((dyn_offset, dyn_size)) = dynamic else { return Ok(None) };
    let entries = (dyn_size / 16).min(MAX_DYNAMIC);
    let dynamic = read(src, dyn_offset, entries * 16, "dynamic segment")?;
    let (mut strtab, mut strsz, mut name) = (None, None, None);
    for d in dynamic.chunks_exact(16) {
        match (u64_at(d, 0), u64_at(d, 8)) {
            (DT_NULL, _) => break,
            (DT_STRTAB, v) => strtab = Some(v),
            (DT_STRSZ, v) => strsz = Some(v),
            (DT_SONAME, v) => name = Some(v),
            _ => {}
        }
    }
    let Some(name) = name else { return Ok(None) };
    let (Some(strtab), Some(strsz)) = (strtab, strsz) else {
        return Err("DT_SONAME without DT_STRTAB/DT_STRSZ".into());
    };
    // DT_STRTAB is an address: find the load segment whose file bytes hold it.
    let file_offset = loads
        .iter()
        .find(|&&(_, vaddr, filesz)| strtab >= vaddr && strtab - vaddr < filesz)
        .map(|&(offset, vaddr, _)| offset + (strtab - vaddr))
        .ok_or_else(|| format!("DT_STRTAB {strtab:#x} is in no PT_LOAD segment"))?;
    if name >= strsz {
        return Err(format!("DT_SONAME {name} is past DT_STRSZ {strsz}"));
    }
    let len = (strsz - name).min(MAX_NAME + 1);
    let start = file_offset.checked_add(name).ok_or("DT_SONAME offset overflows")?;
    let size = src.size().map_err(|e| format!("size: {e}"))?;
    if start >= size {
        return Err(format!("DT_SONAME at file offset {start} is past the end ({size} bytes)"));
    }
    let bytes = read(src, start, len.min(size - start), "SONAME")?;
    if let Some(nul) = bytes.iter().position(|&b| b == 0) {
        return Ok(Some(bytes[..nul].to_vec()));
    }
    Err("SONAME has no NUL within 255 bytes or the string table".into())
}

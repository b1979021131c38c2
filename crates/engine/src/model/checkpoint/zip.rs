//! The central directory of a stored (uncompressed) zip archive, read from a byte slice: what a
//! PyTorch checkpoint is. Every offset and size is checked against the slice, so a truncated or
//! hostile archive is an error, never a panic or an out-of-range read.
//!
//! Our own because the `zip` crate from 9.1 on rejects valid PyTorch archives ("Invalid Central
//! Directory header") depending on the archive's root name and entry sizes, and because a stored
//! archive needs no decompressor: its entries are byte ranges of the mapped file.

use std::collections::HashMap;
use std::ops::Range;

/// No archive we read has more entries than this (a checkpoint has one per storage; SD 1.5 with
/// EMA and optimizer state has a few thousand).
pub const MAX_ENTRIES: usize = 1_000_000;

const EOCD_SIG: u32 = 0x0605_4b50;
const ZIP64_LOCATOR_SIG: u32 = 0x0706_4b50;
const ZIP64_EOCD_SIG: u32 = 0x0606_4b50;
const CENTRAL_SIG: u32 = 0x0201_4b50;
const LOCAL_SIG: u32 = 0x0403_4b50;
const EOCD_LEN: usize = 22;
const MAX_COMMENT: usize = 0xffff;
const ZIP64_EXTRA_ID: u16 = 0x0001;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ZipError {
    #[error("not a zip archive (no end-of-central-directory record)")]
    NoEndRecord,
    #[error("the zip archive is truncated or corrupt ({0})")]
    Corrupt(&'static str),
    #[error("the zip archive spans several disks")]
    MultiDisk,
    #[error("the zip archive lists {0} entries, more than the {MAX_ENTRIES} allowed")]
    TooManyEntries(u64),
    #[error("zip entry {name:?} is compressed (method {method}); checkpoints store entries uncompressed")]
    Compressed { name: String, method: u16 },
    #[error("zip entry {0:?} is encrypted")]
    Encrypted(String),
}

/// One stored entry: where its bytes lie in the archive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub name: String,
    pub data: Range<usize>,
}

/// The entries of an archive, by name.
#[derive(Debug, Default)]
pub struct Archive {
    entries: Vec<Entry>,
    by_name: HashMap<String, usize>,
}

struct Cursor<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn at(bytes: &'a [u8], pos: usize) -> Self {
        Self { bytes, pos }
    }

    fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], ZipError> {
        let end = self.pos.checked_add(n).ok_or(ZipError::Corrupt(what))?;
        let s = self
            .bytes
            .get(self.pos..end)
            .ok_or(ZipError::Corrupt(what))?;
        self.pos = end;
        Ok(s)
    }

    fn u16(&mut self, what: &'static str) -> Result<u16, ZipError> {
        let s = self.take(2, what)?;
        Ok(u16::from_le_bytes([s[0], s[1]]))
    }

    fn u32(&mut self, what: &'static str) -> Result<u32, ZipError> {
        let s = self.take(4, what)?;
        Ok(u32::from_le_bytes([s[0], s[1], s[2], s[3]]))
    }

    fn u64(&mut self, what: &'static str) -> Result<u64, ZipError> {
        let s = self.take(8, what)?;
        let mut b = [0u8; 8];
        b.copy_from_slice(s);
        Ok(u64::from_le_bytes(b))
    }
}

fn to_usize(v: u64, what: &'static str) -> Result<usize, ZipError> {
    usize::try_from(v).map_err(|_| ZipError::Corrupt(what))
}

/// The end-of-central-directory record: the last `PK\5\6` whose comment ends exactly at the
/// end of the file (a signature inside the comment or inside data does not qualify).
fn find_end_record(bytes: &[u8]) -> Result<usize, ZipError> {
    if bytes.len() < EOCD_LEN {
        return Err(ZipError::NoEndRecord);
    }
    let last = bytes.len() - EOCD_LEN;
    let first = last.saturating_sub(MAX_COMMENT);
    (first..=last)
        .rev()
        .find(|&pos| {
            bytes[pos..pos + 4] == EOCD_SIG.to_le_bytes()
                && pos + EOCD_LEN + u16::from_le_bytes([bytes[pos + 20], bytes[pos + 21]]) as usize
                    == bytes.len()
        })
        .ok_or(ZipError::NoEndRecord)
}

/// Where the central directory lies and how many entries it has, zip64 included.
fn central_directory(bytes: &[u8]) -> Result<(usize, usize, u64), ZipError> {
    let eocd = find_end_record(bytes)?;
    let mut c = Cursor::at(bytes, eocd + 4);
    let disk = c.u16("end record")?;
    let cd_disk = c.u16("end record")?;
    let _entries_here = c.u16("end record")?;
    let entries = c.u16("end record")?;
    let cd_size = c.u32("end record")?;
    let cd_offset = c.u32("end record")?;
    let needs_zip64 = entries == 0xffff || cd_size == 0xffff_ffff || cd_offset == 0xffff_ffff;
    let has_locator = eocd >= 20 && bytes[eocd - 20..eocd - 16] == ZIP64_LOCATOR_SIG.to_le_bytes();
    if has_locator {
        let mut l = Cursor::at(bytes, eocd - 16);
        let _disk = l.u32("zip64 locator")?;
        let record = to_usize(l.u64("zip64 locator")?, "zip64 locator")?;
        let mut r = Cursor::at(bytes, record);
        if r.u32("zip64 end record")? != ZIP64_EOCD_SIG {
            return Err(ZipError::Corrupt("zip64 end record signature"));
        }
        let _size = r.u64("zip64 end record")?;
        let _made = r.u16("zip64 end record")?;
        let _needed = r.u16("zip64 end record")?;
        let disk = r.u32("zip64 end record")?;
        let cd_disk = r.u32("zip64 end record")?;
        if disk != 0 || cd_disk != 0 {
            return Err(ZipError::MultiDisk);
        }
        let _entries_here = r.u64("zip64 end record")?;
        let entries = r.u64("zip64 end record")?;
        let cd_size = to_usize(r.u64("zip64 end record")?, "central directory size")?;
        let cd_offset = to_usize(r.u64("zip64 end record")?, "central directory offset")?;
        return Ok((cd_offset, cd_size, entries));
    }
    if needs_zip64 {
        return Err(ZipError::Corrupt("zip64 locator missing"));
    }
    if disk != 0 || cd_disk != 0 {
        return Err(ZipError::MultiDisk);
    }
    Ok((cd_offset as usize, cd_size as usize, entries as u64))
}

/// Replaces the 32-bit fields that say 0xffffffff with their zip64 extra-field values, in the
/// order the format gives: uncompressed size, compressed size, local header offset.
fn apply_zip64_extra(
    extra: &[u8],
    uncompressed: &mut u64,
    compressed: &mut u64,
    offset: &mut u64,
) -> Result<(), ZipError> {
    let mut c = Cursor::at(extra, 0);
    while c.pos + 4 <= extra.len() {
        let id = c.u16("extra field")?;
        let len = c.u16("extra field")? as usize;
        let body = c.take(len, "extra field")?;
        if id != ZIP64_EXTRA_ID {
            continue;
        }
        let mut b = Cursor::at(body, 0);
        for field in [uncompressed, compressed, offset] {
            if *field == 0xffff_ffff {
                *field = b.u64("zip64 extra field")?;
            }
        }
        return Ok(());
    }
    Ok(())
}

impl Archive {
    /// Reads the central directory of `bytes` and checks that every entry's data lies inside it.
    pub fn read(bytes: &[u8]) -> Result<Self, ZipError> {
        let (cd_offset, cd_size, count) = central_directory(bytes)?;
        if count > MAX_ENTRIES as u64 {
            return Err(ZipError::TooManyEntries(count));
        }
        let cd_end = cd_offset
            .checked_add(cd_size)
            .filter(|&e| e <= bytes.len())
            .ok_or(ZipError::Corrupt("central directory outside the file"))?;
        let directory = &bytes[cd_offset..cd_end];
        let mut c = Cursor::at(directory, 0);
        let mut archive = Archive::default();
        for _ in 0..count {
            if c.u32("central directory entry")? != CENTRAL_SIG {
                return Err(ZipError::Corrupt("central directory entry signature"));
            }
            let _made = c.u16("central directory entry")?;
            let _needed = c.u16("central directory entry")?;
            let flags = c.u16("central directory entry")?;
            let method = c.u16("central directory entry")?;
            let _time = c.u32("central directory entry")?;
            let _crc = c.u32("central directory entry")?;
            let mut compressed = c.u32("central directory entry")? as u64;
            let mut uncompressed = c.u32("central directory entry")? as u64;
            let name_len = c.u16("central directory entry")? as usize;
            let extra_len = c.u16("central directory entry")? as usize;
            let comment_len = c.u16("central directory entry")? as usize;
            let _disk = c.u16("central directory entry")?;
            let _internal = c.u16("central directory entry")?;
            let _external = c.u32("central directory entry")?;
            let mut offset = c.u32("central directory entry")? as u64;
            let name_bytes = c.take(name_len, "entry name")?;
            let extra = c.take(extra_len, "entry extra field")?;
            c.take(comment_len, "entry comment")?;
            apply_zip64_extra(extra, &mut uncompressed, &mut compressed, &mut offset)?;
            let name = String::from_utf8_lossy(name_bytes).into_owned();
            if flags & 1 != 0 {
                return Err(ZipError::Encrypted(name));
            }
            if method != 0 {
                return Err(ZipError::Compressed { name, method });
            }
            if compressed != uncompressed {
                return Err(ZipError::Corrupt("stored entry sizes disagree"));
            }
            let data = local_data(bytes, to_usize(offset, "entry offset")?, uncompressed)?;
            archive.by_name.insert(name.clone(), archive.entries.len());
            archive.entries.push(Entry { name, data });
        }
        Ok(archive)
    }

    pub fn entries(&self) -> &[Entry] {
        &self.entries
    }

    pub fn get(&self, name: &str) -> Option<&Entry> {
        self.by_name.get(name).map(|&i| &self.entries[i])
    }
}

/// The byte range of an entry's data, after its local header (whose name and extra lengths may
/// differ from the central directory's: PyTorch pads data to 64 bytes there).
fn local_data(bytes: &[u8], offset: usize, size: u64) -> Result<Range<usize>, ZipError> {
    let mut c = Cursor::at(bytes, offset);
    if c.u32("local header")? != LOCAL_SIG {
        return Err(ZipError::Corrupt("local header signature"));
    }
    c.take(22, "local header")?;
    let name_len = c.u16("local header")? as usize;
    let extra_len = c.u16("local header")? as usize;
    c.take(name_len + extra_len, "local header")?;
    let start = c.pos;
    let end = start
        .checked_add(to_usize(size, "entry size")?)
        .filter(|&e| e <= bytes.len())
        .ok_or(ZipError::Corrupt(
            "entry data runs past the end of the file",
        ))?;
    Ok(start..end)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A stored archive as PyTorch writes one (zip64 records optional), for tests.
    pub(crate) fn write_stored(entries: &[(&str, &[u8])], zip64: bool) -> Vec<u8> {
        let mut out = vec![];
        let mut central = vec![];
        for (name, data) in entries {
            let offset = out.len() as u32;
            out.extend(LOCAL_SIG.to_le_bytes());
            out.extend([20, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
            out.extend(0u32.to_le_bytes()); // crc (unchecked)
            out.extend((data.len() as u32).to_le_bytes());
            out.extend((data.len() as u32).to_le_bytes());
            out.extend((name.len() as u16).to_le_bytes());
            out.extend(0u16.to_le_bytes());
            out.extend(name.as_bytes());
            out.extend(*data);
            central.extend(CENTRAL_SIG.to_le_bytes());
            central.extend([20, 0, 20, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
            central.extend(0u32.to_le_bytes());
            central.extend((data.len() as u32).to_le_bytes());
            central.extend((data.len() as u32).to_le_bytes());
            central.extend((name.len() as u16).to_le_bytes());
            let extra: Vec<u8> = if zip64 {
                let mut e = vec![];
                e.extend(ZIP64_EXTRA_ID.to_le_bytes());
                e.extend(8u16.to_le_bytes());
                e.extend((offset as u64).to_le_bytes());
                e
            } else {
                vec![]
            };
            central.extend((extra.len() as u16).to_le_bytes());
            central.extend([0u8; 10]);
            central.extend(if zip64 { 0xffff_ffff } else { offset }.to_le_bytes());
            central.extend(name.as_bytes());
            central.extend(extra);
        }
        let cd_offset = out.len();
        out.extend(&central);
        if zip64 {
            let record = out.len() as u64;
            out.extend(ZIP64_EOCD_SIG.to_le_bytes());
            out.extend(44u64.to_le_bytes());
            out.extend([45, 0, 45, 0]);
            out.extend([0u8; 8]);
            out.extend((entries.len() as u64).to_le_bytes());
            out.extend((entries.len() as u64).to_le_bytes());
            out.extend((central.len() as u64).to_le_bytes());
            out.extend((cd_offset as u64).to_le_bytes());
            out.extend(ZIP64_LOCATOR_SIG.to_le_bytes());
            out.extend(0u32.to_le_bytes());
            out.extend(record.to_le_bytes());
            out.extend(1u32.to_le_bytes());
        }
        out.extend(EOCD_SIG.to_le_bytes());
        out.extend([0u8; 4]);
        let n = if zip64 { 0xffff } else { entries.len() as u16 };
        out.extend(n.to_le_bytes());
        out.extend(n.to_le_bytes());
        out.extend((central.len() as u32).to_le_bytes());
        let off = if zip64 { 0xffff_ffff } else { cd_offset as u32 };
        out.extend(off.to_le_bytes());
        out.extend(0u16.to_le_bytes());
        out
    }

    #[test]
    fn reads_plain_and_zip64_archives() {
        for zip64 in [false, true] {
            let bytes = write_stored(&[("a/data.pkl", b"hello"), ("a/data/0", b"1234")], zip64);
            let a = Archive::read(&bytes).unwrap();
            let e = a.get("a/data/0").unwrap();
            assert_eq!(&bytes[e.data.clone()], b"1234");
            assert_eq!(a.entries().len(), 2);
        }
    }

    #[test]
    fn every_truncation_is_an_error_not_a_panic() {
        for zip64 in [false, true] {
            let bytes = write_stored(&[("a/data.pkl", b"hello"), ("a/data/0", b"1234")], zip64);
            for n in 0..bytes.len() {
                assert!(Archive::read(&bytes[..n]).is_err(), "truncated at {n}");
            }
        }
    }

    #[test]
    fn every_flipped_byte_is_handled() {
        let bytes = write_stored(&[("a/data.pkl", b"hello"), ("a/data/0", b"1234")], true);
        for i in 0..bytes.len() {
            for v in [0u8, 0xff, 0x7f] {
                let mut b = bytes.clone();
                b[i] = v;
                if let Ok(a) = Archive::read(&b) {
                    for e in a.entries() {
                        assert!(e.data.end <= b.len());
                    }
                }
            }
        }
    }

    #[test]
    fn huge_counts_and_offsets_are_rejected() {
        let mut bytes = write_stored(&[("x", b"1")], false);
        let n = bytes.len();
        // total entries = 0xfffe with a tiny directory
        bytes[n - 12] = 0xfe;
        bytes[n - 11] = 0xff;
        assert!(Archive::read(&bytes).is_err());
        let mut bytes = write_stored(&[("x", b"1")], false);
        let n = bytes.len();
        bytes[n - 6..n - 2].copy_from_slice(&0xffff_fff0u32.to_le_bytes());
        assert!(Archive::read(&bytes).is_err());
    }

    #[test]
    fn compressed_entries_are_named() {
        let mut bytes = write_stored(&[("a/data.pkl", b"hello")], false);
        let cd = bytes
            .windows(4)
            .position(|w| w == CENTRAL_SIG.to_le_bytes())
            .unwrap();
        bytes[cd + 10] = 8;
        assert_eq!(
            Archive::read(&bytes).unwrap_err(),
            ZipError::Compressed {
                name: "a/data.pkl".into(),
                method: 8
            }
        );
    }
}

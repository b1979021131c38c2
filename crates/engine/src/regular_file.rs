//! Opening files a user, a folder or a config named: regular files only, read within a bound.
//! A FIFO would block `open` forever and a device (`/dev/zero`) would be read without end;
//! both are refused before anything is opened.

use std::fs::File;
use std::io::{Error, ErrorKind, Read};
use std::path::Path;

/// The largest JSON config or tokenizer read (SD's `tokenizer.json` is about 2 MB).
pub const MAX_JSON_BYTES: u64 = 64 << 20;

/// `path` opened for reading, if it is a regular file (symlinks to one are followed).
pub fn open(path: &Path) -> std::io::Result<File> {
    let meta = std::fs::metadata(path)?;
    if !meta.is_file() {
        return Err(Error::new(
            ErrorKind::InvalidInput,
            if meta.is_dir() {
                "a folder, not a file"
            } else {
                "not a regular file"
            },
        ));
    }
    File::open(path)
}

/// The bytes of a regular file of at most `max` bytes.
pub fn read(path: &Path, max: u64) -> std::io::Result<Vec<u8>> {
    let file = open(path)?;
    let len = file.metadata()?.len();
    if len > max {
        return Err(too_large(len, max));
    }
    let mut bytes = Vec::with_capacity(len as usize);
    // At most one byte past the bound, whatever the size said (a file may grow).
    file.take(max + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > max {
        return Err(too_large(bytes.len() as u64, max));
    }
    Ok(bytes)
}

/// The text of a regular file of at most `max` bytes.
pub fn read_to_string(path: &Path, max: u64) -> std::io::Result<String> {
    String::from_utf8(read(path, max)?).map_err(|e| Error::new(ErrorKind::InvalidData, e))
}

fn too_large(len: u64, max: u64) -> Error {
    Error::new(
        ErrorKind::InvalidData,
        format!("{len} bytes, larger than the {max} read from such a file"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn devices_folders_and_oversized_files_are_refused_without_blocking() {
        assert!(open(Path::new("/dev/zero")).is_err());
        assert!(open(Path::new("/")).is_err());
        let dir = std::env::temp_dir().join(format!("pentimento-regular-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let f = dir.join("a.json");
        std::fs::write(&f, "0123456789").unwrap();
        assert_eq!(read_to_string(&f, 10).unwrap(), "0123456789");
        assert!(read_to_string(&f, 9).is_err());
        #[cfg(unix)]
        {
            let fifo = dir.join("fifo.safetensors");
            let _ = std::fs::remove_file(&fifo);
            let made = std::process::Command::new("mkfifo").arg(&fifo).status();
            if made.is_ok_and(|s| s.success()) {
                let err = open(&fifo).unwrap_err();
                assert_eq!(err.to_string(), "not a regular file");
            }
        }
        let _ = std::fs::remove_dir_all(dir);
    }
}

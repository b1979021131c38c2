//! Files written so that a reader, a crash or a full disk never sees half of them: the bytes go
//! to a temporary file in the same folder, are flushed to the disk, and only then replace the
//! target by a rename (atomic on one file system). A failure leaves the previous file as it was.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// Distinguishes temporary files of concurrent writers within one process (the pid separates
/// processes).
static NEXT: AtomicU64 = AtomicU64::new(0);

/// Writes `path` through `write`, atomically. The temporary file is removed on any failure.
pub fn write_with(
    path: &Path,
    write: impl FnOnce(&mut BufWriter<&File>) -> std::io::Result<()>,
) -> std::io::Result<()> {
    let tmp = temporary_name(path)?;
    let result = (|| {
        let file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&tmp)?;
        let mut out = BufWriter::new(&file);
        write(&mut out)?;
        out.flush()?;
        drop(out);
        file.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
        return result;
    }
    sync_folder(path);
    Ok(())
}

/// Writes `bytes` to `path`, atomically.
pub fn write(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    write_with(path, |out| out.write_all(bytes))
}

/// `.NAME.PID.N.tmp` beside `path`: hidden, and never a name another writer uses.
fn temporary_name(path: &Path) -> std::io::Result<PathBuf> {
    let name = path.file_name().ok_or_else(|| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!("{} is not a file path", path.display()),
        )
    })?;
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let tmp = format!(".{}.{}.{n}.tmp", name.to_string_lossy(), std::process::id());
    Ok(path.with_file_name(tmp))
}

/// Makes the rename itself durable. Folders cannot be opened for syncing everywhere (Windows);
/// there the rename is as durable as the file system makes it.
fn sync_folder(path: &Path) {
    let folder = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    if let Ok(dir) = File::open(folder) {
        let _ = dir.sync_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp(name: &str) -> PathBuf {
        let d =
            std::env::temp_dir().join(format!("pentimento-atomic-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn a_failed_write_keeps_the_previous_file_and_leaves_no_temporary() {
        let dir = temp("fail");
        let path = dir.join("out.png");
        write(&path, b"first").unwrap();
        let err = write_with(&path, |out| {
            out.write_all(b"half of the sec")?;
            Err(std::io::Error::other("disk full"))
        })
        .unwrap_err();
        assert_eq!(err.to_string(), "disk full");
        assert_eq!(std::fs::read(&path).unwrap(), b"first");
        assert_eq!(
            std::fs::read_dir(&dir).unwrap().count(),
            1,
            "no temporary left"
        );
        write(&path, b"second").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"second");
    }

    #[test]
    fn refuses_a_folder_as_the_target_without_touching_it() {
        let dir = temp("folder");
        std::fs::create_dir(dir.join("sub")).unwrap();
        std::fs::write(dir.join("sub/keep"), b"k").unwrap();
        assert!(write(&dir.join("sub"), b"x").is_err());
        assert_eq!(std::fs::read(dir.join("sub/keep")).unwrap(), b"k");
        assert!(write(Path::new("/"), b"x").is_err());
    }
}

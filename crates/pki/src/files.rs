//! File plumbing for the PKI: private directories, reads that tell "missing" from "broken",
//! and atomic writes with the right mode from the first byte.
//!
//! Must never leave a half-written certificate, key or kubeconfig at its final path, and never
//! create a key file readable by anyone but its owner, not even for an instant.

use std::fs::{self, DirBuilder, OpenOptions, Permissions};
use std::io::{ErrorKind, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::{Error, Result};

/// Mode of private keys and kubeconfigs.
pub(crate) const PRIVATE: u32 = 0o600;
/// Mode of certificates: owner-only too, as CIS 1.1.20 asks of PKI files (the
/// directory is 0700 anyway).
pub(crate) const PUBLIC: u32 = 0o600;
/// Mode of the TLS directory.
pub(crate) const PRIVATE_DIR: u32 = 0o700;

/// Creates `dir` (and missing parents) with mode 0700; an existing directory is left as it is.
pub(crate) fn ensure_dir(dir: &Path) -> Result<()> {
    match fs::metadata(dir) {
        Ok(meta) if meta.is_dir() => Ok(()),
        Ok(_) => Err(Error::io(
            "use as a directory",
            dir,
            std::io::Error::new(ErrorKind::AlreadyExists, "exists and is not a directory"),
        )),
        Err(e) if e.kind() == ErrorKind::NotFound => DirBuilder::new()
            .recursive(true)
            .mode(PRIVATE_DIR)
            .create(dir)
            .map_err(|e| Error::io("create directory", dir, e)),
        Err(e) => Err(Error::io("inspect", dir, e)),
    }
}

/// Reads `path`, or `None` if it does not exist. Any other failure is an error.
pub(crate) fn read_optional(path: &Path) -> Result<Option<Vec<u8>>> {
    match fs::read(path) {
        Ok(bytes) => Ok(Some(bytes)),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Error::io("read", path, e)),
    }
}

/// Writes `contents` to `path` with `mode` via a temporary file in the same directory and a
/// rename, so readers see the old file or the new one, never a mix.
pub(crate) fn write_atomic(path: &Path, contents: &[u8], mode: u32) -> Result<()> {
    let tmp = temp_path(path);
    let result = write_then_rename(&tmp, path, contents, mode);
    if result.is_err() {
        // Best effort: the error that matters is the one being returned.
        let _ = fs::remove_file(&tmp);
    }
    result
}

fn write_then_rename(tmp: &Path, path: &Path, contents: &[u8], mode: u32) -> Result<()> {
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(tmp)
        .map_err(|e| Error::io("create", tmp, e))?;
    // The umask may have narrowed the mode given to open(2); certificates must stay readable.
    file.set_permissions(Permissions::from_mode(mode))
        .map_err(|e| Error::io("set permissions of", tmp, e))?;
    file.write_all(contents).map_err(|e| Error::io("write", tmp, e))?;
    file.sync_all().map_err(|e| Error::io("sync", tmp, e))?;
    drop(file);
    fs::rename(tmp, path).map_err(|e| Error::io("rename into place", path, e))?;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        // Make the rename itself durable; failing to sync a directory is not worth an error.
        if let Ok(dir) = fs::File::open(dir) {
            let _ = dir.sync_all();
        }
    }
    Ok(())
}

/// `<dir>/.<name>.tmp.<pid>.<n>`: unique per process and call, hidden, on the same filesystem.
fn temp_path(path: &Path) -> PathBuf {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    path.with_file_name(format!(".{name}.tmp.{}.{n}", std::process::id()))
}

/// Sets `path`'s mode to `mode` if it differs.
pub(crate) fn ensure_mode(path: &Path, mode: u32) -> Result<()> {
    let meta = fs::metadata(path).map_err(|e| Error::io("inspect", path, e))?;
    if meta.permissions().mode() & 0o7777 != mode {
        fs::set_permissions(path, Permissions::from_mode(mode))
            .map_err(|e| Error::io("set permissions of", path, e))?;
    }
    Ok(())
}

//! Durable file replacement: a file on disk is either its old bytes or its new bytes, never half.
//!
//! Every file lookout changes (compose files, `.env` files, the state file) goes through
//! [`replace`]: write a temp file in the same folder, fsync it, rename it over the target, fsync
//! the folder. The temp file takes the target's mode and, when the process may, its owner.
//! A file lookout creates where there was none (an env file for a variable whose default lived in
//! the compose file) goes through [`create_new`], which never replaces a file that appeared
//! meanwhile, and one it removes again (the rollback of that creation) through [`remove`].

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// What went wrong while replacing a file, with the path it concerns.
#[derive(Debug, thiserror::Error)]
#[error("{action} {path}: {source}")]
pub struct DurableError {
    pub action: &'static str,
    pub path: PathBuf,
    #[source]
    pub source: io::Error,
}

fn err(action: &'static str, path: &Path) -> impl FnOnce(io::Error) -> DurableError {
    let path = path.to_path_buf();
    move |source| DurableError {
        action,
        path,
        source,
    }
}

/// The permissions a new file gets when the target does not exist yet.
#[derive(Debug, Clone, Copy)]
pub(crate) struct NewFileMode(pub u32);

/// Replaces `path` with `bytes` atomically and durably.
///
/// When `path` exists, the new file keeps its mode and (if permitted) its owner and group.
/// When it does not, it is created with `new_mode`. On any error the target is untouched and the
/// temp file is removed.
pub(crate) fn replace(
    path: &Path,
    bytes: &[u8],
    new_mode: NewFileMode,
) -> Result<(), DurableError> {
    let dir = parent_dir(path);
    let existing = match fs::metadata(path) {
        Ok(meta) => Some(meta),
        Err(e) if e.kind() == io::ErrorKind::NotFound => None,
        Err(e) => return Err(err("cannot read metadata of", path)(e)),
    };
    let tmp = temp_path(path);
    let mode = existing.as_ref().map_or(new_mode.0, |m| m.mode() & 0o7777);
    let owner = existing.as_ref().map(|m| (m.uid(), m.gid()));
    let result = write_temp(&tmp, bytes, mode, owner)
        .and_then(|()| fs::rename(&tmp, path).map_err(err("cannot rename temp file onto", path)))
        .and_then(|()| sync_dir(&dir));
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// Creates `path` holding `bytes`, atomically and durably, with `mode` and (when the process
/// may) `owner` (uid, gid). Refuses, with an error of kind [`io::ErrorKind::AlreadyExists`],
/// when `path` exists, also when it appeared after the caller looked: the complete temp file is
/// renamed into place without replacing (`RENAME_NOREPLACE`, or a hard link where the file
/// system lacks it). On any error nothing is left behind.
pub(crate) fn create_new(
    path: &Path,
    bytes: &[u8],
    mode: NewFileMode,
    owner: Option<(u32, u32)>,
) -> Result<(), DurableError> {
    let dir = parent_dir(path);
    let tmp = temp_path(path);
    let result = write_temp(&tmp, bytes, mode.0, owner)
        .and_then(|()| place_new(&tmp, path))
        .and_then(|()| sync_dir(&dir));
    // Gone after a rename; still there after a hard link or a failure.
    let _ = fs::remove_file(&tmp);
    result
}

/// Moves the written temp file to `path` unless `path` exists.
fn place_new(tmp: &Path, path: &Path) -> Result<(), DurableError> {
    use rustix::fs::{CWD, RenameFlags, renameat_with};
    use rustix::io::Errno;
    match renameat_with(CWD, tmp, CWD, path, RenameFlags::NOREPLACE) {
        Ok(()) => Ok(()),
        // This file system cannot rename without replacing; a hard link never replaces either.
        Err(Errno::INVAL | Errno::NOSYS | Errno::OPNOTSUPP) => {
            fs::hard_link(tmp, path).map_err(err("cannot create", path))
        }
        Err(e) => Err(err("cannot create", path)(e.into())),
    }
}

/// Removes `path` durably: once this returns, the removal survives a power cut.
pub(crate) fn remove(path: &Path) -> Result<(), DurableError> {
    fs::remove_file(path).map_err(err("cannot remove", path))?;
    sync_dir(&parent_dir(path))
}

fn write_temp(
    tmp: &Path,
    bytes: &[u8],
    mode: u32,
    owner: Option<(u32, u32)>,
) -> Result<(), DurableError> {
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(tmp)
        .map_err(err("cannot create temp file", tmp))?;
    // The umask may have narrowed the mode given to open(2); set it exactly.
    file.set_permissions(fs::Permissions::from_mode(mode))
        .map_err(err("cannot set mode of", tmp))?;
    if let Some((uid, gid)) = owner {
        // Giving the file an owner needs privileges; without them the file stays ours, which is
        // what an unprivileged editor would produce too.
        let _ = std::os::unix::fs::fchown(&file, Some(uid), Some(gid));
    }
    file.write_all(bytes)
        .map_err(err("cannot write temp file", tmp))?;
    file.sync_all()
        .map_err(err("cannot fsync temp file", tmp))?;
    Ok(())
}

/// Proves `dir` takes new files: creates an empty file in it and removes it again. Nothing
/// else is written, so it is safe on a folder in use (the state folder of a running lookout).
pub(crate) fn probe_writable(dir: &Path) -> io::Result<()> {
    static SEQ: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let probe = dir.join(format!(".lookout-probe-{}-{n}", std::process::id()));
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&probe)?;
    let _ = fs::remove_file(&probe);
    Ok(())
}

/// Fsyncs a folder so a rename inside it survives a power cut.
pub(crate) fn sync_dir(dir: &Path) -> Result<(), DurableError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(err("cannot fsync folder", dir))
}

fn parent_dir(path: &Path) -> PathBuf {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// `.<name>.lookout-tmp.<pid>.<n>` next to the target: hidden, and unique per process and call.
fn temp_path(path: &Path) -> PathBuf {
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let name = path
        .file_name()
        .map_or_else(|| "file".into(), |n| n.to_string_lossy());
    parent_dir(path).join(format!(".{name}.lookout-tmp.{}.{n}", std::process::id()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replaces_bytes_and_keeps_mode() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("compose.yaml");
        fs::write(&path, b"old").unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o640)).unwrap();
        replace(&path, b"new", NewFileMode(0o600)).unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"new");
        assert_eq!(fs::metadata(&path).unwrap().mode() & 0o777, 0o640);
        let leftovers: Vec<_> = fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(leftovers.len(), 1, "no temp file is left behind");
    }

    #[test]
    fn creates_missing_file_with_given_mode() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        replace(&path, b"{}", NewFileMode(0o600)).unwrap();
        assert_eq!(fs::metadata(&path).unwrap().mode() & 0o777, 0o600);
    }

    #[test]
    fn create_new_creates_with_the_mode_and_never_replaces() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(".env");
        let me = (
            rustix::process::getuid().as_raw(),
            rustix::process::getgid().as_raw(),
        );
        create_new(&path, b"TAG=1\n", NewFileMode(0o600), Some(me)).unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"TAG=1\n");
        assert_eq!(fs::metadata(&path).unwrap().mode() & 0o777, 0o600);
        let e = create_new(&path, b"TAG=2\n", NewFileMode(0o600), None).unwrap_err();
        assert_eq!(e.source.kind(), io::ErrorKind::AlreadyExists, "{e}");
        assert_eq!(
            fs::read(&path).unwrap(),
            b"TAG=1\n",
            "the file that was there stays"
        );
        let names: Vec<_> = fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(names.len(), 1, "no temp file is left behind");

        remove(&path).unwrap();
        assert!(!path.exists());
        let e = remove(&path).unwrap_err();
        assert_eq!(e.source.kind(), io::ErrorKind::NotFound, "{e}");
    }

    #[test]
    fn failure_leaves_target_untouched() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("missing-folder").join("x");
        let e = replace(&path, b"new", NewFileMode(0o600)).unwrap_err();
        assert!(e.to_string().contains("missing-folder"), "{e}");
    }
}

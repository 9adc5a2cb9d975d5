//! The process lock: one lookout per state file.
//!
//! An advisory `flock` on `<state file>.lock`, holding the pid of the lookout that holds it.
//! The kernel drops the lock when the holder exits, however it exits (`kill -9` included), so a
//! stale lock file never blocks a restart. The lock file is never deleted: deleting it would let
//! two processes lock two different files of the same name.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use rustix::fs::{FlockOperation, flock};

/// Why the lock could not be taken.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    /// The lock file cannot be created or opened: the folder is not writable.
    #[error("cannot open lock file {path}: {source}")]
    Open { path: PathBuf, source: io::Error },
    /// Another process holds the lock.
    #[error("lock file {path} is held by {}", holder_text(*.pid))]
    Held { path: PathBuf, pid: Option<u32> },
    /// `flock` failed for another reason (e.g. a file system without locks).
    #[error("cannot lock {path}: {source}")]
    Flock { path: PathBuf, source: io::Error },
    /// The lock was taken but our pid could not be written into it.
    #[error("cannot write pid into lock file {path}: {source}")]
    WritePid { path: PathBuf, source: io::Error },
}

pub(crate) fn holder_text(pid: Option<u32>) -> String {
    match pid {
        Some(pid) => format!("pid {pid}"),
        None => "a process whose pid is not written in it yet".to_owned(),
    }
}

/// A held lock; dropping it (or exiting) releases it.
#[derive(Debug)]
pub struct StateLock {
    path: PathBuf,
    // Held open for the lock's lifetime: closing the last descriptor releases the flock.
    _file: File,
}

impl StateLock {
    /// Takes the lock at `path` without waiting, creating the file (mode 0600) if needed,
    /// and writes this process's pid into it.
    pub fn acquire(path: &Path) -> Result<StateLock, LockError> {
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(path)
            .map_err(|source| LockError::Open {
                path: path.to_owned(),
                source,
            })?;
        match flock(&file, FlockOperation::NonBlockingLockExclusive) {
            Ok(()) => {}
            Err(rustix::io::Errno::WOULDBLOCK) => {
                return Err(LockError::Held {
                    path: path.to_owned(),
                    pid: read_pid(&mut file),
                });
            }
            Err(errno) => {
                return Err(LockError::Flock {
                    path: path.to_owned(),
                    source: errno.into(),
                });
            }
        }
        let pid = std::process::id();
        file.set_len(0)
            .and_then(|()| file.rewind())
            .and_then(|()| writeln!(file, "{pid}"))
            .map_err(|source| LockError::WritePid {
                path: path.to_owned(),
                source,
            })?;
        Ok(StateLock {
            path: path.to_owned(),
            _file: file,
        })
    }

    /// The lock file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

fn read_pid(file: &mut File) -> Option<u32> {
    let mut text = String::new();
    file.read_to_string(&mut text).ok()?;
    text.trim().parse().ok()
}

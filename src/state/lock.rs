//! The process lock: one lookout per state file.
//!
//! An advisory `flock` on `<state file>.lock` ([`lock_path`]), holding the pid of the lookout
//! that holds it. The kernel drops the lock when the holder exits, however it exits (`kill -9`
//! included), so a stale lock file never blocks a restart. The lock file is never deleted:
//! deleting it would let two processes lock two different files of the same name.
//!
//! [`StateLock::acquire`] takes the lock; [`holder`] says who holds it without taking it (for
//! `lookout doctor`, which must not get in a starting daemon's way).

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
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

/// The lock file of the state file `state_file`: the same path with `.lock` appended.
pub fn lock_path(state_file: &Path) -> PathBuf {
    let mut name = state_file.as_os_str().to_owned();
    name.push(".lock");
    PathBuf::from(name)
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

/// Who holds a lock, as [`holder`] found it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Holder {
    pub lock_file: PathBuf,
    /// The pid written in the lock file; `None` while the holder has not written it yet.
    pub pid: Option<u32>,
}

/// Who holds the lock at `lock_file`, read without taking it; `None` when nobody does (or the
/// file does not exist).
///
/// The lock file holds the pid of the lookout that took it last. Whether the lock is held now
/// comes from the kernel's lock table (`/proc/locks`), and where that cannot be read, from
/// whether that pid still runs.
pub fn holder(lock_file: &Path) -> Option<Holder> {
    let meta = std::fs::metadata(lock_file).ok()?;
    let pid = File::open(lock_file)
        .ok()
        .and_then(|mut f| read_pid(&mut f));
    let held = match std::fs::read_to_string("/proc/locks") {
        Ok(table) => locks_table_holds(&table, &lock_table_id(&meta)),
        Err(_) => pid.is_some_and(process_alive),
    };
    held.then(|| Holder {
        lock_file: lock_file.to_owned(),
        pid,
    })
}

/// The pid a holder wrote into the lock file.
fn read_pid(file: &mut File) -> Option<u32> {
    let mut text = String::new();
    file.read_to_string(&mut text).ok()?;
    text.trim().parse().ok()
}

/// How `/proc/locks` names a file: `major:minor:inode`, the device numbers in hex.
fn lock_table_id(meta: &std::fs::Metadata) -> String {
    let dev = meta.dev();
    format!(
        "{:02x}:{:02x}:{}",
        rustix::fs::major(dev),
        rustix::fs::minor(dev),
        meta.ino()
    )
}

/// Whether `/proc/locks` lists a granted `FLOCK` on the file `maj:min:inode`.
fn locks_table_holds(table: &str, id: &str) -> bool {
    table.lines().any(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        // `1: FLOCK  ADVISORY  WRITE 1234 08:01:5678 0 EOF`; a waiter has `->` after `1:`.
        fields.get(1) == Some(&"FLOCK") && fields.get(5) == Some(&id)
    })
}

fn process_alive(pid: u32) -> bool {
    let Some(pid) = i32::try_from(pid)
        .ok()
        .and_then(rustix::process::Pid::from_raw)
    else {
        return false;
    };
    match rustix::process::test_kill_process(pid) {
        Ok(()) => true,
        Err(e) => e == rustix::io::Errno::PERM,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_lock_file_sits_beside_the_state_file() {
        assert_eq!(
            lock_path(Path::new("/var/lib/lookout/state.json")),
            Path::new("/var/lib/lookout/state.json.lock")
        );
    }

    #[test]
    fn lock_table_lines_are_matched_by_device_and_inode() {
        let table = "1: FLOCK  ADVISORY  WRITE 4242 fd:01:1234 0 EOF\n\
                     1: -> FLOCK  ADVISORY  WRITE 777 fd:01:5678 0 EOF\n\
                     2: POSIX  ADVISORY  WRITE 99 fd:01:9999 0 EOF\n";
        assert!(locks_table_holds(table, "fd:01:1234"));
        assert!(
            !locks_table_holds(table, "fd:01:5678"),
            "a waiter does not hold it"
        );
        assert!(!locks_table_holds(table, "fd:01:9999"), "not a flock");
        assert!(!locks_table_holds(table, "fd:01:12345"));
    }

    #[test]
    fn the_holder_is_found_while_held_and_not_after() {
        // Without the lock table, a released lock whose pid still runs (ours) would look held.
        std::fs::read_to_string("/proc/locks")
            .expect("/proc/locks is readable (procfs mounted), which this test needs");
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json.lock");
        assert_eq!(holder(&path), None, "no lock file yet");
        let lock = StateLock::acquire(&path).unwrap();
        assert_eq!(
            holder(&path),
            Some(Holder {
                lock_file: path.clone(),
                pid: Some(std::process::id())
            })
        );
        let Err(LockError::Held { pid, .. }) = StateLock::acquire(&path) else {
            panic!("a second acquire must fail while the first holds the lock");
        };
        assert_eq!(pid, Some(std::process::id()));
        drop(lock);
        assert_eq!(holder(&path), None, "released");
    }
}

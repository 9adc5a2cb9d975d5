//! The state folder: writable (or a fallback is), the state file one this lookout reads, an
//! update in flight, and who holds the lock — found without taking it, so doctor is safe to run
//! beside a running daemon. The only file doctor writes is the probe that proves the folder
//! writable (`durable::probe_writable`), removed at once.

use std::fmt::Write as _;
use std::io;
use std::path::{Path, PathBuf};

use super::folder_of;
use super::report::Check;
use crate::config::Config;
use crate::durable;
use crate::state::lock::{self, Holder, holder_text};
use crate::state::{self, ParseError};

/// What the state probe found, without taking the lock.
#[derive(Debug, Clone)]
pub(super) struct StateFacts {
    pub path: PathBuf,
    /// Creating and removing a file in the state folder (or, when it does not exist yet, in
    /// the nearest existing folder above it, where lookout would create it).
    pub writable: Result<WritableAt, String>,
    /// Used when the configured folder is not writable and `state_fallback` is on.
    pub fallback: Option<PathBuf>,
    pub file: StateFile,
    /// Set when a live process holds the lock.
    pub lock_holder: Option<Holder>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum WritableAt {
    /// The folder exists and takes files.
    Folder,
    /// The folder does not exist yet; lookout will create it under this one, which is writable.
    WillCreateUnder(PathBuf),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum StateFile {
    Missing,
    Loaded {
        services: usize,
        /// Services with an update in flight.
        in_flight: Vec<String>,
    },
    Damaged(String),
    TooNew(u64),
    Unreadable(String),
}

pub(super) fn probe_state(config: &Config) -> StateFacts {
    let path = config.state_file.clone();
    let writable = probe_writable(folder_of(&path).unwrap_or(Path::new(".")));
    let fallback = if writable.is_err() && config.state_fallback {
        state::default_fallback_paths(|n| std::env::var_os(n))
            .into_iter()
            .find(|p| probe_writable(folder_of(p).unwrap_or(Path::new("."))).is_ok())
    } else {
        None
    };
    StateFacts {
        file: read_state_file(&path),
        lock_holder: lock::holder(&lock::lock_path(&path)),
        path,
        writable,
        fallback,
    }
}

fn read_state_file(path: &Path) -> StateFile {
    match std::fs::read_to_string(path) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => StateFile::Missing,
        Err(e) => StateFile::Unreadable(e.to_string()),
        Ok(text) => match state::parse(&text) {
            Ok(s) => StateFile::Loaded {
                services: s.services.len(),
                in_flight: s.journal.iter().map(|j| j.intent.service.clone()).collect(),
            },
            Err(ParseError::TooNew { found }) => StateFile::TooNew(found),
            Err(e) => StateFile::Damaged(e.to_string()),
        },
    }
}

/// Creates and removes a file in `dir`, or in the nearest existing folder above it.
fn probe_writable(dir: &Path) -> Result<WritableAt, String> {
    let at = nearest_existing_folder(dir)?;
    durable::probe_writable(at)
        .map_err(|e| format!("cannot create a file in {}: {e}", at.display()))?;
    Ok(if at == dir {
        WritableAt::Folder
    } else {
        WritableAt::WillCreateUnder(at.to_owned())
    })
}

/// `dir` itself, or the folder above it that exists (where lookout would create it).
fn nearest_existing_folder(dir: &Path) -> Result<&Path, String> {
    let mut at = dir;
    loop {
        match std::fs::metadata(at) {
            Ok(m) if m.is_dir() => return Ok(at),
            Ok(_) => return Err(format!("{} is a file, not a folder", at.display())),
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::NotFound | io::ErrorKind::NotADirectory
                ) =>
            {
                match at.parent() {
                    Some(p) if !p.as_os_str().is_empty() => at = p,
                    _ => return Err(format!("{}: {e}", at.display())),
                }
            }
            Err(e) => return Err(format!("{}: {e}", at.display())),
        }
    }
}

/// The state folder is writable (or a fallback is), the file (if any) is one this lookout
/// reads, and who holds the lock.
pub(super) fn state_check(facts: &StateFacts) -> Check {
    let name = "state";
    let folder = folder_of(&facts.path).unwrap_or(Path::new("."));
    let mut detail = match &facts.writable {
        Ok(WritableAt::Folder) => format!("{} writable", folder.display()),
        Ok(WritableAt::WillCreateUnder(at)) => format!(
            "{} does not exist yet; lookout creates it ({} is writable)",
            folder.display(),
            at.display()
        ),
        Err(e) => return not_writable(folder, e, facts.fallback.as_deref()),
    };
    if let Some(problem) = state_file_problem(facts, &detail) {
        return problem;
    }
    if let StateFile::Loaded { services, .. } = &facts.file {
        let _ = write!(
            detail,
            "; {} holds {services} service(s)",
            facts.path.display()
        );
    } else {
        detail.push_str("; no state file yet");
    }
    if let Some(holder) = &facts.lock_holder {
        let _ = write!(
            detail,
            "; in use by a running lookout ({}, lock file {})",
            holder_text(holder.pid),
            holder.lock_file.display()
        );
    }
    Check::pass(name, detail)
}

/// The state folder cannot take files: a warning when lookout falls back, else a failure.
fn not_writable(folder: &Path, e: &str, fallback: Option<&Path>) -> Check {
    let fix = format!(
        "make {} writable for lookout's user (systemd: StateDirectory=lookout; a container: \
         mount a volume there), or point state_file at a writable path",
        folder.display()
    );
    match fallback {
        Some(fb) => Check::warn(
            "state",
            format!(
                "{} is not writable ({e}); lookout falls back to {}",
                folder.display(),
                fb.display()
            ),
            fix,
        ),
        None => Check::fail(
            "state",
            format!("{} is not writable: {e}", folder.display()),
            fix,
        ),
    }
}

/// A warning or failure about the state file itself, after `folder` (what was found about the
/// folder); `None` when it is missing or loads with nothing in flight.
fn state_file_problem(facts: &StateFacts, folder: &str) -> Option<Check> {
    let name = "state";
    let path = facts.path.display();
    Some(match &facts.file {
        StateFile::Missing => return None,
        StateFile::Loaded { in_flight, .. } if in_flight.is_empty() => return None,
        StateFile::Loaded {
            services,
            in_flight,
        } => Check::warn(
            name,
            format!(
                "{folder}; {path} holds {services} service(s); an update is in flight for {}",
                in_flight.join(", ")
            ),
            "start lookout (or run `lookout update`) to finish or undo it; `lookout status` shows the step",
        ),
        StateFile::Damaged(why) => Check::warn(
            name,
            format!("{folder}; {path} is damaged: {why}"),
            "nothing to do: lookout sets it aside and restores the newest good backup when it starts",
        ),
        StateFile::TooNew(found) => Check::fail(
            name,
            format!(
                "{folder}; {path} was written by a newer lookout (format version {found}, this one reads up to {})",
                state::FORMAT_VERSION
            ),
            "run the newer lookout that wrote it, or move the file away (its history is lost)",
        ),
        StateFile::Unreadable(e) => Check::fail(
            name,
            format!("{folder}; cannot read {path}: {e}"),
            format!("let lookout's user read and write {path}"),
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts(writable: Result<WritableAt, String>) -> StateFacts {
        StateFacts {
            path: "/var/lib/lookout/state.json".into(),
            writable,
            fallback: None,
            file: StateFile::Missing,
            lock_holder: None,
        }
    }

    #[test]
    fn state_folder_outcomes() {
        let c = state_check(&facts(Ok(WritableAt::Folder)));
        assert_eq!(
            (c.status(), c.detail()),
            ("PASS", "/var/lib/lookout writable; no state file yet")
        );

        let mut f = facts(Ok(WritableAt::Folder));
        f.lock_holder = Some(Holder {
            lock_file: "/var/lib/lookout/state.json.lock".into(),
            pid: Some(4242),
        });
        f.file = StateFile::Loaded {
            services: 3,
            in_flight: vec![],
        };
        let c = state_check(&f);
        assert_eq!(
            (c.status(), c.detail()),
            (
                "PASS",
                "/var/lib/lookout writable; /var/lib/lookout/state.json holds 3 service(s); in use \
                 by a running lookout (pid 4242, lock file /var/lib/lookout/state.json.lock)"
            )
        );

        let c = state_check(&facts(Err(
            "cannot create a file in /var/lib/lookout: Permission denied".into(),
        )));
        assert!(c.is_failure());
        assert!(c.fix().unwrap().contains("StateDirectory=lookout"), "{c:?}");

        let mut f = facts(Err("denied".into()));
        f.fallback = Some("/home/u/.local/state/lookout/state.json".into());
        let c = state_check(&f);
        assert_eq!(c.status(), "WARN");
        assert!(
            c.detail()
                .contains("falls back to /home/u/.local/state/lookout/state.json")
        );

        let mut f = facts(Ok(WritableAt::Folder));
        f.file = StateFile::TooNew(9);
        assert!(state_check(&f).is_failure());
        f.file = StateFile::Damaged("the file is empty".into());
        assert_eq!(state_check(&f).status(), "WARN");
        f.file = StateFile::Unreadable("Permission denied".into());
        let c = state_check(&f);
        assert!(c.is_failure());
        assert_eq!(
            c.detail(),
            "/var/lib/lookout writable; cannot read /var/lib/lookout/state.json: Permission denied"
        );
        f.file = StateFile::Loaded {
            services: 1,
            in_flight: vec!["web".into()],
        };
        let c = state_check(&f);
        assert_eq!(c.status(), "WARN");
        assert_eq!(
            c.detail(),
            "/var/lib/lookout writable; /var/lib/lookout/state.json holds 1 service(s); an \
             update is in flight for web"
        );
    }

    #[test]
    fn writable_probe_walks_up_to_the_folder_lookout_would_create_under() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(probe_writable(dir.path()), Ok(WritableAt::Folder));
        assert_eq!(
            probe_writable(&dir.path().join("a/b")),
            Ok(WritableAt::WillCreateUnder(dir.path().to_owned()))
        );
        let file = dir.path().join("plain");
        std::fs::write(&file, "x").unwrap();
        let e = probe_writable(&file.join("state")).unwrap_err();
        assert!(e.ends_with("is a file, not a folder"), "{e}");
        assert_eq!(
            std::fs::read_dir(dir.path()).unwrap().count(),
            1,
            "the probe file is gone"
        );
    }
}

//! The thin I/O layer of the compose editor: read a file, plan an edit, apply it atomically.
//!
//! Files are read through [`crate::config::read_file`]: regular files of at most 8 MiB.
//!
//! A [`PlannedEdit`] holds the bytes it was computed from. [`PlannedEdit::apply`] reads the file
//! again right before writing and refuses if it changed since (an operator saved it, `git pull`
//! ran): the update is retried next cycle on fresh bytes. The previous bytes stay in the plan so
//! a rollback can put them back exactly with [`restore`].

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use super::edit::image_value;
use super::locate::{Project, locate_in, services_using_variable};
use super::{ComposeError, EditOptions, ImageSite, add_env_var, interp, parse_env, set_image};
use crate::config::{MAX_FILE_BYTES, read_file};
use crate::durable::{self, NewFileMode};

/// Mode of an env file lookout would create; it never creates one today, but `durable` asks.
const NEW_FILE_MODE: NewFileMode = NewFileMode(0o644);

/// Length and SHA-256 of a file's bytes: enough to tell that it changed, small to journal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fingerprint {
    pub len: u64,
    pub sha256: [u8; 32],
}

impl Fingerprint {
    pub fn of(bytes: &[u8]) -> Fingerprint {
        Fingerprint {
            len: bytes.len() as u64,
            sha256: Sha256::digest(bytes).into(),
        }
    }
}

impl fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:", self.len)?;
        self.sha256.iter().try_for_each(|b| write!(f, "{b:02x}"))
    }
}

/// A compose (or env) file as lookout read it: its path, bytes and text.
#[derive(Debug, Clone)]
pub struct ComposeFile {
    path: PathBuf,
    text: String,
}

impl ComposeFile {
    /// Reads a compose or env file: a regular file of at most [`MAX_FILE_BYTES`] (so
    /// `/dev/zero`, a FIFO or a folder fail at once), as UTF-8.
    pub fn read(path: &Path) -> Result<ComposeFile, ComposeError> {
        let bytes = read_bytes(path)?;
        let text = String::from_utf8(bytes).map_err(|_| ComposeError::NotUtf8 {
            path: path.to_path_buf(),
        })?;
        Ok(ComposeFile {
            path: path.to_path_buf(),
            text,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn text(&self) -> &str {
        &self.text
    }
}

/// Options of [`plan_set_image`].
#[derive(Debug, Clone, Default)]
pub struct PlanOptions {
    pub edit: EditOptions,
    /// The project's env file, as compose's `--env-file`; default `.env` beside the compose file.
    pub env_file: Option<PathBuf>,
}

/// One file edit, computed and verified, not yet written.
#[derive(Debug, Clone)]
pub struct PlannedEdit {
    target: PathBuf,
    old: String,
    new: String,
    services: Vec<String>,
}

impl PlannedEdit {
    /// The file this edit writes: the compose file, or the env file for a `${VAR}` image.
    pub fn target(&self) -> &Path {
        &self.target
    }

    /// The bytes the file had when the edit was planned; what a rollback restores.
    pub fn previous_bytes(&self) -> &[u8] {
        self.old.as_bytes()
    }

    pub fn new_bytes(&self) -> &[u8] {
        self.new.as_bytes()
    }

    /// Every service whose image this edit changes.
    pub fn services(&self) -> &[String] {
        &self.services
    }

    pub fn is_noop(&self) -> bool {
        self.old == self.new
    }

    /// The change as a unified diff (`--- FILE`, `+++ FILE`), empty when nothing changes.
    pub fn unified_diff(&self) -> String {
        if self.is_noop() {
            return String::new();
        }
        let name = self.target.display().to_string();
        similar::TextDiff::from_lines(&self.old, &self.new)
            .unified_diff()
            .context_radius(3)
            .header(&name, &name)
            .to_string()
    }

    /// Writes the new bytes atomically, unless the file changed on disk since it was read.
    pub fn apply(&self) -> Result<(), ComposeError> {
        if self.is_noop() {
            return Ok(());
        }
        replace_if_unchanged(&self.target, self.old.as_bytes(), self.new.as_bytes())
    }
}

/// Puts `previous` back into `path` (a rollback), unless the file no longer holds
/// `expected_current` (the bytes lookout wrote): then someone else changed it, and it is left.
/// A file that already holds `previous` (a rollback run twice, after a crash) is left as it is.
pub fn restore(path: &Path, previous: &[u8], expected_current: &[u8]) -> Result<(), ComposeError> {
    if read_file(path, MAX_FILE_BYTES).is_ok_and(|current| current == previous) {
        return Ok(());
    }
    replace_if_unchanged(path, expected_current, previous)
}

fn replace_if_unchanged(path: &Path, expected: &[u8], new: &[u8]) -> Result<(), ComposeError> {
    let current = match read_bytes(path) {
        Ok(bytes) => bytes,
        Err(ComposeError::Io { source, .. }) if source.kind() == io::ErrorKind::NotFound => {
            return Err(ComposeError::ChangedOnDisk {
                path: path.to_path_buf(),
            });
        }
        Err(e) => return Err(e),
    };
    // A window remains between this check and the rename; it is as small as lookout can make it
    // without a lock the operator's editor would not honour.
    if current != expected {
        return Err(ComposeError::ChangedOnDisk {
            path: path.to_path_buf(),
        });
    }
    durable::replace(path, new, NEW_FILE_MODE)?;
    Ok(())
}

/// The bytes of a compose or env file, read through the one bounded reader.
fn read_bytes(path: &Path) -> Result<Vec<u8>, ComposeError> {
    read_file(path, MAX_FILE_BYTES).map_err(|source| ComposeError::Io {
        action: "read",
        path: path.to_path_buf(),
        source,
    })
}

/// Plans setting `service`'s image to `image` in the compose file at `compose`, reading
/// `${VAR}` values from lookout's own environment to detect ones it cannot change.
pub fn plan_set_image(
    compose: &Path,
    service: &str,
    image: &str,
    opts: &PlanOptions,
) -> Result<PlannedEdit, ComposeError> {
    plan_set_image_with_env(compose, service, image, opts, |name| {
        std::env::var_os(name).map(|v| v.to_string_lossy().into_owned())
    })
}

/// [`plan_set_image`] with the process environment given as a lookup function.
pub fn plan_set_image_with_env(
    compose: &Path,
    service: &str,
    image: &str,
    opts: &PlanOptions,
    env: impl Fn(&str) -> Option<String>,
) -> Result<PlannedEdit, ComposeError> {
    let file = ComposeFile::read(compose)?;
    let in_compose = |e: ComposeError| e.in_file(compose);
    let project = Project::parse(file.text()).map_err(in_compose)?;
    let site = locate_in(&project, service).map_err(in_compose)?;
    let env_path = opts.env_file.clone().unwrap_or_else(|| {
        compose
            .parent()
            .map_or_else(|| PathBuf::from(".env"), |dir| dir.join(".env"))
    });
    let (template, single) = match site {
        ImageSite::Variable {
            template,
            name,
            services,
            ..
        } => (template, Some((name, services))),
        ImageSite::Template { template, .. } => (template, None),
        ImageSite::Inline { .. } | ImageSite::Anchor { .. } => {
            let edit = set_image(file.text(), service, image, &opts.edit).map_err(in_compose)?;
            return Ok(PlannedEdit {
                target: compose.to_path_buf(),
                old: file.text,
                new: edit.text,
                services: edit.services,
            });
        }
    };
    let value = image_value(image, opts.edit.pin_digest.as_deref())?;
    // The env file, when there is one: compose reads it for `${VAR}`, after the environment.
    let env_file = match ComposeFile::read(&env_path) {
        Ok(f) => Some(f),
        Err(ComposeError::Io { source, .. }) if source.kind() == io::ErrorKind::NotFound => None,
        Err(e) => return Err(e),
    };
    let env_entries = env_file
        .as_ref()
        .map(|f| parse_env(f.text()))
        .unwrap_or_default();
    let current = |name: &str| {
        env(name).or_else(|| {
            env_entries
                .iter()
                .rfind(|e| e.name == name)
                .map(|e| e.value.clone())
        })
    };
    let (name, var_value, services) = match single {
        // One variable: it holds whatever the literal text around it leaves.
        Some((name, services)) => {
            let var_value = interp::template(&template)
                .ok()
                .and_then(|t| t.value_for(&value))
                .ok_or_else(|| {
                    in_compose(ComposeError::TemplateMismatch {
                        service: service.to_string(),
                        template: template.clone(),
                        image: value.clone(),
                    })
                })?;
            (name, var_value, services)
        }
        // Several: the one whose change makes the value read the new image.
        None => {
            let (name, var_value) =
                interp::solve(&template, current, &value).map_err(|reason| {
                    in_compose(ComposeError::Unsupported {
                        service: service.to_string(),
                        reason,
                    })
                })?;
            let services = services_using_variable(&project, &name).map_err(in_compose)?;
            (name, var_value, services)
        }
    };
    if current(&name).as_deref() == Some(var_value.as_str()) {
        // Already so: nothing to write, wherever the value comes from.
        let text = env_file.map(|f| f.text).unwrap_or_default();
        return Ok(PlannedEdit {
            target: env_path,
            old: text.clone(),
            new: text,
            services,
        });
    }
    if services.len() > 1 && !opts.edit.allow_anchor_group {
        return Err(in_compose(ComposeError::VariableShared {
            service: service.to_string(),
            variable: name,
            others: services.into_iter().filter(|s| s != service).collect(),
        }));
    }
    if env(&name).is_some() {
        return Err(in_compose(ComposeError::VariableFromEnvironment {
            service: service.to_string(),
            variable: name,
            env_file: env_path,
        }));
    }
    let Some(env_file) = env_file else {
        return Err(in_compose(ComposeError::EnvFileLacksVariable {
            service: service.to_string(),
            variable: name.clone(),
            env_file: env_path.clone(),
        }));
    };
    // A variable with its default in the compose file and no line in the env file gets one.
    let new = add_env_var(env_file.text(), &name, &var_value).map_err(|e| e.in_file(&env_path))?;
    Ok(PlannedEdit {
        target: env_path,
        old: env_file.text,
        new,
        services,
    })
}

/// What `lookout compose set-image --file F --service S --image IMAGE [--write]` does: plans the
/// edit, returns its unified diff (empty when the image is already set) and, with `write`,
/// applies it.
pub fn set_image_command(
    file: &Path,
    service: &str,
    image: &str,
    write: bool,
    opts: &PlanOptions,
) -> Result<String, ComposeError> {
    let plan = plan_set_image(file, service, image, opts)?;
    if write {
        plan.apply()?;
    }
    Ok(plan.unified_diff())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprint_is_length_and_sha256() {
        let f = Fingerprint::of(b"abc");
        assert_eq!(
            f.to_string(),
            "3:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_ne!(f, Fingerprint::of(b"abd"));
    }

    #[test]
    fn special_and_huge_files_are_refused_at_once() {
        let opts = PlanOptions::default();
        let e = plan_set_image(Path::new("/dev/zero"), "web", "nginx:1", &opts).unwrap_err();
        assert_eq!(
            e.to_string(),
            "cannot read /dev/zero: not a regular file (a character device); give the path of a file"
        );
        let dir = tempfile::tempdir().unwrap();
        let compose = dir.path().join("compose.yaml");
        std::fs::write(&compose, "services:\n  web:\n    image: ${IMAGE}\n").unwrap();
        let opts = PlanOptions {
            env_file: Some(PathBuf::from("/dev/zero")),
            ..PlanOptions::default()
        };
        let e = plan_set_image_with_env(&compose, "web", "nginx:1", &opts, |_| None).unwrap_err();
        assert!(
            e.to_string().contains("/dev/zero: not a regular file"),
            "{e}"
        );
        let big = dir.path().join("big.yaml");
        let file = std::fs::File::create(&big).unwrap();
        file.set_len(MAX_FILE_BYTES + 1).unwrap();
        let e = plan_set_image(&big, "web", "nginx:1", &PlanOptions::default()).unwrap_err();
        assert!(
            e.to_string()
                .contains("more than the 8388608 lookout reads"),
            "{e}"
        );
    }
}

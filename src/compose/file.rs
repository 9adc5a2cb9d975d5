//! The thin I/O layer of the compose editor: read a file, plan an edit, apply it atomically.
//!
//! Files are read through [`crate::config::read_file`]: regular files of at most 8 MiB.
//!
//! A [`PlannedEdit`] holds the bytes it was computed from. [`PlannedEdit::apply`] reads the file
//! again right before writing and refuses if it changed since (an operator saved it, `git pull`
//! ran): the update is retried next cycle on fresh bytes. The previous bytes stay in the plan so
//! a rollback can put them back exactly with [`PlannedEdit::restore`] (or [`restore`] and
//! [`remove_created`] from the journal's record, after a crash).
//!
//! [`plan_project_image`] plans over a whole compose project as compose runs it (every `-f`
//! file, `extends:`, the env files); [`plan_set_image`] is its one-file case.

use std::fmt;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use super::edit::{image_value, set_image_value};
use super::fileset::{FileSet, ImageOwner};
use super::locate::{Project, image_scalar, services_using_variable};
use super::{ComposeError, EditOptions, EnvEntry, add_env_var, interp, parse_env, set_image};
use crate::config::{MAX_FILE_BYTES, read_file};
use crate::durable::{self, NewFileMode};

/// Mode of a file [`durable::replace`] would create; `replace_if_unchanged` only replaces
/// files that exist, but `durable` asks.
const NEW_FILE_MODE: NewFileMode = NewFileMode(0o644);

/// Mode of an env file lookout creates: env files often hold secrets.
const NEW_ENV_FILE_MODE: NewFileMode = NewFileMode(0o600);

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
    /// The target does not exist: [`PlannedEdit::apply`] creates it.
    created: bool,
    /// The owner and group a created file gets.
    owner: Option<(u32, u32)>,
}

impl PlannedEdit {
    fn replacing(target: &Path, old: &str, new: String, services: Vec<String>) -> PlannedEdit {
        PlannedEdit {
            target: target.to_path_buf(),
            old: old.to_owned(),
            new,
            services,
            created: false,
            owner: None,
        }
    }

    /// The file this edit writes: the compose file, or the env file for a `${VAR}` image.
    pub fn target(&self) -> &Path {
        &self.target
    }

    /// The bytes the file had when the edit was planned; what a rollback restores. Empty for
    /// a file the edit creates.
    pub fn previous_bytes(&self) -> &[u8] {
        self.old.as_bytes()
    }

    /// Whether the target did not exist when the edit was planned: [`PlannedEdit::apply`]
    /// creates it (an env file for a variable whose default is in the compose file), and
    /// [`PlannedEdit::restore`] removes it again.
    pub fn created(&self) -> bool {
        self.created
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
        let old_name = if self.created { "/dev/null" } else { &name };
        similar::TextDiff::from_lines(&self.old, &self.new)
            .unified_diff()
            .context_radius(3)
            .header(old_name, &name)
            .to_string()
    }

    /// Writes the new bytes atomically, unless the file changed on disk since it was read. A
    /// file the edit creates is created with mode 0600 (env files often hold secrets) and the
    /// owner and group of the compose file that holds the variable's default (so whoever runs
    /// compose as that file's owner reads it), and never over a file that appeared meanwhile.
    pub fn apply(&self) -> Result<(), ComposeError> {
        if self.is_noop() {
            return Ok(());
        }
        if self.created {
            return durable::create_new(
                &self.target,
                self.new.as_bytes(),
                NEW_ENV_FILE_MODE,
                self.owner,
            )
            .map_err(|e| {
                if e.source.kind() == io::ErrorKind::AlreadyExists {
                    ComposeError::ChangedOnDisk {
                        path: self.target.clone(),
                    }
                } else {
                    e.into()
                }
            });
        }
        replace_if_unchanged(&self.target, self.old.as_bytes(), self.new.as_bytes())
    }

    /// Undoes [`PlannedEdit::apply`] (a rollback): puts the previous bytes back, or removes
    /// the file the edit created, unless the file no longer holds the bytes lookout wrote.
    pub fn restore(&self) -> Result<(), ComposeError> {
        if self.created {
            remove_created(&self.target, self.new.as_bytes())
        } else {
            restore(&self.target, self.old.as_bytes(), self.new.as_bytes())
        }
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

/// Removes the file lookout created at `path` (a rollback of its creation), unless it no longer
/// holds `expected_current` (the bytes lookout wrote): then someone else changed it, and it is
/// left. A file that is gone already (a rollback run twice, after a crash) is fine.
pub fn remove_created(path: &Path, expected_current: &[u8]) -> Result<(), ComposeError> {
    let current = match read_bytes(path) {
        Ok(bytes) => bytes,
        Err(ComposeError::Io { source, .. }) if source.kind() == io::ErrorKind::NotFound => {
            return Ok(());
        }
        Err(e) => return Err(e),
    };
    if current != expected_current {
        return Err(ComposeError::ChangedOnDisk {
            path: path.to_path_buf(),
        });
    }
    durable::remove(path)?;
    Ok(())
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

/// Plans setting `service`'s image to `image` in the compose file at `compose` alone (what
/// `lookout compose set-image` does), reading `${VAR}` values from lookout's own environment to
/// detect ones it cannot change: [`plan_project_image`] over a project of that one file, in
/// its folder, with `opts.env_file` as its `--env-file`.
pub fn plan_set_image(
    compose: &Path,
    service: &str,
    image: &str,
    opts: &PlanOptions,
) -> Result<PlannedEdit, ComposeError> {
    plan_set_image_with_env(compose, service, image, opts, process_env)
}

/// [`plan_set_image`] with the process environment given as a lookup function.
pub fn plan_set_image_with_env(
    compose: &Path,
    service: &str,
    image: &str,
    opts: &PlanOptions,
    env: impl Fn(&str) -> Option<String>,
) -> Result<PlannedEdit, ComposeError> {
    let project_dir = match compose.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    let env_files: Vec<PathBuf> = opts.env_file.iter().cloned().collect();
    plan_project_image_with_env(
        &[compose.to_path_buf()],
        project_dir,
        &env_files,
        service,
        image,
        &opts.edit,
        env,
    )
}

fn process_env(name: &str) -> Option<String> {
    std::env::var_os(name).map(|v| v.to_string_lossy().into_owned())
}

/// Plans setting `service`'s image to `image` in a compose project as compose runs it: `files`
/// are its `-f` files in order (absolute), `project_dir` its project directory, `env_files`
/// its `--env-file`s in order (empty: `.env` in `project_dir`, when there is one). `${VAR}`
/// values are read from lookout's own environment too, to detect ones it cannot change.
///
/// The value edited is the one that decides what runs ([`FileSet`]): the `image:` of the last
/// file in merge order that gives the service one, directly or through `extends:` (in the same
/// file or another). In that file the edit is planned as for a single file: the value's own
/// bytes (an anchor's only with [`EditOptions::allow_anchor_group`]), or — for a value with
/// `${VAR}`s — the one part that holds the change (`interp::solve`): a literal part of the
/// value (the tag in `${PREFIX:-}postgres:15.12-alpine`), edited in the compose file, or a
/// variable, edited in the env file that defines it (the last one that does, as a later env
/// file wins), else added to the last env file. A variable with its default in the compose file
/// and no env file at all gets a new `.env` in `project_dir` ([`PlannedEdit::created`]).
///
/// [`PlannedEdit::services`] lists every service of the project whose image the edit changes;
/// more than one is refused unless `edit.allow_anchor_group`.
pub fn plan_project_image(
    files: &[PathBuf],
    project_dir: &Path,
    env_files: &[PathBuf],
    service: &str,
    image: &str,
    edit: &EditOptions,
) -> Result<PlannedEdit, ComposeError> {
    plan_project_image_with_env(
        files,
        project_dir,
        env_files,
        service,
        image,
        edit,
        process_env,
    )
}

/// [`plan_project_image`] with the process environment given as a lookup function.
pub fn plan_project_image_with_env(
    files: &[PathBuf],
    project_dir: &Path,
    env_files: &[PathBuf],
    service: &str,
    image: &str,
    edit: &EditOptions,
    env: impl Fn(&str) -> Option<String>,
) -> Result<PlannedEdit, ComposeError> {
    if files.is_empty() {
        return Err(ComposeError::NotCompose {
            reason: "no compose file was given".into(),
        });
    }
    let read = |path: &Path| ComposeFile::read(path).map(|f| f.text);
    let set = FileSet::new(files.to_vec(), &read);
    let owner = set.owner(service)?;
    let in_owner = |e: ComposeError| e.in_file(&owner.file);
    let text = set.text(&owner.file)?;
    let project = Project::parse(&text).map_err(in_owner)?;
    let scalar = image_scalar(&project, &owner.service).map_err(in_owner)?;
    let new_value = image_value(image, edit.pin_digest.as_deref())?;
    let template = scalar.value;

    // A value of its own (or an anchor's): its bytes change.
    if !template.contains('$') {
        let done = set_image(&text, &owner.service, image, edit).map_err(in_owner)?;
        let services = project_services(&set, service, &owner, &done.services, edit)?;
        return Ok(PlannedEdit::replacing(
            &owner.file,
            &text,
            done.text,
            services,
        ));
    }

    // A value with variables: the one part that holds the change.
    interp::parse(&template).map_err(|reason| {
        in_owner(ComposeError::Unsupported {
            service: owner.service.clone(),
            reason,
        })
    })?;
    let env_set = EnvFiles::read(project_dir, env_files)?;
    let current = |name: &str| env(name).or_else(|| env_set.value(name));
    let change = interp::solve(&template, current, &new_value).map_err(|reason| {
        in_owner(if interp::variables(&template).len() == 1 {
            ComposeError::TemplateMismatch {
                service: owner.service.clone(),
                template: template.clone(),
                image: new_value.clone(),
            }
        } else {
            ComposeError::Unsupported {
                service: owner.service.clone(),
                reason,
            }
        })
    })?;
    let (name, var_value) = match change {
        interp::Change::Unchanged => {
            return Ok(PlannedEdit::replacing(
                &owner.file,
                &text,
                text.to_string(),
                vec![service.to_owned()],
            ));
        }
        interp::Change::Literal { value } => {
            let done = set_image_value(&text, &owner.service, &value, edit).map_err(in_owner)?;
            let services = project_services(&set, service, &owner, &done.services, edit)?;
            return Ok(PlannedEdit::replacing(
                &owner.file,
                &text,
                done.text,
                services,
            ));
        }
        interp::Change::Variable { name, value } => (name, value),
    };
    let services = services_using(&set, &name)?;
    let target = env_set.target_for(&name);
    if services.len() > 1 && !edit.allow_anchor_group {
        return Err(in_owner(ComposeError::VariableShared {
            service: service.to_string(),
            variable: name,
            others: services.into_iter().filter(|s| s != service).collect(),
        }));
    }
    if env(&name).is_some() {
        return Err(in_owner(ComposeError::VariableFromEnvironment {
            service: service.to_string(),
            variable: name,
            env_file: target.path.clone(),
        }));
    }
    let old = target.text.as_deref().unwrap_or_default();
    // A variable with its default in the compose file and no line in the env file gets one.
    let new = add_env_var(old, &name, &var_value).map_err(|e| e.in_file(&target.path))?;
    let created = target.text.is_none();
    Ok(PlannedEdit {
        target: target.path.clone(),
        old: old.to_owned(),
        new,
        services,
        created,
        // A new env file belongs to whoever owns the compose file that holds the default.
        owner: created
            .then(|| std::fs::metadata(&owner.file).ok())
            .flatten()
            .map(|m| (m.uid(), m.gid())),
    })
}

/// Every service of the project whose image is decided by one of `readers`' `image:` in
/// `owner.file` (the services the edit there changes, after `extends:` and override files).
/// More than one is a group, refused without `allow_anchor_group`.
fn project_services(
    set: &FileSet<'_>,
    service: &str,
    owner: &ImageOwner,
    readers: &[String],
    edit: &EditOptions,
) -> Result<Vec<String>, ComposeError> {
    let mut services = Vec::new();
    for s in set.services()? {
        if set
            .owner(&s)
            .is_ok_and(|o| o.file == owner.file && readers.contains(&o.service))
        {
            services.push(s);
        }
    }
    if services.len() > 1 && !edit.allow_anchor_group {
        return Err(ComposeError::ImageShared {
            service: service.to_owned(),
            owner: owner.service.clone(),
            others: services.into_iter().filter(|s| s != service).collect(),
        }
        .in_file(&owner.file));
    }
    Ok(services)
}

/// Every service of the project whose image uses variable `name`. A use anywhere else in a file
/// compose reads for the project (an environment value, a label) is refused: changing the
/// variable would change that too.
fn services_using(set: &FileSet<'_>, name: &str) -> Result<Vec<String>, ComposeError> {
    let mut services = Vec::new();
    for s in set.services()? {
        let Ok(owner) = set.owner(&s) else { continue };
        if set
            .image_value(&owner)?
            .is_some_and(|v| interp::variables(&v).iter().any(|n| n == name))
        {
            services.push(s);
        }
    }
    // Every owner has been found, so every file `extends:` leads to has been read.
    for file in set.read_files() {
        let text = set.text(&file)?;
        let project = Project::parse(&text).map_err(|e| e.in_file(&file))?;
        services_using_variable(&project, name).map_err(|e| e.in_file(&file))?;
    }
    Ok(services)
}

/// The env files compose reads for `${VAR}`, in order, as read now.
struct EnvFiles {
    earlier: Vec<EnvFile>,
    last: EnvFile,
}

struct EnvFile {
    path: PathBuf,
    /// `None`: the default `.env`, which does not exist.
    text: Option<String>,
    entries: Vec<EnvEntry>,
}

impl EnvFiles {
    /// `--env-file`s must exist (compose refuses to start without them); the default `.env`
    /// need not.
    fn read(project_dir: &Path, env_files: &[PathBuf]) -> Result<EnvFiles, ComposeError> {
        let (paths, explicit) = if env_files.is_empty() {
            (vec![project_dir.join(".env")], false)
        } else {
            (env_files.to_vec(), true)
        };
        let mut files = Vec::new();
        for path in paths.into_iter().rev() {
            let text = match ComposeFile::read(&path) {
                Ok(f) => Some(f.text),
                Err(ComposeError::Io { source, .. })
                    if source.kind() == io::ErrorKind::NotFound =>
                {
                    if explicit {
                        return Err(ComposeError::EnvFileMissing { env_file: path });
                    }
                    None
                }
                Err(e) => return Err(e),
            };
            let entries = text.as_deref().map(parse_env).unwrap_or_default();
            files.push(EnvFile {
                path,
                text,
                entries,
            });
        }
        // Read last to first: the first one read is the last file.
        let mut files = files.into_iter();
        let last = files.next().ok_or_else(|| ComposeError::NotCompose {
            reason: "no env file".into(),
        })?;
        let mut earlier: Vec<EnvFile> = files.collect();
        earlier.reverse();
        Ok(EnvFiles { earlier, last })
    }

    /// The files, last first.
    fn last_first(&self) -> impl Iterator<Item = &EnvFile> {
        std::iter::once(&self.last).chain(self.earlier.iter().rev())
    }

    /// The value compose reads for `name` from the env files: a later file's wins.
    fn value(&self, name: &str) -> Option<String> {
        self.last_first()
            .find_map(|f| f.entries.iter().rfind(|e| e.name == name))
            .map(|e| e.value.clone())
    }

    /// The file to write `name` to: the last one that defines it, else the last one.
    fn target_for(&self, name: &str) -> &EnvFile {
        self.last_first()
            .find(|f| f.entries.iter().any(|e| e.name == name))
            .unwrap_or(&self.last)
    }
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

    /// One planner case: files written into a scratch folder (the project directory), the
    /// `-f` order and `--env-file`s by name, and what the plan must be: the file it writes, that
    /// file's new text, the services it changes and whether it creates the file; or a text the
    /// error must contain (`{dir}` stands for the scratch folder).
    struct Case {
        what: &'static str,
        files: &'static [(&'static str, &'static str)],
        order: &'static [&'static str],
        env_files: &'static [&'static str],
        environment: &'static [(&'static str, &'static str)],
        service: &'static str,
        image: &'static str,
        group: bool,
        want: Result<Planned, &'static str>,
    }

    struct Planned {
        target: &'static str,
        text: &'static str,
        services: &'static [&'static str],
        created: bool,
    }

    const fn edits(
        target: &'static str,
        text: &'static str,
        services: &'static [&'static str],
    ) -> Result<Planned, &'static str> {
        Ok(Planned {
            target,
            text,
            services,
            created: false,
        })
    }

    const BASE: &str = "services:\n  web:\n    image: app:1.0 # pinned\n  db:\n    image: pg:16\n";

    const CASE: Case = Case {
        what: "",
        files: &[],
        order: &["compose.yml"],
        env_files: &[],
        environment: &[],
        service: "web",
        image: "app:1.1",
        group: false,
        want: Err(""),
    };

    fn run(case: &Case) {
        let dir = tempfile::tempdir().unwrap();
        for (name, text) in case.files {
            let path = dir.path().join(name);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, text).unwrap();
        }
        let files: Vec<PathBuf> = case.order.iter().map(|f| dir.path().join(f)).collect();
        let env_files: Vec<PathBuf> = case.env_files.iter().map(|f| dir.path().join(f)).collect();
        let edit = EditOptions {
            allow_anchor_group: case.group,
            ..EditOptions::default()
        };
        let environment = |n: &str| {
            case.environment
                .iter()
                .find(|(k, _)| *k == n)
                .map(|(_, v)| (*v).to_owned())
        };
        let got = plan_project_image_with_env(
            &files,
            dir.path(),
            &env_files,
            case.service,
            case.image,
            &edit,
            environment,
        );
        let what = case.what;
        match (&case.want, got) {
            (Ok(want), Ok(plan)) => {
                assert_eq!(plan.target(), dir.path().join(want.target), "{what}");
                assert_eq!(
                    String::from_utf8_lossy(plan.new_bytes()),
                    want.text,
                    "{what}"
                );
                assert_eq!(plan.services(), want.services, "{what}");
                assert_eq!(plan.created(), want.created, "{what}");
                let before = std::fs::read(plan.target()).unwrap_or_default();
                assert_eq!(plan.previous_bytes(), before, "{what}");
            }
            (Err(want), Err(e)) => {
                let want = want.replace("{dir}", &dir.path().display().to_string());
                assert!(e.to_string().contains(&want), "{what}: {e}");
            }
            (Ok(_), Err(e)) => panic!("{what}: refused: {e}"),
            (Err(want), Ok(plan)) => panic!(
                "{what}: planned {} ({:?}) where {want:?} was expected",
                plan.target().display(),
                String::from_utf8_lossy(plan.new_bytes())
            ),
        }
    }

    #[test]
    fn the_project_planner_edits_the_file_and_value_that_decide() {
        const OVER_ENV: &str =
            "services:\n  web:\n    environment: [A=1]\n    volumes: [data:/data]\n";
        const OVER_IMAGE: &str = "services:\n  web:\n    image: registry.example/app:1.0\n";
        const EXTENDS: &str = "services:\n  web:\n    extends: base\n    ports: ['80']\n  base:\n    image: app:1.0\n";
        const ACROSS: &str = "services:\n  worker:\n    extends:\n      service: agent\n      file: ../common/common.yml\n";
        const COMMON: &str = "services:\n  agent:\n    extends: { service: root }\n  root:\n    image: zabbix/zabbix-agent:7.0\n";
        const VARS: &str = "services:\n  web:\n    image: app:${TAG:-1.0}\n";
        let cases = [
            Case {
                what: "an override file that sets the image decides",
                files: &[("compose.yml", BASE), ("compose.override.yml", OVER_IMAGE)],
                order: &["compose.yml", "compose.override.yml"],
                image: "registry.example/app:1.1",
                want: edits(
                    "compose.override.yml",
                    "services:\n  web:\n    image: registry.example/app:1.1\n",
                    &["web"],
                ),
                ..CASE
            },
            Case {
                what: "an override without image leaves the base file in charge",
                files: &[("compose.yml", BASE), ("compose.override.yml", OVER_ENV)],
                order: &["compose.yml", "compose.override.yml"],
                want: edits(
                    "compose.yml",
                    "services:\n  web:\n    image: app:1.1 # pinned\n  db:\n    image: pg:16\n",
                    &["web"],
                ),
                ..CASE
            },
            Case {
                what: "extends in the same file: the base service runs too, so it is a group",
                files: &[("compose.yml", EXTENDS)],
                want: Err(
                    "{dir}/compose.yml: service \"web\": its image is the `image:` of service \"base\", which also gives the image of base",
                ),
                ..CASE
            },
            Case {
                what: "extends in the same file, as a group",
                files: &[("compose.yml", EXTENDS)],
                group: true,
                want: edits(
                    "compose.yml",
                    "services:\n  web:\n    extends: base\n    ports: ['80']\n  base:\n    image: app:1.1\n",
                    &["web", "base"],
                ),
                ..CASE
            },
            Case {
                what: "extends across files, twice: the file holding the image is edited",
                files: &[("app/compose.yml", ACROSS), ("common/common.yml", COMMON)],
                order: &["app/compose.yml"],
                service: "worker",
                image: "zabbix/zabbix-agent:7.2",
                want: edits(
                    "common/common.yml",
                    "services:\n  agent:\n    extends: { service: root }\n  root:\n    image: zabbix/zabbix-agent:7.2\n",
                    &["worker"],
                ),
                ..CASE
            },
            Case {
                what: "a literal tag beside a variable is edited in the compose file",
                files: &[(
                    "compose.yml",
                    "services:\n  db:\n    image: ${DOCKER_REGISTRY_PREFIX:-}postgres:15.12-alpine\n",
                )],
                service: "db",
                image: "postgres:15.13-alpine",
                want: edits(
                    "compose.yml",
                    "services:\n  db:\n    image: ${DOCKER_REGISTRY_PREFIX:-}postgres:15.13-alpine\n",
                    &["db"],
                ),
                ..CASE
            },
            Case {
                what: "a literal tag beside a variable set in the env file",
                files: &[
                    (
                        "compose.yml",
                        "services:\n  db:\n    image: \"${PREFIX}postgres:15\"\n",
                    ),
                    (".env", "PREFIX=mirror.example/\n"),
                ],
                service: "db",
                image: "mirror.example/postgres:16",
                want: edits(
                    "compose.yml",
                    "services:\n  db:\n    image: \"${PREFIX}postgres:16\"\n",
                    &["db"],
                ),
                ..CASE
            },
            Case {
                what: "a variable with its default in the compose file and no .env: .env is created",
                files: &[("compose.yml", VARS)],
                want: Ok(Planned {
                    target: ".env",
                    text: "TAG=1.1\n",
                    services: &["web"],
                    created: true,
                }),
                ..CASE
            },
            Case {
                what: "two env files define it: the later one wins and is edited",
                files: &[
                    ("compose.yml", VARS),
                    ("a.env", "TAG=0.9\n"),
                    ("b.env", "# ours\nTAG=1.0\n"),
                ],
                env_files: &["a.env", "b.env"],
                want: edits("b.env", "# ours\nTAG=1.1\n", &["web"]),
                ..CASE
            },
            Case {
                what: "two env files, only the first defines it: that one is edited",
                files: &[
                    ("compose.yml", VARS),
                    ("a.env", "TAG=1.0\n"),
                    ("b.env", "OTHER=1\n"),
                ],
                env_files: &["a.env", "b.env"],
                want: edits("a.env", "TAG=1.1\n", &["web"]),
                ..CASE
            },
            Case {
                what: "two env files, neither defines it: the last one gets the line",
                files: &[("compose.yml", VARS), ("a.env", "A=1\n"), ("b.env", "B=1")],
                env_files: &["a.env", "b.env"],
                want: edits("b.env", "B=1\nTAG=1.1\n", &["web"]),
                ..CASE
            },
            Case {
                what: "the later env file's value is the one the template reads",
                files: &[
                    (
                        "compose.yml",
                        "services:\n  web:\n    image: ${REG}/app:${TAG}\n",
                    ),
                    ("a.env", "REG=old.example\nTAG=1.0\n"),
                    ("b.env", "REG=new.example\n"),
                ],
                env_files: &["a.env", "b.env"],
                image: "new.example/app:1.1",
                want: edits("a.env", "REG=old.example\nTAG=1.1\n", &["web"]),
                ..CASE
            },
            Case {
                what: "a variable feeding images in two files is a group",
                files: &[
                    ("compose.yml", VARS),
                    (
                        "compose.override.yml",
                        "services:\n  worker:\n    image: worker:${TAG}\n",
                    ),
                    (".env", "TAG=1.0\n"),
                ],
                order: &["compose.yml", "compose.override.yml"],
                want: Err(
                    "{dir}/compose.yml: service \"web\": variable TAG is used by the images of worker",
                ),
                ..CASE
            },
            Case {
                what: "a variable used outside an image in the override file is refused there",
                files: &[
                    ("compose.yml", VARS),
                    (
                        "compose.override.yml",
                        "services:\n  web:\n    environment:\n      VERSION: ${TAG}\n",
                    ),
                    (".env", "TAG=1.0\n"),
                ],
                order: &["compose.yml", "compose.override.yml"],
                want: Err(
                    "{dir}/compose.override.yml: variable TAG is also used on line 4 outside an image",
                ),
                ..CASE
            },
            Case {
                what: "a --env-file that does not exist is refused: compose would not start",
                files: &[("compose.yml", VARS)],
                env_files: &["gone.env"],
                want: Err("env file {dir}/gone.env does not exist; compose is told to read it"),
                ..CASE
            },
            Case {
                what: "a variable set in lookout's environment cannot be changed",
                files: &[("compose.yml", VARS)],
                environment: &[("TAG", "1.0")],
                want: Err(
                    "comes from ${TAG}, which is set in lookout's environment; that value wins over {dir}/.env",
                ),
                ..CASE
            },
            Case {
                what: "an image that fits no part of the template",
                files: &[("compose.yml", VARS)],
                image: "other:1.1",
                want: Err(
                    "{dir}/compose.yml: service \"web\": the image is \"app:${TAG:-1.0}\" and \"other:1.1\" does not fit it",
                ),
                ..CASE
            },
            Case {
                what: "a service only with build: in the last file that defines it",
                files: &[
                    ("compose.yml", "services:\n  web:\n    build: .\n"),
                    (
                        "compose.override.yml",
                        "services:\n  web:\n    environment: [A=1]\n",
                    ),
                ],
                order: &["compose.yml", "compose.override.yml"],
                want: Err("{dir}/compose.override.yml: service \"web\" has no `image:` to update"),
                ..CASE
            },
            Case {
                what: "an unknown service names the file",
                files: &[("compose.yml", BASE)],
                service: "api",
                want: Err("{dir}/compose.yml: no service \"api\"; the services are: web, db"),
                ..CASE
            },
            Case {
                what: "an extends file that is missing is named",
                files: &[("app/compose.yml", ACROSS)],
                order: &["app/compose.yml"],
                service: "worker",
                want: Err("cannot read {dir}/common/common.yml"),
                ..CASE
            },
        ];
        for case in &cases {
            run(case);
        }
    }

    #[test]
    fn a_created_env_file_is_made_once_with_mode_0600_and_removed_by_restore() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let compose = dir.path().join("compose.yml");
        std::fs::write(&compose, "services:\n  web:\n    image: app:${TAG:-1.0}\n").unwrap();
        // Owned by someone else where the tests may give it away (as root, which the suite
        // runs as); the new .env follows the compose file's owner either way.
        let _ = std::os::unix::fs::chown(&compose, Some(12345), Some(12346));
        let env = dir.path().join(".env");
        let plan = |image: &str| {
            plan_project_image_with_env(
                std::slice::from_ref(&compose),
                dir.path(),
                &[],
                "web",
                image,
                &EditOptions::default(),
                |_| None,
            )
            .unwrap()
        };
        let created = plan("app:1.1");
        assert!(created.created());
        assert_eq!(created.previous_bytes(), b"");
        assert!(
            created
                .unified_diff()
                .starts_with(&format!("--- /dev/null\n+++ {}\n", env.display())),
            "{}",
            created.unified_diff()
        );
        created.apply().unwrap();
        assert_eq!(std::fs::read_to_string(&env).unwrap(), "TAG=1.1\n");
        let meta = std::fs::metadata(&env).unwrap();
        assert_eq!(meta.permissions().mode() & 0o777, 0o600);
        let compose_meta = std::fs::metadata(&compose).unwrap();
        assert_eq!(
            (meta.uid(), meta.gid()),
            (compose_meta.uid(), compose_meta.gid())
        );
        // The file is there now: the same plan is not applied twice, and the next plan edits it.
        assert!(matches!(
            created.apply(),
            Err(ComposeError::ChangedOnDisk { .. })
        ));
        let next = plan("app:1.2");
        assert!(!next.created());
        assert_eq!(next.new_bytes(), b"TAG=1.2\n");

        // The rollback removes the file lookout created, and is fine when run again.
        created.restore().unwrap();
        assert!(!env.exists());
        created.restore().unwrap();

        // A created file that someone changed since is left alone.
        let created = plan("app:1.1");
        created.apply().unwrap();
        std::fs::write(&env, "TAG=1.1\nSECRET=x\n").unwrap();
        let e = created.restore().unwrap_err();
        assert!(matches!(e, ComposeError::ChangedOnDisk { .. }), "{e}");
        assert_eq!(
            std::fs::read_to_string(&env).unwrap(),
            "TAG=1.1\nSECRET=x\n"
        );

        // A .env that appears between planning and writing is not replaced.
        std::fs::remove_file(&env).unwrap();
        let created = plan("app:1.1");
        std::fs::write(&env, "OPERATOR=1\n").unwrap();
        assert!(matches!(
            created.apply(),
            Err(ComposeError::ChangedOnDisk { .. })
        ));
        assert_eq!(std::fs::read_to_string(&env).unwrap(), "OPERATOR=1\n");
        let names: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(names.len(), 2, "no temp file is left behind");
    }

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

//! The compose editor: changes exactly the bytes of one service's image, or refuses with a reason.
//!
//! Operators keep compose files in git with comments, anchors, quoting and layout they care
//! about. This module finds where a service's image is really defined ([`locate`]): its own
//! `image:` value, a value shared through an anchor or merge key with other services, or a
//! `${VAR}` whose value lives in the project's `.env`. It then replaces the bytes of that one
//! value ([`set_image`], [`set_env_var`]), parses the result again to prove that nothing but the
//! intended image changed, and writes through [`crate::durable`] ([`PlannedEdit::apply`]). Over
//! a project of several files, [`plan_project_image`] first finds the file whose `image:`
//! decides ([`FileSet`]: override files, `extends:`).
//!
//! The core is pure: [`locate`], [`set_image`] and [`set_env_var`] take text and return values.
//! Only [`file`] reads and writes files.
//!
//! Where `${VAR}` values come from: compose interpolates the compose file with the process
//! environment and the project's env files: `.env` in the project directory unless
//! `--env-file`s name others (read in order, a later file's value winning). Services'
//! `env_file:` entries set the container's
//! environment and do not feed interpolation, so lookout never edits them for an image. A variable
//! set in lookout's own environment wins over the env file; lookout cannot change it, and says so.

mod depends;
mod edit;
mod envfile;
pub mod file;
mod fileset;
mod interp;
mod locate;
pub mod stack;
mod yaml;

use std::ops::Range;
use std::path::PathBuf;

pub use depends::dependencies;
pub use edit::{Edit, EditOptions, set_image};
pub use envfile::{EnvEntry, add_env_var, parse_env, set_env_var};
pub use file::{
    ComposeFile, Fingerprint, PlanOptions, PlannedEdit, plan_project_image,
    plan_project_image_with_env, plan_set_image, plan_set_image_with_env, remove_created, restore,
    set_image_command,
};
pub use fileset::{FileSet, ImageOwner, ReadFn, clean_path};
pub use interp::interpolate;
pub use locate::locate;

/// The quoting of a YAML scalar or an env value, kept as it was when lookout writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Quote {
    /// `image: nginx:1.27`
    Plain,
    /// `image: 'nginx:1.27'`
    Single,
    /// `image: "nginx:1.27"`
    Double,
}

/// Where a service's image is defined. Spans are byte ranges of the value token in the compose
/// text, quotes included.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ImageSite {
    /// The service's own `image:` value (possibly behind an anchor no other service uses).
    Inline {
        span: Range<usize>,
        quote: Quote,
        value: String,
    },
    /// The value holds one `${VAR}` (`${IMAGE}`, `${IMAGE:-nginx:1}`, `postgres:${PG_TAG}`): the
    /// value to change is the variable's, in the env file, or a literal part of the value when
    /// the change lies there (`${PREFIX:-}postgres:15` → `…:16`; see
    /// [`file::plan_project_image`]). `services` are all services whose image uses the variable.
    Variable {
        span: Range<usize>,
        template: String,
        name: String,
        default: Option<String>,
        services: Vec<String>,
    },
    /// The value is built from several variables (`${REGISTRY:-docker.io}/app:${TAG:-1.4}`): the
    /// one to change is the one whose change makes the value read the new image (or a literal
    /// part between them), which only the new image and the variables' current values tell (see
    /// [`file::plan_project_image`]).
    Template {
        span: Range<usize>,
        template: String,
        variables: Vec<String>,
    },
    /// The value is shared with other services through an anchor, an alias or a merge key.
    /// `anchor` names the anchors involved (`&base`); `services` lists every service reading it.
    Anchor {
        anchor: String,
        span: Range<usize>,
        quote: Quote,
        value: String,
        services: Vec<String>,
    },
}

/// Why the editor refused. Messages say what is wrong and what to do; [`ComposeError::InFile`]
/// adds the file.
#[derive(Debug, thiserror::Error)]
pub enum ComposeError {
    #[error("{}: {source}", file.display())]
    InFile {
        file: PathBuf,
        #[source]
        source: Box<ComposeError>,
    },
    #[error("not valid YAML at line {line}, column {col}: {message}")]
    InvalidYaml {
        line: usize,
        col: usize,
        message: String,
    },
    #[error("not a compose file: {reason}")]
    NotCompose { reason: String },
    #[error("no service {service:?}; the services are: {}", known.join(", "))]
    UnknownService { service: String, known: Vec<String> },
    #[error(
        "service {service:?} has only `build:` and no `image:`, so there is no image to update"
    )]
    BuildOnly { service: String },
    #[error("service {service:?} has no `image:` to update")]
    NoImage { service: String },
    #[error("service {service:?}: cannot follow its `extends:`: {reason}")]
    Extends { service: String, reason: String },
    #[error("service {service:?}: lookout does not edit this image value: {reason}")]
    Unsupported { service: String, reason: String },
    #[error(
        "service {service:?}: its image is shared through {anchor} with {}; \
         updating it changes them all. Allow group updates (allow_anchor_group, \
         `--allow-anchor-group`) to update them together, or give {service:?} its own `image:`",
        others.join(", ")
    )]
    AnchorShared {
        service: String,
        anchor: String,
        others: Vec<String>,
    },
    #[error(
        "service {service:?}: its image is the `image:` of service {owner:?}, which also gives \
         the image of {} (through `extends:` or override files); updating it changes them all. \
         Allow group updates (allow_anchor_group, `--allow-anchor-group`) to update them \
         together, or give {service:?} its own `image:`",
        others.join(", ")
    )]
    ImageShared {
        service: String,
        owner: String,
        others: Vec<String>,
    },
    #[error(
        "service {service:?}: variable {variable} is used by the images of {}; changing it \
         changes them all. Allow group updates (allow_anchor_group, `--allow-anchor-group`) to \
         update them together",
        others.join(", ")
    )]
    VariableShared {
        service: String,
        variable: String,
        others: Vec<String>,
    },
    #[error(
        "service {service:?}: the image is {template:?}; its value lives in variable {variable}, \
         in the env file, not in the compose file"
    )]
    ImageInVariable {
        service: String,
        template: String,
        variable: String,
    },
    #[error(
        "service {service:?}: the image is {template:?} and {image:?} does not fit it; \
         change the compose file by hand or choose an image of that form"
    )]
    TemplateMismatch {
        service: String,
        template: String,
        image: String,
    },
    #[error(
        "variable {variable} is also used on line {line} outside an image; lookout will not change it"
    )]
    VariableUsedElsewhere { variable: String, line: usize },
    #[error("{variable} is not defined in the env file")]
    EnvVarMissing { variable: String },
    #[error(
        "env file {} does not exist; compose is told to read it (`--env-file`) and refuses to \
         start without it. Restore it, or stop naming it",
        env_file.display()
    )]
    EnvFileMissing { env_file: PathBuf },
    #[error(
        "the image of service {service:?} comes from ${{{variable}}}, which is set in lookout's \
         environment; that value wins over {env_file}, and lookout cannot change it. Unset it and \
         define {variable} in {env_file}",
        env_file = env_file.display()
    )]
    VariableFromEnvironment {
        service: String,
        variable: String,
        env_file: PathBuf,
    },
    #[error("{variable} is defined more than once in the env file (lines {}); keep one definition",
        lines.iter().map(ToString::to_string).collect::<Vec<_>>().join(", "))]
    EnvVarRepeated { variable: String, lines: Vec<usize> },
    #[error("{variable} (line {line}) cannot be edited: {reason}")]
    EnvValueUnsupported {
        variable: String,
        line: usize,
        reason: String,
    },
    #[error("{image:?} is not an image reference lookout will write: {reason}")]
    InvalidImage { image: String, reason: String },
    /// The new image does not follow Docker's reference grammar.
    #[error(transparent)]
    Reference(#[from] crate::reference::ReferenceError),
    #[error("refusing to write: {detail}")]
    VerifyFailed { detail: String },
    #[error(
        "{} changed on disk since lookout read it; nothing was written, the edit is retried next cycle",
        path.display()
    )]
    ChangedOnDisk { path: PathBuf },
    #[error("{} is not UTF-8 text", path.display())]
    NotUtf8 { path: PathBuf },
    #[error("cannot {action} {}: {source}", path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Write(#[from] crate::durable::DurableError),
}

impl ComposeError {
    /// The error without its file context, for matching on the kind.
    pub fn kind(&self) -> &ComposeError {
        match self {
            ComposeError::InFile { source, .. } => source.kind(),
            other => other,
        }
    }

    pub(crate) fn in_file(self, file: impl Into<PathBuf>) -> ComposeError {
        match self {
            e @ (ComposeError::InFile { .. }
            | ComposeError::ChangedOnDisk { .. }
            | ComposeError::NotUtf8 { .. }
            | ComposeError::Io { .. }
            | ComposeError::Write(_)) => e,
            e => ComposeError::InFile {
                file: file.into(),
                source: Box::new(e),
            },
        }
    }
}

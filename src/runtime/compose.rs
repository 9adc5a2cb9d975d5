//! The compose seam: what the engine asks of compose, and nothing more; and the one place a
//! service's compose project is decided.
//!
//! [`Compose`] is what the engine, the updater, recovery and a pass are generic over, beside
//! [`super::ContainerRuntime`]. [`super::ComposeCli`] implements it by running the compose
//! command line; tests implement it in memory (`tests/util/fakes.rs`).
//!
//! [`locate_project`] decides which compose project a service belongs to and how to run compose
//! for it: from the labels compose wrote on the service's running containers (every `-f` file,
//! `-p`, the project folder, the `--env-file`s), else — when none runs — from the configured
//! `compose_file` through [`Compose::project`]. Every other step passes the [`ComposeProject`]
//! it returned along.

use std::collections::BTreeSet;
use std::future::Future;
use std::path::{Path, PathBuf};

use super::compose_cli::ProjectSource;
use super::compose_labels::{self, Located, Wanted};
use super::{ComposeProject, ContainerRuntime, ContainerSummary, RuntimeError};
use crate::config::ServiceSpec;

/// What lookout needs from compose.
pub trait Compose: Send + Sync {
    /// The compose project of `spec`'s configured `compose_file`, computed as compose computes
    /// it (files, folder, env file, name). Used when no container of the service runs, so no
    /// labels say how compose was run.
    fn project(
        &self,
        spec: &ServiceSpec,
    ) -> impl Future<Output = Result<ComposeProject, RuntimeError>> + Send;

    /// `up -d --no-deps SERVICE…`: (re)creates the services' containers from the project's
    /// files as they are now, leaving the services they depend on alone.
    fn up(
        &self,
        project: &ComposeProject,
        services: &[&str],
    ) -> impl Future<Output = Result<(), RuntimeError>> + Send;

    /// The image a service runs once compose resolved variables and merged files; `None` when
    /// the service has no `image:` (build only).
    fn service_image(
        &self,
        project: &ComposeProject,
        service: &str,
    ) -> impl Future<Output = Result<Option<String>, RuntimeError>> + Send;
}

/// The compose project of `spec`'s service and how to run compose for it.
///
/// The containers are the truth: when compose containers of the service run (found by their
/// labels, by `compose_project` or by `compose_file` being one of the run's files), compose is
/// run again exactly as their labels say. Only when none runs is the project computed from
/// `compose_file`. A service lookout cannot tell how to run is refused with the reason.
pub async fn locate_project<R: ContainerRuntime, C: Compose>(
    runtime: &R,
    compose: &C,
    spec: &ServiceSpec,
) -> Result<ComposeProject, RuntimeError> {
    let listed = runtime.compose_containers().await?;
    locate_project_in(&listed, compose, spec).await
}

/// [`locate_project`] over a container list already made (one per pass, shared by its
/// services).
pub(crate) async fn locate_project_in<C: Compose>(
    listed: &[ContainerSummary],
    compose: &C,
    spec: &ServiceSpec,
) -> Result<ComposeProject, RuntimeError> {
    let refuse = |reason: String| RuntimeError::Service {
        service: spec.compose_service.clone(),
        reason,
    };
    let compose_file = match &spec.compose_file {
        Some(file) => Some(
            std::fs::canonicalize(file).map_err(|e| RuntimeError::Project {
                file: file.clone(),
                reason: format!("cannot read the configured compose_file: {e}"),
            })?,
        ),
        None => None,
    };
    let wanted = Wanted {
        service: &spec.compose_service,
        project: spec.compose_project.as_deref(),
        compose_file: compose_file.as_deref(),
    };
    let located = compose_labels::locate(listed, &wanted, |p| std::fs::canonicalize(p).ok())
        .map_err(refuse)?;
    let Some(Located { run, replicas }) = located else {
        let project = compose.project(spec).await?;
        // Containers of the same project name and service, run from other files: compose would
        // take them for this project's, so lookout must not run it.
        if let Some(other) = compose_labels::same_name_elsewhere(listed, &project.name, &wanted) {
            return Err(refuse(format!(
                "compose project {:?} has containers of this service started from {}, not from \
                 the configured compose_file; give one of the two projects another name \
                 (`name:` or `-p`) or set compose_project",
                project.name,
                other
                    .iter()
                    .map(|p| p.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        }
        return Ok(project);
    };
    for file in run.config_files.iter().chain(&run.env_files) {
        if let Err(e) = crate::config::read_file(file, crate::config::MAX_FILE_BYTES) {
            return Err(refuse(format!(
                "compose ran project {:?} with {}, which lookout cannot read ({e}); when lookout \
                 runs in a container, mount the compose folders at the same path as on the host",
                run.project,
                file.display()
            )));
        }
    }
    let profiles = service_profiles(&run.config_files, &spec.compose_service);
    Ok(ComposeProject {
        files: run.config_files,
        project_dir: run.working_dir,
        name: run.project,
        env_files: run.env_files,
        explicit_name: true,
        explicit_dir: true,
        profiles,
        replicas,
        source: ProjectSource::Labels,
    })
}

/// The refusal of a service that has no `compose_file` and no running container to learn from.
pub(crate) fn no_file(spec: &ServiceSpec) -> RuntimeError {
    RuntimeError::Service {
        service: spec.compose_service.clone(),
        reason: format!(
            "no container of it runs{}, so no compose labels say how to run it, and no \
             compose_file is configured; start it once with compose, or set compose_file",
            spec.compose_project
                .as_deref()
                .map(|p| format!(" in compose project {p:?}"))
                .unwrap_or_default()
        ),
    }
}

/// Every profile the files give `service` (`services.SERVICE.profiles`), so that compose brings
/// it up with them active. A file lookout cannot read gives none (compose reports it).
fn service_profiles(files: &[PathBuf], service: &str) -> Vec<String> {
    let mut out = BTreeSet::new();
    for file in files {
        out.extend(profiles_in(file, service));
    }
    out.into_iter().collect()
}

fn profiles_in(file: &Path, service: &str) -> Vec<String> {
    let Ok(text) = crate::config::read_text(file, crate::config::MAX_FILE_BYTES) else {
        return Vec::new();
    };
    let Ok(doc) = serde_yaml_ng::from_str::<serde_yaml_ng::Value>(&text) else {
        return Vec::new();
    };
    doc.get("services")
        .and_then(|s| s.get(service))
        .and_then(|s| s.get("profiles"))
        .and_then(|p| p.as_sequence())
        .map(|seq| {
            seq.iter()
                .filter_map(|p| p.as_str())
                .filter(|p| !p.is_empty())
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default()
}

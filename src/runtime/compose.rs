//! The compose seam: what the engine asks of compose, and nothing more.
//!
//! [`Compose`] is what the engine, the updater, recovery and a pass are generic over, beside
//! [`super::ContainerRuntime`]. [`super::ComposeCli`] implements it by running the compose
//! command line; tests implement it in memory (`tests/util/fakes.rs`). [`Compose::project`] is
//! the one place that decides which compose project a service belongs to: every other step
//! passes the [`ComposeProject`] it returned along.

use std::future::Future;

use super::{ComposeProject, RuntimeError};
use crate::config::ServiceSpec;

/// What lookout needs from compose.
pub trait Compose: Send + Sync {
    /// The compose project of `spec`'s service: its files in `-f` order, its folder, its env
    /// file and the name its containers carry in `com.docker.compose.project`.
    fn project(
        &self,
        spec: &ServiceSpec,
    ) -> impl Future<Output = Result<ComposeProject, RuntimeError>> + Send;

    /// `up -d --no-deps SERVICE`: (re)creates the service's containers from the project's files
    /// as they are now, leaving the services it depends on alone.
    fn up(
        &self,
        project: &ComposeProject,
        service: &str,
    ) -> impl Future<Output = Result<(), RuntimeError>> + Send;

    /// The image a service runs once compose resolved variables and merged files; `None` when
    /// the service has no `image:` (build only).
    fn service_image(
        &self,
        project: &ComposeProject,
        service: &str,
    ) -> impl Future<Output = Result<Option<String>, RuntimeError>> + Send;
}

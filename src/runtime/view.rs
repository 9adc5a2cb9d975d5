//! What one pass asks Docker, asked once and shared by the pass's services: one list of every
//! compose container (labels, state and image ids), each local image once, and each container's
//! image reference (`Config.Image`, fixed for a container's life) once per container, kept
//! across passes. An image's inspection is kept across passes too, once Docker knows a registry
//! digest for it (an image id's content never changes; what can change is the digests Docker
//! records for it, when someone pushes or pulls it under another name, so an image with none
//! yet is asked again each pass, and the engine forgets every kept image after a pass that
//! changed something, since its pulls add digests). An idle daemon pass thus costs one container
//! list, and one inspection per container and per image not seen before.
//!
//! What an update acts on is read afresh (under the update lock, see `engine::pass`), never
//! from here.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use tokio::sync::OnceCell;

use super::{ContainerRuntime, ContainerState, ContainerSummary, ImageInfo};
use super::{LABEL_ONEOFF, LABEL_PROJECT, LABEL_SERVICE};

type Shared<T> = Arc<OnceCell<Result<T, String>>>;

/// What the engine keeps from pass to pass: container ids to the image reference they were
/// created with, and image ids to their inspection (once it has a registry digest). Each pass
/// forgets the containers that are gone and the images no listed container uses.
#[derive(Debug, Default)]
pub(crate) struct ImageRefs {
    refs: Mutex<HashMap<String, String>>,
    images: Mutex<HashMap<String, ImageInfo>>,
}

impl ImageRefs {
    fn get(&self, id: &str) -> Option<String> {
        lock(&self.refs).get(id).cloned()
    }

    fn insert(&self, id: &str, image_ref: &str) {
        lock(&self.refs).insert(id.to_owned(), image_ref.to_owned());
    }

    fn image(&self, id: &str) -> Option<ImageInfo> {
        lock(&self.images).get(id).cloned()
    }

    /// Keeps `info` for the next passes, unless Docker knows no registry digest for it yet
    /// (a local build not pushed yet gets one when it is pushed).
    fn keep_image(&self, id: &str, info: &ImageInfo) {
        if !info.repo_digests.is_empty() {
            lock(&self.images).insert(id.to_owned(), info.clone());
        }
    }

    /// Forgets every kept image inspection: after a pass that pulled or changed something.
    pub(crate) fn forget_images(&self) {
        lock(&self.images).clear();
    }

    fn keep_only(&self, listed: &[ContainerSummary]) {
        let containers: HashSet<&str> = listed.iter().map(|c| c.id.as_str()).collect();
        let images: HashSet<&str> = listed.iter().map(|c| c.image_id.as_str()).collect();
        lock(&self.refs).retain(|id, _| containers.contains(id.as_str()));
        lock(&self.images).retain(|id, _| images.contains(id.as_str()));
    }
}

/// One pass's view of Docker.
pub(crate) struct PassView<'a, R> {
    runtime: &'a R,
    /// List every container (discovery), not only compose's.
    every: bool,
    refs: &'a ImageRefs,
    listed: OnceCell<Result<Arc<[ContainerSummary]>, String>>,
    images: Mutex<HashMap<String, Shared<Option<ImageInfo>>>>,
}

/// The running container of a service as the view sees it.
pub(crate) struct RunningContainer {
    pub name: String,
    pub image_id: String,
    /// `Config.Image`.
    pub image_ref: String,
}

impl<'a, R: ContainerRuntime> PassView<'a, R> {
    /// A view whose one list has every container on the host (`every`), or compose's only.
    pub(crate) fn listing(runtime: &'a R, refs: &'a ImageRefs, every: bool) -> Self {
        Self {
            runtime,
            every,
            refs,
            listed: OnceCell::new(),
            images: Mutex::new(HashMap::new()),
        }
    }

    /// Every compose container (every container, for discovery), listed once per pass.
    pub(crate) async fn containers(&self) -> Result<Arc<[ContainerSummary]>, String> {
        self.listed
            .get_or_init(|| async {
                let listed = if self.every {
                    self.runtime.containers().await
                } else {
                    self.runtime.compose_containers().await
                };
                let listed: Arc<[ContainerSummary]> = listed.map_err(|e| e.to_string())?.into();
                self.refs.keep_only(&listed);
                Ok(listed)
            })
            .await
            .clone()
    }

    /// The first running container (by name) compose made for `service` of `project`, with the
    /// image reference it was created with; `None` when none runs.
    pub(crate) async fn running(
        &self,
        project: &str,
        service: &str,
    ) -> Result<Option<RunningContainer>, String> {
        let listed = self.containers().await?;
        let Some(found) = first_running(&listed, project, service) else {
            return Ok(None);
        };
        let Some(image_ref) = self.image_ref(&found.id).await? else {
            return Ok(None);
        };
        Ok(Some(RunningContainer {
            name: found.name.clone(),
            image_id: found.image_id.clone(),
            image_ref,
        }))
    }

    /// The image reference container `id` was created with (`Config.Image`), inspected once
    /// per container; `None` when it was removed since the list.
    pub(crate) async fn image_ref(&self, id: &str) -> Result<Option<String>, String> {
        if let Some(known) = self.refs.get(id) {
            return Ok(Some(known));
        }
        match self.runtime.container(id).await {
            Ok(info) => {
                self.refs.insert(id, &info.image_ref);
                Ok(Some(info.image_ref))
            }
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(e.to_string()),
        }
    }

    /// The standalone container `name` when it runs, with its image reference.
    pub(crate) async fn running_container(
        &self,
        name: &str,
    ) -> Result<Option<RunningContainer>, String> {
        let listed = self.containers().await?;
        let Some(found) = listed
            .iter()
            .find(|c| c.name == name && c.state == ContainerState::Running)
        else {
            return Ok(None);
        };
        let Some(image_ref) = self.image_ref(&found.id).await? else {
            return Ok(None);
        };
        Ok(Some(RunningContainer {
            name: found.name.clone(),
            image_id: found.image_id.clone(),
            image_ref,
        }))
    }

    /// The local image `id`: kept from an earlier pass, else inspected once in this pass.
    pub(crate) async fn image(&self, id: &str) -> Result<Option<ImageInfo>, String> {
        if let Some(kept) = self.refs.image(id) {
            return Ok(Some(kept));
        }
        let cell = lock(&self.images).entry(id.to_owned()).or_default().clone();
        let info = cell
            .get_or_init(|| async { self.runtime.image(id).await.map_err(|e| e.to_string()) })
            .await
            .clone();
        if let Ok(Some(found)) = &info {
            self.refs.keep_image(id, found);
        }
        info
    }
}

/// The first running, not one-off container of `service` in `project`, by name.
pub(crate) fn first_running<'c>(
    listed: &'c [ContainerSummary],
    project: &str,
    service: &str,
) -> Option<&'c ContainerSummary> {
    let label = |c: &'c ContainerSummary, name: &str| c.labels.get(name).map(String::as_str);
    listed
        .iter()
        .filter(|c| label(c, LABEL_PROJECT) == Some(project))
        .filter(|c| label(c, LABEL_SERVICE) == Some(service))
        .filter(|c| !label(c, LABEL_ONEOFF).is_some_and(|v| v.eq_ignore_ascii_case("true")))
        .filter(|c| c.state == ContainerState::Running)
        .min_by(|a, b| a.name.cmp(&b.name))
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn summary(
        name: &str,
        project: &str,
        service: &str,
        state: ContainerState,
    ) -> ContainerSummary {
        ContainerSummary {
            id: format!("id-{name}"),
            name: name.to_owned(),
            labels: HashMap::from([
                (LABEL_PROJECT.to_owned(), project.to_owned()),
                (LABEL_SERVICE.to_owned(), service.to_owned()),
                (LABEL_ONEOFF.to_owned(), "False".to_owned()),
            ]),
            image_id: format!("sha256:{name}"),
            state,
        }
    }

    #[test]
    fn an_image_is_kept_across_passes_once_it_has_a_registry_digest_and_while_it_is_used() {
        let refs = ImageRefs::default();
        let image = |id: &str, digests: &[&str]| ImageInfo {
            id: id.to_owned(),
            repo_tags: Vec::new(),
            repo_digests: digests.iter().map(|d| (*d).to_owned()).collect(),
            has_healthcheck: false,
            labels: HashMap::new(),
        };
        // A local build not pushed yet: asked again next pass, when a push may have named it.
        refs.keep_image("sha256:local", &image("sha256:local", &[]));
        assert_eq!(refs.image("sha256:local"), None);
        let pulled = image("sha256:web", &["registry.test/web@sha256:1"]);
        refs.keep_image("sha256:web", &pulled);
        assert_eq!(refs.image("sha256:web"), Some(pulled.clone()));
        // Forgotten when no listed container uses it any more, or after a change.
        refs.keep_only(&[summary("p-web-1", "p", "web", ContainerState::Running)]);
        assert_eq!(
            refs.image("sha256:web"),
            None,
            "p-web-1 runs sha256:p-web-1"
        );
        refs.keep_image("sha256:web", &pulled);
        refs.forget_images();
        assert_eq!(refs.image("sha256:web"), None);
    }

    #[test]
    fn the_first_running_container_of_the_service_by_name_one_offs_excluded() {
        let mut oneoff = summary("p-web-run-1", "p", "web", ContainerState::Running);
        oneoff
            .labels
            .insert(LABEL_ONEOFF.to_owned(), "True".to_owned());
        let listed = [
            summary("p-web-3", "p", "web", ContainerState::Running),
            summary("p-web-1", "p", "web", ContainerState::Exited),
            oneoff,
            summary("p-web-2", "p", "web", ContainerState::Running),
            summary("q-web-1", "q", "web", ContainerState::Running),
            summary("p-db-1", "p", "db", ContainerState::Running),
        ];
        let name = |p: &str, s: &str| first_running(&listed, p, s).map(|c| c.name.as_str());
        assert_eq!(name("p", "web"), Some("p-web-2"));
        assert_eq!(name("q", "web"), Some("q-web-1"));
        assert_eq!(name("p", "db"), Some("p-db-1"));
        assert_eq!(name("p", "cache"), None);
    }
}

//! One check cycle's shared lookups: services that share a repository share one tag list, and
//! services that share a reference share one digest lookup.
//!
//! Each key holds a `OnceCell`: the first service to ask starts the lookup, the others wait for
//! its answer (or its error). A new cycle starts empty, so nothing is stale across cycles.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::OnceCell;

use super::{Digests, Registries, Registry, RegistryError};
use crate::config::ServiceSpec;
use crate::policy::Tag;
use crate::reference::ImageRef;

type Shared<T> = Arc<OnceCell<Result<T, RegistryError>>>;

pub struct CheckCycle {
    registries: Arc<Registries>,
    tags: Mutex<HashMap<String, Shared<Arc<[Tag]>>>>,
    digests: Mutex<HashMap<String, Shared<Digests>>>,
}

impl CheckCycle {
    pub fn new(registries: Arc<Registries>) -> Self {
        Self {
            registries,
            tags: Mutex::new(HashMap::new()),
            digests: Mutex::new(HashMap::new()),
        }
    }

    pub fn registries(&self) -> &Registries {
        &self.registries
    }

    /// The adapter for `service`.
    pub fn registry(&self, service: &ServiceSpec) -> Result<Arc<dyn Registry>, RegistryError> {
        self.registries.for_service(service)
    }

    /// The tags of `image`'s repository, asked once per cycle.
    pub async fn tags(
        &self,
        registry: &dyn Registry,
        image: &ImageRef,
    ) -> Result<Arc<[Tag]>, RegistryError> {
        let cell = shared(&self.tags, image.name());
        cell.get_or_init(|| async { registry.tags(image).await.map(Arc::from) })
            .await
            .clone()
    }

    /// The digests `image` points to, asked once per cycle.
    pub async fn digest(
        &self,
        registry: &dyn Registry,
        image: &ImageRef,
    ) -> Result<Digests, RegistryError> {
        let cell = shared(&self.digests, image.to_string());
        cell.get_or_init(|| registry.digest(image)).await.clone()
    }
}

fn shared<T>(map: &Mutex<HashMap<String, Shared<T>>>, key: String) -> Shared<T> {
    super::lock(map).entry(key).or_default().clone()
}

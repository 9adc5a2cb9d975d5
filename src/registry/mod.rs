//! What a registry says now: the digest a reference points to, and a repository's tags.
//!
//! The [`Registry`] trait asks two cheap questions; one adapter per registry kind answers them:
//! [`oci::OciRegistry`] (any distribution-spec registry), [`docker_hub::DockerHub`],
//! [`ecr::Ecr`] and [`gcr::Gcr`]. [`Registries`] picks and keeps one adapter per registry and
//! configuration; [`CheckCycle`] shares tag lists and digests between the services of one check.
//!
//! Every HTTP request goes through [`http::Transport`] — the AWS SDK's too, through
//! [`aws_http`] — which bounds each attempt and each request in time, reads bodies
//! incrementally up to a cap, retries 5xx and connection errors with backoff and jitter, waits
//! out a 429's `Retry-After`, limits requests per host, and counts every request in
//! [`RequestStats`]. Nothing here pulls an image: digests come from `HEAD` on the manifest, and
//! only a multi-arch index is read to find the host's platform.
//!
//! A registry is untrusted: credentials go to its own origin only ([`origin`]), every answer
//! has a size cap ([`Limits`]), and tags and digests are checked against their grammar
//! ([`grammar`]) before anything uses them. No answer can panic lookout.

// No remote answer may panic lookout: these lints keep arithmetic, indexing and unwraps out
// of the registry code (tests may use them).
#![cfg_attr(
    not(test),
    deny(
        clippy::arithmetic_side_effects,
        clippy::indexing_slicing,
        clippy::unwrap_used,
        clippy::expect_used
    )
)]

pub(crate) mod auth;
mod aws_http;
mod check;
mod cycle;
pub mod docker_config;
pub mod docker_hub;
pub mod ecr;
mod error;
pub mod gcr;
pub mod grammar;
mod http;
pub mod oci;
pub mod origin;
pub mod page;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;

use crate::config::{RegistryKind, RegistrySettings, ServiceSpec};
use crate::policy::Tag;
use crate::reference::ImageRef;

pub use auth::Credential;
pub use check::{ServiceCheck, check_service, check_service_within};
pub use cycle::CheckCycle;
pub use error::{ErrorKind, RegistryError};
pub use http::{RequestCount, RequestStats, RetryPolicy};

/// The two questions lookout asks a registry.
#[async_trait]
pub trait Registry: Send + Sync {
    /// The digest `image` (by tag, or by digest) points to now, and for a multi-arch index the
    /// digest of the host's platform too. One `HEAD`, plus one `GET` of the index when it is one.
    async fn digest(&self, image: &ImageRef) -> Result<Digests, RegistryError>;

    /// The tags of `image`'s repository, each with its push time when the registry knows it.
    async fn tags(&self, image: &ImageRef) -> Result<Vec<Tag>, RegistryError>;

    /// When the image behind `image` was built (its config's `created`), for registries that
    /// have no push times. Cached by digest; `None` when the image does not say.
    async fn created(&self, image: &ImageRef) -> Result<Option<i64>, RegistryError>;

    /// What the image behind `image` says about its source (for the web page's links):
    /// `org.opencontainers.image.{source,revision,version}`. Cached by digest; `None` from a
    /// registry that cannot say.
    async fn origin(&self, image: &ImageRef) -> Result<Option<ImageOrigin>, RegistryError> {
        let _ = image;
        Ok(None)
    }

    /// The credential a pull of `image` must present (what `docker login` would have stored):
    /// the configured one, Docker's `config.json`, or a freshly minted cloud token.
    async fn credential(&self, image: &ImageRef) -> Result<Credential, RegistryError>;
}

/// Where an image comes from, by its `org.opencontainers.image.*` annotations (of the manifest)
/// or labels (of the config). Values are as the image gives them: check before use.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct ImageOrigin {
    /// `org.opencontainers.image.source`: the repository URL.
    pub source: Option<String>,
    /// `org.opencontainers.image.revision`: the commit.
    pub revision: Option<String>,
    /// `org.opencontainers.image.version`.
    pub version: Option<String>,
}

/// The digests a reference points to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Digests {
    /// The digest of what the tag points to: the index (manifest list) for a multi-arch image,
    /// else the image manifest.
    pub manifest: String,
    /// The media type of that manifest.
    pub media_type: String,
    /// The digest of the image manifest for the host's platform. Equal to `manifest` for a
    /// single-platform image; `None` when an index has no entry for the host's platform.
    pub platform: Option<String>,
}

impl Digests {
    /// Whether `digest` (as Docker recorded it for a local image) names this image: Docker
    /// records the index digest when it pulled a multi-arch tag, and the platform digest when it
    /// pulled by platform digest, so both count.
    pub fn names(&self, digest: &str) -> bool {
        self.manifest == digest || self.platform.as_deref() == Some(digest)
    }

    /// Whether two lookups name the same image for this host: the platform digests when both
    /// are known (an index whose other platforms changed is still the same image here), else
    /// the manifest digests.
    pub fn same_image(&self, other: &Digests) -> bool {
        match (&self.platform, &other.platform) {
            (Some(a), Some(b)) => a == b,
            _ => self.manifest == other.manifest,
        }
    }

    /// Whether the tag points to a multi-platform index.
    pub fn is_index(&self) -> bool {
        oci::is_index_media_type(&self.media_type)
    }
}

/// The platform lookout runs on, to pick an index's entry the way `docker pull` does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Platform {
    pub os: String,
    pub architecture: String,
    pub variant: Option<String>,
}

impl Platform {
    /// The platform of this process, in OCI words (`linux/amd64`, `linux/arm64/v8`).
    pub fn host() -> Self {
        let (architecture, variant) = match std::env::consts::ARCH {
            "x86_64" => ("amd64", None),
            "aarch64" => ("arm64", Some("v8")),
            "arm" => ("arm", Some("v7")),
            "x86" => ("386", None),
            "powerpc64" => ("ppc64le", None),
            other => (other, None),
        };
        Self {
            os: std::env::consts::OS.to_owned(),
            architecture: architecture.to_owned(),
            variant: variant.map(str::to_owned),
        }
    }

    /// Parses `os/arch[/variant]`.
    pub fn parse(s: &str) -> Option<Self> {
        let mut parts = s.split('/');
        let os = parts.next().filter(|p| !p.is_empty())?.to_owned();
        let architecture = parts.next().filter(|p| !p.is_empty())?.to_owned();
        let variant = parts.next().map(str::to_owned);
        parts.next().is_none().then_some(Self {
            os,
            architecture,
            variant,
        })
    }
}

impl std::fmt::Display for Platform {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        if let Some(v) = &self.variant {
            write!(f, "/{v}")?;
        }
        Ok(())
    }
}

/// Where Docker Hub's three services live; tests point them at loopback servers.
#[derive(Debug, Clone)]
pub struct DockerHubEndpoints {
    /// The web API with push times: `https://hub.docker.com`.
    pub api: String,
    /// The registry: `https://registry-1.docker.io`. Its `WWW-Authenticate` challenge names
    /// the token service (`https://auth.docker.io/token`).
    pub registry: String,
}

impl Default for DockerHubEndpoints {
    fn default() -> Self {
        Self {
            api: "https://hub.docker.com".into(),
            registry: "https://registry-1.docker.io".into(),
        }
    }
}

/// The most lookout reads of a registry's answers. An answer beyond a limit fails the lookup
/// with [`ErrorKind::TooLarge`] naming the registry, the repository and the limit; nothing of
/// it is used. Bodies are read incrementally, so memory never holds more than the cap.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// One manifest or index (containerd's limit too).
    pub manifest_bytes: usize,
    /// One image config blob (read for its `created` time).
    pub config_bytes: usize,
    /// One page of `tags/list`, or of Docker Hub's tags API.
    pub tag_page_bytes: usize,
    /// All pages of one tag list together.
    pub tag_list_bytes: usize,
    /// Tags in one tag list, valid or not.
    pub tag_count: usize,
    /// Pages of one tag list.
    pub tag_pages: usize,
    /// One token service answer.
    pub token_bytes: usize,
    /// One answer of a cloud API (ECR through the AWS SDK).
    pub api_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        const MIB: usize = 1024 * 1024;
        Self {
            manifest_bytes: 4 * MIB,
            config_bytes: 8 * MIB,
            tag_page_bytes: 8 * MIB,
            tag_list_bytes: 32 * MIB,
            tag_count: 100_000,
            tag_pages: 1_000,
            token_bytes: MIB,
            api_bytes: 8 * MIB,
        }
    }
}

/// How lookout talks to registries. [`RegistryOptions::default`] is what the daemon uses.
#[derive(Debug, Clone)]
pub struct RegistryOptions {
    /// Docker's `config.json` for credentials a service's configuration does not give.
    /// `None` means `$DOCKER_CONFIG/config.json`, else `~/.docker/config.json`.
    pub docker_config: Option<PathBuf>,
    /// Whether to read Docker's `config.json` at all.
    pub use_docker_config: bool,
    /// The platform whose digest to find in a multi-arch index.
    pub platform: Platform,
    /// The longest one attempt of a request may take, from connecting to the last byte of
    /// the body.
    pub request_timeout: Duration,
    /// The longest one request may take in all: waiting for a connection slot, every attempt,
    /// backoff and `Retry-After` waits. A registry that drips bytes fails within it.
    pub request_deadline: Duration,
    /// The longest [`check_service`] may take for one service (tags, build times, digests);
    /// `None` for no bound beyond the requests' own. A slow registry fails its own services.
    pub check_timeout: Option<Duration>,
    /// Size caps on registry answers.
    pub limits: Limits,
    /// Host names resolved to these addresses instead of through DNS (as `curl --resolve`):
    /// for split-horizon setups and for tests that need a non-loopback name on loopback.
    pub resolve: Vec<(String, SocketAddr)>,
    /// Requests in flight to one registry host at a time. 8: a check of 1,000 repositories on
    /// one registry is bound by round trips, the requests are small metadata reads, and rate
    /// limits (Docker Hub's) count requests, not how many run at once.
    pub max_per_host: usize,
    pub retry: RetryPolicy,
    /// Tags asked for per page of a tag list (`?n=`).
    pub page_size: usize,
    /// At most this many image configs are read per service check to learn build times.
    pub max_created_lookups: usize,
    pub docker_hub: DockerHubEndpoints,
}

impl Default for RegistryOptions {
    fn default() -> Self {
        Self {
            docker_config: None,
            use_docker_config: true,
            platform: Platform::host(),
            request_timeout: Duration::from_secs(30),
            request_deadline: Duration::from_secs(120),
            check_timeout: Some(Duration::from_secs(300)),
            limits: Limits::default(),
            resolve: Vec::new(),
            max_per_host: 8,
            retry: RetryPolicy::default(),
            page_size: 1000,
            max_created_lookups: 20,
            docker_hub: DockerHubEndpoints::default(),
        }
    }
}

/// Picks the adapter for a service and keeps one per (kind, host, settings), so tokens, caches
/// and per-host limits are shared by every service of that registry. An adapter given with
/// [`Registries::set_adapter`] answers for its host instead.
pub struct Registries {
    options: RegistryOptions,
    transport: Arc<http::Transport>,
    docker_config: docker_config::DockerConfig,
    adapters: Mutex<Vec<AdapterEntry>>,
    /// Adapters given from outside, by registry host; they win over the built-in kinds.
    given: Mutex<Vec<(String, Arc<dyn Registry>)>>,
}

struct AdapterEntry {
    kind: RegistryKind,
    host: String,
    settings: RegistrySettings,
    registry: Arc<dyn Registry>,
}

impl Registries {
    pub fn new(options: RegistryOptions) -> Self {
        let transport = Arc::new(http::Transport::new(&options));
        let docker_config = if options.use_docker_config {
            docker_config::DockerConfig::load(options.docker_config.as_deref())
        } else {
            docker_config::DockerConfig::empty()
        };
        Self {
            options,
            transport,
            docker_config,
            adapters: Mutex::new(Vec::new()),
            given: Mutex::new(Vec::new()),
        }
    }

    /// From now on, every service whose image is on `host` (as image references write it:
    /// `registry.example.com:5000`, `docker.io`) asks `adapter`, whatever its registry kind and
    /// settings. A second call for the same host replaces the first. This is how tests serve
    /// tags and digests from memory through the normal check path ([`CheckCycle`],
    /// [`check_service`]); requests such an adapter makes are its own, not counted here.
    pub fn set_adapter(&self, host: &str, adapter: Arc<dyn Registry>) {
        let mut given = lock(&self.given);
        given.retain(|(h, _)| !h.eq_ignore_ascii_case(host));
        given.push((host.to_owned(), adapter));
    }

    pub fn options(&self) -> &RegistryOptions {
        &self.options
    }

    /// Every request made so far, by registry, method and status, and the last rate-limit
    /// headers seen.
    pub fn stats(&self) -> RequestStats {
        self.transport.stats()
    }

    /// The adapter for a service's registry.
    pub(crate) fn for_service(
        &self,
        service: &ServiceSpec,
    ) -> Result<Arc<dyn Registry>, RegistryError> {
        self.get(service.registry_type, &service.image, &service.registry)
    }

    /// The adapter for `image`'s registry, of `kind`, with `settings`.
    pub fn get(
        &self,
        kind: RegistryKind,
        image: &ImageRef,
        settings: &RegistrySettings,
    ) -> Result<Arc<dyn Registry>, RegistryError> {
        let host = image.registry();
        if let Some((_, given)) = lock(&self.given)
            .iter()
            .find(|(h, _)| h.eq_ignore_ascii_case(host))
        {
            return Ok(given.clone());
        }
        let mut adapters = lock(&self.adapters);
        if let Some(e) = adapters
            .iter()
            .find(|e| e.kind == kind && e.host == host && e.settings == *settings)
        {
            return Ok(e.registry.clone());
        }
        let ctx = Adapter {
            host,
            settings,
            options: &self.options,
            transport: self.transport.clone(),
            docker_config: &self.docker_config,
        };
        let registry: Arc<dyn Registry> = match kind {
            RegistryKind::Oci => Arc::new(oci::OciRegistry::new(&ctx)?),
            RegistryKind::DockerHub => Arc::new(docker_hub::DockerHub::new(&ctx)?),
            RegistryKind::Ecr => Arc::new(ecr::Ecr::new(&ctx)?),
            RegistryKind::Gcr => Arc::new(gcr::Gcr::new(&ctx)?),
        };
        adapters.push(AdapterEntry {
            kind,
            host: host.to_owned(),
            settings: settings.clone(),
            registry: registry.clone(),
        });
        Ok(registry)
    }
}

/// Locks `mutex`, also when a thread panicked while holding it: the registry's caches and
/// counts stay usable, and a panic elsewhere never becomes a second one here.
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// `tags` without the names that are not tags by the distribution grammar; those are counted
/// in [`RequestStats::skipped_tags`] and logged by number only, never by name.
pub(crate) fn keep_valid_tags(
    transport: &http::Transport,
    registry: &str,
    repository: &str,
    mut tags: Vec<Tag>,
) -> Vec<Tag> {
    let before = tags.len();
    tags.retain(|t| grammar::is_valid_tag(&t.name));
    let skipped = before.saturating_sub(tags.len());
    if skipped > 0 {
        tracing::debug!(
            registry,
            repository,
            skipped,
            "skipped names in the tag list that are not tags ([A-Za-z0-9_][A-Za-z0-9_.-]{{0,127}})"
        );
        transport.record_skipped_tags(registry, skipped as u64);
    }
    tags
}

/// What an adapter is built from.
pub(crate) struct Adapter<'a> {
    pub host: &'a str,
    pub settings: &'a RegistrySettings,
    pub options: &'a RegistryOptions,
    pub transport: Arc<http::Transport>,
    pub docker_config: &'a docker_config::DockerConfig,
}

#[cfg(test)]
mod tests;

//! The `docker_hub` adapter: Docker Hub's registry for digests, its web API for tags.
//!
//! Digests come from `registry-1.docker.io` through [`Distribution`] (the registry's challenge
//! names `auth.docker.io` as the token service; tokens are cached per repository scope).
//! Tags and push times come from the Hub web API,
//! `GET /v2/namespaces/{namespace}/repositories/{repository}/tags?page_size=100`, whose
//! results carry `tag_last_pushed`: one request per 100 tags, and those requests do not count
//! against the pull rate limit the way manifest requests do. When the web API refuses
//! (a private repository it needs another login for), tags come from the registry's
//! `tags/list` without push times. `ratelimit-limit` / `ratelimit-remaining` are recorded from
//! every answer by [`super::http::Transport`].
//!
//! The web API's `next` is followed only on the API's own origin, within the tag list limits
//! (pages, bytes, tags); names that are not tags are skipped.

use std::collections::HashSet;

use async_trait::async_trait;
use reqwest::{Method, Url};
use serde::de::IgnoredAny;

use super::auth::Credential;
use super::http::bytes_text;
use super::oci::{Distribution, configured_or_docker};
use super::origin;
use super::page::{PageError, parse_page};
use super::{Adapter, Digests, ErrorKind, Registry, RegistryError};
use crate::policy::Tag;
use crate::reference::ImageRef;

/// The request-count label of Hub's web API.
pub(crate) const HUB_API_LABEL: &str = "hub.docker.com";

/// Hub answers at most 100 tags a page.
const PAGE_SIZE: usize = 100;

pub struct DockerHub {
    registry: Distribution,
    /// `https://hub.docker.com`, without a trailing slash.
    api_base: String,
}

impl DockerHub {
    pub(crate) fn new(ctx: &Adapter<'_>) -> Result<Self, RegistryError> {
        let endpoints = &ctx.options.docker_hub;
        let credentials = configured_or_docker(ctx);
        let registry = Distribution::with_base(ctx, endpoints.registry.clone(), credentials)?;
        Ok(Self {
            registry,
            api_base: endpoints.api.trim_end_matches('/').to_owned(),
        })
    }

    /// Tags with push times from the web API; `Ok(None)` when it refuses the repository.
    async fn hub_tags(&self, repo: &str) -> Result<Option<Vec<Tag>>, RegistryError> {
        let (namespace, name) = repo.split_once('/').ok_or_else(|| {
            self.err(
                repo,
                ErrorKind::protocol("a Docker Hub repository is namespace/name"),
            )
        })?;
        let first = format!(
            "{}/v2/namespaces/{namespace}/repositories/{name}/tags?page_size={PAGE_SIZE}",
            self.api_base
        );
        let home = Url::parse(&first).map_err(|e| {
            self.err(
                repo,
                ErrorKind::setup(format!("Docker Hub's API address is not a URL: {e}")),
            )
        })?;
        let limits = self.registry.limits();
        let client = self.registry.client();
        let mut url = home.clone();
        let mut tags = Vec::new();
        let mut seen = HashSet::new();
        let (mut pages, mut bytes) = (0usize, 0usize);
        loop {
            let what = "GET Hub tags";
            let request = client
                .request(Method::GET, url.clone())
                .build()
                .map_err(|e| self.err(repo, ErrorKind::protocol(e.to_string())))?;
            let reply = self
                .registry
                .transport()
                .send(HUB_API_LABEL, client, request, limits.tag_page_bytes)
                .await
                .map_err(|e| self.err(repo, e.into_kind(what)))?;
            if matches!(reply.status.as_u16(), 401 | 403 | 404) && pages == 0 {
                tracing::debug!(
                    repository = repo,
                    status = reply.status.as_u16(),
                    "Docker Hub's tags API refused; using the registry's tag list"
                );
                return Ok(None);
            }
            let reply = self.registry.expect_ok(repo, what, reply)?;
            bytes = bytes.saturating_add(reply.body.len());
            if bytes > limits.tag_list_bytes {
                return Err(self.too_large(repo, bytes_text(limits.tag_list_bytes)));
            }
            let budget = limits.tag_count.saturating_sub(tags.len());
            let page = match parse_page::<HubTag, IgnoredAny>(&reply.body, "results", budget) {
                Ok(page) => page,
                Err(PageError::TooMany) => {
                    return Err(self.too_large(repo, format!("{} tags", limits.tag_count)));
                }
                Err(PageError::Json(e)) => {
                    return Err(self.err(
                        repo,
                        ErrorKind::protocol(format!(
                            "Docker Hub's tags page is not the documented JSON: {e}"
                        )),
                    ));
                }
            };
            tags.extend(page.items.into_iter().map(|r| {
                let pushed = r
                    .tag_last_pushed
                    .and_then(|t| t.parse::<jiff::Timestamp>().ok())
                    .map(|t| t.as_second());
                Tag::new(r.name, pushed)
            }));
            pages = pages.saturating_add(1);
            let Some(next) = page.next.filter(|n| !n.is_empty()) else {
                return Ok(Some(tags));
            };
            if pages >= limits.tag_pages {
                return Err(self.too_large(repo, format!("{} pages", limits.tag_pages)));
            }
            url = origin::follow_on_origin(&url, &next, &home).map_err(|why| {
                self.err(
                    repo,
                    ErrorKind::protocol(format!("Docker Hub's next page {why}")),
                )
            })?;
            if !seen.insert(url.to_string()) {
                return Err(self.err(
                    repo,
                    ErrorKind::protocol("Docker Hub's next pages go round in a loop"),
                ));
            }
        }
    }

    fn too_large(&self, repo: &str, limit: String) -> RegistryError {
        self.err(repo, ErrorKind::too_large("Docker Hub's tag list", limit))
    }

    fn err(&self, repo: &str, kind: ErrorKind) -> RegistryError {
        kind.at(self.registry.label(), repo)
    }
}

#[derive(serde::Deserialize)]
struct HubTag {
    name: String,
    tag_last_pushed: Option<String>,
}

#[async_trait]
impl Registry for DockerHub {
    async fn digest(&self, image: &ImageRef) -> Result<Digests, RegistryError> {
        self.registry.digest(image).await
    }

    async fn tags(&self, image: &ImageRef) -> Result<Vec<Tag>, RegistryError> {
        let repo = image.repository();
        let tags = match self.hub_tags(repo).await? {
            Some(tags) => tags,
            None => {
                let names = self.registry.tag_names(repo).await?;
                names.into_iter().map(|n| Tag::new(n, None)).collect()
            }
        };
        Ok(self.registry.valid_tags(repo, tags))
    }

    async fn created(&self, image: &ImageRef) -> Result<Option<i64>, RegistryError> {
        self.registry.created(image).await
    }

    async fn origin(&self, image: &ImageRef) -> Result<Option<super::ImageOrigin>, RegistryError> {
        self.registry.origin(image).await
    }

    async fn credential(&self, image: &ImageRef) -> Result<Credential, RegistryError> {
        self.registry.credential(image.repository()).await
    }
}

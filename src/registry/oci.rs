//! The OCI distribution API, and the `oci` adapter for any registry that speaks it (GHCR, Quay,
//! Harbor, GitLab, self-hosted `registry:2`).
//!
//! [`Distribution`] is the client the other adapters build on too. It uses `oci-client`'s
//! manifest types and media-type names, but speaks HTTP with reqwest itself: `oci-client`'s
//! `Client` builds its own HTTP client (so its requests could not be counted, limited per host
//! or retried on 429), does not expose response headers (`ratelimit-remaining`, `Link`), does
//! not follow `Link` when listing tags, and hides Google's extra `tags/list` fields.
//!
//! - Digest: `HEAD /v2/<repo>/manifests/<ref>` accepting the four manifest media types; the
//!   answer's `Docker-Content-Digest` (checked: sha256/sha512 and hex length) and
//!   `Content-Type`. For an index, one `GET` of the index (cached by its digest, checked to
//!   hash to it) finds the host platform's manifest digest. Manifests are read up to 4 MiB.
//! - Tags: `GET /v2/<repo>/tags/list?n=N`, following `Link: <…>; rel="next"` on the registry's
//!   own origin until there is none (a link to another origin is refused); a registry that
//!   ignores `n` answers in one page. Pages, bytes and tags are capped ([`Limits`]).
//! - Auth: anonymous until a 401's challenge says Basic or Bearer; bearer tokens are cached per
//!   scope (one adapter serves one registry, so per (registry, scope)) until they expire. The
//!   realm gets basic credentials only over HTTPS, on the registry's origin, or on loopback.
//! - Plain HTTP only for hosts marked `insecure` and for loopback hosts, as Docker does.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use async_trait::async_trait;
use oci_client::manifest::{
    IMAGE_MANIFEST_LIST_MEDIA_TYPE, IMAGE_MANIFEST_MEDIA_TYPE, ImageIndexEntry,
    OCI_IMAGE_INDEX_MEDIA_TYPE, OCI_IMAGE_MEDIA_TYPE, OciImageIndex, OciImageManifest,
};
use reqwest::header::{ACCEPT, AUTHORIZATION, WWW_AUTHENTICATE};
use reqwest::{Method, StatusCode, Url};
use serde::de::{DeserializeOwned, IgnoredAny};

use super::auth::{Challenge, Credential, CredentialSource, Token, parse_challenge, parse_token};
use super::grammar::{self, Algorithm, shown};
use super::http::{Reply, Transport, bytes_text};
use super::origin::{self, Origin};
use super::page::{Page, PageError, parse_page};
use super::{
    Adapter, Digests, ErrorKind, ImageOrigin, Limits, Platform, Registry, RegistryError, lock,
};
use crate::policy::Tag;
use crate::reference::ImageRef;

pub use super::origin::is_loopback;

/// The manifest media types lookout accepts, indexes first.
const MANIFEST_TYPES: [&str; 4] = [
    IMAGE_MANIFEST_LIST_MEDIA_TYPE,
    OCI_IMAGE_INDEX_MEDIA_TYPE,
    IMAGE_MANIFEST_MEDIA_TYPE,
    OCI_IMAGE_MEDIA_TYPE,
];

/// The digest caches (immutable facts) are emptied when they reach this many entries, so a
/// registry that answers a new digest every time cannot grow them without end.
const MAX_CACHED: usize = 4096;

pub(crate) fn is_index_media_type(media_type: &str) -> bool {
    media_type == IMAGE_MANIFEST_LIST_MEDIA_TYPE || media_type == OCI_IMAGE_INDEX_MEDIA_TYPE
}

/// A client for one registry's distribution API.
pub struct Distribution {
    /// The registry's name in errors and request counts (the host as configured).
    label: String,
    /// `https://host` or `http://host`, without a trailing slash.
    base: String,
    /// `base` parsed: the origin the registry's credentials belong to.
    origin: Url,
    client: reqwest::Client,
    transport: Arc<Transport>,
    credentials: Arc<dyn CredentialSource>,
    /// The scheme the registry asked for, once a 401 told us.
    scheme: Mutex<Option<Challenge>>,
    /// Bearer tokens by scope. Held across a token fetch, so parallel requests for one scope
    /// fetch one token.
    tokens: tokio::sync::Mutex<HashMap<String, Token>>,
    platform: Platform,
    page_size: usize,
    limits: Limits,
    /// Index digest → the host platform's manifest digest (immutable, so kept).
    platform_digests: Mutex<HashMap<String, Option<String>>>,
    /// Manifest digest → the image config's `created` time (immutable, so kept).
    created: Mutex<HashMap<String, Option<i64>>>,
    /// What images say about their source, by manifest digest.
    origins: Mutex<HashMap<String, ImageOrigin>>,
}

impl Distribution {
    /// A client for `ctx.host` presenting what `credentials` gives: plain HTTP only for hosts
    /// configured `insecure` and for loopback hosts, as Docker does.
    pub(crate) fn new(
        ctx: &Adapter<'_>,
        credentials: Arc<dyn CredentialSource>,
    ) -> Result<Self, RegistryError> {
        let scheme = if ctx.settings.insecure || is_loopback(ctx.host) {
            "http"
        } else {
            "https"
        };
        Self::with_base(ctx, format!("{scheme}://{}", ctx.host), credentials)
    }

    /// A client for the registry at `base` (`https://registry-1.docker.io`), counted and named
    /// in errors as `ctx.host`.
    pub(crate) fn with_base(
        ctx: &Adapter<'_>,
        base: String,
        credentials: Arc<dyn CredentialSource>,
    ) -> Result<Self, RegistryError> {
        let client = ctx
            .transport
            .client(ctx.settings.ca_file.as_deref(), ctx.settings.insecure)
            .map_err(|k| k.at(ctx.host, "*"))?;
        let base = base.trim_end_matches('/').to_owned();
        let origin = Url::parse(&base).map_err(|e| {
            ErrorKind::setup(format!("the registry address {base:?} is not a URL: {e}"))
                .at(ctx.host, "*")
        })?;
        Ok(Self {
            label: ctx.host.to_owned(),
            base,
            origin,
            client,
            transport: ctx.transport.clone(),
            credentials,
            scheme: Mutex::new(None),
            tokens: tokio::sync::Mutex::new(HashMap::new()),
            platform: ctx.options.platform.clone(),
            page_size: ctx.options.page_size.max(1),
            limits: ctx.options.limits.clone(),
            platform_digests: Mutex::new(HashMap::new()),
            created: Mutex::new(HashMap::new()),
            origins: Mutex::new(HashMap::new()),
        })
    }

    pub fn label(&self) -> &str {
        &self.label
    }

    pub fn client(&self) -> &reqwest::Client {
        &self.client
    }

    pub(crate) fn transport(&self) -> &Transport {
        &self.transport
    }

    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// The registry's URL for `path_and_query` (`/v2/…`).
    fn url(&self, repo: &str, path_and_query: &str) -> Result<Url, RegistryError> {
        Url::parse(&format!("{}{path_and_query}", self.base)).map_err(|e| {
            self.err(
                repo,
                ErrorKind::protocol(format!("cannot make a URL of {path_and_query:?}: {e}")),
            )
        })
    }

    /// The digests `image` points to now.
    pub async fn digest(&self, image: &ImageRef) -> Result<Digests, RegistryError> {
        let repo = image.repository();
        // A parsed reference always has one or the other (`latest` when it said neither).
        let reference = image.digest().or(image.tag()).unwrap_or("latest");
        let reply = self.manifest(repo, Method::HEAD, reference).await?;
        let media_type = self.media_type(repo, &reply);
        let manifest = match reply.header("docker-content-digest") {
            Some(d) => {
                let d = self.checked_digest(repo, "its Docker-Content-Digest header", d)?;
                if image.digest().is_some_and(|asked| asked != d) {
                    return Err(self.err(
                        repo,
                        ErrorKind::protocol(format!(
                            "asked for manifest {reference}, the registry answered with digest {d}"
                        )),
                    ));
                }
                d.to_owned()
            }
            // Some registries leave the header out of HEAD answers: read and hash the body.
            None => {
                let (body, _) = self.get_manifest(repo, reference).await?;
                match image.digest() {
                    Some(asked) => {
                        self.verify(repo, "manifest", asked, &body)?;
                        asked.to_owned()
                    }
                    None => grammar::digest_of(Algorithm::Sha256, &body),
                }
            }
        };
        let platform = if is_index_media_type(&media_type) {
            self.platform_digest(repo, &manifest).await?
        } else {
            Some(manifest.clone())
        };
        Ok(Digests {
            manifest,
            media_type,
            platform,
        })
    }

    /// The answer's media type without parameters; empty when it sends none or nonsense.
    fn media_type(&self, repo: &str, reply: &Reply) -> String {
        let Some(value) = reply.header("content-type") else {
            return String::new();
        };
        let media_type = value.split(';').next().unwrap_or(value).trim();
        if grammar::is_media_type(media_type) {
            media_type.to_owned()
        } else {
            tracing::debug!(registry = %self.label, repository = repo, content_type = %shown(value), "ignoring a Content-Type that is not a media type");
            String::new()
        }
    }

    /// `digest` when it is a well-formed digest, else the error naming `whose` and the value.
    fn checked_digest<'a>(
        &self,
        repo: &str,
        whose: &str,
        digest: &'a str,
    ) -> Result<&'a str, RegistryError> {
        match grammar::parse_digest(digest) {
            Some(_) => Ok(digest),
            None => Err(self.err(
                repo,
                ErrorKind::protocol(format!(
                    "{whose} is {:?}, not a digest (sha256: with 64 or sha512: with 128 lowercase hex digits)",
                    shown(digest)
                )),
            )),
        }
    }

    /// Checks that `bytes`, fetched by `digest`, hash to it.
    fn verify(
        &self,
        repo: &str,
        what: &str,
        digest: &str,
        bytes: &[u8],
    ) -> Result<(), RegistryError> {
        if grammar::matches_digest(digest, bytes) {
            return Ok(());
        }
        Err(self.err(
            repo,
            ErrorKind::protocol(format!(
                "the {what} served for {digest} does not have that digest"
            )),
        ))
    }

    /// The host platform's manifest digest in the index `index_digest`, from one `GET`.
    async fn platform_digest(
        &self,
        repo: &str,
        index_digest: &str,
    ) -> Result<Option<String>, RegistryError> {
        if let Some(known) = self.cached(&self.platform_digests, index_digest) {
            return Ok(known);
        }
        let (body, _) = self.get_manifest(repo, index_digest).await?;
        self.verify(repo, "index", index_digest, &body)?;
        let index: OciImageIndex = serde_json::from_slice(&body).map_err(|e| {
            self.err(
                repo,
                ErrorKind::protocol(format!("index {index_digest} is not an image index: {e}")),
            )
        })?;
        let found = match pick_platform(&index.manifests, &self.platform) {
            Some(entry) => Some(
                self.checked_digest(
                    repo,
                    &format!("the {} entry of index {index_digest}", self.platform),
                    &entry.digest,
                )?
                .to_owned(),
            ),
            None => None,
        };
        remember(&self.platform_digests, index_digest, found.clone());
        Ok(found)
    }

    /// `GET` a manifest by tag or digest: its bytes and media type.
    async fn get_manifest(
        &self,
        repo: &str,
        reference: &str,
    ) -> Result<(bytes::Bytes, String), RegistryError> {
        let reply = self.manifest(repo, Method::GET, reference).await?;
        let media_type = self.media_type(repo, &reply);
        Ok((reply.body, media_type))
    }

    /// `HEAD` or `GET` of a manifest by tag or digest, accepting every manifest media type.
    async fn manifest(
        &self,
        repo: &str,
        method: Method,
        reference: &str,
    ) -> Result<Reply, RegistryError> {
        let what = format!("{method} manifest {reference}");
        let url = self.url(repo, &format!("/v2/{repo}/manifests/{reference}"))?;
        let accept = MANIFEST_TYPES.join(", ");
        let reply = self
            .request(
                repo,
                method,
                url,
                Some(&accept),
                &what,
                self.limits.manifest_bytes,
            )
            .await
            .map_err(|k| self.err(repo, k))?;
        self.expect_ok(repo, &what, reply)
    }

    /// Every page of the tag list, following `Link` headers on the registry's own origin,
    /// within the tag list limits; `M` is what a page's `manifest` field is read as (Google's
    /// push times; `IgnoredAny` for none).
    pub(crate) async fn tag_pages<M: DeserializeOwned>(
        &self,
        repo: &str,
    ) -> Result<Vec<Page<String, M>>, RegistryError> {
        let mut url = self.url(repo, &format!("/v2/{repo}/tags/list?n={}", self.page_size))?;
        let mut pages = Vec::new();
        let mut seen = HashSet::new();
        let (mut bytes, mut tags) = (0usize, 0usize);
        loop {
            let what = "GET tag list";
            let reply = self
                .request(
                    repo,
                    Method::GET,
                    url.clone(),
                    None,
                    what,
                    self.limits.tag_page_bytes,
                )
                .await
                .map_err(|k| self.err(repo, k))?;
            let reply = self.expect_ok(repo, what, reply)?;
            bytes = bytes.saturating_add(reply.body.len());
            if bytes > self.limits.tag_list_bytes {
                return Err(self.err(
                    repo,
                    ErrorKind::too_large("the tag list", bytes_text(self.limits.tag_list_bytes)),
                ));
            }
            let budget = self.limits.tag_count.saturating_sub(tags);
            let page = match parse_page::<String, M>(&reply.body, "tags", budget) {
                Ok(page) => page,
                Err(PageError::TooMany) => {
                    return Err(self.err(
                        repo,
                        ErrorKind::too_large(
                            "the tag list",
                            format!("{} tags", self.limits.tag_count),
                        ),
                    ));
                }
                Err(PageError::Json(e)) => {
                    return Err(self.err(
                        repo,
                        ErrorKind::protocol(format!(
                            "the tag list is not the JSON of a tag list: {e}"
                        )),
                    ));
                }
            };
            tags = tags.saturating_add(page.items.len());
            pages.push(page);
            let Some(next) = reply.header("link").and_then(next_link) else {
                return Ok(pages);
            };
            let next = self.next_page(repo, &url, &next)?;
            if pages.len() >= self.limits.tag_pages {
                return Err(self.err(
                    repo,
                    ErrorKind::too_large(
                        "the tag list",
                        format!("{} pages", self.limits.tag_pages),
                    ),
                ));
            }
            if !seen.insert(next.to_string()) {
                return Err(self.err(
                    repo,
                    ErrorKind::protocol("the tag list's Link headers go round in a loop"),
                ));
            }
            url = next;
        }
    }

    /// The next page's URL, `link` resolved against `current`; refused unless it is on the
    /// registry's own origin, so the registry's credentials go nowhere else.
    fn next_page(&self, repo: &str, current: &Url, link: &str) -> Result<Url, RegistryError> {
        origin::follow_on_origin(current, link, &self.origin).map_err(|why| {
            self.err(
                repo,
                ErrorKind::protocol(format!("the tag list's Link header {why}")),
            )
        })
    }

    /// Tag names, all pages.
    pub async fn tag_names(&self, repo: &str) -> Result<Vec<String>, RegistryError> {
        // `"tags": null` is what distribution says for a repository with no tags.
        let pages = self.tag_pages::<IgnoredAny>(repo).await?;
        Ok(pages.into_iter().flat_map(|p| p.items).collect())
    }

    /// `tags` without names that are not tags, which are counted as skipped.
    pub(crate) fn valid_tags(&self, repo: &str, tags: Vec<Tag>) -> Vec<Tag> {
        super::keep_valid_tags(&self.transport, &self.label, repo, tags)
    }

    /// The `created` time of the image `image` names, for this host's platform: the manifest
    /// (by digest when the tag is an index) and its config blob. Cached by manifest digest.
    pub async fn created(&self, image: &ImageRef) -> Result<Option<i64>, RegistryError> {
        let digests = self.digest(image).await?;
        let Some(manifest_digest) = digests.platform else {
            return Ok(None);
        };
        if let Some(known) = self.cached(&self.created, &manifest_digest) {
            return Ok(known);
        }
        let (_, config) = self
            .manifest_and_config(image.repository(), &manifest_digest)
            .await?;
        #[derive(serde::Deserialize)]
        struct Config {
            created: Option<String>,
        }
        let created = serde_json::from_slice::<Config>(&config)
            .ok()
            .and_then(|c| c.created)
            .and_then(|c| c.parse::<jiff::Timestamp>().ok())
            .map(|t| t.as_second());
        remember(&self.created, &manifest_digest, created);
        Ok(created)
    }

    /// What the image `image` names says about its source, for this host's platform: the
    /// `org.opencontainers.image.{source,revision,version}` annotations of its manifest, else
    /// the labels of its config. Cached by manifest digest.
    pub async fn origin(&self, image: &ImageRef) -> Result<Option<ImageOrigin>, RegistryError> {
        let digests = self.digest(image).await?;
        let Some(manifest_digest) = digests.platform else {
            return Ok(None);
        };
        if let Some(known) = self.cached(&self.origins, &manifest_digest) {
            return Ok(Some(known));
        }
        let (manifest, config) = self
            .manifest_and_config(image.repository(), &manifest_digest)
            .await?;
        #[derive(serde::Deserialize)]
        struct Inner {
            #[serde(rename = "Labels", default)]
            labels: Option<HashMap<String, String>>,
        }
        #[derive(serde::Deserialize)]
        struct Config {
            config: Option<Inner>,
        }
        let labels = serde_json::from_slice::<Config>(&config)
            .ok()
            .and_then(|c| c.config)
            .and_then(|c| c.labels)
            .unwrap_or_default();
        let annotations = manifest.annotations.unwrap_or_default();
        let pick = |key: &str| {
            annotations
                .get(key)
                .or_else(|| labels.get(key))
                .map(|v| v.chars().take(512).collect::<String>())
        };
        let origin = ImageOrigin {
            source: pick("org.opencontainers.image.source"),
            revision: pick("org.opencontainers.image.revision"),
            version: pick("org.opencontainers.image.version"),
        };
        remember(&self.origins, &manifest_digest, origin.clone());
        Ok(Some(origin))
    }

    /// An image manifest, fetched by digest, and its config blob, both verified against their
    /// digests.
    async fn manifest_and_config(
        &self,
        repo: &str,
        manifest_digest: &str,
    ) -> Result<(OciImageManifest, Vec<u8>), RegistryError> {
        let (body, _) = self.get_manifest(repo, manifest_digest).await?;
        self.verify(repo, "manifest", manifest_digest, &body)?;
        let manifest: OciImageManifest = serde_json::from_slice(&body).map_err(|e| {
            self.err(
                repo,
                ErrorKind::protocol(format!(
                    "manifest {manifest_digest} is not an image manifest: {e}"
                )),
            )
        })?;
        let config_digest = self
            .checked_digest(
                repo,
                &format!("the config of manifest {manifest_digest}"),
                &manifest.config.digest,
            )?
            .to_owned();
        let what = format!("GET config blob {config_digest}");
        let url = self.url(repo, &format!("/v2/{repo}/blobs/{config_digest}"))?;
        let reply = self
            .request(
                repo,
                Method::GET,
                url,
                None,
                &what,
                self.limits.config_bytes,
            )
            .await
            .map_err(|k| self.err(repo, k))?;
        let reply = self.expect_ok(repo, &what, reply)?;
        self.verify(repo, "config blob", &config_digest, &reply.body)?;
        Ok((manifest, reply.body.to_vec()))
    }

    fn cached<V: Clone>(&self, cache: &Mutex<HashMap<String, V>>, key: &str) -> Option<V> {
        lock(cache).get(key).cloned()
    }

    /// Sends one request for `repo` to the registry's own origin, answering the registry's
    /// auth challenge once if it sends one, reading at most `max_body` bytes of the answer.
    /// Any status comes back except 401/403, which become [`ErrorKind::Auth`].
    pub async fn request(
        &self,
        repo: &str,
        method: Method,
        url: Url,
        accept: Option<&str>,
        what: &str,
        max_body: usize,
    ) -> Result<Reply, ErrorKind> {
        if !origin::same(&url, &self.origin) {
            return Err(ErrorKind::protocol(format!(
                "{what}: refusing to send a request with the registry's credentials to {} (the registry is {})",
                Origin::of(&url),
                Origin::of(&self.origin)
            )));
        }
        let scope = format!("repository:{repo}:pull");
        let mut challenged = false;
        loop {
            let mut builder = self.client.request(method.clone(), url.clone());
            if let Some(accept) = accept {
                builder = builder.header(ACCEPT, accept);
            }
            if let Some(auth) = self.auth_header(&scope).await? {
                builder = builder.header(AUTHORIZATION, auth);
            }
            let request = builder
                .build()
                .map_err(|e| ErrorKind::protocol(format!("cannot build request {url}: {e}")))?;
            let reply = self
                .transport
                .send(&self.label, &self.client, request, max_body)
                .await
                .map_err(|e| e.into_kind(what))?;
            match reply.status {
                StatusCode::UNAUTHORIZED if !challenged => {
                    challenged = true;
                    let challenge = reply
                        .header(WWW_AUTHENTICATE.as_str())
                        .and_then(parse_challenge)
                        .ok_or_else(|| {
                            ErrorKind::auth(format!(
                                "{what}: HTTP 401 without a Basic or Bearer challenge"
                            ))
                        })?;
                    // A new challenge (or the same one again) means the cached token is no
                    // longer good for this scope.
                    self.tokens.lock().await.remove(&scope);
                    *lock(&self.scheme) = Some(challenge);
                }
                StatusCode::UNAUTHORIZED => {
                    return Err(ErrorKind::auth(format!(
                        "{what}: HTTP 401: the registry refused {}",
                        self.credential_words().await
                    )));
                }
                StatusCode::FORBIDDEN => {
                    return Err(ErrorKind::auth(format!(
                        "{what}: HTTP 403: access to the repository is denied"
                    )));
                }
                _ => return Ok(reply),
            }
        }
    }

    /// The credential this client presents, for pulls by the Docker engine.
    pub async fn credential(&self, repo: &str) -> Result<Credential, RegistryError> {
        self.credentials
            .credential()
            .await
            .map_err(|kind| self.err(repo, kind))
    }

    async fn credential_words(&self) -> &'static str {
        match self.credentials.credential().await {
            Ok(Credential::Anonymous) => {
                "anonymous access; give username and password in registry_config, or log in with docker login"
            }
            _ => "the configured credentials",
        }
    }

    /// The `Authorization` value for `scope`, fetching a bearer token when none is cached.
    async fn auth_header(&self, scope: &str) -> Result<Option<String>, ErrorKind> {
        let scheme = lock(&self.scheme).clone();
        match scheme {
            None => Ok(None),
            Some(Challenge::Basic) => match self.credentials.credential().await? {
                Credential::Anonymous => Err(ErrorKind::auth(
                    "the registry asks for a username and password and none is configured (registry_config.username/password, or docker login)",
                )),
                basic => Ok(basic.basic_header()),
            },
            Some(Challenge::Bearer { realm, service }) => {
                let mut tokens = self.tokens.lock().await;
                let now = Instant::now();
                if let Some(t) = tokens.get(scope).filter(|t| t.renew_at > now) {
                    return Ok(Some(format!("Bearer {}", t.value.expose())));
                }
                let token = self.fetch_token(&realm, service.as_deref(), scope).await?;
                let header = format!("Bearer {}", token.value.expose());
                tokens.insert(scope.to_owned(), token);
                Ok(Some(header))
            }
        }
    }

    /// Asks the token service at `realm` for a token for `scope`. The registry's basic
    /// credentials go along only where [`origin::may_send_credentials`] allows.
    async fn fetch_token(
        &self,
        realm: &str,
        service: Option<&str>,
        scope: &str,
    ) -> Result<Token, ErrorKind> {
        let realm_url = Url::parse(realm)
            .ok()
            .filter(|u| matches!(u.scheme(), "http" | "https"))
            .ok_or_else(|| {
                ErrorKind::auth(format!(
                    "the registry's token realm {:?} is not an http(s) URL",
                    shown(realm)
                ))
            })?;
        let realm_origin = Origin::of(&realm_url);
        let mut query = vec![("scope", scope)];
        if let Some(service) = service {
            query.push(("service", service));
        }
        let mut builder = self.client.get(realm_url.clone()).query(&query);
        if let Some(basic) = self.credentials.credential().await?.basic_header() {
            if !origin::may_send_credentials(&self.origin, &realm_url) {
                tracing::warn!(registry = %self.label, realm = %realm_origin, "refused to send credentials to a plain-HTTP token service on another host");
                return Err(ErrorKind::auth(format!(
                    "the registry's token service {realm_origin} is plain HTTP on another origin than the registry ({}); \
                     lookout sends the registry's credentials there only over HTTPS",
                    Origin::of(&self.origin)
                )));
            }
            builder = builder.header(AUTHORIZATION, basic);
        }
        let request = builder.build().map_err(|e| {
            ErrorKind::auth(format!(
                "the token realm {realm_origin} is not a usable URL: {e}"
            ))
        })?;
        let what = "GET token";
        let reply = self
            .transport
            .send(&self.label, &self.client, request, self.limits.token_bytes)
            .await
            .map_err(|e| e.into_kind(what))?;
        if !reply.status.is_success() {
            return Err(ErrorKind::auth(format!(
                "the token service {realm_origin} answered HTTP {}{}",
                reply.status.as_u16(),
                if reply.status == StatusCode::UNAUTHORIZED {
                    " (wrong username or password?)"
                } else {
                    ""
                }
            )));
        }
        parse_token(&reply.body, Instant::now())
    }

    /// `reply` when it is 2xx; else the error naming `what` and the status.
    pub(crate) fn expect_ok(
        &self,
        repo: &str,
        what: &str,
        reply: Reply,
    ) -> Result<Reply, RegistryError> {
        if reply.status.is_success() {
            return Ok(reply);
        }
        let kind = if reply.status == StatusCode::NOT_FOUND {
            ErrorKind::NotFound {
                what: what.to_owned(),
            }
        } else {
            ErrorKind::Status {
                what: what.to_owned(),
                status: reply.status.as_u16(),
                detail: error_detail(&reply.body),
            }
        };
        Err(self.err(repo, kind))
    }

    pub fn err(&self, repo: &str, kind: ErrorKind) -> RegistryError {
        kind.at(&self.label, repo)
    }
}

/// Keeps `key → value`, emptying the cache first when it is full.
fn remember<V>(cache: &Mutex<HashMap<String, V>>, key: &str, value: V) {
    let mut cache = lock(cache);
    if cache.len() >= MAX_CACHED {
        cache.clear();
    }
    cache.insert(key.to_owned(), value);
}

/// The registry's own error text: distribution's `{"errors":[{"code":…,"message":…}]}`, the
/// first three, each escaped and shortened.
fn error_detail(body: &[u8]) -> String {
    #[derive(serde::Deserialize)]
    struct Errors {
        errors: Vec<Error>,
    }
    #[derive(serde::Deserialize)]
    struct Error {
        code: Option<String>,
        message: Option<String>,
    }
    serde_json::from_slice::<Errors>(body)
        .map(|e| {
            e.errors
                .into_iter()
                .take(3)
                .map(|e| {
                    [e.code, e.message]
                        .into_iter()
                        .flatten()
                        .map(|s| shown(&s))
                        .collect::<Vec<_>>()
                        .join(": ")
                })
                .collect::<Vec<_>>()
                .join("; ")
        })
        .unwrap_or_default()
}

/// The URL of `Link: </v2/r/tags/list?last=x&n=100>; rel="next"` (as sent: relative or
/// absolute, to be resolved against the page's URL).
pub(crate) fn next_link(header: &str) -> Option<String> {
    header.split(',').find_map(|part| {
        let (url, params) = part.split_once(';')?;
        let is_next = params.split(';').any(|p| {
            p.trim()
                .replace(' ', "")
                .eq_ignore_ascii_case("rel=\"next\"")
        });
        let url = url.trim().strip_prefix('<')?.strip_suffix('>')?;
        is_next.then(|| url.to_owned())
    })
}

/// The index entry `docker pull` would choose for `platform`: same OS and architecture, and
/// the same variant when both name one (`arm64` without a variant is `v8`).
pub(crate) fn pick_platform<'a>(
    entries: &'a [ImageIndexEntry],
    platform: &Platform,
) -> Option<&'a ImageIndexEntry> {
    let matches = |e: &&ImageIndexEntry, strict: bool| {
        let Some(p) = &e.platform else { return false };
        if p.os.to_string() != platform.os || p.architecture.to_string() != platform.architecture {
            return false;
        }
        match (&p.variant, &platform.variant) {
            (Some(a), Some(b)) => a == b,
            (None, Some(b)) => !strict || (platform.architecture == "arm64" && b == "v8"),
            _ => true,
        }
    };
    entries
        .iter()
        .find(|e| matches(e, true))
        .or_else(|| entries.iter().find(|e| matches(e, false)))
}

/// `sha256:<hex>` of `bytes`.
#[cfg(test)]
pub fn sha256_digest(bytes: &[u8]) -> String {
    grammar::digest_of(Algorithm::Sha256, bytes)
}

/// The adapter for registries that need nothing beyond the distribution API.
pub(crate) struct OciRegistry {
    api: Distribution,
}

impl OciRegistry {
    /// Credentials: `registry_config.username`/`password`, else Docker's `config.json`, else
    /// anonymous.
    pub(crate) fn new(ctx: &Adapter<'_>) -> Result<Self, RegistryError> {
        let credentials = configured_or_docker(ctx);
        Ok(Self {
            api: Distribution::new(ctx, credentials)?,
        })
    }
}

/// The configured username and password, else what Docker's `config.json` has for the host.
pub(crate) fn configured_or_docker(ctx: &Adapter<'_>) -> Arc<dyn CredentialSource> {
    match (&ctx.settings.username, &ctx.settings.password) {
        (Some(u), Some(p)) => Arc::new(Credential::basic(u, p.expose())),
        _ => Arc::new(FromDockerConfig {
            config: ctx.docker_config.clone(),
            host: ctx.host.to_owned(),
            resolved: tokio::sync::OnceCell::new(),
        }),
    }
}

/// Docker's credential for one host, asked for once (a helper is a process to run).
struct FromDockerConfig {
    config: super::docker_config::DockerConfig,
    host: String,
    resolved: tokio::sync::OnceCell<Credential>,
}

#[async_trait]
impl CredentialSource for FromDockerConfig {
    async fn credential(&self) -> Result<Credential, ErrorKind> {
        self.resolved
            .get_or_try_init(|| self.config.credential(&self.host))
            .await
            .cloned()
    }
}

#[async_trait]
impl Registry for OciRegistry {
    async fn digest(&self, image: &ImageRef) -> Result<Digests, RegistryError> {
        self.api.digest(image).await
    }

    async fn tags(&self, image: &ImageRef) -> Result<Vec<Tag>, RegistryError> {
        let repo = image.repository();
        let names = self.api.tag_names(repo).await?;
        let tags = names.into_iter().map(|n| Tag::new(n, None)).collect();
        Ok(self.api.valid_tags(repo, tags))
    }

    async fn created(&self, image: &ImageRef) -> Result<Option<i64>, RegistryError> {
        self.api.created(image).await
    }

    async fn origin(&self, image: &ImageRef) -> Result<Option<ImageOrigin>, RegistryError> {
        self.api.origin(image).await
    }

    async fn credential(&self, image: &ImageRef) -> Result<Credential, RegistryError> {
        self.api.credential(image.repository()).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn link_headers_give_the_next_page() {
        assert_eq!(
            next_link(r#"</v2/app/tags/list?last=b&n=2>; rel="next""#).as_deref(),
            Some("/v2/app/tags/list?last=b&n=2")
        );
        assert_eq!(
            next_link(r#"<https://r.example/v2/a/tags/list?last=x>; rel="prev", <https://r.example/v2/a/tags/list?last=y>; rel="next""#).as_deref(),
            Some("https://r.example/v2/a/tags/list?last=y")
        );
        assert_eq!(next_link(r#"</x>; rel="prev""#), None);
    }

    #[test]
    fn picks_the_platform_docker_would() {
        let index: OciImageIndex = serde_json::from_str(
            r#"{"schemaVersion":2,"manifests":[
            {"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:aa","size":1,"platform":{"os":"linux","architecture":"arm","variant":"v7"}},
            {"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:bb","size":1,"platform":{"os":"linux","architecture":"arm64","variant":"v8"}},
            {"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:cc","size":1,"platform":{"os":"linux","architecture":"amd64"}},
            {"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:dd","size":1,"platform":{"os":"unknown","architecture":"unknown"}}]}"#,
        )
        .unwrap();
        let pick = |p: &str| {
            pick_platform(&index.manifests, &Platform::parse(p).unwrap()).map(|e| e.digest.as_str())
        };
        assert_eq!(pick("linux/amd64"), Some("sha256:cc"));
        assert_eq!(pick("linux/arm64/v8"), Some("sha256:bb"));
        assert_eq!(pick("linux/arm/v7"), Some("sha256:aa"));
        assert_eq!(pick("linux/arm/v6"), None);
        assert_eq!(pick("linux/s390x"), None);
    }

    #[test]
    fn digests_are_sha256_of_the_bytes() {
        assert_eq!(
            sha256_digest(b""),
            "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }
}

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
//!   answer's `Docker-Content-Digest` and `Content-Type`. For an index, one `GET` of the index
//!   (cached by its digest) finds the host platform's manifest digest.
//! - Tags: `GET /v2/<repo>/tags/list?n=N`, following `Link: <…>; rel="next"` until there is
//!   none; a registry that ignores `n` answers in one page.
//! - Auth: anonymous until a 401's challenge says Basic or Bearer; bearer tokens are cached per
//!   scope (one adapter serves one registry, so per (registry, scope)) until they expire.
//! - Plain HTTP only for hosts marked `insecure` and for loopback hosts, as Docker does.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use async_trait::async_trait;
use oci_client::manifest::{
    IMAGE_MANIFEST_LIST_MEDIA_TYPE, IMAGE_MANIFEST_MEDIA_TYPE, ImageIndexEntry,
    OCI_IMAGE_INDEX_MEDIA_TYPE, OCI_IMAGE_MEDIA_TYPE, OciImageIndex, OciImageManifest,
};
use reqwest::header::{ACCEPT, AUTHORIZATION, WWW_AUTHENTICATE};
use reqwest::{Method, StatusCode};
use sha2::Digest as _;

use super::auth::{Challenge, Credential, CredentialSource, Token, parse_challenge, parse_token};
use super::http::{Reply, Transport};
use super::{Adapter, Digests, ErrorKind, Platform, Registry, RegistryError};
use crate::policy::Tag;
use crate::reference::ImageRef;

/// The manifest media types lookout accepts, indexes first.
const MANIFEST_TYPES: [&str; 4] = [
    IMAGE_MANIFEST_LIST_MEDIA_TYPE,
    OCI_IMAGE_INDEX_MEDIA_TYPE,
    IMAGE_MANIFEST_MEDIA_TYPE,
    OCI_IMAGE_MEDIA_TYPE,
];

/// At most this many pages of one tag list (a registry whose `Link` loops is cut off).
const MAX_TAG_PAGES: usize = 10_000;

pub fn is_index_media_type(media_type: &str) -> bool {
    media_type == IMAGE_MANIFEST_LIST_MEDIA_TYPE || media_type == OCI_IMAGE_INDEX_MEDIA_TYPE
}

/// Whether a host is loopback (`localhost`, 127.0.0.0/8, `::1`), which Docker allows over plain
/// HTTP without being told.
pub fn is_loopback(host: &str) -> bool {
    if let Ok(ip) = host.parse::<std::net::IpAddr>() {
        return ip.is_loopback();
    }
    let name = match host.strip_prefix('[') {
        Some(rest) => rest.split(']').next().unwrap_or(rest),
        None => host.rsplit_once(':').map_or(host, |(h, port)| {
            if port.chars().all(|c| c.is_ascii_digit()) {
                h
            } else {
                host
            }
        }),
    };
    name.eq_ignore_ascii_case("localhost")
        || name
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// A client for one registry's distribution API.
pub struct Distribution {
    /// The registry's name in errors and request counts (the host as configured).
    label: String,
    /// `https://host` or `http://host`.
    base: String,
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
    /// Index digest → the host platform's manifest digest (immutable, so kept).
    platform_digests: Mutex<HashMap<String, Option<String>>>,
    /// Manifest digest → the image config's `created` time (immutable, so kept).
    created: Mutex<HashMap<String, Option<i64>>>,
}

impl Distribution {
    /// A client for `ctx.host` presenting what `credentials` gives.
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
            .client(ctx.settings.ca_file.as_deref())
            .map_err(|k| k.at(ctx.host, "*"))?;
        Ok(Self {
            label: ctx.host.to_owned(),
            base: base.trim_end_matches('/').to_owned(),
            client,
            transport: ctx.transport.clone(),
            credentials,
            scheme: Mutex::new(None),
            tokens: tokio::sync::Mutex::new(HashMap::new()),
            platform: ctx.options.platform.clone(),
            page_size: ctx.options.page_size.max(1),
            platform_digests: Mutex::new(HashMap::new()),
            created: Mutex::new(HashMap::new()),
        })
    }

    pub fn label(&self) -> &str {
        &self.label
    }

    pub fn client(&self) -> &reqwest::Client {
        &self.client
    }

    pub fn transport(&self) -> &Transport {
        &self.transport
    }

    /// The digests `image` points to now.
    pub async fn digest(&self, image: &ImageRef) -> Result<Digests, RegistryError> {
        let repo = image.repository();
        let reference = image
            .digest()
            .or(image.tag())
            .expect("an ImageRef has a tag or a digest");
        let reply = self.manifest(repo, Method::HEAD, reference).await?;
        let media_type = reply
            .header("content-type")
            .map(|c| c.split(';').next().unwrap_or(c).trim().to_owned())
            .unwrap_or_default();
        let manifest = match reply.header("docker-content-digest") {
            Some(d) if d.starts_with("sha256:") => d.to_owned(),
            // Some registries leave the header out of HEAD answers: read and hash the body.
            _ => {
                let (body, _) = self.get_manifest(repo, reference).await?;
                sha256_digest(&body)
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
        let index: OciImageIndex = serde_json::from_slice(&body).map_err(|e| {
            self.err(
                repo,
                ErrorKind::protocol(format!("index {index_digest} is not an image index: {e}")),
            )
        })?;
        let found = pick_platform(&index.manifests, &self.platform).map(|e| e.digest.clone());
        self.platform_digests
            .lock()
            .expect("cache lock")
            .insert(index_digest.to_owned(), found.clone());
        Ok(found)
    }

    /// `GET` a manifest by tag or digest: its bytes and media type.
    async fn get_manifest(
        &self,
        repo: &str,
        reference: &str,
    ) -> Result<(bytes::Bytes, String), RegistryError> {
        let reply = self.manifest(repo, Method::GET, reference).await?;
        let media_type = reply.header("content-type").unwrap_or_default().to_owned();
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
        let url = format!("{}/v2/{repo}/manifests/{reference}", self.base);
        let reply = self
            .request(repo, method, &url, Some(&MANIFEST_TYPES.join(", ")), &what)
            .await
            .map_err(|k| self.err(repo, k))?;
        self.expect_ok(repo, &what, reply)
    }

    /// Every page of the tag list, as JSON, following `Link` headers.
    pub async fn tag_pages(&self, repo: &str) -> Result<Vec<serde_json::Value>, RegistryError> {
        let mut url = format!("{}/v2/{repo}/tags/list?n={}", self.base, self.page_size);
        let mut pages = Vec::new();
        let mut seen = std::collections::HashSet::new();
        loop {
            let what = "GET tag list";
            let reply = self
                .request(repo, Method::GET, &url, None, what)
                .await
                .map_err(|k| self.err(repo, k))?;
            let reply = self.expect_ok(repo, what, reply)?;
            let page: serde_json::Value = serde_json::from_slice(&reply.body).map_err(|e| {
                self.err(
                    repo,
                    ErrorKind::protocol(format!("tag list is not JSON: {e}")),
                )
            })?;
            pages.push(page);
            let Some(next) = reply.header("link").and_then(next_link) else {
                return Ok(pages);
            };
            let next = if next.starts_with('/') {
                format!("{}{next}", self.base)
            } else {
                next
            };
            if !seen.insert(next.clone()) || pages.len() >= MAX_TAG_PAGES {
                return Err(self.err(
                    repo,
                    ErrorKind::protocol("the tag list's Link headers go round in a loop"),
                ));
            }
            url = next;
        }
    }

    /// Tag names, all pages.
    pub async fn tag_names(&self, repo: &str) -> Result<Vec<String>, RegistryError> {
        let mut names = Vec::new();
        for page in self.tag_pages(repo).await? {
            // `"tags": null` is what distribution says for a repository with no tags.
            if let Some(tags) = page.get("tags").and_then(|t| t.as_array()) {
                names.extend(tags.iter().filter_map(|t| t.as_str().map(str::to_owned)));
            }
        }
        Ok(names)
    }

    /// The `created` time of the image `image` names, for this host's platform: the manifest
    /// (by digest when the tag is an index) and its config blob. Cached by manifest digest.
    pub async fn created(&self, image: &ImageRef) -> Result<Option<i64>, RegistryError> {
        let repo = image.repository();
        let digests = self.digest(image).await?;
        let Some(manifest_digest) = digests.platform else {
            return Ok(None);
        };
        if let Some(known) = self.cached(&self.created, &manifest_digest) {
            return Ok(known);
        }
        let (body, _) = self.get_manifest(repo, &manifest_digest).await?;
        let manifest: OciImageManifest = serde_json::from_slice(&body).map_err(|e| {
            self.err(
                repo,
                ErrorKind::protocol(format!(
                    "manifest {manifest_digest} is not an image manifest: {e}"
                )),
            )
        })?;
        let config_digest = manifest.config.digest;
        let what = format!("GET config blob {config_digest}");
        let url = format!("{}/v2/{repo}/blobs/{config_digest}", self.base);
        let reply = self
            .request(repo, Method::GET, &url, None, &what)
            .await
            .map_err(|k| self.err(repo, k))?;
        let reply = self.expect_ok(repo, &what, reply)?;
        #[derive(serde::Deserialize)]
        struct Config {
            created: Option<String>,
        }
        let created = serde_json::from_slice::<Config>(&reply.body)
            .ok()
            .and_then(|c| c.created)
            .and_then(|c| c.parse::<jiff::Timestamp>().ok())
            .map(|t| t.as_second());
        self.created
            .lock()
            .expect("cache lock")
            .insert(manifest_digest, created);
        Ok(created)
    }

    fn cached<V: Clone>(&self, cache: &Mutex<HashMap<String, V>>, key: &str) -> Option<V> {
        cache.lock().expect("cache lock").get(key).cloned()
    }

    /// Sends one request for `repo`, answering the registry's auth challenge once if it sends
    /// one. Any status comes back except 401/403, which become [`ErrorKind::Auth`].
    pub async fn request(
        &self,
        repo: &str,
        method: Method,
        url: &str,
        accept: Option<&str>,
        what: &str,
    ) -> Result<Reply, ErrorKind> {
        let scope = format!("repository:{repo}:pull");
        let mut challenged = false;
        loop {
            let mut builder = self.client.request(method.clone(), url);
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
                .send(&self.label, &self.client, request)
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
                    *self.scheme.lock().expect("scheme lock") = Some(challenge);
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
        let scheme = self.scheme.lock().expect("scheme lock").clone();
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

    /// Asks the token service at `realm` for a token for `scope`.
    async fn fetch_token(
        &self,
        realm: &str,
        service: Option<&str>,
        scope: &str,
    ) -> Result<Token, ErrorKind> {
        let mut query = vec![("scope", scope)];
        if let Some(service) = service {
            query.push(("service", service));
        }
        let mut builder = self.client.get(realm).query(&query);
        if let Some(basic) = self.credentials.credential().await?.basic_header() {
            builder = builder.header(AUTHORIZATION, basic);
        }
        let request = builder.build().map_err(|e| {
            ErrorKind::auth(format!(
                "the token realm {realm:?} is not a usable URL: {e}"
            ))
        })?;
        let what = "GET token";
        let reply = self
            .transport
            .send(&self.label, &self.client, request)
            .await
            .map_err(|e| e.into_kind(what))?;
        if !reply.status.is_success() {
            return Err(ErrorKind::auth(format!(
                "the token service {realm} answered HTTP {}{}",
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
    pub fn expect_ok(&self, repo: &str, what: &str, reply: Reply) -> Result<Reply, RegistryError> {
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

/// The registry's own error text: distribution's `{"errors":[{"code":…,"message":…}]}`.
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
                .map(|e| {
                    [e.code, e.message]
                        .into_iter()
                        .flatten()
                        .collect::<Vec<_>>()
                        .join(": ")
                })
                .collect::<Vec<_>>()
                .join("; ")
        })
        .unwrap_or_default()
}

/// The URL of `Link: </v2/r/tags/list?last=x&n=100>; rel="next"`.
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
pub fn pick_platform<'a>(
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
pub fn sha256_digest(bytes: &[u8]) -> String {
    let hash = sha2::Sha256::digest(bytes);
    let mut s = String::with_capacity(71);
    s.push_str("sha256:");
    for b in hash.iter() {
        s.push_str(&format!("{b:02x}"));
    }
    s
}

/// The adapter for registries that need nothing beyond the distribution API.
pub struct OciRegistry {
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
        let names = self.api.tag_names(image.repository()).await?;
        Ok(names.into_iter().map(|n| Tag::new(n, None)).collect())
    }

    async fn created(&self, image: &ImageRef) -> Result<Option<i64>, RegistryError> {
        self.api.created(image).await
    }

    async fn credential(&self, image: &ImageRef) -> Result<Credential, RegistryError> {
        self.api.credential(image.repository()).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_hosts_are_recognised_with_and_without_ports() {
        for host in [
            "localhost",
            "localhost:5000",
            "127.0.0.1:5000",
            "127.3.4.5",
            "[::1]:5000",
            "::1",
        ] {
            assert!(is_loopback(host), "{host}");
        }
        for host in [
            "ghcr.io",
            "10.0.0.1:5000",
            "registry.local:5000",
            "[::2]:5000",
        ] {
            assert!(!is_loopback(host), "{host}");
        }
    }

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

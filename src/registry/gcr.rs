//! The `gcr` adapter: Artifact Registry (`*-docker.pkg.dev`) and Container Registry (`gcr.io`).
//!
//! - Token: with a service-account key (`registry_config.service_account_path`, else the file
//!   `GOOGLE_APPLICATION_CREDENTIALS` names), lookout signs the JWT with `gcp_auth`'s signer
//!   and exchanges it at the key's `token_uri` through its own transport, so the exchange is
//!   counted, bounded in time and size, and its `expires_in` read safely. Without a key,
//!   `gcp_auth`'s other providers (gcloud's application default credentials, the metadata
//!   server, the gcloud CLI) run in a task of their own under the request deadline, and each
//!   token they fetch is counted as one request.
//! - The registry takes it as basic auth, user `oauth2accesstoken`.
//! - Push times: Google adds a `manifest` map to `tags/list`, keyed by digest, with the tags
//!   and `timeUploadedMs` (`timeCreatedMs` is 0 on Artifact Registry, so upload time wins).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use base64::Engine;
use reqwest::Url;
use reqwest::header::CONTENT_TYPE;
use tokio::sync::{Mutex, OnceCell};

use super::auth::{Credential, CredentialSource, Token, parse_token};
use super::grammar::shown;
use super::http::Transport;
use super::oci::Distribution;
use super::origin::Origin;
use super::page::Page;
use super::{Adapter, Digests, ErrorKind, Registry, RegistryError};
use crate::error_chain::error_chain;
use crate::policy::Tag;
use crate::reference::ImageRef;
use crate::secret::Secret;

const SCOPE: &str = "https://www.googleapis.com/auth/cloud-platform";

/// `grant_type=urn:ietf:params:oauth:grant-type:jwt-bearer`, form-encoded.
const JWT_BEARER_GRANT: &str = "grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Ajwt-bearer";

/// A service-account key file is a few kilobytes; a larger file is not one.
const MAX_KEY_FILE_BYTES: u64 = 1024 * 1024;

/// `gcp_auth` fetches a new token once its cached one is within 20 s of expiring; asking it
/// 15 s before expiry makes every call lookout counts a real fetch.
const PROVIDER_RENEW_MARGIN: i64 = 15;

/// A Google access token as the registry password, cached until shortly before it expires.
struct GoogleToken {
    key_file: Option<PathBuf>,
    transport: Arc<Transport>,
    client: reqwest::Client,
    /// The registry the token requests are counted under.
    label: String,
    max_body: usize,
    source: OnceCell<Source>,
    cached: Mutex<Option<Token>>,
}

/// Where tokens come from.
enum Source {
    Key(Box<ServiceAccount>),
    Provider(Arc<dyn gcp_auth::TokenProvider>),
}

/// A service-account key: who signs, and where the signed JWT is exchanged.
struct ServiceAccount {
    client_email: String,
    token_uri: Url,
    /// Holds the key's RSA signer.
    account: gcp_auth::CustomServiceAccount,
}

impl ServiceAccount {
    fn load(path: &Path) -> Result<Self, ErrorKind> {
        let bad = |why: String| {
            ErrorKind::setup(format!("service account key {}: {why}", path.display()))
        };
        let len = std::fs::metadata(path)
            .map_err(|e| bad(e.to_string()))?
            .len();
        if len > MAX_KEY_FILE_BYTES {
            return Err(bad(format!("{len} bytes is too large for a key file")));
        }
        let text = std::fs::read_to_string(path).map_err(|e| bad(e.to_string()))?;
        #[derive(serde::Deserialize)]
        struct Key {
            client_email: String,
            token_uri: String,
        }
        let key: Key = serde_json::from_str(&text)
            .map_err(|e| bad(format!("not a service account key: {e}")))?;
        let token_uri =
            Url::parse(&key.token_uri).map_err(|e| bad(format!("token_uri is not a URL: {e}")))?;
        let origin = Origin::of(&token_uri);
        if !origin.is_https() && !origin.is_loopback() {
            return Err(bad(format!(
                "token_uri {origin} is not HTTPS; lookout sends signed assertions over HTTPS only"
            )));
        }
        let account =
            gcp_auth::CustomServiceAccount::from_json(&text).map_err(|e| bad(error_chain(&e)))?;
        Ok(Self {
            client_email: key.client_email,
            token_uri,
            account,
        })
    }

    /// The signed JWT asking for an access token with `SCOPE` (RFC 7523).
    fn assertion(&self) -> Result<String, ErrorKind> {
        let b64 = |v: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v);
        let now = jiff::Timestamp::now().as_second();
        let header = serde_json::json!({"alg": "RS256", "typ": "JWT"});
        let claims = serde_json::json!({
            "iss": self.client_email, "scope": SCOPE, "aud": self.token_uri.as_str(),
            "iat": now, "exp": now.saturating_add(3600),
        });
        let input = format!(
            "{}.{}",
            b64(header.to_string().as_bytes()),
            b64(claims.to_string().as_bytes())
        );
        let signature = self.account.signer().sign(input.as_bytes()).map_err(|e| {
            ErrorKind::auth(format!(
                "cannot sign the Google token request: {}",
                error_chain(&e)
            ))
        })?;
        Ok(format!("{input}.{}", b64(&signature)))
    }
}

impl GoogleToken {
    async fn source(&self) -> Result<&Source, ErrorKind> {
        self.source
            .get_or_try_init(|| async {
                let key = self
                    .key_file
                    .clone()
                    .or_else(|| std::env::var_os("GOOGLE_APPLICATION_CREDENTIALS").map(PathBuf::from));
                if let Some(path) = key {
                    return ServiceAccount::load(&path).map(|k| Source::Key(Box::new(k)));
                }
                let found = tokio::time::timeout(self.transport.deadline(), gcp_auth::provider()).await;
                match found {
                    Ok(Ok(provider)) => Ok(Source::Provider(provider)),
                    Ok(Err(e)) => Err(ErrorKind::setup(format!(
                        "no Google credentials: set registry_config.service_account_path or GOOGLE_APPLICATION_CREDENTIALS ({})",
                        error_chain(&e)
                    ))),
                    Err(_) => Err(ErrorKind::TimedOut {
                        what: "looking for Google credentials (gcloud, metadata server)".into(),
                        after: self.transport.deadline(),
                    }),
                }
            })
            .await
    }

    /// A fresh token from the key's `token_uri`, through the transport.
    async fn exchange(&self, key: &ServiceAccount) -> Result<Token, ErrorKind> {
        let body = format!("{JWT_BEARER_GRANT}&assertion={}", key.assertion()?);
        let request = self
            .client
            .post(key.token_uri.clone())
            .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(body)
            .build()
            .map_err(|e| ErrorKind::auth(format!("cannot build the Google token request: {e}")))?;
        let what = "POST Google token";
        let reply = self
            .transport
            .send(&self.label, &self.client, request, self.max_body)
            .await
            .map_err(|e| e.into_kind(what))?;
        if !reply.status.is_success() {
            #[derive(serde::Deserialize)]
            struct OAuthError {
                error: Option<String>,
            }
            let code = serde_json::from_slice::<OAuthError>(&reply.body)
                .ok()
                .and_then(|e| e.error)
                .map(|e| format!(" ({})", shown(&e)))
                .unwrap_or_default();
            return Err(ErrorKind::auth(format!(
                "Google's token endpoint {} answered HTTP {}{code}",
                Origin::of(&key.token_uri),
                reply.status.as_u16()
            )));
        }
        parse_token(&reply.body, Instant::now())
    }

    /// A token from `gcp_auth`'s provider, in a task of its own (a panic in it is an error
    /// here) under the request deadline; counted as one request.
    async fn ask_provider(
        &self,
        provider: &Arc<dyn gcp_auth::TokenProvider>,
    ) -> Result<Token, ErrorKind> {
        let provider = provider.clone();
        let mut task = tokio::spawn(async move {
            provider
                .token(&[SCOPE])
                .await
                .map(|t| (t.as_str().to_owned(), t.expires_at().timestamp()))
                .map_err(|e| error_chain(&e))
        });
        let deadline = self.transport.deadline();
        let outcome = match tokio::time::timeout(deadline, &mut task).await {
            Ok(Ok(result)) => result.map_err(|e| format!("cannot get a Google access token: {e}")),
            Ok(Err(join)) => Err(format!("the Google token provider failed: {join}")),
            Err(_) => {
                task.abort();
                self.transport.record(&self.label, "POST", None);
                return Err(ErrorKind::TimedOut {
                    what: "getting a Google access token".into(),
                    after: deadline,
                });
            }
        };
        self.transport
            .record(&self.label, "POST", outcome.as_ref().ok().map(|_| 200));
        let (value, expires_at) = outcome.map_err(ErrorKind::auth)?;
        let left = expires_at
            .saturating_sub(jiff::Timestamp::now().as_second())
            .saturating_sub(PROVIDER_RENEW_MARGIN)
            .clamp(1, 24 * 3600);
        let now = Instant::now();
        Ok(Token {
            value: Secret::new(value),
            renew_at: now
                .checked_add(Duration::from_secs(left.unsigned_abs()))
                .unwrap_or(now),
        })
    }
}

#[async_trait]
impl CredentialSource for GoogleToken {
    async fn credential(&self) -> Result<Credential, ErrorKind> {
        let mut cached = self.cached.lock().await;
        if let Some(token) = cached.as_ref().filter(|t| t.renew_at > Instant::now()) {
            return Ok(Credential::basic("oauth2accesstoken", token.value.expose()));
        }
        let token = match self.source().await? {
            Source::Key(key) => self.exchange(key).await?,
            Source::Provider(provider) => self.ask_provider(provider).await?,
        };
        let credential = Credential::basic("oauth2accesstoken", token.value.expose());
        *cached = Some(token);
        Ok(credential)
    }
}

pub struct Gcr {
    registry: Distribution,
}

impl Gcr {
    pub(crate) fn new(ctx: &Adapter<'_>) -> Result<Self, RegistryError> {
        let client = ctx
            .transport
            .client(None, false)
            .map_err(|k| k.at(ctx.host, "*"))?;
        let credentials = Arc::new(GoogleToken {
            key_file: ctx.settings.service_account_path.clone(),
            transport: ctx.transport.clone(),
            client,
            label: ctx.host.to_owned(),
            max_body: ctx.options.limits.token_bytes,
            source: OnceCell::new(),
            cached: Mutex::new(None),
        });
        Ok(Self {
            registry: Distribution::new(ctx, credentials)?,
        })
    }
}

/// One entry of the `manifest` map Google adds to a `tags/list` page, keyed by digest.
#[derive(Debug, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct GoogleManifest {
    #[serde(default)]
    tag: Vec<String>,
    time_uploaded_ms: Option<String>,
    time_created_ms: Option<String>,
}

/// A Google `tags/list` page: its tags and its `manifest` map.
pub(crate) type GooglePage = Page<String, HashMap<String, GoogleManifest>>;

/// Tags from Google's `tags/list` pages, with push times from their `manifest` maps.
pub(crate) fn tags_from_google_pages(pages: Vec<GooglePage>) -> Vec<Tag> {
    let mut pushed = HashMap::new();
    let mut names = Vec::new();
    for page in pages {
        names.extend(page.items);
        for entry in page.manifest.unwrap_or_default().into_values() {
            let ms = |s: &Option<String>| {
                s.as_deref()
                    .and_then(|v| v.parse::<i64>().ok())
                    .filter(|v| *v > 0)
            };
            let Some(ms) = ms(&entry.time_uploaded_ms).or_else(|| ms(&entry.time_created_ms))
            else {
                continue;
            };
            for tag in entry.tag {
                pushed.insert(tag, ms / 1000);
            }
        }
    }
    names
        .into_iter()
        .map(|n| {
            let p = pushed.get(&n).copied();
            Tag::new(n, p)
        })
        .collect()
}

#[async_trait]
impl Registry for Gcr {
    async fn digest(&self, image: &ImageRef) -> Result<Digests, RegistryError> {
        self.registry.digest(image).await
    }

    async fn tags(&self, image: &ImageRef) -> Result<Vec<Tag>, RegistryError> {
        let repo = image.repository();
        let pages = self.registry.tag_pages(repo).await?;
        Ok(self
            .registry
            .valid_tags(repo, tags_from_google_pages(pages)))
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::page::parse_page;

    #[test]
    fn push_times_come_from_upload_time_not_the_zero_creation_time() {
        let page = serde_json::json!({
            "child": [],
            "manifest": {
                "sha256:aaaa": {"imageSizeBytes": "123", "layerId": "", "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
                    "tag": ["v1", "stable"], "timeCreatedMs": "0", "timeUploadedMs": "1700000000000"},
                "sha256:bbbb": {"imageSizeBytes": "123", "layerId": "", "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
                    "tag": ["v2"], "timeCreatedMs": "1600000000000", "timeUploadedMs": "0"}
            },
            "name": "project/app",
            "tags": ["stable", "v1", "v2", "untracked"]
        });
        let page = parse_page(page.to_string().as_bytes(), "tags", 100).unwrap();
        let tags = tags_from_google_pages(vec![page]);
        assert_eq!(
            tags,
            [
                Tag::new("stable", Some(1_700_000_000)),
                Tag::new("v1", Some(1_700_000_000)),
                Tag::new("v2", Some(1_600_000_000)),
                Tag::new("untracked", None),
            ]
        );
    }
}

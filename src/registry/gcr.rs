//! The `gcr` adapter: Artifact Registry (`*-docker.pkg.dev`) and Container Registry (`gcr.io`).
//!
//! - Token: `gcp_auth` with the service-account key in `registry_config.service_account_path`,
//!   else its default chain (`GOOGLE_APPLICATION_CREDENTIALS`, gcloud, the metadata server).
//!   The key's `token_uri` is where the signed JWT is exchanged for an access token.
//! - The registry takes it as basic auth, user `oauth2accesstoken`.
//! - Push times: Google adds a `manifest` map to `tags/list`, keyed by digest, with the tags
//!   and `timeUploadedMs` (`timeCreatedMs` is 0 on Artifact Registry, so upload time wins).

use std::sync::Arc;

use async_trait::async_trait;
use tokio::sync::OnceCell;

use super::auth::{Credential, CredentialSource};
use super::oci::Distribution;
use super::{Adapter, Digests, ErrorKind, Registry, RegistryError};
use crate::policy::Tag;
use crate::reference::ImageRef;

const SCOPE: &str = "https://www.googleapis.com/auth/cloud-platform";

/// A Google access token as the registry password. `gcp_auth` caches tokens until they expire.
struct GoogleToken {
    key_file: Option<std::path::PathBuf>,
    provider: OnceCell<Arc<dyn gcp_auth::TokenProvider>>,
}

impl GoogleToken {
    async fn provider(&self) -> Result<&Arc<dyn gcp_auth::TokenProvider>, ErrorKind> {
        self.provider
            .get_or_try_init(|| async {
                match &self.key_file {
                    Some(path) => gcp_auth::CustomServiceAccount::from_file(path)
                        .map(|a| Arc::new(a) as Arc<dyn gcp_auth::TokenProvider>)
                        .map_err(|e| {
                            ErrorKind::setup(format!(
                                "service account key {}: {e}",
                                path.display()
                            ))
                        }),
                    None => gcp_auth::provider().await.map_err(|e| {
                        ErrorKind::setup(format!(
                            "no Google credentials: set registry_config.service_account_path or GOOGLE_APPLICATION_CREDENTIALS ({e})"
                        ))
                    }),
                }
            })
            .await
    }
}

#[async_trait]
impl CredentialSource for GoogleToken {
    async fn credential(&self) -> Result<Credential, ErrorKind> {
        let token = self.provider().await?.token(&[SCOPE]).await.map_err(|e| {
            ErrorKind::auth(format!(
                "cannot get a Google access token: {}",
                error_chain(&e)
            ))
        })?;
        Ok(Credential::basic("oauth2accesstoken", token.as_str()))
    }
}

/// `e: cause: cause` — gcp_auth's messages say little without their causes.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        s.push_str(": ");
        s.push_str(&cause.to_string());
        source = cause.source();
    }
    s
}

pub struct Gcr {
    registry: Distribution,
}

impl Gcr {
    pub(crate) fn new(ctx: &Adapter<'_>) -> Result<Self, RegistryError> {
        let credentials = Arc::new(GoogleToken {
            key_file: ctx.settings.service_account_path.clone(),
            provider: OnceCell::new(),
        });
        Ok(Self {
            registry: Distribution::new(ctx, credentials)?,
        })
    }
}

/// Tags from Google's `tags/list` pages, with push times from their `manifest` maps.
pub fn tags_from_google_pages(pages: &[serde_json::Value]) -> Result<Vec<Tag>, ErrorKind> {
    #[derive(serde::Deserialize)]
    struct Page {
        #[serde(default)]
        tags: Option<Vec<String>>,
        #[serde(default)]
        manifest: std::collections::HashMap<String, Entry>,
    }
    #[derive(serde::Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Entry {
        #[serde(default)]
        tag: Vec<String>,
        time_uploaded_ms: Option<String>,
        time_created_ms: Option<String>,
    }
    let mut pushed = std::collections::HashMap::new();
    let mut names = Vec::new();
    for page in pages {
        let page: Page = serde_json::from_value(page.clone())
            .map_err(|e| ErrorKind::protocol(format!("Google's tags/list page: {e}")))?;
        names.extend(page.tags.unwrap_or_default());
        for entry in page.manifest.into_values() {
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
    Ok(names
        .into_iter()
        .map(|n| {
            let p = pushed.get(&n).copied();
            Tag::new(n, p)
        })
        .collect())
}

#[async_trait]
impl Registry for Gcr {
    async fn digest(&self, image: &ImageRef) -> Result<Digests, RegistryError> {
        self.registry.digest(image).await
    }

    async fn tags(&self, image: &ImageRef) -> Result<Vec<Tag>, RegistryError> {
        let repo = image.repository();
        let pages = self.registry.tag_pages(repo).await?;
        tags_from_google_pages(&pages).map_err(|k| self.registry.err(repo, k))
    }

    async fn created(&self, image: &ImageRef) -> Result<Option<i64>, RegistryError> {
        self.registry.created(image).await
    }

    async fn credential(&self, image: &ImageRef) -> Result<Credential, RegistryError> {
        self.registry.credential(image.repository()).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
        let tags = tags_from_google_pages(&[page]).unwrap();
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

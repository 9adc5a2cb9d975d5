//! The `ecr` adapter: Amazon ECR through `aws-sdk-ecr` for tags and the registry password, the
//! distribution API for digests.
//!
//! - Region: `registry_config.region`, else the host's (`ACCOUNT.dkr.ecr.REGION.amazonaws.com`).
//! - AWS credentials: `registry_config.aws_access_key_id` / `aws_secret_access_key` (and
//!   `aws_session_token`), else the SDK's default chain (environment, profile, web identity,
//!   instance role).
//! - Tags and push times: `DescribeImages` (`imagePushedAt`), all pages.
//! - Registry password: `GetAuthorizationToken` (`AWS:password` in base64), kept until shortly
//!   before its `expiresAt`, presented as basic auth to the registry.
//! - `registry_config.endpoint_url` points the ECR API elsewhere (private endpoints, tests).

use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use aws_sdk_ecr::config::{BehaviorVersion, Credentials, Region};
use base64::Engine;
use std::sync::Arc;
use tokio::sync::{Mutex, OnceCell};

use super::auth::{Credential, CredentialSource};
use super::oci::Distribution;
use super::{Adapter, Digests, ErrorKind, Registry, RegistryError};
use crate::config::RegistrySettings;
use crate::policy::Tag;
use crate::reference::ImageRef;

/// The ECR API client, made on first use (loading AWS configuration is async).
struct Api {
    settings: RegistrySettings,
    /// The account the registry belongs to, from the host; `None` for the caller's own.
    registry_id: Option<String>,
    region: String,
    client: OnceCell<aws_sdk_ecr::Client>,
}

impl Api {
    async fn client(&self) -> &aws_sdk_ecr::Client {
        self.client
            .get_or_init(|| async {
                let mut loader = aws_config::defaults(BehaviorVersion::latest())
                    .region(Region::new(self.region.clone()));
                if let Some(url) = &self.settings.endpoint_url {
                    loader = loader.endpoint_url(url);
                }
                if let (Some(id), Some(secret)) = (
                    &self.settings.aws_access_key_id,
                    &self.settings.aws_secret_access_key,
                ) {
                    loader = loader.credentials_provider(Credentials::new(
                        id,
                        secret.expose(),
                        self.settings
                            .aws_session_token
                            .as_ref()
                            .map(|t| t.expose().to_owned()),
                        None,
                        "lookout registry_config",
                    ));
                }
                aws_sdk_ecr::Client::new(&loader.load().await)
            })
            .await
    }
}

/// The registry password from `GetAuthorizationToken`, cached until it is about to expire.
struct AuthorizationToken {
    api: Arc<Api>,
    cached: Mutex<Option<(Credential, SystemTime)>>,
}

#[async_trait]
impl CredentialSource for AuthorizationToken {
    async fn credential(&self) -> Result<Credential, ErrorKind> {
        let mut cached = self.cached.lock().await;
        if let Some((c, renew_at)) = &*cached
            && SystemTime::now() < *renew_at
        {
            return Ok(c.clone());
        }
        let client = self.api.client().await;
        let mut call = client.get_authorization_token();
        if let Some(id) = &self.api.registry_id {
            #[allow(deprecated)] // registryIds is deprecated but still scopes the token.
            {
                call = call.registry_ids(id);
            }
        }
        let out = call.send().await.map_err(|e| {
            ErrorKind::auth(format!(
                "ECR GetAuthorizationToken failed: {}",
                aws_sdk_ecr::error::DisplayErrorContext(&e)
            ))
        })?;
        let data = out
            .authorization_data()
            .first()
            .ok_or_else(|| ErrorKind::auth("ECR GetAuthorizationToken returned no token"))?;
        let decoded = data
            .authorization_token()
            .and_then(|t| base64::engine::general_purpose::STANDARD.decode(t).ok())
            .and_then(|b| String::from_utf8(b).ok())
            .ok_or_else(|| {
                ErrorKind::auth("ECR's authorization token is not base64 of user:password")
            })?;
        let (user, password) = decoded
            .split_once(':')
            .ok_or_else(|| ErrorKind::auth("ECR's authorization token is not user:password"))?;
        let credential = Credential::basic(user, password);
        // ECR tokens last 12 hours; renew five minutes early, or in an hour when undated.
        let expires = data
            .expires_at()
            .and_then(|t| SystemTime::try_from(*t).ok())
            .unwrap_or_else(|| SystemTime::now() + Duration::from_secs(3600));
        // Asking again at once for a token that claims to be expired would only repeat the
        // call; keep any token at least a minute.
        let renew_at = expires
            .checked_sub(Duration::from_secs(300))
            .unwrap_or(expires)
            .max(SystemTime::now() + Duration::from_secs(60));
        *cached = Some((credential.clone(), renew_at));
        Ok(credential)
    }
}

pub struct Ecr {
    api: Arc<Api>,
    registry: Distribution,
}

impl Ecr {
    pub(crate) fn new(ctx: &Adapter<'_>) -> Result<Self, RegistryError> {
        let parsed = parse_ecr_host(ctx.host);
        let region = ctx
            .settings
            .region
            .clone()
            .or_else(|| parsed.as_ref().map(|(_, r)| r.clone()))
            .ok_or_else(|| {
                ErrorKind::setup(format!(
                    "the ECR region is unknown: the host {:?} is not ACCOUNT.dkr.ecr.REGION.amazonaws.com; set registry_config.region",
                    ctx.host
                ))
                .at(ctx.host, "*")
            })?;
        let api = Arc::new(Api {
            settings: ctx.settings.clone(),
            registry_id: parsed.map(|(account, _)| account),
            region,
            client: OnceCell::new(),
        });
        let credentials = Arc::new(AuthorizationToken {
            api: api.clone(),
            cached: Mutex::new(None),
        });
        Ok(Self {
            registry: Distribution::new(ctx, credentials)?,
            api,
        })
    }
}

/// `123456789012.dkr.ecr.eu-west-1.amazonaws.com` → (account, region).
pub fn parse_ecr_host(host: &str) -> Option<(String, String)> {
    let name = host.split(':').next()?;
    let mut parts = name.split('.');
    let account = parts.next()?;
    let (dkr, ecr, region) = (parts.next()?, parts.next()?, parts.next()?);
    let valid = dkr == "dkr"
        && ecr == "ecr"
        && account.len() == 12
        && account.chars().all(|c| c.is_ascii_digit())
        && name.contains(".amazonaws.com");
    valid.then(|| (account.to_owned(), region.to_owned()))
}

#[async_trait]
impl Registry for Ecr {
    async fn digest(&self, image: &ImageRef) -> Result<Digests, RegistryError> {
        self.registry.digest(image).await
    }

    async fn tags(&self, image: &ImageRef) -> Result<Vec<Tag>, RegistryError> {
        let repo = image.repository();
        let client = self.api.client().await;
        let mut call = client.describe_images().repository_name(repo).filter(
            aws_sdk_ecr::types::DescribeImagesFilter::builder()
                .tag_status(aws_sdk_ecr::types::TagStatus::Tagged)
                .build(),
        );
        if let Some(id) = &self.api.registry_id {
            call = call.registry_id(id);
        }
        let mut pages = call.into_paginator().items().send();
        let mut tags = Vec::new();
        while let Some(item) = pages.next().await {
            let detail = item.map_err(|e| {
                ErrorKind::Status {
                    what: "ECR DescribeImages".into(),
                    status: e.raw_response().map_or(0, |r| r.status().as_u16()),
                    detail: aws_sdk_ecr::error::DisplayErrorContext(&e).to_string(),
                }
                .at(self.registry.label(), repo)
            })?;
            let pushed = detail.image_pushed_at().map(|t| t.secs());
            tags.extend(detail.image_tags().iter().map(|t| Tag::new(t, pushed)));
        }
        Ok(tags)
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
    fn reads_account_and_region_from_the_host() {
        assert_eq!(
            parse_ecr_host("123456789012.dkr.ecr.eu-west-1.amazonaws.com"),
            Some(("123456789012".into(), "eu-west-1".into()))
        );
        assert_eq!(
            parse_ecr_host("123456789012.dkr.ecr.cn-north-1.amazonaws.com.cn"),
            Some(("123456789012".into(), "cn-north-1".into()))
        );
        assert_eq!(parse_ecr_host("127.0.0.1:5000"), None);
        assert_eq!(parse_ecr_host("ghcr.io"), None);
    }
}

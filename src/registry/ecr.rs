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
//!
//! The SDK's HTTP goes through lookout's transport ([`super::aws_http`]): counted under the
//! registry's name, bounded in time and size. Each SDK call also has the request deadline as
//! its operation timeout, and `DescribeImages` pages and tags are held to the tag list limits.

use std::future::Future;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use aws_sdk_ecr::config::{BehaviorVersion, Credentials, Region};
use base64::Engine;
use std::sync::Arc;
use tokio::sync::{Mutex, OnceCell};

use super::auth::{Credential, CredentialSource};
use super::aws_http::SdkHttp;
use super::oci::Distribution;
use super::{Adapter, Digests, ErrorKind, Limits, Registry, RegistryError};
use crate::config::RegistrySettings;
use crate::policy::Tag;
use crate::reference::ImageRef;

/// The longest an ECR authorization token is kept, whatever its `expiresAt` says (they last
/// 12 hours).
const MAX_TOKEN_LIFETIME: Duration = Duration::from_secs(12 * 3600);

/// The ECR API client, made on first use (loading AWS configuration is async).
struct Api {
    settings: RegistrySettings,
    /// The account the registry belongs to, from the host; `None` for the caller's own.
    registry_id: Option<String>,
    region: String,
    http: SdkHttp,
    /// The longest one SDK call (its retries included) may take.
    deadline: Duration,
    limits: Limits,
    client: OnceCell<aws_sdk_ecr::Client>,
}

impl Api {
    /// Runs one SDK call within the deadline; a call that outlasts it is an error naming it.
    async fn within<T>(
        &self,
        what: &str,
        call: impl Future<Output = Result<T, ErrorKind>>,
    ) -> Result<T, ErrorKind> {
        tokio::time::timeout(self.deadline, call)
            .await
            .unwrap_or_else(|_| {
                Err(ErrorKind::TimedOut {
                    what: what.to_owned(),
                    after: self.deadline,
                })
            })
    }

    async fn client(&self) -> Result<&aws_sdk_ecr::Client, ErrorKind> {
        self.within("loading the AWS configuration", async {
            Ok(self.client.get_or_init(|| self.make_client()).await)
        })
        .await
    }

    async fn make_client(&self) -> aws_sdk_ecr::Client {
        let mut loader = aws_config::defaults(BehaviorVersion::latest())
            .region(Region::new(self.region.clone()))
            .http_client(self.http.clone())
            .timeout_config(
                aws_config::timeout::TimeoutConfig::builder()
                    .operation_timeout(self.deadline)
                    .build(),
            );
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
        let client = self.api.client().await?;
        let mut call = client.get_authorization_token();
        if let Some(id) = &self.api.registry_id {
            #[allow(deprecated)] // registryIds is deprecated but still scopes the token.
            {
                call = call.registry_ids(id);
            }
        }
        let what = "ECR GetAuthorizationToken";
        let out = self
            .api
            .within(what, async {
                call.send().await.map_err(|e| {
                    ErrorKind::auth(format!(
                        "{what} failed: {}",
                        aws_sdk_ecr::error::DisplayErrorContext(&e)
                    ))
                })
            })
            .await?;
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
        let renew_at = renew_at(
            SystemTime::now(),
            data.expires_at()
                .and_then(|t| SystemTime::try_from(*t).ok()),
        );
        *cached = Some((credential.clone(), renew_at));
        Ok(credential)
    }
}

/// When to ask for a new authorization token: five minutes before it expires, in an hour when
/// undated, never sooner than a minute (asking again at once for a token that claims to be
/// expired would only repeat the call) and never later than [`MAX_TOKEN_LIFETIME`].
fn renew_at(now: SystemTime, expires: Option<SystemTime>) -> SystemTime {
    let in_ = |d: Duration| now.checked_add(d).unwrap_or(now);
    let expires = expires.unwrap_or_else(|| in_(Duration::from_secs(3600)));
    expires
        .checked_sub(Duration::from_secs(300))
        .unwrap_or(expires)
        .max(in_(Duration::from_secs(60)))
        .min(in_(MAX_TOKEN_LIFETIME))
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
        let http_client = ctx
            .transport
            .client(ctx.settings.ca_file.as_deref(), false)
            .map_err(|k| k.at(ctx.host, "*"))?;
        let api = Arc::new(Api {
            settings: ctx.settings.clone(),
            registry_id: parsed.map(|(account, _)| account),
            region,
            http: SdkHttp::new(
                ctx.transport.clone(),
                http_client,
                ctx.host,
                ctx.options.limits.api_bytes,
            ),
            deadline: ctx.transport.deadline(),
            limits: ctx.options.limits.clone(),
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
pub(crate) fn parse_ecr_host(host: &str) -> Option<(String, String)> {
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
        let label = self.registry.label();
        let client = self.api.client().await.map_err(|k| k.at(label, repo))?;
        let mut call = client.describe_images().repository_name(repo).filter(
            aws_sdk_ecr::types::DescribeImagesFilter::builder()
                .tag_status(aws_sdk_ecr::types::TagStatus::Tagged)
                .build(),
        );
        if let Some(id) = &self.api.registry_id {
            call = call.registry_id(id);
        }
        let limits = &self.api.limits;
        let mut pages = call.into_paginator().send();
        let mut tags = Vec::new();
        let mut count = 0usize;
        for page_number in 0.. {
            if page_number >= limits.tag_pages {
                return Err(ErrorKind::too_large(
                    "the ECR image list",
                    format!("{} pages", limits.tag_pages),
                )
                .at(label, repo));
            }
            let what = "ECR DescribeImages";
            let page = self
                .api
                .within(what, async { Ok(pages.next().await) })
                .await
                .map_err(|k| k.at(label, repo))?;
            let Some(page) = page else { break };
            let page = page.map_err(|e| {
                ErrorKind::Status {
                    what: what.into(),
                    status: e.raw_response().map_or(0, |r| r.status().as_u16()),
                    detail: aws_sdk_ecr::error::DisplayErrorContext(&e).to_string(),
                }
                .at(label, repo)
            })?;
            for detail in page.image_details() {
                count = count.saturating_add(detail.image_tags().len());
                if count > limits.tag_count {
                    return Err(ErrorKind::too_large(
                        "the ECR image list",
                        format!("{} tags", limits.tag_count),
                    )
                    .at(label, repo));
                }
                let pushed = detail.image_pushed_at().map(|t| t.secs());
                tags.extend(detail.image_tags().iter().map(|t| Tag::new(t, pushed)));
            }
        }
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

    #[test]
    fn token_renewal_is_bounded_whatever_expires_at_says() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let at = |secs: u64| now + Duration::from_secs(secs);
        assert_eq!(renew_at(now, Some(at(12 * 3600))), at(12 * 3600 - 300));
        assert_eq!(renew_at(now, None), at(3600 - 300));
        assert_eq!(renew_at(now, Some(now - Duration::from_secs(99))), at(60));
        assert_eq!(renew_at(now, Some(SystemTime::UNIX_EPOCH)), at(60));
        let far = SystemTime::UNIX_EPOCH + Duration::from_secs(253_402_300_799);
        assert_eq!(renew_at(now, Some(far)), at(12 * 3600));
    }
}

//! The AWS SDK's HTTP client, made of [`Transport`]: every request the ECR adapter's SDK makes
//! (the ECR API, and the credential chain's STS and instance-metadata calls) is counted under
//! the registry's name, held to the per-host limit, bounded in time and capped in size like any
//! other registry request.
//!
//! The SDK retries by itself (standard mode), so each of its attempts is one
//! [`Transport::send_once`]: no retries and no 429 waits here, and a 429 reaches the SDK's own
//! throttling rules as an answer.

use std::fmt;
use std::sync::Arc;

use aws_smithy_runtime_api::client::http::{
    HttpClient, HttpConnector, HttpConnectorFuture, HttpConnectorSettings, SharedHttpConnector,
};
use aws_smithy_runtime_api::client::orchestrator::{HttpRequest, HttpResponse};
use aws_smithy_runtime_api::client::result::ConnectorError;
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_types::body::SdkBody;
use reqwest::header::{HeaderName, HeaderValue};

use super::http::{SendError, Transport};

/// An SDK HTTP client over lookout's transport.
#[derive(Clone)]
pub(crate) struct SdkHttp {
    transport: Arc<Transport>,
    client: reqwest::Client,
    /// The registry the requests are counted under.
    label: String,
    /// The most read of one answer.
    max_body: usize,
}

impl SdkHttp {
    pub(crate) fn new(
        transport: Arc<Transport>,
        client: reqwest::Client,
        label: &str,
        max_body: usize,
    ) -> Self {
        Self {
            transport,
            client,
            label: label.to_owned(),
            max_body,
        }
    }

    async fn send(&self, request: HttpRequest) -> Result<HttpResponse, ConnectorError> {
        let request = to_reqwest(&request)?;
        let what = format!("{} {}", request.method(), request.url().path());
        let reply = self
            .transport
            .send_once(&self.label, &self.client, request, self.max_body)
            .await
            .map_err(|e| to_connector_error(e, &what))?;
        let status = reply.status.as_u16().try_into().map_err(|_| {
            ConnectorError::other(format!("HTTP status {}", reply.status).into(), None)
        })?;
        let mut response = HttpResponse::new(status, SdkBody::from(reply.body));
        for (name, value) in &reply.headers {
            if let Ok(value) = value.to_str() {
                response
                    .headers_mut()
                    .append(name.as_str().to_owned(), value.to_owned());
            }
        }
        Ok(response)
    }
}

impl fmt::Debug for SdkHttp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SdkHttp")
            .field("registry", &self.label)
            .finish_non_exhaustive()
    }
}

impl HttpClient for SdkHttp {
    fn http_connector(
        &self,
        _settings: &HttpConnectorSettings,
        _components: &RuntimeComponents,
    ) -> SharedHttpConnector {
        // The transport's timeouts apply; the SDK's connector settings would only be looser.
        SharedHttpConnector::new(self.clone())
    }
}

impl HttpConnector for SdkHttp {
    fn call(&self, request: HttpRequest) -> HttpConnectorFuture {
        let this = self.clone();
        HttpConnectorFuture::new(async move { this.send(request).await })
    }
}

/// The SDK's request as a reqwest request (method, URL, headers, the body's bytes).
fn to_reqwest(request: &HttpRequest) -> Result<reqwest::Request, ConnectorError> {
    let user = |message: String| ConnectorError::user(message.into());
    let method = reqwest::Method::from_bytes(request.method().as_bytes())
        .map_err(|e| user(format!("HTTP method {:?}: {e}", request.method())))?;
    let url = reqwest::Url::parse(request.uri())
        .map_err(|e| user(format!("URL {:?}: {e}", request.uri())))?;
    let body = request
        .body()
        .bytes()
        .ok_or_else(|| user("the SDK sent a streaming body, which lookout never needs".into()))?
        .to_vec();
    let mut out = reqwest::Request::new(method, url);
    for (name, value) in request.headers() {
        let name = HeaderName::from_bytes(name.as_bytes())
            .map_err(|e| user(format!("header name {name:?}: {e}")))?;
        let value =
            HeaderValue::from_str(value).map_err(|e| user(format!("header {name}: {e}")))?;
        out.headers_mut().append(name, value);
    }
    *out.body_mut() = Some(body.into());
    Ok(out)
}

/// A transport failure as the SDK's connector error: timeouts and connection errors are
/// transient (the SDK retries them), a refusal or an oversized answer is not.
fn to_connector_error(e: SendError, what: &str) -> ConnectorError {
    let transient = matches!(e, SendError::Unreachable(_) | SendError::TimedOut(_));
    let timed_out = matches!(e, SendError::TimedOut(_));
    let message = e.into_kind(what).to_string();
    if timed_out {
        ConnectorError::timeout(message.into())
    } else if transient {
        ConnectorError::io(message.into())
    } else {
        ConnectorError::other(message.into(), None)
    }
}

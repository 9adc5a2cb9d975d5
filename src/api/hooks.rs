//! Registry push hooks: Docker Hub webhooks and distribution (`docker-registry`) notifications
//! start an immediate check of the services that use the pushed repository.
//!
//! Docker Hub cannot send headers, so the secret may come in the path (`/hooks/dockerhub/SECRET`)
//! or the query (`?secret=`); a registry's notification endpoint can send it as the
//! `X-Lookout-Hook-Secret` header. Without a `hook_secret` configured, hooks are off.

use std::collections::HashMap;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::{S, error, same_secret};

/// A repository something was pushed to: `registry/repository`, as in normalised references.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PushedRepository {
    /// `docker.io`, `127.0.0.1:5000`, `ghcr.io`; `None` when the payload does not say.
    pub registry: Option<String>,
    /// `library/nginx`, `team/app`.
    pub repository: String,
    pub tag: Option<String>,
}

/// Reads the pushed repositories from a hook payload of `source` (`dockerhub` or `registry`).
pub fn parse_push(source: &str, body: &[u8]) -> Result<Vec<PushedRepository>, String> {
    let v: Value =
        serde_json::from_slice(body).map_err(|e| format!("the body is not JSON: {e}"))?;
    match source {
        // https://docs.docker.com/docker-hub/repos/manage/webhooks/
        "dockerhub" | "docker_hub" => {
            let name = v["repository"]["repo_name"]
                .as_str()
                .ok_or("no repository.repo_name in the Docker Hub payload")?;
            let repository = if name.contains('/') {
                name.to_owned()
            } else {
                format!("library/{name}")
            };
            Ok(vec![PushedRepository {
                registry: Some("docker.io".into()),
                repository,
                tag: v["push_data"]["tag"].as_str().map(str::to_owned),
            }])
        }
        // https://distribution.github.io/distribution/about/notifications/
        "registry" | "distribution" => {
            let events = v["events"]
                .as_array()
                .ok_or("no events list in the registry notification")?;
            Ok(events
                .iter()
                .filter(|e| e["action"] == "push")
                .filter_map(|e| {
                    let repository = e["target"]["repository"].as_str()?.to_owned();
                    let registry = e["request"]["host"]
                        .as_str()
                        .map(str::to_owned)
                        .or_else(|| {
                            let url = e["target"]["url"].as_str()?;
                            url.split("://")
                                .nth(1)?
                                .split('/')
                                .next()
                                .map(str::to_owned)
                        });
                    Some(PushedRepository {
                        registry,
                        repository,
                        tag: e["target"]["tag"].as_str().map(str::to_owned),
                    })
                })
                .collect())
        }
        other => Err(format!(
            "unknown hook source {other:?}; use /hooks/dockerhub or /hooks/registry"
        )),
    }
}

pub(super) async fn hook(
    State(s): State<S>,
    Path(source): Path<String>,
    Query(q): Query<HashMap<String, String>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let given = q.get("secret").cloned().or_else(|| {
        headers
            .get("x-lookout-hook-secret")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    });
    handle(s, &source, given, &body)
}

pub(super) async fn hook_with_secret(
    State(s): State<S>,
    Path((source, secret)): Path<(String, String)>,
    body: Bytes,
) -> Response {
    handle(s, &source, Some(secret), &body)
}

fn handle(s: S, source: &str, given: Option<String>, body: &[u8]) -> Response {
    let Some(expected) = &s.config.hook_secret else {
        return error(
            StatusCode::FORBIDDEN,
            "push hooks are off: set hook_secret in the configuration to enable them",
        );
    };
    match given {
        Some(g) if same_secret(g.as_bytes(), expected.expose().as_bytes()) => {}
        _ => return error(StatusCode::UNAUTHORIZED, "missing or wrong hook secret"),
    }
    let pushed = match parse_push(source, body) {
        Ok(p) => p,
        Err(e) => return error(StatusCode::BAD_REQUEST, e),
    };
    let services = s.backend.pushed(&pushed);
    tracing::info!(%source, repositories = pushed.len(), services = ?services, "push hook");
    (StatusCode::ACCEPTED, Json(json!({ "checking": services }))).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_docker_hub_payloads() {
        let body = br#"{"callback_url":"https://registry.hub.docker.com/u/svendowideit/testhook/hook/2141b5bi5i5b02bec211i4eeih0242eg11000a/",
            "push_data":{"pushed_at":1417566161,"pusher":"trustedbuilder","tag":"latest"},
            "repository":{"name":"testhook","namespace":"svendowideit","repo_name":"svendowideit/testhook","status":"Active"}}"#;
        assert_eq!(
            parse_push("dockerhub", body).unwrap(),
            [PushedRepository {
                registry: Some("docker.io".into()),
                repository: "svendowideit/testhook".into(),
                tag: Some("latest".into())
            }]
        );
        let official = br#"{"push_data":{"tag":"1.27"},"repository":{"repo_name":"nginx"}}"#;
        assert_eq!(
            parse_push("dockerhub", official).unwrap()[0].repository,
            "library/nginx"
        );
    }

    #[test]
    fn reads_distribution_notifications() {
        let body = br#"{"events":[
            {"id":"1","action":"push","target":{"mediaType":"application/vnd.docker.distribution.manifest.v2+json","digest":"sha256:abc","repository":"e2e/app","url":"http://127.0.0.1:5000/v2/e2e/app/manifests/sha256:abc","tag":"1.1.0"},"request":{"host":"127.0.0.1:5000","method":"PUT"}},
            {"id":"2","action":"pull","target":{"repository":"other/x"},"request":{"host":"127.0.0.1:5000"}},
            {"id":"3","action":"push","target":{"repository":"team/b","url":"https://reg.example.com/v2/team/b/manifests/sha256:1"}}]}"#;
        let got = parse_push("registry", body).unwrap();
        assert_eq!(got.len(), 2, "pulls are ignored");
        assert_eq!(
            got[0],
            PushedRepository {
                registry: Some("127.0.0.1:5000".into()),
                repository: "e2e/app".into(),
                tag: Some("1.1.0".into())
            }
        );
        assert_eq!(got[1].registry.as_deref(), Some("reg.example.com"));
        assert!(
            parse_push("gitlab", b"{}")
                .unwrap_err()
                .contains("unknown hook source")
        );
        assert!(
            parse_push("registry", b"not json")
                .unwrap_err()
                .contains("not JSON")
        );
    }
}

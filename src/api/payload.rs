//! Push-hook payloads: what each sender's JSON says was pushed. Pure: bytes in, pushes out.
//!
//! Every parser takes any bytes and returns a value or a [`PayloadError`]; none panics, each
//! returns at most [`MAX_PUSHES`] pushes, and every name it returns passed the image-reference
//! grammar ([`crate::reference`]). Names that do not pass are skipped and counted, never
//! forwarded: a payload only says *which repository to check*; what runs next is decided by the
//! registry's answer, never by the payload.

use jiff::Timestamp;
use serde_json::Value;

use crate::reference::ImageRef;

/// At most this many pushes are taken from one payload; the rest are skipped and counted.
pub(crate) const MAX_PUSHES: usize = 256;

/// A repository something was pushed to: `registry/repository`, as in normalised references.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PushedRepository {
    /// `docker.io`, `127.0.0.1:5000`, `ghcr.io`; `None` when the payload does not say.
    pub registry: Option<String>,
    /// `library/nginx`, `team/app`.
    pub repository: String,
    pub tag: Option<String>,
}

/// One push a payload reports, with what the sender gives to recognise a replayed delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Push {
    pub repository: PushedRepository,
    /// The sender's id of this event (distribution's event `id`).
    pub id: Option<String>,
    /// When the sender says the push happened (distribution's `timestamp`, Docker Hub's
    /// `push_data.pushed_at`).
    pub at: Option<Timestamp>,
}

/// What a payload reports.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Payload {
    pub pushes: Vec<Push>,
    /// Entries that are not pushes of an image (pulls, layer uploads, other packages) or that
    /// name no valid repository, and pushes past [`MAX_PUSHES`].
    pub skipped: usize,
}

/// The senders lookout understands, by the `{source}` of `/hooks/{source}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// Docker Hub webhooks: cannot sign or send headers.
    DockerHub,
    /// distribution (`docker-registry`) notifications: can send fixed headers.
    Distribution,
    /// GitHub `package` / `registry_package` webhooks: signed with `X-Hub-Signature-256`.
    GitHub,
}

impl Source {
    pub(crate) fn from_path(source: &str) -> Option<Self> {
        match source {
            "dockerhub" | "docker_hub" => Some(Self::DockerHub),
            "registry" | "distribution" => Some(Self::Distribution),
            "github" => Some(Self::GitHub),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::DockerHub => "dockerhub",
            Self::Distribution => "registry",
            Self::GitHub => "github",
        }
    }
}

/// Why a payload was refused. Messages name the missing field, never quote the body.
#[derive(Debug, thiserror::Error)]
pub(crate) enum PayloadError {
    #[error("the body is not JSON ({0}); send the sender's JSON payload unchanged")]
    NotJson(#[source] serde_json::Error),
    #[error("no {0} in the {1} payload")]
    Missing(&'static str, &'static str),
    #[error("{0} in the {1} payload is not a valid repository name")]
    InvalidName(&'static str, &'static str),
}

/// Reads the pushes of a `source` payload. `github_event` is GitHub's `X-GitHub-Event`.
pub(crate) fn parse(
    source: Source,
    github_event: Option<&str>,
    body: &[u8],
) -> Result<Payload, PayloadError> {
    match source {
        Source::DockerHub => parse_docker_hub(body),
        Source::Distribution => parse_distribution(body),
        Source::GitHub => parse_github(github_event.unwrap_or(""), body),
    }
}

/// A Docker Hub webhook: one push, `repository.repo_name` and `push_data.tag`.
/// <https://docs.docker.com/docker-hub/repos/manage/webhooks/>
pub(crate) fn parse_docker_hub(body: &[u8]) -> Result<Payload, PayloadError> {
    const WHAT: &str = "Docker Hub";
    let v = json(body)?;
    let name = v["repository"]["repo_name"]
        .as_str()
        .ok_or(PayloadError::Missing("repository.repo_name", WHAT))?;
    let repository = pushed(Some("docker.io"), name, v["push_data"]["tag"].as_str())
        .ok_or(PayloadError::InvalidName("repository.repo_name", WHAT))?;
    let pushed_at = &v["push_data"]["pushed_at"];
    let at = pushed_at
        .as_i64()
        .or_else(|| {
            pushed_at
                .as_f64()
                .filter(|f| f.is_finite())
                .map(|f| f as i64)
        })
        .and_then(|s| Timestamp::from_second(s).ok());
    Ok(Payload {
        pushes: vec![Push {
            repository,
            id: None,
            at,
        }],
        skipped: 0,
    })
}

/// A distribution notification: an envelope of events; manifest pushes count, pulls and layer
/// uploads are skipped. <https://distribution.github.io/distribution/about/notifications/>
pub(crate) fn parse_distribution(body: &[u8]) -> Result<Payload, PayloadError> {
    let v = json(body)?;
    let events = v["events"].as_array().ok_or(PayloadError::Missing(
        "events list",
        "registry notification",
    ))?;
    let mut out = Payload::default();
    for e in events {
        let target = &e["target"];
        let is_image = target["mediaType"]
            .as_str()
            .is_none_or(|t| t.contains("manifest") || t.contains("index"));
        let found = (e["action"] == "push" && is_image)
            .then(|| {
                let host = e["request"]["host"]
                    .as_str()
                    .or_else(|| url_host(target["url"].as_str()?));
                pushed(host, target["repository"].as_str()?, target["tag"].as_str())
            })
            .flatten();
        match found {
            Some(repository) if out.pushes.len() < MAX_PUSHES => out.pushes.push(Push {
                repository,
                id: e["id"].as_str().map(str::to_owned),
                at: e["timestamp"].as_str().and_then(|t| t.parse().ok()),
            }),
            _ => out.skipped += 1,
        }
    }
    Ok(out)
}

/// A GitHub `package` or `registry_package` webhook for a container image (GitHub Container
/// Registry). Other events (`ping`, …), actions and package types give no pushes.
/// <https://docs.github.com/en/webhooks/webhook-events-and-payloads#package>
pub(crate) fn parse_github(event: &str, body: &[u8]) -> Result<Payload, PayloadError> {
    const WHAT: &str = "GitHub";
    let v = json(body)?;
    let package = match event {
        "package" => &v["package"],
        "registry_package" => &v["registry_package"],
        _ => return Ok(Payload::default()),
    };
    let is_container = package["package_type"]
        .as_str()
        .is_some_and(|t| t.eq_ignore_ascii_case("container") || t.eq_ignore_ascii_case("docker"));
    let published = matches!(v["action"].as_str(), Some("published" | "updated"));
    if !(is_container && published) {
        return Ok(Payload {
            pushes: Vec::new(),
            skipped: 1,
        });
    }
    let version = &package["package_version"];
    let tag = version["container_metadata"]["tag"]["name"]
        .as_str()
        .filter(|t| !t.is_empty());
    // `package_url` is the reference (`ghcr.io/owner/name:tag`); else owner and name.
    let from_url = version["package_url"]
        .as_str()
        .and_then(|url| ImageRef::parse_partial(&url.to_ascii_lowercase()).ok())
        .and_then(|r| pushed(Some(r.registry()), r.repository(), tag));
    let repository = match from_url {
        Some(r) => r,
        None => {
            let namespace = package["namespace"]
                .as_str()
                .or_else(|| package["owner"]["login"].as_str())
                .ok_or(PayloadError::Missing("package.namespace", WHAT))?;
            let name = package["name"]
                .as_str()
                .ok_or(PayloadError::Missing("package.name", WHAT))?;
            let path = format!("{namespace}/{name}").to_ascii_lowercase();
            pushed(Some("ghcr.io"), &path, tag)
                .ok_or(PayloadError::InvalidName("package.name", WHAT))?
        }
    };
    Ok(Payload {
        pushes: vec![Push {
            repository,
            id: None,
            at: None,
        }],
        skipped: 0,
    })
}

fn json(body: &[u8]) -> Result<Value, PayloadError> {
    // serde_json limits nesting to 128 levels, so no input can exhaust the stack.
    serde_json::from_slice(body).map_err(PayloadError::NotJson)
}

/// `host` of `scheme://host/...`.
fn url_host(url: &str) -> Option<&str> {
    url.split_once("://")?.1.split(['/', '?', '#']).next()
}

/// A pushed repository whose parts all pass the reference grammar, normalised as lookout
/// normalises configured images (`nginx` on Docker Hub is `library/nginx`). A host that is not a
/// valid registry name is dropped (the push then matches the repository on any registry); an
/// invalid tag is dropped; an invalid repository gives `None`.
fn pushed(host: Option<&str>, repository: &str, tag: Option<&str>) -> Option<PushedRepository> {
    let registry = host.and_then(valid_registry);
    // With an explicit registry, the reference grammar takes the path verbatim (Docker Hub adds
    // `library/`); a placeholder host stands in when the payload names none.
    let base = registry.as_deref().unwrap_or("registry.invalid");
    let name = ImageRef::parse_partial(&format!("{base}/{repository}")).ok()?;
    if name.tag().is_some() || name.digest().is_some() {
        return None;
    }
    let tag = tag
        .filter(|t| {
            ImageRef::parse_partial(&format!("{base}/x:{t}")).is_ok_and(|r| r.tag() == Some(*t))
        })
        .map(str::to_owned);
    Some(PushedRepository {
        registry,
        repository: name.repository().to_owned(),
        tag,
    })
}

/// `host` as lookout writes a registry (`docker.io` for `index.docker.io`), when it is one.
fn valid_registry(host: &str) -> Option<String> {
    let host = host.to_ascii_lowercase();
    let r = ImageRef::parse_partial(&format!("{host}/x")).ok()?;
    let same = r.registry() == host || (host == "index.docker.io" && r.registry() == "docker.io");
    same.then(|| r.registry().to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn repos(p: &Payload) -> Vec<String> {
        p.pushes
            .iter()
            .map(|p| {
                let r = &p.repository;
                format!(
                    "{}/{}:{}",
                    r.registry.as_deref().unwrap_or("?"),
                    r.repository,
                    r.tag.as_deref().unwrap_or("-")
                )
            })
            .collect()
    }

    #[test]
    fn reads_docker_hub_payloads() {
        let body = br#"{"callback_url":"https://registry.hub.docker.com/u/svendowideit/testhook/hook/2141b5bi5i5b02bec211i4eeih0242eg11000a/",
            "push_data":{"pushed_at":1417566161,"pusher":"trustedbuilder","tag":"latest"},
            "repository":{"name":"testhook","namespace":"svendowideit","repo_name":"svendowideit/testhook","status":"Active"}}"#;
        let p = parse_docker_hub(body).unwrap();
        assert_eq!(
            p.pushes,
            [Push {
                repository: PushedRepository {
                    registry: Some("docker.io".into()),
                    repository: "svendowideit/testhook".into(),
                    tag: Some("latest".into())
                },
                id: None,
                at: Some(Timestamp::from_second(1417566161).unwrap()),
            }]
        );
        let official =
            br#"{"push_data":{"tag":"1.27","pushed_at":1.7e9},"repository":{"repo_name":"nginx"}}"#;
        let p = parse_docker_hub(official).unwrap();
        assert_eq!(repos(&p), ["docker.io/library/nginx:1.27"]);
        assert_eq!(
            p.pushes[0].at,
            Some(Timestamp::from_second(1_700_000_000).unwrap())
        );
    }

    #[test]
    fn reads_distribution_notifications() {
        let body = br#"{"events":[
            {"id":"1","timestamp":"2026-03-09T14:44:26.402973972-08:00","action":"push","target":{"mediaType":"application/vnd.docker.distribution.manifest.v2+json","digest":"sha256:abc","repository":"e2e/app","url":"http://127.0.0.1:5000/v2/e2e/app/manifests/sha256:abc","tag":"1.1.0"},"request":{"host":"127.0.0.1:5000","method":"PUT"}},
            {"id":"2","action":"pull","target":{"repository":"other/x"},"request":{"host":"127.0.0.1:5000"}},
            {"id":"3","action":"push","target":{"mediaType":"application/octet-stream","repository":"layer/only"},"request":{"host":"127.0.0.1:5000"}},
            {"id":"4","action":"push","target":{"repository":"team/b","url":"https://reg.example.com/v2/team/b/manifests/sha256:1"}},
            {"id":"5","action":"push","target":{"repository":"app"},"request":{"host":"registry"}}]}"#;
        let p = parse_distribution(body).unwrap();
        assert_eq!(
            repos(&p),
            [
                "127.0.0.1:5000/e2e/app:1.1.0",
                "reg.example.com/team/b:-",
                "?/app:-"
            ],
            "pulls and layer pushes are skipped; a host that is no registry name is dropped"
        );
        assert_eq!(p.skipped, 2);
        assert_eq!(p.pushes[0].id.as_deref(), Some("1"));
        assert_eq!(
            p.pushes[0].at,
            Some("2026-03-09T22:44:26.402973972Z".parse().unwrap())
        );
        assert_eq!(p.pushes[1].at, None);
    }

    #[test]
    fn reads_github_package_events() {
        let body = br#"{"action":"published","package":{"name":"www","namespace":"TheRyanGeary","package_type":"CONTAINER",
            "package_version":{"container_metadata":{"tag":{"name":"0e2a89b","digest":"sha256:89"}},"package_url":"ghcr.io/theryangeary/www:0e2a89b"}}}"#;
        assert_eq!(
            repos(&parse_github("package", body).unwrap()),
            ["ghcr.io/theryangeary/www:0e2a89b"]
        );
        let nested = br#"{"action":"published","registry_package":{"name":"cadence/api","namespace":"Timothy","package_type":"container",
            "package_version":{"container_metadata":{"tag":{"name":""}}}}}"#;
        assert_eq!(
            repos(&parse_github("registry_package", nested).unwrap()),
            ["ghcr.io/timothy/cadence/api:-"],
            "without package_url, owner and name (lower-cased); an empty tag is none"
        );
        let npm = br#"{"action":"published","package":{"name":"x","namespace":"o","package_type":"npm"}}"#;
        assert_eq!(parse_github("package", npm).unwrap().pushes, []);
        assert_eq!(
            parse_github("ping", b"{\"zen\":\"x\"}").unwrap(),
            Payload::default()
        );
    }

    #[test]
    fn refuses_what_is_not_a_payload_without_quoting_it() {
        let err = parse_distribution(b"password=hunter2")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("not JSON") && !err.contains("hunter2"),
            "{err}"
        );
        assert!(matches!(
            parse_docker_hub(b"{}"),
            Err(PayloadError::Missing("repository.repo_name", _))
        ));
        assert!(matches!(
            parse_docker_hub(br#"{"repository":{"repo_name":"Bad Name\n"}}"#),
            Err(PayloadError::InvalidName(..))
        ));
        assert!(parse_distribution(br#"{"events":{}}"#).is_err());
        assert!(
            parse_github("package", b"[]").is_ok(),
            "not an object: nothing pushed"
        );
    }

    #[test]
    fn names_from_a_payload_pass_the_reference_grammar() {
        let hub = |name: &str, tag: &str| {
            let body = serde_json::json!({"repository":{"repo_name":name},"push_data":{"tag":tag}});
            parse_docker_hub(body.to_string().as_bytes()).map(|p| repos(&p))
        };
        assert!(hub("team/../etc", "1").is_err());
        assert!(hub("team/app?x=1", "1").is_err());
        assert!(
            hub("team/app:1", "1").is_err(),
            "a tag in the name is not a name"
        );
        assert!(hub("team/app@sha256:0", "1").is_err());
        assert_eq!(
            hub("team/app", "1.0\n\u{1b}[31m").unwrap(),
            ["docker.io/team/app:-"]
        );
        assert_eq!(hub("team/app", "../x").unwrap(), ["docker.io/team/app:-"]);
        let registry = |host: &str| {
            let body = serde_json::json!({"events":[{"action":"push","target":{"repository":"a/b"},"request":{"host":host}}]});
            repos(&parse_distribution(body.to_string().as_bytes()).unwrap())
        };
        assert_eq!(
            registry("Reg.Example.com:5000"),
            ["reg.example.com:5000/a/b:-"]
        );
        assert_eq!(registry("index.docker.io"), ["docker.io/a/b:-"]);
        assert_eq!(registry("evil.com/x"), ["?/a/b:-"]);
        assert_eq!(registry("evil.com@x"), ["?/a/b:-"]);
        assert_eq!(registry("a b"), ["?/a/b:-"]);
    }

    #[test]
    fn pushes_per_payload_are_bounded() {
        let event = r#"{"action":"push","target":{"repository":"a/b"}}"#;
        let body = format!(
            "{{\"events\":[{}]}}",
            vec![event; MAX_PUSHES + 10].join(",")
        );
        let p = parse_distribution(body.as_bytes()).unwrap();
        assert_eq!((p.pushes.len(), p.skipped), (MAX_PUSHES, 10));
    }

    #[test]
    fn deep_nesting_is_an_error_not_a_crash() {
        let body = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
        assert!(parse_distribution(body.as_bytes()).is_err());
        assert!(parse_github("package", body.as_bytes()).is_err());
    }
}

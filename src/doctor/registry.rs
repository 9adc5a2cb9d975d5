//! Registries: one manifest `HEAD` of the image each service runs, with the service's
//! credentials; nothing is pulled. Credentials are described by their user name only.

use super::report::Check;
use crate::config::{RegistryKind, ServiceSpec};
use crate::reference::ImageRef;
use crate::registry::{Credential, Digests, ErrorKind, Registries, RegistryError};

/// What the container check learned for the registry check: the image reference that runs.
pub(super) type Running = Option<ImageRef>;

/// One `HEAD` of the manifest the service runs (or, without a running container, the
/// configured image), with the service's credentials.
pub(super) async fn probe_registry(
    registries: &Registries,
    spec: &ServiceSpec,
    running: Running,
) -> Check {
    let reference = running.unwrap_or_else(|| spec.image.clone());
    let result = async {
        let registry = registries.for_service(spec)?;
        let digests = registry.digest(&reference).await?;
        let who = match spec.registry_type {
            RegistryKind::Oci | RegistryKind::DockerHub => {
                registry.credential(&reference).await.ok()
            }
            RegistryKind::Ecr | RegistryKind::Gcr => None,
        };
        Ok::<_, RegistryError>((digests, who))
    }
    .await;
    registry_check(
        spec,
        &reference,
        result.as_ref().map(|(d, c)| (d, c.as_ref())),
    )
}

/// Where the service's credentials come from, for fix texts.
fn credentials_hint(kind: RegistryKind) -> &'static str {
    match kind {
        RegistryKind::Ecr => {
            "the AWS credentials (registry_config.aws_access_key_id/aws_secret_access_key, or the host's AWS profile or role) and region"
        }
        RegistryKind::Gcr => {
            "the Google credentials (registry_config.service_account_path, or GOOGLE_APPLICATION_CREDENTIALS)"
        }
        RegistryKind::Oci | RegistryKind::DockerHub => {
            "registry_config.username/password, or run `docker login` on this host as lookout's user"
        }
    }
}

/// What the registry said to one `HEAD` of `reference`.
pub(super) fn registry_check(
    spec: &ServiceSpec,
    reference: &ImageRef,
    answer: Result<(&Digests, Option<&Credential>), &RegistryError>,
) -> Check {
    let name = format!("registry for {} ({})", spec.name, reference.registry());
    match answer {
        Ok((digests, who)) => {
            let as_whom = match (spec.registry_type, who) {
                (_, Some(Credential::Basic { username, .. })) => format!("as {username}"),
                (_, Some(Credential::Anonymous)) => "anonymously".to_owned(),
                (RegistryKind::Ecr, _) => "with AWS credentials".to_owned(),
                (RegistryKind::Gcr, _) => "with Google credentials".to_owned(),
                _ => "with its credentials".to_owned(),
            };
            Check::pass(
                name,
                format!(
                    "reachable {as_whom}; {} is {}",
                    reference.familiar(),
                    short_digest(&digests.manifest)
                ),
            )
        }
        Err(e) => registry_failure(name, spec, reference, e),
    }
}

/// A registry error as a failure (or, for a missing image or a rate limit, a warning) with
/// what to do about it.
fn registry_failure(
    name: String,
    spec: &ServiceSpec,
    reference: &ImageRef,
    e: &RegistryError,
) -> Check {
    let host = reference.registry();
    let creds = credentials_hint(spec.registry_type);
    match &e.kind {
        ErrorKind::Auth { .. } | ErrorKind::Setup { .. } => {
            Check::fail(name, e.to_string(), format!("check {creds}"))
        }
        ErrorKind::Status {
            status: 401 | 403, ..
        } => Check::fail(
            name,
            e.to_string(),
            format!(
                "check {creds}, and that they may pull {}",
                reference.repository()
            ),
        ),
        ErrorKind::NotFound { .. } => Check::warn(
            name,
            e.to_string(),
            format!(
                "the registry answers and accepts the credentials, but {} is not there; check \
                 `image` of service {:?} and the compose file",
                reference.familiar(),
                spec.name
            ),
        ),
        ErrorKind::Unreachable { .. } => Check::fail(
            name,
            e.to_string(),
            format!(
                "check the host name, DNS, proxy (HTTPS_PROXY) and firewall from this host to \
                 {host}; a plain-HTTP registry needs registry_config.insecure = true, a private \
                 CA registry_config.ca_file"
            ),
        ),
        ErrorKind::TimedOut { .. } => Check::fail(
            name,
            e.to_string(),
            format!("check the network path from this host to {host}, and the registry's health"),
        ),
        ErrorKind::TooLarge { .. } => Check::fail(
            name,
            e.to_string(),
            format!("is {host} a registry? lookout refuses answers beyond its limits"),
        ),
        ErrorKind::RateLimited { .. } => Check::warn(
            name,
            e.to_string(),
            format!("wait, or give {creds} to get a higher limit"),
        ),
        ErrorKind::Protocol { .. } | ErrorKind::Status { .. } => Check::fail(
            name,
            e.to_string(),
            format!(
                "is {host} a registry of kind {}? set registry_type of service {:?} if not",
                spec.registry_type, spec.name
            ),
        ),
    }
}

fn short_digest(d: &str) -> &str {
    d.get(..19).unwrap_or(d)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::doctor::render_text;
    use crate::doctor::tests::spec;

    #[test]
    fn registry_answers_each_have_their_fix() {
        let oci = spec("");
        let ecr = spec("registry_type = \"ecr\"\n");
        let image = ImageRef::parse("ghcr.io/acme/web:1.2").unwrap();
        let err = |kind| ErrorKind::at(kind, "ghcr.io", "acme/web");
        let cases = [
            (
                &oci,
                err(ErrorKind::auth("401 Unauthorized")),
                "FAIL",
                "registry_config.username/password, or run `docker login`",
            ),
            (
                &ecr,
                err(ErrorKind::auth("denied")),
                "FAIL",
                "AWS credentials",
            ),
            (
                &oci,
                err(ErrorKind::Status {
                    what: "HEAD manifest 1.2".into(),
                    status: 403,
                    detail: String::new(),
                }),
                "FAIL",
                "may pull acme/web",
            ),
            (
                &oci,
                err(ErrorKind::NotFound {
                    what: "manifest 1.2".into(),
                }),
                "WARN",
                "check `image` of service \"web\"",
            ),
            (
                &oci,
                err(ErrorKind::Unreachable {
                    what: "HEAD".into(),
                    message: "connection refused".into(),
                }),
                "FAIL",
                "registry_config.insecure = true",
            ),
            (
                &oci,
                err(ErrorKind::RateLimited { retry_after: None }),
                "WARN",
                "higher limit",
            ),
            (
                &oci,
                err(ErrorKind::protocol("HTML page")),
                "FAIL",
                "set registry_type",
            ),
        ];
        for (s, e, status, fix) in cases {
            let c = registry_check(s, &image, Err(&e));
            assert_eq!(c.name, "registry for web (ghcr.io)");
            assert_eq!(c.status(), status, "{c:?}");
            assert!(c.fix().unwrap().contains(fix), "want {fix:?} in {c:?}");
        }
        let digests = Digests {
            manifest: "sha256:0123456789abcdef0123456789abcdef".into(),
            media_type: "application/vnd.oci.image.manifest.v1+json".into(),
            platform: None,
        };
        let who = Credential::basic("ci", "hunter2");
        let c = registry_check(&oci, &image, Ok((&digests, Some(&who))));
        assert_eq!(
            (c.status(), c.detail()),
            (
                "PASS",
                "reachable as ci; ghcr.io/acme/web:1.2 is sha256:0123456789ab"
            )
        );
        assert!(!render_text(&[c]).contains("hunter2"));
    }
}

//! Compose: the program lookout runs (`docker compose`, a `docker-compose` binary, or
//! `LOOKOUT_COMPOSE_BINARY`), and each service's compose file — readable, valid, naming the
//! service with an `image:` lookout may change, in a folder lookout can write.

use std::io;
use std::path::Path;
use std::time::Duration;

use super::folder_of;
use super::report::Check;
use crate::compose::{ComposeError, ComposeFile, ImageSite, locate};
use crate::config::ServiceSpec;
use crate::runtime::{ComposeCli, ComposeFlavor, RuntimeError};

pub(super) async fn probe_compose(
    program: Option<&Path>,
    timeout: Duration,
) -> Result<ComposeCli, RuntimeError> {
    match program {
        Some(p) => ComposeCli::with_program(p, timeout).await,
        None => ComposeCli::detect(timeout).await,
    }
}

/// `found` is the compose lookout will run: its flavor, version and program.
pub(super) fn compose_check(
    configured: Option<&Path>,
    found: Result<(ComposeFlavor, &str, &Path), &RuntimeError>,
) -> Check {
    let (flavor, version, program) = match found {
        Ok(found) => found,
        Err(e) => {
            let fix = match configured {
                Some(p) => format!(
                    "LOOKOUT_COMPOSE_BINARY={} does not work: point it at a working compose \
                     (docker or docker-compose), or unset it to detect one",
                    p.display()
                ),
                None => "install the Docker Compose plugin (package docker-compose-plugin, \
                         `docker compose version` must work) or a docker-compose binary on PATH, \
                         or set LOOKOUT_COMPOSE_BINARY to its path"
                    .to_owned(),
            };
            return Check::fail("compose", e.to_string(), fix);
        }
    };
    let what = match flavor {
        ComposeFlavor::V2Plugin => format!("{} compose {version} (v2 plugin)", program.display()),
        ComposeFlavor::V2Standalone => format!("{} {version} (v2)", program.display()),
        ComposeFlavor::V1 => format!("{} {version} (v1)", program.display()),
    };
    if flavor.is_v1() {
        Check::warn(
            "compose",
            format!("{what} found"),
            "compose v1 is end of life; install the Docker Compose plugin \
             (docker-compose-plugin) when you can",
        )
    } else {
        Check::pass("compose", format!("{what} found"))
    }
}

/// Reads the service's compose file and finds its image; checks that the folder is writable.
pub(super) fn probe_compose_file(
    spec: &ServiceSpec,
    file: &Path,
) -> (Result<ImageSite, ComposeError>, Option<io::Result<()>>) {
    let site = ComposeFile::read(file).and_then(|f| locate(f.text(), &spec.compose_service));
    let folder_writable = folder_of(file)
        .map(|d| rustix::fs::access(d, rustix::fs::Access::WRITE_OK).map_err(io::Error::from));
    (site, folder_writable)
}

/// The compose file is readable, parses, names the service, and gives it an image lookout can
/// change; its folder is writable (lookout writes the new file beside it and renames it).
pub(super) fn compose_file_check(
    spec: &ServiceSpec,
    file: &Path,
    site: &Result<ImageSite, ComposeError>,
    folder_writable: Option<io::Result<()>>,
) -> Check {
    let name = format!("compose file for {}", spec.name);
    let site = match site {
        Ok(site) => site,
        Err(e) => return Check::fail(name, e.to_string(), compose_file_fix(spec, file, e)),
    };
    let service = &spec.compose_service;
    let (where_, shared) = image_site(site);
    let detail = format!("{}: service {service:?}, {where_}", file.display());
    if let Some(Err(e)) = folder_writable {
        let folder = folder_of(file).unwrap_or(Path::new("."));
        return Check::fail(
            name,
            format!(
                "{detail}; but its folder {} is not writable: {e}",
                folder.display()
            ),
            format!(
                "let lookout's user write {} (an update writes the new file beside the old one \
                 and renames it over)",
                folder.display()
            ),
        );
    }
    if let Some((via, services)) = shared {
        let others: Vec<&str> = services
            .iter()
            .map(String::as_str)
            .filter(|s| s != service)
            .collect();
        return Check::warn(
            name,
            format!("{detail}, shared through {via} with {}", others.join(", ")),
            format!(
                "lookout refuses to change an image other services share; give {service:?} its \
                 own `image:` to let lookout update it"
            ),
        );
    }
    Check::pass(name, detail)
}

/// What to do about a compose file lookout cannot use.
fn compose_file_fix(spec: &ServiceSpec, file: &Path, e: &ComposeError) -> String {
    let file = file.display();
    let service = &spec.compose_service;
    match e.kind() {
        ComposeError::Io { source, .. } if source.kind() == io::ErrorKind::NotFound => format!(
            "set compose_file of service {:?} to the compose file's path as lookout sees it (in \
             a container, mount the project folder at the same path)",
            spec.name
        ),
        ComposeError::Io { .. } => {
            format!("let lookout's user read and write {file} (it edits the file on update)")
        }
        ComposeError::NotUtf8 { .. } => "save the file as UTF-8".to_owned(),
        ComposeError::InvalidYaml { .. } | ComposeError::NotCompose { .. } => {
            format!("correct the YAML; `docker compose -f {file} config` shows what compose reads")
        }
        ComposeError::UnknownService { known, .. } => format!(
            "set compose_service of service {:?} to one of: {} (it defaults to the service's \
             name), or add {service:?} to {file}",
            spec.name,
            known.join(", ")
        ),
        ComposeError::BuildOnly { .. } | ComposeError::NoImage { .. } => format!(
            "give {service:?} an `image:` in {file}; lookout updates images from a registry, not \
             builds"
        ),
        _ => format!("change {service:?} in {file} as the message says"),
    }
}

/// Where the image is written, and what shares it with other services (a variable or anchor).
fn image_site(site: &ImageSite) -> (String, Option<(String, &Vec<String>)>) {
    match site {
        ImageSite::Inline { value, .. } => (format!("image {value}"), None),
        ImageSite::Variable {
            template,
            name: var,
            services,
            ..
        } => (
            format!("image {template} (from {var} in the env file)"),
            (services.len() > 1).then(|| (format!("variable {var}"), services)),
        ),
        ImageSite::Template {
            template,
            variables,
            ..
        } => (
            format!(
                "image {template} (from one of {} in the env file)",
                variables.join(", ")
            ),
            None,
        ),
        ImageSite::Anchor {
            anchor,
            value,
            services,
            ..
        } => (
            format!("image {value} (through {anchor})"),
            (services.len() > 1).then(|| (anchor.clone(), services)),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::doctor::tests::spec;

    #[test]
    fn compose_results_name_flavor_and_fix() {
        let docker = Path::new("docker");
        let c = compose_check(None, Ok((ComposeFlavor::V2Plugin, "2.40.3", docker)));
        assert_eq!(
            (c.status(), c.detail()),
            ("PASS", "docker compose 2.40.3 (v2 plugin) found")
        );
        let v1 = Path::new("/usr/bin/docker-compose");
        let c = compose_check(Some(v1), Ok((ComposeFlavor::V1, "1.29.2", v1)));
        assert_eq!(c.status(), "WARN");
        let missing = RuntimeError::ComposeNotFound {
            tried: "`docker compose`: …".into(),
        };
        let c = compose_check(None, Err(&missing));
        assert!(c.fix().unwrap().contains("docker-compose-plugin"), "{c:?}");
        let c = compose_check(Some(Path::new("/opt/dc")), Err(&missing));
        assert!(
            c.fix()
                .unwrap()
                .starts_with("LOOKOUT_COMPOSE_BINARY=/opt/dc does not work"),
            "{c:?}"
        );
    }

    #[test]
    fn compose_file_problems_each_have_their_fix() {
        let s = spec("compose_service = \"app\"\n");
        let io_err = |kind| ComposeError::Io {
            action: "read",
            path: "/srv/web/compose.yaml".into(),
            source: io::Error::from(kind),
        };
        type Case = (
            Result<ImageSite, ComposeError>,
            Option<io::Result<()>>,
            &'static str,
            &'static str,
        );
        let cases: Vec<Case> = vec![
            (
                Err(io_err(io::ErrorKind::NotFound)),
                None,
                "FAIL",
                "set compose_file of service \"web\"",
            ),
            (
                Err(io_err(io::ErrorKind::PermissionDenied)),
                None,
                "FAIL",
                "let lookout's user read and write",
            ),
            (
                Err(ComposeError::UnknownService {
                    service: "app".into(),
                    known: vec!["db".into(), "api".into()],
                }),
                None,
                "FAIL",
                "set compose_service of service \"web\" to one of: db, api",
            ),
            (
                Err(ComposeError::BuildOnly {
                    service: "app".into(),
                }),
                None,
                "FAIL",
                "give \"app\" an `image:`",
            ),
            (
                Err(ComposeError::InvalidYaml {
                    line: 3,
                    col: 1,
                    message: "bad".into(),
                }),
                None,
                "FAIL",
                "correct the YAML",
            ),
            (
                Ok(ImageSite::Inline {
                    span: 0..1,
                    quote: crate::compose::Quote::Plain,
                    value: "ghcr.io/acme/web:1.2".into(),
                }),
                Some(Err(io::Error::from(io::ErrorKind::PermissionDenied))),
                "FAIL",
                "let lookout's user write /srv/web",
            ),
            (
                Ok(ImageSite::Anchor {
                    anchor: "&base".into(),
                    span: 0..1,
                    quote: crate::compose::Quote::Plain,
                    value: "x:1".into(),
                    services: vec!["app".into(), "worker".into()],
                }),
                Some(Ok(())),
                "WARN",
                "give \"app\" its own `image:`",
            ),
        ];
        for (site, writable, status, fix) in cases {
            let c = compose_file_check(&s, Path::new("/srv/web/compose.yaml"), &site, writable);
            assert_eq!(c.status(), status, "{c:?}");
            assert!(c.fix().unwrap().contains(fix), "want {fix:?} in {c:?}");
        }
        let ok = Ok(ImageSite::Inline {
            span: 0..1,
            quote: crate::compose::Quote::Plain,
            value: "ghcr.io/acme/web:1.2".into(),
        });
        let c = compose_file_check(&s, Path::new("/srv/web/compose.yaml"), &ok, Some(Ok(())));
        assert_eq!(
            (c.status(), c.detail()),
            (
                "PASS",
                "/srv/web/compose.yaml: service \"app\", image ghcr.io/acme/web:1.2"
            )
        );
    }
}

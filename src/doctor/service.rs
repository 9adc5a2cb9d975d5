//! Per enabled service: its container, found as compose labels it (the project name computed
//! as the detected compose does), and that it runs. The compose file and registry checks of a
//! service live in `compose` and `registry`; this module also runs the three in order.

use super::compose::{compose_file_check, probe_compose_file};
use super::docker::DOCKER_TIMEOUT;
use super::registry::{Running, probe_registry};
use super::report::Check;
use crate::config::ServiceSpec;
use crate::reference::ImageRef;
use crate::registry::Registries;
use crate::runtime::{
    ComposeCli, ComposeProject, ContainerInfo, ContainerRuntime, ContainerState, Docker,
    ProjectSource, RuntimeError, locate_project,
};

/// The compose file, container and registry checks of every service, in that order per
/// service. Files and containers are looked at one service at a time; the registries are asked
/// all at once.
pub(super) async fn service_checks(
    services: &[&ServiceSpec],
    docker: Option<&Docker>,
    compose: Result<&ComposeCli, &RuntimeError>,
    registries: &Registries,
) -> Vec<Check> {
    let mut local = Vec::new();
    for spec in services {
        local.push(local_checks(spec, docker, compose).await);
    }
    let registry_checks = futures_util::future::join_all(
        services
            .iter()
            .zip(&local)
            .map(|(spec, (_, _, running))| probe_registry(registries, spec, running.clone())),
    )
    .await;
    local
        .into_iter()
        .zip(registry_checks)
        .flat_map(|((file, container, _), registry)| [file, container, registry])
        .collect()
}

/// The compose file and container checks of one service, and the image its container runs.
/// The project comes first: the labels of its containers say which files compose reads.
async fn local_checks(
    spec: &ServiceSpec,
    docker: Option<&Docker>,
    compose: Result<&ComposeCli, &RuntimeError>,
) -> (Check, Check, Running) {
    let name = format!("container of {}", spec.name);
    let project = match (docker, compose) {
        (Some(docker), Ok(compose)) => Some(
            tokio::time::timeout(DOCKER_TIMEOUT, locate_project(docker, compose, spec))
                .await
                .unwrap_or_else(|_| {
                    Err(RuntimeError::Api {
                        action: "list containers".into(),
                        status: None,
                        message: format!("no answer within {}s", DOCKER_TIMEOUT.as_secs()),
                    })
                }),
        ),
        _ => None,
    };
    let file = spec.compose_file.clone().or_else(|| {
        project
            .as_ref()
            .and_then(|p| p.as_ref().ok())
            .and_then(|p| p.files.first().cloned())
    });
    let Some(file) = file else {
        let check = Check::fail(
            format!("compose file for {}", spec.name),
            "no compose_file is configured and no running container of the service says which \
             files compose read",
            "start the service once with compose (lookout reads the files from its containers' \
             labels), or set compose_file",
        );
        return (check, Check::skip(name, "no compose file is known"), None);
    };
    let (site, folder_writable) = probe_compose_file(spec, &file);
    let file_check = compose_file_check(spec, &file, &site, folder_writable);
    let (container, running) = match (docker, compose, project) {
        _ if site.is_err() => (Check::skip(name, "the compose file check failed"), None),
        (None, _, _) => (Check::skip(name, "Docker is not reachable"), None),
        (_, Err(_), _) => (
            Check::skip(name, "no compose found, so the project name is not known"),
            None,
        ),
        (Some(docker), Ok(_), Some(project)) => probe_container(spec, docker, project).await,
        (Some(_), Ok(_), None) => (Check::skip(name, "no project"), None),
    };
    (file_check, container, running)
}

/// Finds the service's containers by compose's labels; returns the check and the image the
/// running one runs.
async fn probe_container(
    spec: &ServiceSpec,
    docker: &Docker,
    project: Result<ComposeProject, RuntimeError>,
) -> (Check, Running) {
    let project = match project {
        Ok(project) => project,
        Err(e) => {
            let check = Check::fail(
                format!("container of {}", spec.name),
                e.to_string(),
                "lookout runs compose as the service's containers were started; the message \
                 says what stops it",
            );
            return (check, None);
        }
    };
    let found = tokio::time::timeout(
        DOCKER_TIMEOUT,
        docker.service_containers(&project.name, &spec.compose_service),
    )
    .await
    .unwrap_or_else(|_| {
        Err(RuntimeError::Api {
            action: "list containers".into(),
            status: None,
            message: format!("no answer within {}s", DOCKER_TIMEOUT.as_secs()),
        })
    });
    let running = found.as_ref().ok().and_then(|list| {
        list.iter()
            .find(|c| c.state == ContainerState::Running)
            .and_then(|c| ImageRef::parse(&c.image_ref).ok())
    });
    (container_check(spec, &project, &found), running)
}

/// How lookout will run compose for the project, for the container check's detail.
pub(super) fn describe_project(project: &ComposeProject) -> String {
    let list = |paths: &[std::path::PathBuf]| {
        paths
            .iter()
            .map(|p| p.display().to_string())
            .collect::<Vec<_>>()
            .join(", ")
    };
    let source = match project.source {
        ProjectSource::Labels => "as its containers' labels record",
        ProjectSource::ComposeFile => "computed from compose_file",
        ProjectSource::Journal => "as the journal recorded",
    };
    let mut out = format!(
        "compose project {:?} ({source}): files {}; folder {}",
        project.name,
        list(&project.files),
        project.project_dir.display()
    );
    if project.env_files.is_empty() {
        out.push_str("; env file .env in the folder");
    } else {
        out.push_str(&format!("; env files {}", list(&project.env_files)));
    }
    if !project.profiles.is_empty() {
        out.push_str(&format!("; profiles {}", project.profiles.join(", ")));
    }
    out
}

/// The service has a running container, found as compose labels it.
pub(super) fn container_check(
    spec: &ServiceSpec,
    project: &ComposeProject,
    found: &Result<Vec<ContainerInfo>, RuntimeError>,
) -> Check {
    let name = format!("container of {}", spec.name);
    let service = &spec.compose_service;
    let up = format!(
        "docker compose {} up -d {service}",
        project
            .files
            .iter()
            .map(|f| format!("-f {}", f.display()))
            .collect::<Vec<_>>()
            .join(" ")
    );
    let list = match found {
        Err(e) => {
            return Check::fail(
                name,
                e.to_string(),
                "lookout lists containers through the Docker API; see the docker check",
            );
        }
        Ok(list) => list,
    };
    if let Some(c) = list.iter().find(|c| c.state == ContainerState::Running) {
        return Check::pass(
            name,
            format!(
                "{}, image {}; {}",
                c.describe(),
                c.image_ref,
                describe_project(project)
            ),
        );
    }
    match list.first() {
        None => Check::fail(
            name,
            format!(
                "no container of compose service {service:?} in project {:?}",
                project.name
            ),
            format!(
                "start it with `{up}` (lookout finds containers by the labels \
                 com.docker.compose.project={} and com.docker.compose.service={service}, so start \
                 it from this file without another -p)",
                project.name
            ),
        ),
        Some(c) => Check::fail(
            name,
            format!("{} (not running)", c.describe()),
            format!(
                "see why with `docker logs {}`, then start it with `{up}`; lookout only updates \
                 running services",
                c.name
            ),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::doctor::tests::spec;

    fn project() -> ComposeProject {
        ComposeProject {
            files: vec!["/srv/web/compose.yaml".into()],
            project_dir: "/srv/web".into(),
            name: "web".into(),
            env_files: Vec::new(),
            explicit_name: false,
            explicit_dir: false,
            profiles: Vec::new(),
            replicas: Default::default(),
            source: ProjectSource::ComposeFile,
        }
    }

    fn container(name: &str, state: ContainerState, exit_code: Option<i64>) -> ContainerInfo {
        ContainerInfo {
            id: format!("id-{name}"),
            name: name.into(),
            image_id: "sha256:0123".into(),
            image_ref: "ghcr.io/acme/web:1.2".into(),
            state,
            health: None,
            health_log: None,
            restart_count: 0,
            exit_code,
            oom_killed: false,
            started_at: None,
            has_healthcheck: false,
        }
    }

    #[test]
    fn container_outcomes_each_have_their_fix() {
        let s = spec("compose_service = \"app\"\n");
        let check = |found: Result<Vec<ContainerInfo>, RuntimeError>| {
            container_check(&s, &project(), &found)
        };

        let c = check(Ok(vec![
            container("web-app-2", ContainerState::Exited, Some(1)),
            container("web-app-1", ContainerState::Running, None),
        ]));
        assert_eq!(
            (c.name.as_str(), c.status(), c.detail()),
            (
                "container of web",
                "PASS",
                "web-app-1 running, 0 restart(s), image ghcr.io/acme/web:1.2; compose project \
                 \"web\" (computed from compose_file): files /srv/web/compose.yaml; folder \
                 /srv/web; env file .env in the folder"
            )
        );

        let c = check(Ok(vec![container(
            "web-app-1",
            ContainerState::Exited,
            Some(1),
        )]));
        assert_eq!(
            (c.status(), c.detail()),
            (
                "FAIL",
                "web-app-1 exited, exit code 1, 0 restart(s) (not running)"
            )
        );
        assert_eq!(
            c.fix().unwrap(),
            "see why with `docker logs web-app-1`, then start it with `docker compose -f \
             /srv/web/compose.yaml up -d app`; lookout only updates running services"
        );

        let c = check(Ok(vec![]));
        assert_eq!(
            (c.status(), c.detail()),
            (
                "FAIL",
                "no container of compose service \"app\" in project \"web\""
            )
        );
        assert!(
            c.fix()
                .unwrap()
                .contains("com.docker.compose.project=web and com.docker.compose.service=app"),
            "{c:?}"
        );

        let c = check(Err(RuntimeError::Api {
            action: "list containers".into(),
            status: None,
            message: "no answer within 15s".into(),
        }));
        assert!(c.is_failure());
        assert!(c.fix().unwrap().contains("see the docker check"), "{c:?}");
    }
}

//! How compose ran a project, read back from the labels it writes on every container it creates.
//!
//! These labels, not a project name recomputed from a folder, say which containers are a
//! service's and how to run compose again for it: every `-f` file in order, the `-p` name, the
//! project folder and the `--env-file`s. Compose v2 records absolute paths. Compose v1 records the
//! paths as they were typed, relative to the folder it was run from, which it does not record;
//! [`resolve_typed`] recovers them from the project folder where that is possible and says why
//! not where it is not.
//!
//! Pure: the caller reads the labels from the engine and checks that the files exist.

use std::collections::{BTreeMap, HashMap};
use std::path::{Component, Path, PathBuf};

use super::{ContainerSummary, LABEL_ONEOFF, LABEL_PROJECT, LABEL_SERVICE};

/// The project folder compose used (`--project-directory`, else the first file's folder).
pub(crate) const LABEL_WORKING_DIR: &str = "com.docker.compose.project.working_dir";
/// Every `-f` file, comma-separated, in order.
pub(crate) const LABEL_CONFIG_FILES: &str = "com.docker.compose.project.config_files";
/// The `--env-file`s, comma-separated; absent when compose read the default `.env`.
pub(crate) const LABEL_ENVIRONMENT_FILE: &str = "com.docker.compose.project.environment_file";
/// The replica's number, from 1.
pub(crate) const LABEL_CONTAINER_NUMBER: &str = "com.docker.compose.container-number";
/// The compose version that created the container.
pub(crate) const LABEL_VERSION: &str = "com.docker.compose.version";

/// How compose was run for the project a container belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordedRun {
    /// The project name (what `-p` must say).
    pub project: String,
    pub service: String,
    /// The project folder, absolute.
    pub working_dir: PathBuf,
    /// Every compose file, absolute, in `-f` order.
    pub config_files: Vec<PathBuf>,
    /// The `--env-file`s, absolute; empty when compose read `.env` in the project folder.
    pub env_files: Vec<PathBuf>,
    pub container_number: Option<u32>,
    /// The compose version that created the container, e.g. `2.40.3` or `1.29.2`.
    pub compose_version: Option<String>,
}

/// Why a container's labels do not say how to run compose for it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LabelError {
    #[error("it was not created by compose (no `{LABEL_PROJECT}` label)")]
    NotCompose,
    #[error("it was created by `compose run` (a one-off container, not the service's)")]
    OneOff,
    #[error(
        "it has no `{0}` label; it was created by a compose too old to record how it was run \
         (recreate it once with `docker compose up -d`)"
    )]
    Missing(&'static str),
    #[error("its label `{label}` is {value:?}, which is not an absolute path")]
    NotAbsolute { label: &'static str, value: String },
    #[error(
        "its label `{label}` names {value:?} relative to the folder compose was run from, which \
         compose v1 does not record, and the project folder {working_dir} does not tell it \
         ({reason}); run compose once with absolute `-f` paths, or with no `-f`"
    )]
    AmbiguousRelative {
        label: &'static str,
        value: String,
        working_dir: PathBuf,
        reason: &'static str,
    },
    #[error("its containers were created by different compose runs ({0}); recreate them together")]
    Disagree(String),
}

/// Reads how compose ran the project of a container from the container's labels.
pub fn read(labels: &HashMap<String, String>) -> Result<RecordedRun, LabelError> {
    let get = |name: &'static str| {
        labels
            .get(name)
            .map(String::as_str)
            .filter(|v| !v.is_empty())
    };
    let project = get(LABEL_PROJECT).ok_or(LabelError::NotCompose)?;
    if get(LABEL_ONEOFF).is_some_and(|v| v.eq_ignore_ascii_case("true")) {
        return Err(LabelError::OneOff);
    }
    let service = get(LABEL_SERVICE).ok_or(LabelError::Missing(LABEL_SERVICE))?;
    let working_dir = get(LABEL_WORKING_DIR).ok_or(LabelError::Missing(LABEL_WORKING_DIR))?;
    let working_dir = PathBuf::from(working_dir);
    if !working_dir.is_absolute() {
        return Err(LabelError::NotAbsolute {
            label: LABEL_WORKING_DIR,
            value: working_dir.display().to_string(),
        });
    }
    let typed_files =
        split(get(LABEL_CONFIG_FILES).ok_or(LabelError::Missing(LABEL_CONFIG_FILES))?);
    let first = typed_files
        .first()
        .copied()
        .ok_or(LabelError::Missing(LABEL_CONFIG_FILES))?;
    let resolve =
        |label: &'static str, typed: &str| resolve_typed(&working_dir, first, label, typed);
    let config_files = typed_files
        .iter()
        .map(|f| resolve(LABEL_CONFIG_FILES, f))
        .collect::<Result<Vec<_>, _>>()?;
    let env_files = get(LABEL_ENVIRONMENT_FILE)
        .map(split)
        .unwrap_or_default()
        .iter()
        .map(|f| resolve(LABEL_ENVIRONMENT_FILE, f))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(RecordedRun {
        project: project.to_owned(),
        service: service.to_owned(),
        working_dir,
        config_files,
        env_files,
        container_number: get(LABEL_CONTAINER_NUMBER).and_then(|n| n.parse().ok()),
        compose_version: get(LABEL_VERSION).map(str::to_owned),
    })
}

/// Which containers a configured service means: its compose service, in the project it names
/// (`compose_project`) or the project whose `-f` files include its `compose_file`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Wanted<'a> {
    pub service: &'a str,
    pub project: Option<&'a str>,
    /// Canonical (as [`std::fs::canonicalize`] gives it), so a symlink or `./` names the same
    /// file as compose's absolute label.
    pub compose_file: Option<&'a Path>,
}

/// The runs of the containers `wanted` means, among those of every compose container on the
/// host. `canonical` makes a recorded path canonical (the file system's answer; `None` when the
/// file is gone). A project that two folders share by name is told apart by its files: a
/// `compose_file` must be one of the run's `config_files`, never only a matching name.
pub fn select<'r>(
    runs: &'r [RecordedRun],
    wanted: &Wanted<'_>,
    canonical: impl Fn(&Path) -> Option<PathBuf>,
) -> Vec<&'r RecordedRun> {
    runs.iter()
        .filter(|r| r.service == wanted.service)
        .filter(|r| wanted.project.is_none_or(|p| r.project == p))
        .filter(|r| {
            wanted.compose_file.is_none_or(|want| {
                r.config_files
                    .iter()
                    .any(|f| canonical(f).as_deref() == Some(want))
            })
        })
        .collect()
}

/// A service's compose run, found among the host's containers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Located {
    /// How compose ran the project (every replica agrees).
    pub run: RecordedRun,
    /// How many containers each service of that run has now (one-off ones not counted).
    pub replicas: BTreeMap<String, usize>,
}

/// The compose run of the containers `wanted` means, among every compose container on the host;
/// `None` when none of them runs (nothing to learn from). Refused, with the reason, when the
/// service's containers disagree on how they were run, when another folder's containers share
/// the project name, or when a container of the service does not say how it was run.
pub fn locate(
    listed: &[ContainerSummary],
    wanted: &Wanted<'_>,
    canonical: impl Fn(&Path) -> Option<PathBuf>,
) -> Result<Option<Located>, String> {
    let mut runs = Vec::new();
    let mut unreadable = Vec::new();
    for c in listed {
        match read(&c.labels) {
            Ok(run) => runs.push(run),
            Err(LabelError::OneOff | LabelError::NotCompose) => {}
            Err(e) => {
                let named = |k: &str| c.labels.get(k).map(String::as_str);
                if named(LABEL_SERVICE) == Some(wanted.service)
                    && wanted
                        .project
                        .is_none_or(|p| named(LABEL_PROJECT) == Some(p))
                {
                    unreadable.push(format!("container {}: {e}", c.name));
                }
            }
        }
    }
    let selected: Vec<RecordedRun> = select(&runs, wanted, &canonical)
        .into_iter()
        .cloned()
        .collect();
    let Some(first) = selected.first() else {
        return match unreadable.into_iter().next() {
            Some(reason) if wanted.compose_file.is_none() => Err(reason),
            _ => Ok(None),
        };
    };
    // Every container of the project name and service, whatever folder it came from: compose
    // takes them all for one service, so they must all be of one run.
    let same_name: Vec<RecordedRun> = runs
        .iter()
        .filter(|r| r.project == first.project && r.service == first.service)
        .cloned()
        .collect();
    let run = agree(&same_name)
        .map_err(|e| {
            if same_name.iter().any(|r| r.working_dir != first.working_dir) {
                format!(
                    "compose project {:?} has containers of this service from more than one folder ({e}); give one of the projects another name (`name:` or `-p`)",
                    first.project
                )
            } else {
                format!("its containers disagree: {e}")
            }
        })?
        .clone();
    let mut replicas = BTreeMap::new();
    for r in &runs {
        if r.project == run.project
            && r.working_dir == run.working_dir
            && r.config_files == run.config_files
        {
            *replicas.entry(r.service.clone()).or_insert(0) += 1;
        }
    }
    Ok(Some(Located { run, replicas }))
}

/// The `-f` files of containers that carry `project` as their project name and `wanted`'s
/// service but that [`locate`] did not pick (another folder's project of the same name).
pub fn same_name_elsewhere(
    listed: &[ContainerSummary],
    project: &str,
    wanted: &Wanted<'_>,
) -> Option<Vec<PathBuf>> {
    listed
        .iter()
        .filter_map(|c| read(&c.labels).ok())
        .find(|r| r.project == project && r.service == wanted.service)
        .map(|r| r.config_files)
}

/// The one way all containers of a service were run. Replicas created by different runs (other
/// files, another project folder) cannot be recreated as one, so they are refused.
pub fn agree(runs: &[RecordedRun]) -> Result<&RecordedRun, LabelError> {
    let first = runs.first().ok_or(LabelError::NotCompose)?;
    for other in runs.iter().skip(1) {
        let differ = if other.project != first.project {
            "project names"
        } else if other.service != first.service {
            "services"
        } else if other.working_dir != first.working_dir {
            "project folders"
        } else if other.config_files != first.config_files {
            "compose files"
        } else if other.env_files != first.env_files {
            "env files"
        } else {
            continue;
        };
        return Err(LabelError::Disagree(format!(
            "replicas {} and {} differ in their {differ}",
            number(first),
            number(other)
        )));
    }
    Ok(first)
}

fn number(run: &RecordedRun) -> String {
    run.container_number
        .map_or_else(|| "?".to_owned(), |n| n.to_string())
}

fn split(value: &str) -> Vec<&str> {
    value
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .collect()
}

/// A path compose recorded, made absolute. Absolute paths (compose v2) are kept as they are.
///
/// Compose v1 records what was typed, relative to the folder it was run from. Without
/// `--project-directory`, the project folder is that folder joined with the first file's
/// folder, so a path relative to the run folder is the project folder, up one level for each
/// folder name in the first file's folder that the path does not share, then the rest of the
/// path. When the first file's folder climbs (`../compose.yml`) past what the path shares, the
/// names it climbed out of are unknown and the path is refused.
pub(crate) fn resolve_typed(
    working_dir: &Path,
    first_typed: &str,
    label: &'static str,
    typed: &str,
) -> Result<PathBuf, LabelError> {
    let path = Path::new(typed);
    if path.is_absolute() {
        return Ok(crate::compose::clean_path(path));
    }
    let ambiguous = |reason| LabelError::AmbiguousRelative {
        label,
        value: typed.to_owned(),
        working_dir: working_dir.to_owned(),
        reason,
    };
    let first = Path::new(first_typed);
    if first.is_absolute() {
        return Err(ambiguous("the first file is absolute, this one is not"));
    }
    let first_dir = lexical(first.parent().unwrap_or(Path::new("")))
        .ok_or_else(|| ambiguous("the first file is not a relative path"))?;
    let this = lexical(path).ok_or_else(|| ambiguous("the path is not relative"))?;
    let shared = first_dir
        .iter()
        .zip(&this)
        .take_while(|(a, b)| a == b)
        .count();
    let mut out = working_dir.to_owned();
    for step in first_dir.iter().skip(shared) {
        if *step == ".." {
            return Err(ambiguous(
                "the first file's folder climbs out of folders this path does not name",
            ));
        }
        if !out.pop() {
            return Err(ambiguous("the path climbs above the root folder"));
        }
    }
    for step in this.iter().skip(shared) {
        if *step == ".." {
            if !out.pop() {
                return Err(ambiguous("the path climbs above the root folder"));
            }
        } else {
            out.push(step);
        }
    }
    Ok(out)
}

/// The components of a relative path with `.` dropped and `name/..` folded; leading `..` kept.
/// `None` for an absolute path.
fn lexical(path: &Path) -> Option<Vec<String>> {
    let mut out: Vec<String> = Vec::new();
    for c in path.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => {
                if out.last().is_some_and(|l| l != "..") {
                    out.pop();
                } else {
                    out.push("..".to_owned());
                }
            }
            Component::Normal(n) => out.push(n.to_string_lossy().into_owned()),
            Component::RootDir | Component::Prefix(_) => return None,
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    /// As compose v2.40 wrote them for `docker compose --env-file other.env up -d` with an
    /// override file beside `compose.yml`.
    fn v2() -> Vec<(&'static str, &'static str)> {
        vec![
            ("com.docker.compose.container-number", "1"),
            ("com.docker.compose.oneoff", "False"),
            ("com.docker.compose.project", "proj"),
            (
                "com.docker.compose.project.config_files",
                "/tmp/lbl/proj/compose.yml,/tmp/lbl/proj/compose.override.yml",
            ),
            (
                "com.docker.compose.project.environment_file",
                "/tmp/lbl/proj/other.env",
            ),
            ("com.docker.compose.project.working_dir", "/tmp/lbl/proj"),
            ("com.docker.compose.service", "web"),
            ("com.docker.compose.version", "2.40.3"),
        ]
    }

    #[test]
    fn compose_v2_labels_give_every_file_in_order_the_name_and_the_env_file() {
        let run = read(&labels(&v2())).unwrap();
        assert_eq!(
            run,
            RecordedRun {
                project: "proj".into(),
                service: "web".into(),
                working_dir: "/tmp/lbl/proj".into(),
                config_files: vec![
                    "/tmp/lbl/proj/compose.yml".into(),
                    "/tmp/lbl/proj/compose.override.yml".into()
                ],
                env_files: vec!["/tmp/lbl/proj/other.env".into()],
                container_number: Some(1),
                compose_version: Some("2.40.3".into()),
            }
        );
    }

    #[test]
    fn compose_v1_relative_paths_are_resolved_from_the_project_folder() {
        // `docker-compose -f compose.yml -f compose.override.yml -p v1name --env-file other.env
        // up -d`, run in /tmp/lbl/proj, as compose 1.29.2 labelled it.
        let run = read(&labels(&[
            ("com.docker.compose.project", "v1name"),
            (
                "com.docker.compose.project.config_files",
                "compose.yml,compose.override.yml",
            ),
            ("com.docker.compose.project.environment_file", "other.env"),
            ("com.docker.compose.project.working_dir", "/tmp/lbl/proj"),
            ("com.docker.compose.service", "web"),
            ("com.docker.compose.oneoff", "False"),
        ]))
        .unwrap();
        assert_eq!(run.project, "v1name");
        assert_eq!(
            run.config_files,
            [
                PathBuf::from("/tmp/lbl/proj/compose.yml"),
                "/tmp/lbl/proj/compose.override.yml".into()
            ]
        );
        assert_eq!(run.env_files, [PathBuf::from("/tmp/lbl/proj/other.env")]);
        assert_eq!(run.container_number, None);
    }

    #[test]
    fn typed_paths_table() {
        let wd = Path::new("/srv/app");
        let cases: &[(&str, &str, Option<&str>)] = &[
            // (first file as typed, this path as typed, resolved)
            ("compose.yml", "compose.yml", Some("/srv/app/compose.yml")),
            ("compose.yml", "prod/x.yml", Some("/srv/app/prod/x.yml")),
            ("./compose.yml", "./prod.yml", Some("/srv/app/prod.yml")),
            // run from /srv/app/sub: `-f ../compose.yml -f ../prod.yml`
            (
                "../compose.yml",
                "../compose.yml",
                Some("/srv/app/compose.yml"),
            ),
            ("../compose.yml", "../prod.yml", Some("/srv/app/prod.yml")),
            // run from /srv: `-f app/compose.yml -f other/x.yml`
            ("app/compose.yml", "other/x.yml", Some("/srv/other/x.yml")),
            ("app/compose.yml", "app/y.yml", Some("/srv/app/y.yml")),
            (
                "app/./compose.yml",
                "app/sub/../y.yml",
                Some("/srv/app/y.yml"),
            ),
            ("compose.yml", "/etc/prod.yml", Some("/etc/prod.yml")),
            // run from /srv/app/sub: `-f ../compose.yml -f local.yml`; "sub" is not recorded
            ("../compose.yml", "local.yml", None),
            ("compose.yml", "../../../../x.yml", None),
            ("/srv/app/compose.yml", "prod.yml", None),
        ];
        for (first, typed, want) in cases {
            let got = resolve_typed(wd, first, LABEL_CONFIG_FILES, typed);
            match want {
                Some(want) => assert_eq!(
                    got.as_deref().ok(),
                    Some(Path::new(want)),
                    "{first} then {typed}: {got:?}"
                ),
                None => assert!(
                    matches!(got, Err(LabelError::AmbiguousRelative { .. })),
                    "{first} then {typed}: {got:?}"
                ),
            }
        }
    }

    #[test]
    fn an_ambiguous_path_says_which_label_and_what_to_do() {
        let e = resolve_typed(
            Path::new("/srv/app"),
            "../compose.yml",
            LABEL_CONFIG_FILES,
            "local.yml",
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("com.docker.compose.project.config_files"), "{e}");
        assert!(e.contains("\"local.yml\""), "{e}");
        assert!(e.contains("absolute `-f` paths"), "{e}");
    }

    #[test]
    fn containers_that_do_not_say_how_they_were_run_are_refused_with_the_reason() {
        assert_eq!(read(&labels(&[])), Err(LabelError::NotCompose));
        let mut oneoff = v2();
        oneoff.retain(|(k, _)| *k != "com.docker.compose.oneoff");
        oneoff.push(("com.docker.compose.oneoff", "True"));
        assert_eq!(read(&labels(&oneoff)), Err(LabelError::OneOff));
        for missing in [LABEL_CONFIG_FILES, LABEL_WORKING_DIR, LABEL_SERVICE] {
            let mut l = v2();
            l.retain(|(k, _)| *k != missing);
            assert_eq!(read(&labels(&l)), Err(LabelError::Missing(missing)));
        }
        let mut relative_dir = v2();
        relative_dir.retain(|(k, _)| *k != LABEL_WORKING_DIR);
        relative_dir.push((LABEL_WORKING_DIR, "proj"));
        assert!(matches!(
            read(&labels(&relative_dir)),
            Err(LabelError::NotAbsolute { .. })
        ));
    }

    #[test]
    fn no_env_file_label_means_the_default_env_file() {
        let mut l = v2();
        l.retain(|(k, _)| *k != LABEL_ENVIRONMENT_FILE);
        assert!(read(&labels(&l)).unwrap().env_files.is_empty());
    }

    #[test]
    fn replicas_of_one_run_agree_and_replicas_of_different_runs_are_refused() {
        let one = read(&labels(&v2())).unwrap();
        let mut two = one.clone();
        two.container_number = Some(2);
        assert_eq!(agree(&[one.clone(), two.clone()]), Ok(&one));
        two.config_files.pop();
        let e = agree(&[one, two]).unwrap_err().to_string();
        assert!(
            e.contains("replicas 1 and 2 differ in their compose files"),
            "{e}"
        );
        assert_eq!(agree(&[]), Err(LabelError::NotCompose));
    }

    #[test]
    fn a_configured_file_or_project_picks_the_service_containers_and_a_shared_name_does_not() {
        let run = |project: &str, dir: &str, number: u32| RecordedRun {
            project: project.into(),
            service: "web".into(),
            working_dir: dir.into(),
            config_files: vec![
                format!("{dir}/compose.yml").into(),
                format!("{dir}/compose.override.yml").into(),
            ],
            env_files: Vec::new(),
            container_number: Some(number),
            compose_version: None,
        };
        // Two folders named `app` (so one compose project name), and a `-p custom` project.
        let runs = [
            run("app", "/srv/a/app", 1),
            run("app", "/srv/a/app", 2),
            run("app", "/srv/b/app", 1),
            run("custom", "/opt/site", 1),
        ];
        // /srv/link is a symlink to /srv/a: the canonical path is what counts.
        let canonical = |p: &Path| {
            Some(PathBuf::from(
                p.to_string_lossy().replace("/srv/link", "/srv/a"),
            ))
        };
        let by_file = |file: &str| {
            let file = canonical(Path::new(file)).unwrap();
            let wanted = Wanted {
                service: "web",
                project: None,
                compose_file: Some(&file),
            };
            select(&runs, &wanted, canonical)
                .iter()
                .map(|r| (r.working_dir.display().to_string(), r.container_number))
                .collect::<Vec<_>>()
        };
        assert_eq!(
            by_file("/srv/link/app/compose.yml"),
            [
                ("/srv/a/app".to_owned(), Some(1)),
                ("/srv/a/app".to_owned(), Some(2))
            ]
        );
        // The override file names the project as well as the base file does.
        assert_eq!(by_file("/srv/b/app/compose.override.yml").len(), 1);
        assert!(by_file("/srv/c/app/compose.yml").is_empty());
        let by_project = Wanted {
            service: "web",
            project: Some("custom"),
            compose_file: None,
        };
        assert_eq!(select(&runs, &by_project, canonical).len(), 1);
        let other_service = Wanted {
            service: "db",
            project: Some("custom"),
            compose_file: None,
        };
        assert!(select(&runs, &other_service, canonical).is_empty());
    }

    fn summary(name: &str, pairs: &[(&str, &str)]) -> ContainerSummary {
        ContainerSummary {
            id: format!("id-{name}"),
            name: name.into(),
            labels: labels(pairs),
            image_id: "sha256:1".into(),
            state: super::super::ContainerState::Running,
        }
    }

    fn compose_labels(
        project: &str,
        dir: &str,
        service: &str,
        number: &str,
    ) -> Vec<(String, String)> {
        vec![
            (LABEL_PROJECT.into(), project.into()),
            (LABEL_SERVICE.into(), service.into()),
            (LABEL_WORKING_DIR.into(), dir.into()),
            (
                LABEL_CONFIG_FILES.into(),
                format!("{dir}/compose.yml,{dir}/prod.yml"),
            ),
            (LABEL_CONTAINER_NUMBER.into(), number.into()),
            (LABEL_ONEOFF.into(), "False".into()),
        ]
    }

    fn as_pairs(v: &[(String, String)]) -> Vec<(&str, &str)> {
        v.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect()
    }

    #[test]
    fn locate_counts_replicas_per_service_and_skips_one_off_containers() {
        let web1 = compose_labels("custom", "/srv/app", "web", "1");
        let web2 = compose_labels("custom", "/srv/app", "web", "2");
        let db = compose_labels("custom", "/srv/app", "db", "1");
        let mut run = compose_labels("custom", "/srv/app", "web", "3");
        run.retain(|(k, _)| k != LABEL_ONEOFF);
        run.push((LABEL_ONEOFF.into(), "True".into()));
        let listed = [
            summary("a", &as_pairs(&web1)),
            summary("b", &as_pairs(&web2)),
            summary("c", &as_pairs(&db)),
            summary("d", &as_pairs(&run)),
            summary("plain", &[]),
        ];
        let wanted = Wanted {
            service: "web",
            project: Some("custom"),
            compose_file: None,
        };
        let found = locate(&listed, &wanted, |p| Some(p.to_owned()))
            .unwrap()
            .unwrap();
        assert_eq!(found.run.project, "custom");
        assert_eq!(
            found.run.config_files,
            [
                PathBuf::from("/srv/app/compose.yml"),
                "/srv/app/prod.yml".into()
            ]
        );
        assert_eq!(
            found.replicas,
            BTreeMap::from([("db".to_owned(), 1), ("web".to_owned(), 2)])
        );
        // Nothing of the service runs: nothing to learn from.
        let other = Wanted {
            service: "cache",
            ..wanted.clone()
        };
        assert_eq!(locate(&listed, &other, |p| Some(p.to_owned())), Ok(None));
    }

    #[test]
    fn locate_refuses_a_project_name_two_folders_share() {
        let a = compose_labels("app", "/srv/a/app", "web", "1");
        let b = compose_labels("app", "/srv/b/app", "web", "1");
        let listed = [summary("a", &as_pairs(&a)), summary("b", &as_pairs(&b))];
        let file = PathBuf::from("/srv/a/app/compose.yml");
        let wanted = Wanted {
            service: "web",
            project: None,
            compose_file: Some(&file),
        };
        let e = locate(&listed, &wanted, |p| Some(p.to_owned())).unwrap_err();
        assert!(e.contains("from more than one folder"), "{e}");
        assert!(e.contains("another name"), "{e}");
        // Found by the other file: none of this folder runs, but its name is taken.
        let file_c = PathBuf::from("/srv/c/app/compose.yml");
        let c = Wanted {
            compose_file: Some(&file_c),
            ..wanted
        };
        assert_eq!(locate(&listed, &c, |p| Some(p.to_owned())), Ok(None));
        assert_eq!(
            same_name_elsewhere(&listed, "app", &c).map(|f| f.len()),
            Some(2)
        );
    }

    #[test]
    fn locate_by_project_reports_a_container_that_does_not_say_how_it_was_run() {
        let mut old = compose_labels("legacy", "/srv/l", "web", "1");
        old.retain(|(k, _)| k != LABEL_CONFIG_FILES);
        let listed = [summary("legacy-web-1", &as_pairs(&old))];
        let wanted = Wanted {
            service: "web",
            project: Some("legacy"),
            compose_file: None,
        };
        let e = locate(&listed, &wanted, |p| Some(p.to_owned())).unwrap_err();
        assert!(
            e.starts_with(
                "container legacy-web-1: it has no `com.docker.compose.project.config_files` label"
            ),
            "{e}"
        );
    }
}

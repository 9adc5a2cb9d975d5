//! The compose command line: `up -d --no-deps SERVICE`, the resolved configuration, and the
//! project name as compose computes it.
//!
//! lookout runs compose only where the Engine API has no equivalent: creating a service's
//! container from the compose file. [`ComposeCli::detect`] prefers the v2 plugin
//! (`docker compose`), then a `docker-compose` binary, and asks it its version rather than
//! trusting the name: a `docker-compose` on `PATH` may be v2 (standalone) or v1 (Python).
//!
//! Every run passes arguments without a shell, runs in the project folder, has a timeout after
//! which the whole process group is killed, and keeps the tail of stderr in the error.
//!
//! lookout passes `-p` only when a project name was configured. Otherwise compose computes the
//! name itself, exactly as when an operator runs `docker compose up` next to the file, and
//! [`project_name`] computes the same name to find the containers by their labels.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use tokio::io::AsyncReadExt;

use super::{RuntimeError, tail};
use crate::compose::parse_env;
use crate::config::ServiceSpec;

/// Lines of stderr kept in an error message.
const STDERR_TAIL_LINES: usize = 20;
/// How long to wait for a killed process's pipes to close.
const KILL_GRACE: Duration = Duration::from_secs(2);

/// Which compose lookout talks to. The flavor decides the project-name rules and how the
/// resolved configuration is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ComposeFlavor {
    /// `docker compose`, the Docker CLI plugin (v2).
    V2Plugin,
    /// A `docker-compose` binary that reports version 2 or later.
    V2Standalone,
    /// The Python `docker-compose` (1.x).
    V1,
}

impl ComposeFlavor {
    pub(crate) fn is_v1(self) -> bool {
        self == Self::V1
    }
}

/// A compose executable, found and asked its version.
#[derive(Debug, Clone)]
pub struct ComposeCli {
    flavor: ComposeFlavor,
    program: PathBuf,
    /// Arguments before compose's own (`compose` for the plugin).
    args_prefix: Vec<String>,
    version: String,
    timeout: Duration,
}

/// The files and folder compose reads for one project, the name it gives the project, and what
/// lookout passes so that compose runs it again as it was run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ComposeProject {
    /// Absolute paths, in `-f` order.
    pub files: Vec<PathBuf>,
    /// Compose's project folder: where relative paths in the files and the default `.env` are
    /// read from (the first file's folder unless `--project-directory` said otherwise).
    pub project_dir: PathBuf,
    /// The name compose gives the project, which its containers carry as
    /// `com.docker.compose.project`.
    pub name: String,
    /// Compose's `--env-file`s, in order; empty: `.env` in the project folder.
    pub env_files: Vec<PathBuf>,
    /// The name is passed to compose as `-p`.
    pub explicit_name: bool,
    /// The folder is passed to compose as `--project-directory`.
    pub explicit_dir: bool,
    /// Profiles to activate (`--profile`): those of the services lookout brings up.
    pub profiles: Vec<String>,
    /// How many containers each service of the project runs now; `up` keeps that number
    /// (`--scale`), so a service scaled by hand stays scaled.
    pub replicas: BTreeMap<String, usize>,
    /// How the project was found, for messages and `lookout doctor`.
    pub source: ProjectSource,
}

/// Where lookout learnt how to run a project.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProjectSource {
    /// From the labels compose wrote on the service's running containers.
    Labels,
    /// Computed from the configured `compose_file`, as compose would (no container runs).
    ComposeFile,
    /// From the journal entry of an interrupted update, which recorded how compose ran.
    Journal,
}

impl ComposeCli {
    /// Finds compose: `docker compose` first, then `docker-compose` (whatever version it is).
    pub async fn detect(timeout: Duration) -> Result<Self, RuntimeError> {
        let mut tried = Vec::new();
        match Self::probe(Path::new("docker"), &["compose"], timeout).await {
            Ok(cli) => return Ok(cli),
            Err(e) => tried.push(format!("`docker compose`: {e}")),
        }
        match Self::probe(Path::new("docker-compose"), &[], timeout).await {
            Ok(cli) => return Ok(cli),
            Err(e) => tried.push(format!("`docker-compose`: {e}")),
        }
        Err(RuntimeError::ComposeNotFound {
            tried: tried.join("; "),
        })
    }

    /// Uses one compose executable. A program named `docker` is used as `docker compose`.
    pub async fn with_program(program: &Path, timeout: Duration) -> Result<Self, RuntimeError> {
        let prefix: &[&str] = if program.file_name().is_some_and(|n| n == "docker") {
            &["compose"]
        } else {
            &[]
        };
        Self::probe(program, prefix, timeout).await
    }

    async fn probe(
        program: &Path,
        prefix: &[&str],
        timeout: Duration,
    ) -> Result<Self, RuntimeError> {
        let mut cli = Self {
            flavor: ComposeFlavor::V1,
            program: program.to_owned(),
            args_prefix: prefix.iter().map(|s| (*s).to_owned()).collect(),
            version: String::new(),
            timeout,
        };
        let out = cli.run(None, &["version"]).await?;
        let (major, version) =
            parse_version(&out.stdout).ok_or_else(|| RuntimeError::ComposeOutput {
                command: cli.display(&["version"]),
                detail: format!("no version in {:?}", out.stdout.trim()),
            })?;
        cli.flavor = match (major, prefix.is_empty()) {
            (1, _) => ComposeFlavor::V1,
            (_, false) => ComposeFlavor::V2Plugin,
            (_, true) => ComposeFlavor::V2Standalone,
        };
        cli.version = version;
        tracing::debug!(program = %program.display(), version = %cli.version, flavor = ?cli.flavor, "found compose");
        Ok(cli)
    }

    pub fn flavor(&self) -> ComposeFlavor {
        self.flavor
    }

    /// The version compose reported, e.g. `2.40.3` or `1.29.2`.
    pub fn version(&self) -> &str {
        &self.version
    }

    pub(crate) fn program(&self) -> &Path {
        &self.program
    }

    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// The project of `compose_file` as this compose flavor names it (see [`project_name`]).
    pub fn project(
        &self,
        compose_file: &Path,
        explicit_name: Option<&str>,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<ComposeProject, RuntimeError> {
        ComposeProject::new(
            vec![compose_file.to_owned()],
            None,
            explicit_name,
            self.flavor,
            env,
        )
    }

    /// `up -d --no-deps SERVICE…`: (re)creates the services' containers from the compose files,
    /// leaving the services they depend on alone, each with as many containers as it runs now.
    pub async fn up(
        &self,
        project: &ComposeProject,
        services: &[&str],
    ) -> Result<(), RuntimeError> {
        let mut args = project_args(project);
        args.extend(["up", "-d", "--no-deps"].map(String::from));
        for service in services {
            if let Some(n) = project.replicas.get(*service) {
                args.push("--scale".into());
                args.push(format!("{service}={n}"));
            }
        }
        args.extend(services.iter().map(|s| (*s).to_owned()));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        self.run(Some(&project.project_dir), &args).await?;
        Ok(())
    }

    /// `down`: stops and removes the project's containers and networks (used by tests and
    /// tools; the update engine never takes a project down).
    pub async fn down(&self, project: &ComposeProject) -> Result<(), RuntimeError> {
        let mut args = project_args(project);
        args.extend(["down", "--timeout", "1"].map(String::from));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        self.run(Some(&project.project_dir), &args).await?;
        Ok(())
    }

    /// The project's configuration as compose resolves it: files merged, variables substituted.
    /// v2 prints it as JSON (`config --format json`); v1 prints YAML, read into the same shape.
    pub(crate) async fn config_json(
        &self,
        project: &ComposeProject,
    ) -> Result<serde_json::Value, RuntimeError> {
        let mut args = project_args(project);
        args.push("config".into());
        if !self.flavor.is_v1() {
            args.extend(["--format", "json"].map(String::from));
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = self.run(Some(&project.project_dir), &args).await?;
        let parsed = if self.flavor.is_v1() {
            serde_yaml_ng::from_str(&out.stdout).map_err(|e| e.to_string())
        } else {
            serde_json::from_str(&out.stdout).map_err(|e| e.to_string())
        };
        parsed.map_err(|detail| RuntimeError::ComposeOutput {
            command: self.display(&args),
            detail,
        })
    }

    /// The image a service runs after compose resolved variables and merged files; `None`
    /// when the service has no `image:` (build only).
    pub async fn service_image(
        &self,
        project: &ComposeProject,
        service: &str,
    ) -> Result<Option<String>, RuntimeError> {
        let config = self.config_json(project).await?;
        let services = config
            .get("services")
            .and_then(|s| s.as_object())
            .ok_or_else(|| RuntimeError::ComposeOutput {
                command: self.display(&["config"]),
                detail: "no `services` in the resolved configuration".into(),
            })?;
        let Some(entry) = services.get(service) else {
            return Err(RuntimeError::Project {
                file: project.files.first().cloned().unwrap_or_default(),
                reason: format!(
                    "no service {service:?}; the services are: {}",
                    services.keys().cloned().collect::<Vec<_>>().join(", ")
                ),
            });
        };
        Ok(entry
            .get("image")
            .and_then(|i| i.as_str())
            .map(str::to_owned))
    }

    /// The command line as an operator would type it (no secrets ever go on it).
    fn display(&self, args: &[&str]) -> String {
        std::iter::once(self.program.display().to_string())
            .chain(self.args_prefix.iter().cloned())
            .chain(args.iter().map(|a| {
                if a.is_empty() || a.contains(char::is_whitespace) {
                    format!("{a:?}")
                } else {
                    (*a).to_owned()
                }
            }))
            .collect::<Vec<_>>()
            .join(" ")
    }

    /// Runs compose with `args` in `dir`, without a shell, under the timeout. A process still
    /// running at the timeout is killed with its whole process group (the plugin runs as a
    /// child of `docker`).
    async fn run(&self, dir: Option<&Path>, args: &[&str]) -> Result<Output, RuntimeError> {
        let command = self.display(args);
        tracing::debug!(%command, "running compose");
        let mut cmd = tokio::process::Command::new(&self.program);
        cmd.args(&self.args_prefix)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .kill_on_drop(true);
        if let Some(dir) = dir {
            cmd.current_dir(dir);
        }
        let mut child = cmd.spawn().map_err(|e| RuntimeError::ComposeSpawn {
            command: command.clone(),
            detail: e.to_string(),
        })?;
        let stdout = read_all(child.stdout.take());
        let stderr = read_all(child.stderr.take());
        let status = match tokio::time::timeout(self.timeout, child.wait()).await {
            Ok(Ok(status)) => status,
            Ok(Err(e)) => {
                return Err(RuntimeError::ComposeSpawn {
                    command,
                    detail: e.to_string(),
                });
            }
            Err(_elapsed) => {
                if let Some(pid) = child
                    .id()
                    .and_then(|id| rustix::process::Pid::from_raw(id as i32))
                {
                    let _ = rustix::process::kill_process_group(pid, rustix::process::Signal::KILL);
                }
                let _ = child.kill().await;
                let stderr = tokio::time::timeout(KILL_GRACE, stderr)
                    .await
                    .ok()
                    .and_then(Result::ok)
                    .unwrap_or_default();
                return Err(RuntimeError::ComposeTimeout {
                    command,
                    timeout: self.timeout,
                    stderr_tail: tail(&stderr, STDERR_TAIL_LINES),
                });
            }
        };
        let stdout = stdout.await.unwrap_or_default();
        let stderr = stderr.await.unwrap_or_default();
        if !status.success() {
            return Err(RuntimeError::ComposeFailed {
                command,
                code: status.code(),
                stderr_tail: tail(&stderr, STDERR_TAIL_LINES),
            });
        }
        Ok(Output { stdout })
    }
}

impl super::Compose for ComposeCli {
    /// The project of the service's configured compose file, named as this compose flavor
    /// names it (`compose_project` as `-p` when configured), with the process environment.
    async fn project(&self, spec: &ServiceSpec) -> Result<ComposeProject, RuntimeError> {
        let Some(file) = &spec.compose_file else {
            return Err(super::compose::no_file(spec));
        };
        ComposeCli::project(self, file, spec.compose_project.as_deref(), |n| {
            std::env::var(n).ok()
        })
    }

    async fn up(&self, project: &ComposeProject, services: &[&str]) -> Result<(), RuntimeError> {
        ComposeCli::up(self, project, services).await
    }

    async fn service_image(
        &self,
        project: &ComposeProject,
        service: &str,
    ) -> Result<Option<String>, RuntimeError> {
        ComposeCli::service_image(self, project, service).await
    }
}

/// Compose found on first use, once per process: a pass with nothing to update starts no child
/// process. `LOOKOUT_COMPOSE_BINARY` (given as `program`) names the compose program; without it
/// `docker compose` is tried first, then `docker-compose`. A failed detection is not kept, so
/// compose installed later is found by the next update.
#[derive(Debug)]
pub struct LazyCompose {
    program: Option<PathBuf>,
    timeout: Duration,
    found: tokio::sync::OnceCell<ComposeCli>,
}

impl LazyCompose {
    pub fn new(program: Option<PathBuf>, timeout: Duration) -> Self {
        Self {
            program,
            timeout,
            found: tokio::sync::OnceCell::new(),
        }
    }

    /// The compose program, detected (and asked its version) on the first call.
    pub async fn get(&self) -> Result<&ComposeCli, RuntimeError> {
        self.found
            .get_or_try_init(|| async {
                let cli = match &self.program {
                    Some(program) => ComposeCli::with_program(program, self.timeout).await,
                    None => ComposeCli::detect(self.timeout).await,
                }?;
                tracing::debug!(program = %cli.program.display(), version = %cli.version, flavor = ?cli.flavor, "compose found");
                Ok(cli)
            })
            .await
    }

    /// The compose program when it was already detected.
    pub fn detected(&self) -> Option<&ComposeCli> {
        self.found.get()
    }
}

impl super::Compose for LazyCompose {
    async fn project(&self, spec: &ServiceSpec) -> Result<ComposeProject, RuntimeError> {
        super::Compose::project(self.get().await?, spec).await
    }

    async fn up(&self, project: &ComposeProject, services: &[&str]) -> Result<(), RuntimeError> {
        self.get().await?.up(project, services).await
    }

    async fn service_image(
        &self,
        project: &ComposeProject,
        service: &str,
    ) -> Result<Option<String>, RuntimeError> {
        self.get().await?.service_image(project, service).await
    }
}

struct Output {
    stdout: String,
}

/// Reads a pipe to its end on its own task, so a full pipe never blocks the child.
fn read_all<R>(pipe: Option<R>) -> tokio::task::JoinHandle<String>
where
    R: tokio::io::AsyncRead + Unpin + Send + 'static,
{
    tokio::spawn(async move {
        let mut buf = Vec::new();
        if let Some(mut pipe) = pipe {
            let _ = pipe.read_to_end(&mut buf).await;
        }
        String::from_utf8_lossy(&buf).into_owned()
    })
}

/// Global arguments naming the project's files, env files, folder, name and profiles.
fn project_args(project: &ComposeProject) -> Vec<String> {
    let mut args = vec!["--ansi".to_owned(), "never".to_owned()];
    for file in &project.files {
        args.push("-f".into());
        args.push(file.display().to_string());
    }
    for env_file in &project.env_files {
        args.push("--env-file".into());
        args.push(env_file.display().to_string());
    }
    if project.explicit_dir {
        args.push("--project-directory".into());
        args.push(project.project_dir.display().to_string());
    }
    if project.explicit_name {
        args.push("-p".into());
        args.push(project.name.clone());
    }
    for profile in &project.profiles {
        args.push("--profile".into());
        args.push(profile.clone());
    }
    args
}

/// Reads `Docker Compose version v2.40.3` or `docker-compose version 1.29.2, build 5becea4c`
/// into (major, `2.40.3`).
pub(crate) fn parse_version(output: &str) -> Option<(u64, String)> {
    let line = output.lines().find(|l| l.contains("version"))?;
    let after = line.split("version").nth(1)?.trim_start();
    let version: String = after
        .trim_start_matches('v')
        .chars()
        .take_while(|c| !c.is_whitespace() && *c != ',')
        .collect();
    let major = version.split('.').next()?.parse().ok()?;
    Some((major, version))
}

impl ComposeProject {
    /// The project of one compose file with compose v2's rules and the default env file
    /// (`.env` beside the file). `env` is the process environment.
    pub fn from_file(
        compose_file: &Path,
        explicit_name: Option<&str>,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Self, RuntimeError> {
        Self::new(
            vec![compose_file.to_owned()],
            None,
            explicit_name,
            ComposeFlavor::V2Plugin,
            env,
        )
    }

    /// The project of `files` (in `-f` order) as `flavor` names it. Reads the files (for a
    /// top-level `name:`) and the env file (for `COMPOSE_PROJECT_NAME`); `env` is the process
    /// environment, which wins over the env file.
    pub fn new(
        files: Vec<PathBuf>,
        env_file: Option<PathBuf>,
        explicit_name: Option<&str>,
        flavor: ComposeFlavor,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Self, RuntimeError> {
        let first = files.first().cloned().unwrap_or_default();
        let problem = |reason: String| RuntimeError::Project {
            file: first.clone(),
            reason,
        };
        if files.is_empty() {
            return Err(problem("no compose file given".into()));
        }
        let files = files
            .iter()
            .map(|f| std::path::absolute(f).map_err(|e| problem(e.to_string())))
            .collect::<Result<Vec<_>, _>>()?;
        let project_dir = files[0].parent().map(Path::to_path_buf).unwrap_or_default();
        let env_path = env_file
            .as_ref()
            .map(|p| project_dir.join(p))
            .unwrap_or_else(|| project_dir.join(".env"));
        let from_env_file = match crate::config::read_text(&env_path, crate::config::MAX_FILE_BYTES)
        {
            Ok(text) => parse_env(&text)
                .into_iter()
                .rfind(|e| e.name == "COMPOSE_PROJECT_NAME")
                .map(|e| e.value),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && env_file.is_none() => None,
            Err(e) => {
                return Err(problem(format!(
                    "cannot read env file {}: {e}",
                    env_path.display()
                )));
            }
        };
        let env_var = env("COMPOSE_PROJECT_NAME")
            .filter(|v| !v.is_empty())
            .or(from_env_file.filter(|v| !v.is_empty()));
        let mut file_name = None;
        if !flavor.is_v1() {
            for file in &files {
                if let Some(name) = top_level_name(file).map_err(problem)? {
                    file_name = Some(name);
                }
            }
        }
        let folder = project_dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let name = project_name(
            flavor,
            &NameSources {
                explicit: explicit_name,
                env_var: env_var.as_deref(),
                file_name: file_name.as_deref(),
                folder: &folder,
            },
        )
        .map_err(problem)?;
        Ok(Self {
            files,
            project_dir,
            name,
            env_files: env_file.into_iter().collect(),
            explicit_name: explicit_name.is_some(),
            explicit_dir: false,
            profiles: Vec::new(),
            replicas: BTreeMap::new(),
            source: ProjectSource::ComposeFile,
        })
    }
}

/// The top-level `name:` of a compose file, if it has one.
fn top_level_name(file: &Path) -> Result<Option<String>, String> {
    let text = crate::config::read_text(file, crate::config::MAX_FILE_BYTES)
        .map_err(|e| format!("cannot read {}: {e}", file.display()))?;
    let doc: serde_yaml_ng::Value = serde_yaml_ng::from_str(&text)
        .map_err(|e| format!("{} is not valid YAML: {e}", file.display()))?;
    let Some(name) = doc.get("name") else {
        return Ok(None);
    };
    let name = name
        .as_str()
        .ok_or_else(|| format!("{}: top-level `name:` is not a string", file.display()))?;
    if name.contains('$') {
        return Err(format!(
            "{}: top-level `name: {name}` uses a variable; configure the project name for this \
             service instead",
            file.display()
        ));
    }
    Ok(Some(name.to_owned()).filter(|n| !n.is_empty()))
}

/// Where a project's name can come from, highest priority first.
#[derive(Debug, Clone, Copy, Default)]
pub struct NameSources<'a> {
    /// Configured for the service; passed to compose as `-p`.
    pub explicit: Option<&'a str>,
    /// `COMPOSE_PROJECT_NAME` from the environment, else from the env file.
    pub env_var: Option<&'a str>,
    /// The top-level `name:` of the compose files (the last file's wins). v1 does not know it.
    pub file_name: Option<&'a str>,
    /// The name of the project folder (the folder of the first compose file).
    pub folder: &'a str,
}

/// The project name compose computes, or why compose would refuse it.
///
/// v2: `-p` > `COMPOSE_PROJECT_NAME` > `name:` > folder name. A name given by `-p` or the
/// variable must already be valid (lowercase letters, digits, `-`, `_`, starting with a letter
/// or digit); `name:` and the folder name are normalised: lowercased, other characters removed,
/// leading `-`/`_` removed.
///
/// v1: `-p` > `COMPOSE_PROJECT_NAME` > folder name, each lowercased with every character but
/// letters, digits, `-` and `_` removed (v1 rejects a top-level `name:`).
pub fn project_name(flavor: ComposeFlavor, sources: &NameSources<'_>) -> Result<String, String> {
    let given = sources.explicit.or(sources.env_var);
    let name = if flavor.is_v1() {
        normalize_v1(given.unwrap_or(sources.folder))
    } else if let Some(given) = given {
        if !is_valid_v2(given) {
            return Err(format!(
                "invalid project name {given:?}: compose requires lowercase letters, digits, \
                 dashes and underscores, starting with a letter or digit"
            ));
        }
        given.to_owned()
    } else {
        normalize_v2(sources.file_name.unwrap_or(sources.folder))
    };
    if name.is_empty() {
        return Err(format!(
            "the project name is empty once normalised (from {:?}); configure a project name",
            given.or(sources.file_name).unwrap_or(sources.folder)
        ));
    }
    Ok(name)
}

fn keep(c: char) -> bool {
    c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_'
}

fn normalize_v2(s: &str) -> String {
    let kept: String = s.to_lowercase().chars().filter(|c| keep(*c)).collect();
    kept.trim_start_matches(['-', '_']).to_owned()
}

fn normalize_v1(s: &str) -> String {
    s.to_lowercase().chars().filter(|c| keep(*c)).collect()
}

fn is_valid_v2(s: &str) -> bool {
    s.chars().all(keep) && s.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[track_caller]
    fn check(flavor: ComposeFlavor, sources: NameSources<'_>, expect: Result<&str, &str>) {
        let got = project_name(flavor, &sources);
        match (got, expect) {
            (Ok(got), Ok(want)) => assert_eq!(got, want, "{flavor:?} {sources:?}"),
            (Err(got), Err(fragment)) => {
                assert!(got.contains(fragment), "{flavor:?} {sources:?}: {got}")
            }
            (got, want) => panic!("{flavor:?} {sources:?}: got {got:?}, want {want:?}"),
        }
    }

    fn folder(folder: &str) -> NameSources<'_> {
        NameSources {
            folder,
            ..Default::default()
        }
    }

    const V2: ComposeFlavor = ComposeFlavor::V2Plugin;
    const V1: ComposeFlavor = ComposeFlavor::V1;

    #[test]
    fn folder_names_are_normalised_per_flavor() {
        // Checked against compose v2.40.3 and v1.29.2 on real folders.
        check(V2, folder("My.App"), Ok("myapp"));
        check(V1, folder("My.App"), Ok("myapp"));
        check(V2, folder("_lead"), Ok("lead"));
        check(V1, folder("_lead"), Ok("_lead"));
        check(V2, folder("a b-C_d"), Ok("ab-c_d"));
        check(V1, folder("Sub.Dir_X"), Ok("subdir_x"));
        check(V2, folder("Ünï"), Ok("n"));
        check(V2, folder("123"), Ok("123"));
        check(V2, folder("..."), Err("empty"));
        check(V1, folder("..."), Err("empty"));
    }

    #[test]
    fn priority_is_explicit_then_variable_then_file_then_folder() {
        let all = NameSources {
            explicit: Some("cli"),
            env_var: Some("envname"),
            file_name: Some("filename"),
            folder: "dir",
        };
        check(V2, all, Ok("cli"));
        check(V1, all, Ok("cli"));
        let no_explicit = NameSources {
            explicit: None,
            ..all
        };
        check(V2, no_explicit, Ok("envname"));
        check(V1, no_explicit, Ok("envname"));
        let file_and_folder = NameSources {
            env_var: None,
            ..no_explicit
        };
        check(V2, file_and_folder, Ok("filename"));
        check(ComposeFlavor::V2Standalone, file_and_folder, Ok("filename"));
        // v1 has no top-level `name:`.
        check(V1, file_and_folder, Ok("dir"));
    }

    #[test]
    fn v2_validates_given_names_but_normalises_file_names() {
        let given = |name| NameSources {
            explicit: Some(name),
            folder: "dir",
            ..Default::default()
        };
        check(
            V2,
            given("Bad.Name"),
            Err("invalid project name \"Bad.Name\""),
        );
        check(V2, given("MyApp"), Err("invalid project name"));
        check(V2, given("_x"), Err("invalid project name"));
        check(V2, given("ok-1_x"), Ok("ok-1_x"));
        // v1 normalises what it is given.
        check(V1, given("Bad.Name"), Ok("badname"));
        let env = NameSources {
            env_var: Some("Env.Name"),
            folder: "dir",
            ..Default::default()
        };
        check(V2, env, Err("invalid project name"));
        check(V1, env, Ok("envname"));
        let file = NameSources {
            file_name: Some("My_Proj.X"),
            folder: "dir",
            ..Default::default()
        };
        check(V2, file, Ok("my_projx"));
    }

    #[test]
    fn a_recorded_project_is_run_with_every_file_its_folder_name_env_files_and_profiles() {
        let project = ComposeProject {
            files: vec!["/srv/app/compose.yml".into(), "/srv/app/prod.yml".into()],
            project_dir: "/srv/app".into(),
            name: "custom".into(),
            env_files: vec!["/srv/app/a.env".into(), "/srv/app/b.env".into()],
            explicit_name: true,
            explicit_dir: true,
            profiles: vec!["extra".into()],
            replicas: BTreeMap::from([("web".to_owned(), 3)]),
            source: ProjectSource::Labels,
        };
        assert_eq!(
            project_args(&project).join(" "),
            "--ansi never -f /srv/app/compose.yml -f /srv/app/prod.yml --env-file /srv/app/a.env \
             --env-file /srv/app/b.env --project-directory /srv/app -p custom --profile extra"
        );
    }

    #[test]
    fn reads_versions_of_both_generations() {
        assert_eq!(
            parse_version("Docker Compose version v2.40.3\n"),
            Some((2, "2.40.3".into()))
        );
        assert_eq!(
            parse_version(
                "docker-compose version 1.29.2, build unknown\ndocker-py version: 5.0.3\n"
            ),
            Some((1, "1.29.2".into()))
        );
        assert_eq!(
            parse_version("Docker Compose version 2.24.6+ds1-0+deb12u1"),
            Some((2, "2.24.6+ds1-0+deb12u1".into()))
        );
        assert_eq!(
            parse_version("docker: 'compose' is not a docker command."),
            None
        );
    }

    #[test]
    fn project_from_files_reads_the_name_the_env_file_and_the_folder() {
        let dir = tempfile::tempdir().unwrap();
        let app = dir.path().join("My.App");
        std::fs::create_dir(&app).unwrap();
        let file = app.join("compose.yaml");
        std::fs::write(&file, "services:\n  web:\n    image: busybox\n").unwrap();
        let no_env = |_: &str| None;

        let p = ComposeProject::from_file(&file, None, no_env).unwrap();
        assert_eq!(p.name, "myapp");
        assert_eq!(p.project_dir, app);
        assert!(!p.explicit_name);

        std::fs::write(
            app.join(".env"),
            "# comment\nCOMPOSE_PROJECT_NAME=fromdotenv\n",
        )
        .unwrap();
        let p = ComposeProject::from_file(&file, None, no_env).unwrap();
        assert_eq!(p.name, "fromdotenv");
        // The process environment wins over the env file.
        let p = ComposeProject::from_file(&file, None, |k: &str| {
            (k == "COMPOSE_PROJECT_NAME").then(|| "fromenv".to_owned())
        })
        .unwrap();
        assert_eq!(p.name, "fromenv");

        std::fs::remove_file(app.join(".env")).unwrap();
        std::fs::write(
            &file,
            "name: Named\nservices:\n  web:\n    image: busybox\n",
        )
        .unwrap();
        let p = ComposeProject::from_file(&file, None, no_env).unwrap();
        assert_eq!(p.name, "named");
        let p = ComposeProject::new(vec![file.clone()], None, None, V1, no_env).unwrap();
        assert_eq!(p.name, "myapp");

        let p = ComposeProject::from_file(&file, Some("explicit"), no_env).unwrap();
        assert_eq!((p.name.as_str(), p.explicit_name), ("explicit", true));

        std::fs::write(&file, "name: ${N}\nservices: {}\n").unwrap();
        let e = ComposeProject::from_file(&file, None, no_env).unwrap_err();
        assert!(e.to_string().contains("uses a variable"), "{e}");

        let e = ComposeProject::new(
            vec![file.clone()],
            Some("missing.env".into()),
            None,
            V2,
            no_env,
        )
        .unwrap_err();
        assert!(e.to_string().contains("cannot read env file"), "{e}");
    }
}

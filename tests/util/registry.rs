//! A real OCI registry (Debian's `docker-registry`, distribution 2.8) on a free loopback port.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::{Scratch, free_port, run};

/// How the registry authenticates clients.
#[derive(Debug, Clone)]
pub(crate) enum RegistryAuth {
    Anonymous,
    /// htpasswd (bcrypt) basic auth.
    Basic {
        user: String,
        password: String,
    },
}

/// A running registry, stopped (and its storage removed with the scratch folder) on drop.
pub(crate) struct LocalRegistry {
    child: Child,
    /// `127.0.0.1:PORT`, the host part of image references.
    pub host: String,
    pub log: PathBuf,
    pub auth: RegistryAuth,
}

impl LocalRegistry {
    pub(crate) fn start(scratch: &Scratch, auth: RegistryAuth) -> Self {
        Self::start_with(scratch, auth, "")
    }

    /// Starts with extra top-level YAML appended to the configuration (e.g. `notifications:`).
    pub(crate) fn start_with(scratch: &Scratch, auth: RegistryAuth, extra_yaml: &str) -> Self {
        let dir = scratch.join(&format!("registry-{}", free_port()));
        std::fs::create_dir_all(dir.join("storage")).unwrap();
        let auth_yaml = match &auth {
            RegistryAuth::Anonymous => String::new(),
            RegistryAuth::Basic { user, password } => {
                let htpasswd = dir.join("htpasswd");
                run(Command::new("htpasswd")
                    .args(["-Bbc"])
                    .arg(&htpasswd)
                    .args([user, password]));
                format!(
                    "auth:\n  htpasswd:\n    realm: lookout-test\n    path: {}\n",
                    htpasswd.display()
                )
            }
        };
        // A port taken between free_port() and the registry's bind is retried.
        for _ in 0..5 {
            let port = free_port();
            let host = format!("127.0.0.1:{port}");
            let config = dir.join("config.yml");
            std::fs::write(
                &config,
                format!(
                    "version: 0.1\nlog:\n  level: info\n  accesslog:\n    disabled: false\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: {host}\n{auth_yaml}{extra_yaml}",
                    dir.join("storage").display()
                ),
            )
            .unwrap();
            let log = dir.join("registry.log");
            let child = Command::new("docker-registry")
                .arg("serve")
                .arg(&config)
                .stdout(std::fs::File::create(&log).unwrap())
                .stderr(std::fs::File::options().append(true).open(&log).unwrap())
                .stdin(Stdio::null())
                .spawn()
                .expect("docker-registry is missing: run tests/run, which installs Debian's docker-registry");
            let mut registry = Self {
                child,
                host,
                log,
                auth: auth.clone(),
            };
            if registry.wait_ready() {
                registry.login();
                return registry;
            }
        }
        panic!(
            "the local registry did not start; see its log under {}",
            dir.display()
        );
    }

    fn wait_ready(&mut self) -> bool {
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return false;
            }
            if std::net::TcpStream::connect(&self.host).is_ok() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        false
    }

    /// Logs the Docker engine in, so tests can push (lookout itself never runs `docker login`).
    fn login(&self) {
        if let RegistryAuth::Basic { user, password } = &self.auth {
            let mut child = Command::new("docker")
                .args(["login", "-u", user, "--password-stdin", &self.host])
                .stdin(Stdio::piped())
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap();
            use std::io::Write;
            child
                .stdin
                .take()
                .unwrap()
                .write_all(password.as_bytes())
                .unwrap();
            let out = child.wait_with_output().unwrap();
            assert!(
                out.status.success(),
                "docker login {} failed: {}",
                self.host,
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }

    /// `HOST/repo:tag`.
    pub(crate) fn image(&self, repo_tag: &str) -> String {
        format!("{}/{repo_tag}", self.host)
    }

    /// The access-log lines seen so far (`"GET /v2/… HTTP/1.1" 200 …`), to count requests.
    pub(crate) fn access_log(&self) -> Vec<String> {
        let file = std::fs::File::open(&self.log).unwrap();
        BufReader::new(file)
            .lines()
            .map_while(Result::ok)
            .filter(|l| l.contains("\" ") && l.contains(" /v2/") && !l.starts_with("time="))
            .collect()
    }

    /// Requests whose method and path contain the given fragments, e.g. `("HEAD", "/manifests/")`.
    pub(crate) fn count(&self, method: &str, path_fragment: &str) -> usize {
        self.access_log()
            .iter()
            .filter(|l| l.contains(&format!("\"{method} ")) && l.contains(path_fragment))
            .count()
    }
}

impl Drop for LocalRegistry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if matches!(self.auth, RegistryAuth::Basic { .. }) {
            let _ = Command::new("docker").args(["logout", &self.host]).output();
        }
    }
}

//! Credentials from Docker's own `config.json`, for registries the configuration gives none.
//!
//! Docker looks in `credHelpers[host]`, then `credsStore`, then `auths[host]`; a helper is the
//! program `docker-credential-NAME`, which reads the host on stdin and prints
//! `{"Username": …, "Secret": …}`. Docker Hub is stored under `https://index.docker.io/v1/`.
//! Identity tokens (`Username` `<token>`) are OAuth refresh tokens that only Docker Hub's login
//! flow understands; lookout treats them as no credential.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use base64::Engine;
use tokio::io::AsyncWriteExt;

use super::ErrorKind;
use super::auth::Credential;

const HUB_KEY: &str = "https://index.docker.io/v1/";

/// Docker's `config.json`, read once.
#[derive(Debug, Clone, Default)]
pub(crate) struct DockerConfig {
    path: Option<PathBuf>,
    auths: HashMap<String, AuthEntry>,
    cred_helpers: HashMap<String, String>,
    creds_store: Option<String>,
}

#[derive(Debug, Clone, Default, serde::Deserialize)]
struct AuthEntry {
    auth: Option<String>,
    username: Option<String>,
    password: Option<String>,
}

#[derive(Debug, Default, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct File {
    #[serde(default)]
    auths: HashMap<String, AuthEntry>,
    #[serde(default)]
    cred_helpers: HashMap<String, String>,
    creds_store: Option<String>,
}

impl DockerConfig {
    pub(crate) fn empty() -> Self {
        Self::default()
    }

    /// Reads `path`, or Docker's default location. A missing or unreadable file means no
    /// credentials (logged), never an error: most hosts have none.
    pub(crate) fn load(path: Option<&Path>) -> Self {
        let Some(path) = path.map(Path::to_path_buf).or_else(default_path) else {
            return Self::empty();
        };
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) => {
                if e.kind() != std::io::ErrorKind::NotFound {
                    tracing::warn!(path = %path.display(), error = %e, "cannot read Docker's config.json; using no credentials from it");
                }
                return Self::empty();
            }
        };
        match Self::parse(&text) {
            Ok(mut c) => {
                c.path = Some(path);
                c
            }
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "Docker's config.json is not valid JSON; using no credentials from it");
                Self::empty()
            }
        }
    }

    pub(crate) fn parse(text: &str) -> Result<Self, serde_json::Error> {
        let f: File = serde_json::from_str(text)?;
        Ok(Self {
            path: None,
            auths: f.auths,
            cred_helpers: f.cred_helpers,
            creds_store: f.creds_store.filter(|s| !s.is_empty()),
        })
    }

    /// The credential Docker would use for `host` (`docker.io`, `ghcr.io`, `127.0.0.1:5000`).
    pub(crate) async fn credential(&self, host: &str) -> Result<Credential, ErrorKind> {
        let keys = keys_for(host);
        // The name a helper is asked for: the first of `keys`, which is never empty.
        let server = keys.first().map_or(host, String::as_str);
        if let Some(helper) = keys.iter().find_map(|k| self.cred_helpers.get(k)) {
            return run_helper(helper, server).await;
        }
        if let Some(store) = &self.creds_store {
            let from_store = run_helper(store, server).await?;
            if from_store != Credential::Anonymous {
                return Ok(from_store);
            }
        }
        let entry = self.auths.iter().find_map(|(k, v)| {
            keys.iter()
                .any(|key| normalise(k) == normalise(key))
                .then_some(v)
        });
        Ok(entry.and_then(decode).unwrap_or(Credential::Anonymous))
    }
}

fn default_path() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("DOCKER_CONFIG") {
        return Some(PathBuf::from(dir).join("config.json"));
    }
    std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".docker/config.json"))
}

/// The names Docker may have stored `host` under, the helper's name first.
fn keys_for(host: &str) -> Vec<String> {
    if matches!(
        host,
        "docker.io" | "index.docker.io" | "registry-1.docker.io"
    ) {
        vec![
            HUB_KEY.to_owned(),
            "index.docker.io".to_owned(),
            "docker.io".to_owned(),
            "registry-1.docker.io".to_owned(),
        ]
    } else {
        vec![host.to_owned()]
    }
}

/// `https://host/v1/` → `host`, the way Docker matches `auths` keys.
fn normalise(key: &str) -> &str {
    let key = key
        .strip_prefix("https://")
        .or_else(|| key.strip_prefix("http://"))
        .unwrap_or(key);
    key.split('/').next().unwrap_or(key)
}

fn decode(e: &AuthEntry) -> Option<Credential> {
    if let (Some(u), Some(p)) = (&e.username, &e.password) {
        return Some(Credential::basic(u, p));
    }
    let raw = base64::engine::general_purpose::STANDARD
        .decode(e.auth.as_deref()?.trim())
        .ok()?;
    let text = String::from_utf8(raw).ok()?;
    let (u, p) = text.split_once(':')?;
    (!u.is_empty()).then(|| Credential::basic(u, p))
}

#[derive(serde::Deserialize)]
#[serde(rename_all = "PascalCase")]
struct HelperAnswer {
    username: String,
    secret: String,
}

/// Runs `docker-credential-NAME get` with `server` on stdin.
async fn run_helper(name: &str, server: &str) -> Result<Credential, ErrorKind> {
    let program = format!("docker-credential-{name}");
    let failed = |why: String| {
        ErrorKind::setup(format!(
            "Docker credential helper {program} (from Docker's config.json) failed: {why}"
        ))
    };
    let mut child = tokio::process::Command::new(&program)
        .arg("get")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| failed(e.to_string()))?;
    let mut stdin = child
        .stdin
        .take()
        .ok_or_else(|| failed("its stdin could not be opened".into()))?;
    stdin
        .write_all(server.as_bytes())
        .await
        .map_err(|e| failed(e.to_string()))?;
    drop(stdin);
    let out = tokio::time::timeout(Duration::from_secs(15), child.wait_with_output())
        .await
        .map_err(|_| failed("no answer within 15s".into()))?
        .map_err(|e| failed(e.to_string()))?;
    if !out.status.success() {
        let stdout = String::from_utf8_lossy(&out.stdout);
        // Helpers say "credentials not found in native keychain" when they have nothing.
        if stdout.contains("credentials not found") {
            return Ok(Credential::Anonymous);
        }
        return Err(failed(format!("exit status {}", out.status)));
    }
    let answer: HelperAnswer = serde_json::from_slice(&out.stdout)
        .map_err(|e| failed(format!("its answer is not the expected JSON: {e}")))?;
    if answer.username == "<token>" || answer.username.is_empty() {
        return Ok(Credential::Anonymous);
    }
    Ok(Credential::basic(answer.username, answer.secret))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cred(config: &str, host: &str) -> Credential {
        let c = DockerConfig::parse(config).unwrap();
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(c.credential(host))
            .unwrap()
    }

    #[test]
    fn reads_auths_as_docker_login_writes_them() {
        // "me:secret" and "hub:pw" in base64.
        let config = r#"{"auths":{"127.0.0.1:5000":{"auth":"bWU6c2VjcmV0"},
            "https://index.docker.io/v1/":{"auth":"aHViOnB3"},
            "https://ghcr.io":{"username":"u","password":"p"}}}"#;
        assert_eq!(
            cred(config, "127.0.0.1:5000"),
            Credential::basic("me", "secret")
        );
        assert_eq!(cred(config, "docker.io"), Credential::basic("hub", "pw"));
        assert_eq!(cred(config, "ghcr.io"), Credential::basic("u", "p"));
        assert_eq!(cred(config, "quay.io"), Credential::Anonymous);
    }

    #[test]
    fn a_missing_helper_is_a_clear_error() {
        let c = DockerConfig::parse(r#"{"credHelpers":{"r.example":"lookout-absent"}}"#).unwrap();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let e = rt.block_on(c.credential("r.example")).unwrap_err();
        assert!(
            e.to_string()
                .contains("docker-credential-lookout-absent (from Docker's config.json) failed"),
            "{e}"
        );
    }
}

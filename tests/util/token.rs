//! A registry with bearer-token auth: Debian's `docker-registry` configured with `auth.token`,
//! and a token issuer written here that signs RS256 JWTs with a key made for this test run.
//!
//! The issuer checks basic credentials, grants `pull` on the scope asked for, and puts its
//! self-signed certificate in the JWT's `x5c` header; the registry trusts that certificate
//! through `rootcertbundle`. The registry serves the storage of another [`LocalRegistry`], so
//! tests push there (anonymously) and read here (with tokens).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use base64::Engine;

use super::fake_http::{FakeHttp, Request, Response};
use super::{LocalRegistry, Scratch, free_port, run};

pub(crate) const SERVICE: &str = "lookout-test-registry";
const ISSUER: &str = "lookout-test-issuer";

/// The token issuer plus the registry that trusts it, stopped on drop.
pub(crate) struct TokenRegistry {
    child: Child,
    /// `127.0.0.1:PORT` of the registry.
    pub host: String,
    pub issuer: FakeHttp,
}

impl TokenRegistry {
    /// Serves `storage_of`'s repositories, granting tokens to `user`/`password`.
    pub(crate) fn start(
        scratch: &Scratch,
        storage_of: &LocalRegistry,
        user: &str,
        password: &str,
    ) -> Self {
        let dir = scratch.join(&format!("token-registry-{}", free_port()));
        std::fs::create_dir_all(&dir).unwrap();
        let (key, cert) = (dir.join("key.pem"), dir.join("cert.pem"));
        run(Command::new("openssl")
            .args([
                "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
            ])
            .args(["-subj", "/CN=lookout-test-token-issuer", "-keyout"])
            .arg(&key)
            .arg("-out")
            .arg(&cert));
        let der = Command::new("openssl")
            .args(["x509", "-outform", "DER", "-in"])
            .arg(&cert)
            .output()
            .unwrap()
            .stdout;
        let x5c = base64::engine::general_purpose::STANDARD.encode(der);
        let expected = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
        );
        let (key_for_issuer, user) = (Arc::new(key.clone()), user.to_owned());
        let issuer = FakeHttp::start(move |req: &Request| {
            if req.header("authorization") != Some(expected.as_str()) {
                return Response::status(401);
            }
            let scope = req.query("scope").unwrap_or_default();
            let token = sign(&key_for_issuer, &x5c, &user, &scope);
            Response::json(200, &serde_json::json!({"token": token, "expires_in": 300}))
        });
        let storage = storage_of.log.parent().unwrap().join("storage");
        for _ in 0..5 {
            let host = format!("127.0.0.1:{}", free_port());
            let config = dir.join("config.yml");
            std::fs::write(
                &config,
                format!(
                    "version: 0.1\nlog:\n  level: info\n  accesslog:\n    disabled: false\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: {host}\nauth:\n  token:\n    realm: {}\n    service: {SERVICE}\n    issuer: {ISSUER}\n    rootcertbundle: {}\n",
                    storage.display(),
                    issuer.url("/token"),
                    cert.display()
                ),
            )
            .unwrap();
            let log = dir.join("registry.log");
            let mut child = Command::new("docker-registry")
                .arg("serve")
                .arg(&config)
                .stdout(std::fs::File::create(&log).unwrap())
                .stderr(std::fs::File::options().append(true).open(&log).unwrap())
                .stdin(Stdio::null())
                .spawn()
                .expect("docker-registry is missing: run tests/run");
            if wait_ready(&mut child, &host) {
                return Self {
                    child,
                    host,
                    issuer,
                };
            }
            let _ = child.kill();
        }
        panic!("the token registry did not start; see {}", dir.display());
    }

    /// Tokens the issuer handed out (or refused).
    pub(crate) fn token_requests(&self) -> usize {
        self.issuer.count("/token")
    }
}

impl Drop for TokenRegistry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn wait_ready(child: &mut Child, host: &str) -> bool {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return false;
        }
        if std::net::TcpStream::connect(host).is_ok() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

/// An RS256 JWT granting `pull` on the repository in `scope` (`repository:NAME:pull`).
fn sign(key: &Path, x5c: &str, subject: &str, scope: &str) -> String {
    let b64 = |v: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v);
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let access: Vec<serde_json::Value> = scope
        .split(' ')
        .filter_map(|s| {
            let mut parts = s.splitn(3, ':');
            let (kind, name) = (parts.next()?, parts.next()?);
            Some(serde_json::json!({"type": kind, "name": name, "actions": ["pull"]}))
        })
        .collect();
    let header = serde_json::json!({"alg": "RS256", "typ": "JWT", "x5c": [x5c]});
    let claims = serde_json::json!({
        "iss": ISSUER, "sub": subject, "aud": SERVICE,
        "exp": now + 300, "nbf": now - 10, "iat": now,
        "jti": format!("{now}-{}", free_port()), "access": access,
    });
    let input = format!(
        "{}.{}",
        b64(header.to_string().as_bytes()),
        b64(claims.to_string().as_bytes())
    );
    let signed = sign_with_openssl(key, input.as_bytes());
    format!("{input}.{}", b64(&signed))
}

fn sign_with_openssl(key: &Path, input: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut child = Command::new("openssl")
        .args(["dgst", "-sha256", "-sign"])
        .arg(PathBuf::from(key))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(input).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "openssl dgst -sign failed");
    out.stdout
}

//! Pushing to a registry through its HTTP API, for what `docker push` cannot do quickly or at
//! all: many small repositories at once, and a multi-platform index made of pushed images.

use base64::Engine;
use sha2::Digest as _;

/// A client of one registry's push API (`http://HOST`), with optional basic auth.
pub(crate) struct Pusher {
    base: String,
    auth: Option<String>,
    client: reqwest::Client,
}

pub(crate) const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub(crate) const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";

/// `sha256:<hex>` of `bytes`.
pub(crate) fn digest_of(bytes: &[u8]) -> String {
    let hash = sha2::Sha256::digest(bytes);
    format!(
        "sha256:{}",
        hash.iter().map(|b| format!("{b:02x}")).collect::<String>()
    )
}

impl Pusher {
    pub(crate) fn new(host: &str, basic: Option<(&str, &str)>) -> Self {
        Self {
            base: format!("http://{host}"),
            auth: basic.map(|(u, p)| {
                format!(
                    "Basic {}",
                    base64::engine::general_purpose::STANDARD.encode(format!("{u}:{p}"))
                )
            }),
            client: lookout::tls::client(),
        }
    }

    fn req(&self, method: reqwest::Method, url: &str) -> reqwest::RequestBuilder {
        let b = self.client.request(method, url);
        match &self.auth {
            Some(a) => b.header("Authorization", a),
            None => b,
        }
    }

    /// Uploads a blob (monolithic upload) and returns its digest.
    pub(crate) async fn blob(&self, repo: &str, bytes: &[u8]) -> String {
        let digest = digest_of(bytes);
        let r = self
            .req(
                reqwest::Method::POST,
                &format!("{}/v2/{repo}/blobs/uploads/", self.base),
            )
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 202, "start upload to {repo}");
        let location = r.headers()["location"].to_str().unwrap().to_owned();
        let location = if location.starts_with('/') {
            format!("{}{location}", self.base)
        } else {
            location
        };
        let sep = if location.contains('?') { '&' } else { '?' };
        let r = self
            .req(
                reqwest::Method::PUT,
                &format!("{location}{sep}digest={digest}"),
            )
            .header("Content-Type", "application/octet-stream")
            .body(bytes.to_vec())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201, "finish upload to {repo}");
        digest
    }

    /// Puts `manifest` of `media_type` at `reference` and returns the registry's digest.
    pub(crate) async fn manifest(
        &self,
        repo: &str,
        reference: &str,
        media_type: &str,
        body: &[u8],
    ) -> String {
        let r = self
            .req(
                reqwest::Method::PUT,
                &format!("{}/v2/{repo}/manifests/{reference}", self.base),
            )
            .header("Content-Type", media_type)
            .body(body.to_vec())
            .send()
            .await
            .unwrap();
        let status = r.status();
        let digest = r
            .headers()
            .get("docker-content-digest")
            .map(|d| d.to_str().unwrap().to_owned());
        assert_eq!(status, 201, "{}", r.text().await.unwrap_or_default());
        let digest = digest.unwrap();
        assert_eq!(digest, digest_of(body));
        digest
    }

    /// Pushes a tiny single-platform image (a config and one layer) built at `created`
    /// (RFC 3339), tagged `tag`; `content` makes it unique. Returns the manifest digest.
    pub(crate) async fn image(
        &self,
        repo: &str,
        tag: &str,
        content: &str,
        created: &str,
    ) -> String {
        let config = serde_json::json!({
            "architecture": "amd64", "os": "linux", "created": created,
            "config": {}, "rootfs": {"type": "layers", "diff_ids": [digest_of(content.as_bytes())]}
        })
        .to_string();
        let config_digest = self.blob(repo, config.as_bytes()).await;
        let layer_digest = self.blob(repo, content.as_bytes()).await;
        let manifest = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": DOCKER_MANIFEST,
            "config": {"mediaType": "application/vnd.docker.container.image.v1+json",
                       "size": config.len(), "digest": config_digest},
            "layers": [{"mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip",
                        "size": content.len(), "digest": layer_digest}]
        })
        .to_string();
        self.manifest(repo, tag, DOCKER_MANIFEST, manifest.as_bytes())
            .await
    }

    /// The manifest at `reference` as the registry stores it: (bytes, digest).
    pub(crate) async fn get_manifest(&self, repo: &str, reference: &str) -> (Vec<u8>, String) {
        let r = self
            .req(
                reqwest::Method::GET,
                &format!("{}/v2/{repo}/manifests/{reference}", self.base),
            )
            .header("Accept", DOCKER_MANIFEST)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let body = r.bytes().await.unwrap().to_vec();
        let digest = digest_of(&body);
        (body, digest)
    }

    /// Puts a manifest list at `tag` whose entries are the images at `refs`, each with its
    /// platform `os/arch[/variant]`. Returns the list's digest.
    pub(crate) async fn index(&self, repo: &str, tag: &str, entries: &[(&str, &str)]) -> String {
        let mut manifests = Vec::new();
        for (reference, platform) in entries {
            let (body, digest) = self.get_manifest(repo, reference).await;
            let mut parts = platform.split('/');
            let mut p = serde_json::json!({"os": parts.next().unwrap(), "architecture": parts.next().unwrap()});
            if let Some(v) = parts.next() {
                p["variant"] = v.into();
            }
            manifests.push(serde_json::json!({
                "mediaType": DOCKER_MANIFEST, "size": body.len(), "digest": digest, "platform": p
            }));
        }
        let list = serde_json::json!({"schemaVersion": 2, "mediaType": DOCKER_LIST, "manifests": manifests})
            .to_string();
        self.manifest(repo, tag, DOCKER_LIST, list.as_bytes()).await
    }
}

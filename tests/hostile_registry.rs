//! lookout against hostile registries on loopback (issue 11): small servers that send
//! credentials-stealing links and redirects, endless or enormous answers, bytes one a second,
//! tokens that never expire, and names that are not tags — beside Debian's real
//! `docker-registry` for the honest side. Each test pins one guarantee:
//!
//! - credentials go only to the origin (scheme, host, port) they belong to;
//! - no remote answer panics lookout;
//! - every body has a cap and is read incrementally;
//! - every request, and every service check, has a deadline;
//! - tags and digests are checked against their grammar.
//!
//! Names like `registry.test` resolve to 127.0.0.1 through `RegistryOptions::resolve`, so the
//! rules for non-loopback hosts (HTTPS, no downgrade) can be exercised on loopback.

use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use base64::Engine;
use lookout::config::{RegistryKind, RegistrySettings};
use lookout::reference::ImageRef;
use lookout::registry::{
    CheckCycle, DockerHubEndpoints, ErrorKind, Platform, Registries, Registry, RegistryError,
    RegistryOptions, RetryPolicy, check_service,
};
use lookout::secret::Secret;

use crate::util::distribution::Pusher;
use crate::util::fake_http::{
    FakeHttp, Request, Response, TestCa, drip, stream_chunked, write_head,
};
use crate::util::{LocalRegistry, RegistryAuth, Scratch};

const MIB: usize = 1024 * 1024;
const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";

/// Options every test uses: no Docker config.json, linux/amd64, short retry delays.
fn options() -> RegistryOptions {
    RegistryOptions {
        use_docker_config: false,
        platform: Platform::parse("linux/amd64").unwrap(),
        retry: RetryPolicy {
            attempts: 3,
            base_delay: Duration::from_millis(50),
            max_retry_after: Duration::from_secs(5),
        },
        ..RegistryOptions::default()
    }
}

/// `options()` with `names` resolving to 127.0.0.1 at each server's port.
fn resolving(names: &[(&str, &FakeHttp)]) -> RegistryOptions {
    RegistryOptions {
        resolve: names
            .iter()
            .map(|(name, server)| {
                (
                    (*name).to_owned(),
                    SocketAddr::from(([127, 0, 0, 1], server.port())),
                )
            })
            .collect(),
        ..options()
    }
}

fn image(s: &str) -> ImageRef {
    ImageRef::parse(s).unwrap()
}

fn oci(registries: &Registries, img: &ImageRef, settings: &RegistrySettings) -> Arc<dyn Registry> {
    registries.get(RegistryKind::Oci, img, settings).unwrap()
}

fn basic(user: &str, password: &str) -> RegistrySettings {
    RegistrySettings {
        username: Some(user.into()),
        password: Some(Secret::new(password)),
        ..RegistrySettings::default()
    }
}

fn basic_header(user: &str, password: &str) -> String {
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
    )
}

fn tags_page(tags: &[&str]) -> Response {
    Response::json(200, &serde_json::json!({"name": "x", "tags": tags}))
}

/// A manifest answer with a well-formed digest (of its own bytes).
fn manifest_response(body: &[u8]) -> Response {
    Response {
        status: 200,
        headers: vec![
            ("Content-Type".into(), DOCKER_MANIFEST.into()),
            (
                "Docker-Content-Digest".into(),
                crate::util::distribution::digest_of(body),
            ),
        ],
        body: body.to_vec(),
    }
}

fn names(tags: &[lookout::policy::Tag]) -> Vec<String> {
    let mut n: Vec<String> = tags.iter().map(|t| t.name.clone()).collect();
    n.sort();
    n
}

/// Requests that carried an `Authorization` header.
fn with_auth(server: &FakeHttp) -> Vec<Request> {
    server
        .requests()
        .into_iter()
        .filter(|r| r.header("authorization").is_some())
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Credentials go only to their origin

#[tokio::test]
async fn a_link_to_another_origin_is_refused_and_the_credentials_stay_home() {
    let thief = FakeHttp::start(|_| tags_page(&["stolen"]));
    let expected = basic_header("robot", "link-secret-1");
    let (thief_addr, want) = (thief.addr.clone(), expected.clone());
    let registry = FakeHttp::start(move |req| {
        if req.header("authorization") != Some(want.as_str()) {
            return Response::status(401).header("WWW-Authenticate", "Basic realm=\"r\"");
        }
        let link = match req.path_only() {
            // Another host (port), the same host over another scheme, and a scheme-relative link.
            "/v2/other/app/tags/list" => {
                format!("<http://{thief_addr}/v2/other/app/tags/list?last=a>; rel=\"next\"")
            }
            "/v2/scheme/app/tags/list" => {
                let own = req.header("host").unwrap_or_default().to_owned();
                format!("<https://{own}/v2/scheme/app/tags/list?last=a>; rel=\"next\"")
            }
            "/v2/relative/app/tags/list" => {
                format!("<//{thief_addr}/v2/relative/app/tags/list?last=a>; rel=\"next\"")
            }
            _ => return Response::status(404),
        };
        tags_page(&["a"]).header("Link", &link)
    });
    let registries = Registries::new(options());
    for repo in ["other/app", "scheme/app", "relative/app"] {
        let img = image(&format!("{}/{repo}:a", registry.addr));
        let r = oci(&registries, &img, &basic("robot", "link-secret-1"));
        let e = r.tags(&img).await.unwrap_err();
        let msg = e.to_string();
        assert!(matches!(e.kind, ErrorKind::Protocol { .. }), "{msg}");
        assert!(
            msg.contains(&registry.addr) && msg.contains(repo) && msg.contains("another origin"),
            "{msg}"
        );
        assert!(!msg.contains("link-secret-1"), "{msg}");
    }
    assert!(thief.requests().is_empty(), "{:#?}", thief.requests());
    // The registry itself got the credentials on every page it served.
    assert_eq!(with_auth(&registry).len(), 3);
}

#[tokio::test]
async fn docker_hub_s_next_page_on_another_origin_is_refused() {
    let thief = FakeHttp::start(|_| Response::json(200, &serde_json::json!({"results": []})));
    let thief_url = thief.url("/v2/namespaces/library/repositories/app/tags?page=2");
    let hub = FakeHttp::start(move |_| {
        Response::json(
            200,
            &serde_json::json!({"count": 2, "next": thief_url, "results": [
                {"name": "1.0", "tag_last_pushed": "2024-01-01T00:00:00Z"}]}),
        )
    });
    let registries = Registries::new(RegistryOptions {
        docker_hub: DockerHubEndpoints {
            api: hub.url(""),
            registry: "http://127.0.0.1:9".into(),
        },
        ..options()
    });
    let img = image("app:1.0");
    let r = registries
        .get(RegistryKind::DockerHub, &img, &RegistrySettings::default())
        .unwrap();
    let msg = r.tags(&img).await.unwrap_err().to_string();
    assert!(
        msg.contains("Docker Hub's next page points to another origin")
            && msg.contains("library/app"),
        "{msg}"
    );
    assert!(thief.requests().is_empty());
}

#[tokio::test]
async fn a_redirect_to_another_origin_is_followed_without_credentials() {
    let storage = FakeHttp::start(|_| tags_page(&["1.0", "2.0"]));
    let expected = basic_header("robot", "redirect-secret-2");
    let target = storage.url("/signed/tags?sig=abc");
    let registry = FakeHttp::start(move |req| {
        if req.header("authorization") != Some(expected.as_str()) {
            return Response::status(401).header("WWW-Authenticate", "Basic realm=\"r\"");
        }
        Response::status(307).header("Location", &target)
    });
    let registries = Registries::new(options());
    let img = image(&format!("{}/moved/app:1.0", registry.addr));
    let r = oci(&registries, &img, &basic("robot", "redirect-secret-2"));
    assert_eq!(names(&r.tags(&img).await.unwrap()), ["1.0", "2.0"]);
    assert_eq!(storage.requests().len(), 1);
    assert!(
        with_auth(&storage).is_empty(),
        "the other origin got credentials: {:#?}",
        storage.requests()
    );
    assert_eq!(with_auth(&registry).len(), 1);
}

#[tokio::test]
async fn https_is_never_downgraded_to_plain_http_by_a_redirect() {
    let scratch = Scratch::new("hostile-downgrade");
    let ca = TestCa::new(&scratch, &["registry.test", "blobs.test"]);
    let plain = FakeHttp::start(|_| tags_page(&["1.0"]));
    let tls_storage = FakeHttp::with_tls(&ca, |_| tags_page(&["1.0"]));
    let expected = basic_header("robot", "tls-secret-3");
    let (plain_port, tls_port) = (plain.port(), tls_storage.port());
    let registry = FakeHttp::with_tls(&ca, move |req| {
        if req.header("authorization") != Some(expected.as_str()) {
            return Response::status(401).header("WWW-Authenticate", "Basic realm=\"r\"");
        }
        let to = match req.path_only() {
            "/v2/down/app/tags/list" => format!("http://blobs.test:{plain_port}/tags"),
            _ => format!("https://blobs.test:{tls_port}/tags"),
        };
        Response::status(302).header("Location", &to)
    });
    let host = format!("registry.test:{}", registry.port());
    let registries = Registries::new(resolving(&[
        ("registry.test", &registry),
        ("blobs.test", &plain),
    ]));
    let settings = RegistrySettings {
        ca_file: Some(ca.ca_file.clone()),
        ..basic("robot", "tls-secret-3")
    };
    let down = image(&format!("{host}/down/app:1.0"));
    let r = oci(&registries, &down, &settings);
    let msg = r.tags(&down).await.unwrap_err().to_string();
    assert!(
        msg.contains("does not downgrade HTTPS") && msg.contains(&host) && msg.contains("down/app"),
        "{msg}"
    );
    assert!(plain.requests().is_empty(), "{:#?}", plain.requests());

    // HTTPS to another HTTPS origin is followed, without the credentials.
    let registries = Registries::new(resolving(&[
        ("registry.test", &registry),
        ("blobs.test", &tls_storage),
    ]));
    let across = image(&format!("{host}/across/app:1.0"));
    let r = oci(&registries, &across, &settings);
    assert_eq!(names(&r.tags(&across).await.unwrap()), ["1.0"]);
    assert_eq!(tls_storage.requests().len(), 1);
    assert!(with_auth(&tls_storage).is_empty());
}

#[tokio::test]
async fn a_token_realm_on_another_host_gets_credentials_only_over_https() {
    let scratch = Scratch::new("hostile-realm");
    let ca = TestCa::new(&scratch, &["registry.test", "auth.test"]);
    let issuer = |req: &Request| {
        let token = if req.header("authorization").is_some() {
            "with-credentials"
        } else {
            "anonymous"
        };
        Response::json(200, &serde_json::json!({"token": token, "expires_in": 300}))
    };
    let plain_auth = FakeHttp::start(issuer);
    let tls_auth = FakeHttp::with_tls(&ca, issuer);
    // One registry per realm: a registry's challenge names one token service.
    let registry_with_realm = |realm: String| {
        FakeHttp::with_tls(&ca, move |req| match req.header("authorization") {
            Some(a) if a.starts_with("Bearer ") => tags_page(&[&a["Bearer ".len()..]]),
            _ => Response::status(401).header(
                "WWW-Authenticate",
                &format!("Bearer realm=\"{realm}\",service=\"registry.test\""),
            ),
        })
    };
    let plain_registry =
        registry_with_realm(format!("http://auth.test:{}/token", plain_auth.port()));
    let tls_registry = registry_with_realm(format!("https://auth.test:{}/token", tls_auth.port()));
    // Names resolve to 127.0.0.1; the port comes from each URL.
    let options = resolving(&[
        ("registry.test", &plain_registry),
        ("auth.test", &plain_auth),
    ]);
    let with_ca = |settings: RegistrySettings| RegistrySettings {
        ca_file: Some(ca.ca_file.clone()),
        ..settings
    };

    // A plain-HTTP realm on another host: no credentials sent, an error saying why.
    let registries = Registries::new(options);
    let host = format!("registry.test:{}", plain_registry.port());
    let plain = image(&format!("{host}/plain/app:1"));
    let r = oci(
        &registries,
        &plain,
        &with_ca(basic("robot", "realm-secret-4")),
    );
    let msg = r.tags(&plain).await.unwrap_err().to_string();
    assert!(
        msg.contains("only over HTTPS") && msg.contains(&host) && msg.contains("plain/app"),
        "{msg}"
    );
    assert!(!msg.contains("realm-secret-4"));
    assert!(
        plain_auth.requests().is_empty(),
        "{:#?}",
        plain_auth.requests()
    );
    // Anonymous lookups may still ask it for a token: there is nothing to leak.
    let anon = oci(&registries, &plain, &with_ca(RegistrySettings::default()));
    assert_eq!(names(&anon.tags(&plain).await.unwrap()), ["anonymous"]);
    assert!(with_auth(&plain_auth).is_empty());

    // An HTTPS realm on another host (as Docker Hub's auth.docker.io) gets them.
    let tls = image(&format!("registry.test:{}/tls/app:1", tls_registry.port()));
    let r = oci(
        &registries,
        &tls,
        &with_ca(basic("robot", "realm-secret-4")),
    );
    assert_eq!(names(&r.tags(&tls).await.unwrap()), ["with-credentials"]);
    let sent = with_auth(&tls_auth);
    assert_eq!(sent.len(), 1);
    assert_eq!(
        sent[0].header("authorization"),
        Some(basic_header("robot", "realm-secret-4").as_str())
    );
}

// ---------------------------------------------------------------------------------------------
// No remote answer panics

/// A registry whose token service answers `expires_in` with each test value in turn (by
/// repository), and that takes any bearer token.
fn token_registry() -> (FakeHttp, FakeHttp) {
    let issuer = FakeHttp::start(|req| {
        let scope = req.query("scope").unwrap_or_default();
        let expires_in = scope
            .strip_prefix("repository:t/")
            .and_then(|s| s.strip_suffix(":pull"))
            .unwrap_or("60")
            .to_owned();
        let expires_in = match expires_in.as_str() {
            "max" => "18446744073709551615",
            "negative" => "-1",
            "huge" => "1e308",
            "text" => "\"soon\"",
            "big" => "123456789012345678901234567890",
            other => other,
        }
        .to_owned();
        Response {
            status: 200,
            headers: vec![("Content-Type".into(), "application/json".into())],
            body: format!(r#"{{"token":"t","expires_in":{expires_in}}}"#).into_bytes(),
        }
    });
    let realm = issuer.url("/token");
    let registry = FakeHttp::start(move |req| {
        if req.header("authorization") != Some("Bearer t") {
            return Response::status(401).header(
                "WWW-Authenticate",
                &format!("Bearer realm=\"{realm}\",service=\"x\""),
            );
        }
        tags_page(&["1.0"])
            .header("ratelimit-remaining", "99999999999999999999999999;w=-1")
            .header("ratelimit-limit", "-5")
    });
    (issuer, registry)
}

#[tokio::test]
async fn no_token_lifetime_retry_after_or_rate_limit_header_can_panic() {
    let (issuer, registry) = token_registry();
    let registries = Registries::new(options());
    for case in ["max", "negative", "huge", "text", "big"] {
        let img = image(&format!("{}/t/{case}:1.0", registry.addr));
        let r = oci(&registries, &img, &RegistrySettings::default());
        for _ in 0..2 {
            assert_eq!(names(&r.tags(&img).await.unwrap()), ["1.0"], "{case}");
        }
    }
    // Each token was good for the second lookup too: one token per scope.
    assert_eq!(issuer.count("/token"), 5);
    let stats = registries.stats();
    assert!(stats.ratelimit_remaining.is_empty() && stats.ratelimit_limit.is_empty());

    // Retry-After beyond any clock, negative, or a date past what dates can say.
    let calls = Arc::new(AtomicUsize::new(0));
    let seen = calls.clone();
    let limited = FakeHttp::start(move |req| {
        let n = seen.fetch_add(1, Ordering::SeqCst);
        let retry_after = match req.path_only() {
            "/v2/forever/app/tags/list" => "18446744073709551615",
            "/v2/negative/app/tags/list" if n % 2 == 0 => "-1",
            "/v2/date/app/tags/list" if n % 2 == 0 => "Fri, 31 Dec 9999 23:59:59 GMT",
            _ => return tags_page(&["1.0"]),
        };
        Response::status(429).header("Retry-After", retry_after)
    });
    let forever = image(&format!("{}/forever/app:1.0", limited.addr));
    let r = oci(&registries, &forever, &RegistrySettings::default());
    let started = Instant::now();
    let e = r.tags(&forever).await.unwrap_err();
    assert!(matches!(e.kind, ErrorKind::RateLimited { .. }), "{e}");
    assert!(started.elapsed() < Duration::from_secs(2));
    for repo in ["negative/app", "date/app"] {
        let img = image(&format!("{}/{repo}:1.0", limited.addr));
        let r = oci(&registries, &img, &RegistrySettings::default());
        assert_eq!(names(&r.tags(&img).await.unwrap()), ["1.0"], "{repo}");
    }
}

#[test]
fn lookout_tags_survives_a_token_that_never_expires() {
    // The release binary used to exit 101 here ("overflow when adding duration to instant").
    let scratch = Scratch::new("hostile-token-cli");
    let (_issuer, registry) = token_registry();
    let out = crate::util::lookout()
        .args(["tags", &format!("{}/t/max:1.0", registry.addr), "--json"])
        .env("DOCKER_CONFIG", scratch.path())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_ne!(out.status.code(), Some(101), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
    assert_eq!(v["tags"][0]["name"], "1.0", "{stderr}");
}

// ---------------------------------------------------------------------------------------------
// Every body has a cap

/// A registry that streams `size` bytes for the tag list of `huge/tags`, for the manifest of
/// `huge/manifest:1.0`, and for `huge/length` announced with `Content-Length`; returns it and
/// the bytes it managed to send.
fn huge_registry(size: usize) -> (FakeHttp, Arc<AtomicUsize>) {
    let sent = Arc::new(AtomicUsize::new(0));
    let counter = sent.clone();
    let server = FakeHttp::start_raw(move |req, out| {
        let chunked = [
            ("Content-Type", "application/json"),
            ("Transfer-Encoding", "chunked"),
        ];
        match (req.method.as_str(), req.path_only()) {
            ("GET", "/v2/huge/tags/tags/list") => {
                write_head(out, 200, &chunked)?;
                let n = stream_chunked(
                    out,
                    br#"{"name":"huge/tags","tags":["#,
                    br#""1.0.0000","#,
                    size,
                );
                counter.fetch_add(n, Ordering::SeqCst);
            }
            ("GET", "/v2/small/app/tags/list") => {
                write_head(
                    out,
                    200,
                    &[
                        ("Content-Type", "application/json"),
                        ("Content-Length", "18"),
                    ],
                )?;
                out.write_all(br#"{"tags":["1.0"]}  "#)?;
            }
            ("HEAD", "/v2/small/app/manifests/1.0") => {
                let digest = format!("sha256:{}", "a".repeat(64));
                write_head(
                    out,
                    200,
                    &[
                        ("Content-Type", DOCKER_MANIFEST),
                        ("Docker-Content-Digest", &digest),
                        ("Content-Length", "2"),
                    ],
                )?;
            }
            ("GET", "/v2/huge/manifest/tags/list") => {
                write_head(
                    out,
                    200,
                    &[
                        ("Content-Type", "application/json"),
                        ("Content-Length", "18"),
                    ],
                )?;
                out.write_all(br#"{"tags":["1.0"]}  "#)?;
            }
            // No Docker-Content-Digest: lookout must GET the manifest to hash it.
            ("HEAD", "/v2/huge/manifest/manifests/1.0") => {
                write_head(
                    out,
                    200,
                    &[
                        ("Content-Type", DOCKER_MANIFEST),
                        ("Content-Length", &size.to_string()),
                    ],
                )?;
            }
            ("GET", "/v2/huge/manifest/manifests/1.0") => {
                write_head(
                    out,
                    200,
                    &[
                        ("Content-Type", DOCKER_MANIFEST),
                        ("Transfer-Encoding", "chunked"),
                    ],
                )?;
                let n = stream_chunked(
                    out,
                    br#"{"schemaVersion":2,"layers":["#,
                    br#"{"size":1},"#,
                    size,
                );
                counter.fetch_add(n, Ordering::SeqCst);
            }
            ("GET", "/v2/huge/length/tags/list") => {
                write_head(
                    out,
                    200,
                    &[
                        ("Content-Type", "application/json"),
                        ("Content-Length", &size.to_string()),
                    ],
                )?;
                let block = vec![b' '; 64 * 1024];
                let mut n = 0;
                while n < size && out.write_all(&block).is_ok() {
                    n += block.len();
                }
                counter.fetch_add(n, Ordering::SeqCst);
            }
            _ => write_head(out, 404, &[("Content-Length", "0")])?,
        }
        Ok(())
    });
    (server, sent)
}

/// Runs `lookout ARGS`; returns (exit code, stderr, peak RSS in KiB). The peak is the
/// kernel's `ru_maxrss` of the one child of a small python3 wrapper (busybox's `time` reports
/// four times too much).
fn lookout_with_peak_rss(scratch: &Scratch, args: &[&str]) -> (Option<i32>, String, u64) {
    const WRAPPER: &str = "import resource, subprocess, sys\n\
        code = subprocess.run(sys.argv[1:]).returncode\n\
        print('peak-rss-kib', resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, file=sys.stderr)\n\
        sys.exit(code)\n";
    let out = Command::new("python3")
        .args(["-c", WRAPPER])
        .arg(env!("CARGO_BIN_EXE_lookout"))
        .args(args)
        .env("DOCKER_CONFIG", scratch.path())
        .output()
        .expect("python3 is missing: run tests/run, which installs it (for moto)");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let rss = stderr
        .lines()
        .find_map(|l| l.strip_prefix("peak-rss-kib "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no peak RSS from the python3 wrapper:\n{stderr}"));
    (out.status.code(), stderr, rss)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_300_mb_tag_list_or_manifest_is_refused_without_reading_it() {
    let scratch = Scratch::new("hostile-huge");
    let (server, sent) = huge_registry(300 * MIB);
    let registries = Registries::new(options());

    let tags = image(&format!("{}/huge/tags:1.0", server.addr));
    let e = oci(&registries, &tags, &RegistrySettings::default())
        .tags(&tags)
        .await
        .unwrap_err();
    let msg = e.to_string();
    assert!(matches!(e.kind, ErrorKind::TooLarge { .. }), "{msg}");
    assert!(
        msg.contains(&server.addr) && msg.contains("huge/tags") && msg.contains("8 MiB"),
        "{msg}"
    );
    // What the server could push before lookout hung up: the cap plus socket buffers.
    let pushed = sent.swap(0, Ordering::SeqCst);
    assert!(pushed < 64 * MIB, "the server sent {pushed} bytes");

    let manifest = image(&format!("{}/huge/manifest:1.0", server.addr));
    let e = oci(&registries, &manifest, &RegistrySettings::default())
        .digest(&manifest)
        .await
        .unwrap_err();
    let msg = e.to_string();
    assert!(
        msg.contains("GET manifest 1.0") && msg.contains("4 MiB") && msg.contains("huge/manifest"),
        "{msg}"
    );
    let pushed = sent.swap(0, Ordering::SeqCst);
    assert!(pushed < 64 * MIB, "the server sent {pushed} bytes");

    // A Content-Length beyond the cap is refused before a byte is read.
    let length = image(&format!("{}/huge/length:1.0", server.addr));
    let started = Instant::now();
    let msg = oci(&registries, &length, &RegistrySettings::default())
        .tags(&length)
        .await
        .unwrap_err()
        .to_string();
    assert!(msg.contains("8 MiB"), "{msg}");
    assert!(started.elapsed() < Duration::from_secs(5));

    // The binary, end to end: the error, and memory that does not grow with the answer. The
    // baseline is the same command against a small, honest answer.
    let (code, stderr, baseline_kib) = lookout_with_peak_rss(
        &scratch,
        &["tags", &format!("{}/small/app:1.0", server.addr)],
    );
    assert_eq!(code, Some(0), "{stderr}");
    eprintln!(
        "lookout tags against a 16-byte tag list: peak RSS {} MiB",
        baseline_kib / 1024
    );
    for (what, reference) in [
        ("tag list", format!("{}/huge/tags:1.0", server.addr)),
        ("manifest", format!("{}/huge/manifest:1.0", server.addr)),
    ] {
        let (code, stderr, rss_kib) = lookout_with_peak_rss(&scratch, &["tags", &reference]);
        assert_eq!(code, Some(1), "{stderr}");
        assert!(stderr.contains("exceeds lookout's limit"), "{stderr}");
        eprintln!(
            "lookout tags against a 300 MB {what}: peak RSS {} MiB",
            rss_kib / 1024
        );
        let grew = rss_kib.saturating_sub(baseline_kib);
        assert!(
            grew < 32 * 1024,
            "peak RSS grew by {grew} KiB (from {baseline_kib} KiB) for a 300 MB {what}"
        );
    }
}

#[tokio::test]
async fn tag_lists_are_capped_in_pages_tags_and_bytes() {
    let page = Arc::new(AtomicUsize::new(0));
    let counter = page.clone();
    let thousand: Vec<String> = (0..1000).map(|i| format!("v{i}")).collect();
    let server = FakeHttp::start(move |req| {
        let n = counter.fetch_add(1, Ordering::SeqCst);
        let repo = req
            .path_only()
            .strip_prefix("/v2/")
            .and_then(|p| p.strip_suffix("/tags/list"))
            .unwrap_or_default()
            .to_owned();
        let body = match repo.as_str() {
            // One tag a page, a new `last` every time: an endless chain.
            "endless/app" => serde_json::json!({"tags": [format!("t{n}")]}),
            "many/app" => serde_json::json!({"tags": thousand}),
            // 150,000 names in one page of well under 8 MiB.
            "dense/app" => serde_json::json!({"tags": vec!["t"; 150_000]}),
            "fat/app" => serde_json::json!({"tags": ["x"], "padding": "x".repeat(MIB)}),
            _ => return Response::status(404),
        };
        Response::json(200, &body).header(
            "Link",
            &format!("</v2/{repo}/tags/list?last=t{n}&n=1000>; rel=\"next\""),
        )
    });
    let registries = Registries::new(options());
    for (repo, limit, requests) in [
        ("endless/app", "1000 pages", 1000),
        ("many/app", "100000 tags", 101),
        ("dense/app", "100000 tags", 1),
        ("fat/app", "32 MiB", 32),
    ] {
        page.store(0, Ordering::SeqCst);
        let img = image(&format!("{}/{repo}:t0", server.addr));
        let e = oci(&registries, &img, &RegistrySettings::default())
            .tags(&img)
            .await
            .unwrap_err();
        let msg = e.to_string();
        assert!(matches!(e.kind, ErrorKind::TooLarge { .. }), "{msg}");
        assert!(
            msg.contains(&server.addr) && msg.contains(repo) && msg.contains(limit),
            "{msg}"
        );
        assert_eq!(page.load(Ordering::SeqCst), requests, "{repo}");
    }
}

#[tokio::test]
async fn oversized_token_and_hub_answers_are_refused() {
    let huge = |_: &Request, out: &mut dyn std::io::Write| {
        write_head(
            out,
            200,
            &[
                ("Content-Type", "application/json"),
                ("Transfer-Encoding", "chunked"),
            ],
        )?;
        stream_chunked(out, br#"{"token":""#, b"a", 300 * MIB);
        Ok(())
    };
    let issuer = FakeHttp::start_raw(huge);
    let realm = issuer.url("/token");
    let registry = FakeHttp::start(move |_| {
        Response::status(401).header("WWW-Authenticate", &format!("Bearer realm=\"{realm}\""))
    });
    let registries = Registries::new(options());
    let img = image(&format!("{}/tok/app:1", registry.addr));
    let msg = oci(&registries, &img, &RegistrySettings::default())
        .tags(&img)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        msg.contains("GET token") && msg.contains("1 MiB") && msg.contains("tok/app"),
        "{msg}"
    );

    let hub = FakeHttp::start_raw(huge);
    let registries = Registries::new(RegistryOptions {
        docker_hub: DockerHubEndpoints {
            api: hub.url(""),
            registry: "http://127.0.0.1:9".into(),
        },
        ..options()
    });
    let img = image("app:1");
    let msg = registries
        .get(RegistryKind::DockerHub, &img, &RegistrySettings::default())
        .unwrap()
        .tags(&img)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        msg.contains("GET Hub tags") && msg.contains("8 MiB") && msg.contains("library/app"),
        "{msg}"
    );
}

// ---------------------------------------------------------------------------------------------
// Every request and every check has a deadline

/// A registry that answers `drip/…` one byte a second and `silent/…` not at all.
fn slow_registry() -> FakeHttp {
    FakeHttp::start_raw(|req, out| {
        if req.path_only().starts_with("/v2/silent") {
            std::thread::sleep(Duration::from_secs(20));
            return Ok(());
        }
        let body = br#"{"name":"drip/app","tags":["1.0","1.1","1.2","1.3","1.4","1.5"]}"#;
        write_head(
            out,
            200,
            &[
                ("Content-Type", "application/json"),
                ("Content-Length", &body.len().to_string()),
            ],
        )?;
        drip(out, body, Duration::from_secs(1));
        Ok(())
    })
}

#[tokio::test]
async fn a_registry_that_drips_one_byte_a_second_fails_within_the_deadline() {
    let server = slow_registry();
    let registries = Registries::new(RegistryOptions {
        request_timeout: Duration::from_secs(2),
        request_deadline: Duration::from_secs(5),
        ..options()
    });
    for repo in ["drip/app", "silent/app"] {
        let img = image(&format!("{}/{repo}:1.0", server.addr));
        let started = Instant::now();
        let e = oci(&registries, &img, &RegistrySettings::default())
            .tags(&img)
            .await
            .unwrap_err();
        let took = started.elapsed();
        let msg = e.to_string();
        assert!(matches!(e.kind, ErrorKind::TimedOut { .. }), "{msg}");
        assert!(
            msg.contains(&server.addr) && msg.contains(repo) && msg.contains("within 5s"),
            "{msg}"
        );
        assert!(
            (Duration::from_secs(4)..Duration::from_secs(7)).contains(&took),
            "{repo}: took {took:?}"
        );
    }
    // Three attempts each (two full timeouts, the last cut at the deadline), counted as errors.
    let stats = registries.stats();
    assert_eq!(stats.count(&server.addr, "GET", "error"), 6, "{stats:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_registry_fails_its_own_services_only_within_the_check_deadline() {
    let scratch = Scratch::new("hostile-check-deadline");
    let honest = LocalRegistry::start(&scratch, RegistryAuth::Anonymous);
    let pusher = Pusher::new(&honest.host, None);
    for t in ["1.0.0", "1.1.0"] {
        pusher.image("fast/app", t, t, "2024-01-01T00:00:00Z").await;
    }
    let slow = slow_registry();
    let text = format!(
        "[[services]]\nname = \"slow\"\nimage = \"{}/drip/app:1.0\"\ncompose_file = \"/c.yml\"\npolicy = \"semver\"\n\n\
         [[services]]\nname = \"fast\"\nimage = \"{}/fast/app:1.0.0\"\ncompose_file = \"/c.yml\"\npolicy = \"semver\"\n",
        slow.addr, honest.host
    );
    let config = lookout::config::from_text(Path::new("c.toml"), &text, &|_| None).unwrap();
    let registries = Arc::new(Registries::new(RegistryOptions {
        // The requests alone would take a minute; the check gives up after 3 s.
        request_timeout: Duration::from_secs(60),
        request_deadline: Duration::from_secs(60),
        check_timeout: Some(Duration::from_secs(3)),
        ..options()
    }));
    let cycle = CheckCycle::new(registries);
    let timed = |s: &lookout::config::ServiceSpec| {
        let cycle = &cycle;
        let s = s.clone();
        async move {
            let started = Instant::now();
            let result = check_service(cycle, &s, &s.image).await;
            (result, started.elapsed())
        }
    };
    let results = futures_util::future::join_all(config.services.iter().map(timed)).await;
    let (slow_result, slow_took) = &results[0];
    let (fast_result, fast_took) = &results[1];
    let e: &RegistryError = slow_result.as_ref().unwrap_err();
    assert!(matches!(e.kind, ErrorKind::TimedOut { .. }), "{e}");
    assert!(
        e.to_string().contains("the check of service slow") && e.to_string().contains(&slow.addr),
        "{e}"
    );
    assert!(
        (Duration::from_secs(3)..Duration::from_secs(5)).contains(slow_took),
        "{slow_took:?}"
    );
    let fast = fast_result.as_ref().unwrap();
    assert_eq!(fast.candidate.as_ref().unwrap().tag(), Some("1.1.0"));
    assert!(*fast_took < Duration::from_secs(3), "{fast_took:?}");
}

// ---------------------------------------------------------------------------------------------
// Remote data follows its grammar

#[tokio::test]
async fn tags_outside_the_grammar_are_skipped_and_counted() {
    let scratch = Scratch::new("hostile-tags");
    let long = "a".repeat(200);
    let odd = [
        "1.0",
        "1.1\n",
        "\u{1b}[31mred",
        "x?y",
        "../x",
        long.as_str(),
        "",
        "-x",
        "ok_2",
        "nul\u{0}",
    ];
    let listed: Vec<String> = odd.iter().map(|s| (*s).to_owned()).collect();
    let hub_listed = listed.clone();
    let registry = FakeHttp::start(move |req| match (req.method.as_str(), req.path_only()) {
        (_, p) if p.ends_with("/tags/list") => {
            Response::json(200, &serde_json::json!({"tags": listed}))
        }
        ("HEAD", p) if p.starts_with("/v2/odd/app/manifests/") => manifest_response(b"{}"),
        _ => Response::status(404),
    });
    let registries = Registries::new(options());
    let img = image(&format!("{}/odd/app:1.0", registry.addr));
    let r = oci(&registries, &img, &RegistrySettings::default());
    assert_eq!(names(&r.tags(&img).await.unwrap()), ["1.0", "ok_2"]);
    assert_eq!(
        registries.stats().skipped_tags.get(&registry.addr),
        Some(&8)
    );

    // Docker Hub's API is held to the same grammar.
    let hub = FakeHttp::start(move |_| {
        let results: Vec<serde_json::Value> = hub_listed
            .iter()
            .map(|n| serde_json::json!({"name": n, "tag_last_pushed": "2024-01-01T00:00:00Z"}))
            .collect();
        Response::json(200, &serde_json::json!({"next": null, "results": results}))
    });
    let hub_registries = Registries::new(RegistryOptions {
        docker_hub: DockerHubEndpoints {
            api: hub.url(""),
            registry: "http://127.0.0.1:9".into(),
        },
        ..options()
    });
    let hub_img = image("odd:1.0");
    let tags = hub_registries
        .get(
            RegistryKind::DockerHub,
            &hub_img,
            &RegistrySettings::default(),
        )
        .unwrap()
        .tags(&hub_img)
        .await
        .unwrap();
    assert_eq!(names(&tags), ["1.0", "ok_2"]);
    assert_eq!(
        hub_registries.stats().skipped_tags.get("docker.io"),
        Some(&8)
    );

    // Nothing of them reaches the terminal or a manifest URL.
    let out = crate::util::lookout()
        .args(["tags", &img.to_string(), "--json"])
        .env("DOCKER_CONFIG", scratch.path())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for bad in ["\u{1b}", "x?y", "../x", "red", &long] {
        assert!(!stdout.contains(bad), "{bad:?} in {stdout}");
    }
    assert!(
        registry
            .requests()
            .iter()
            .filter(|r| r.path.contains("/manifests/"))
            .all(
                |r| r.path == "/v2/odd/app/manifests/1.0" || r.path == "/v2/odd/app/manifests/ok_2"
            ),
        "{:#?}",
        registry.requests()
    );
}

#[tokio::test]
async fn invalid_digests_are_errors_naming_the_registry() {
    let amd64_manifest = br#"{"schemaVersion":2,"mediaType":"application/vnd.docker.distribution.manifest.v2+json","config":{"mediaType":"application/vnd.docker.container.image.v1+json","digest":"sha256:0000000000000000000000000000000000000000000000000000000000000000","size":2},"layers":[]}"#;
    let index = |digest: &str| {
        serde_json::json!({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [
            {"mediaType": DOCKER_MANIFEST, "digest": digest, "size": 1,
             "platform": {"os": "linux", "architecture": "amd64"}}]})
        .to_string()
        .into_bytes()
    };
    let bad_entry = index("sha256:../../../v2/other/app/manifests/x");
    let bad_entry_digest = crate::util::distribution::digest_of(&bad_entry);
    let sha512 = format!("sha512:{}", "ab".repeat(64));
    let sha512_for_server = sha512.clone();
    let server = FakeHttp::start(move |req| {
        let digest_header = |d: &str, media: &str| Response {
            status: 200,
            headers: vec![
                ("Content-Type".into(), media.into()),
                ("Docker-Content-Digest".into(), d.into()),
            ],
            body: Vec::new(),
        };
        match (req.method.as_str(), req.path_only()) {
            ("HEAD", "/v2/zzz/app/manifests/1") => digest_header("sha256:zzz", DOCKER_MANIFEST),
            ("HEAD", "/v2/upper/app/manifests/1") => {
                digest_header(&format!("sha256:{}", "AB".repeat(32)), DOCKER_MANIFEST)
            }
            ("HEAD", "/v2/entry/app/manifests/1") => digest_header(&bad_entry_digest, OCI_INDEX),
            ("GET", p) if p == format!("/v2/entry/app/manifests/{bad_entry_digest}") => Response {
                status: 200,
                headers: vec![("Content-Type".into(), OCI_INDEX.into())],
                body: bad_entry.clone(),
            },
            // The index served under a digest it does not hash to.
            ("HEAD", "/v2/swapped/app/manifests/1") => {
                digest_header(&format!("sha256:{}", "1".repeat(64)), OCI_INDEX)
            }
            ("GET", p) if p.starts_with("/v2/swapped/app/manifests/sha256:") => Response {
                status: 200,
                headers: vec![("Content-Type".into(), OCI_INDEX.into())],
                body: index(&crate::util::distribution::digest_of(amd64_manifest)),
            },
            ("HEAD", "/v2/long/app/manifests/1") => {
                digest_header(&sha512_for_server, DOCKER_MANIFEST)
            }
            _ => Response::status(404),
        }
    });
    let registries = Registries::new(options());
    for (repo, expect) in [
        ("zzz/app", "\"sha256:zzz\", not a digest"),
        ("upper/app", "not a digest"),
        ("entry/app", "the linux/amd64 entry of index"),
        ("swapped/app", "does not have that digest"),
    ] {
        let img = image(&format!("{}/{repo}:1", server.addr));
        let e = oci(&registries, &img, &RegistrySettings::default())
            .digest(&img)
            .await
            .unwrap_err();
        let msg = e.to_string();
        assert!(matches!(e.kind, ErrorKind::Protocol { .. }), "{msg}");
        assert!(
            msg.contains(&server.addr) && msg.contains(repo) && msg.contains(expect),
            "{repo}: {msg}"
        );
    }
    assert!(
        !server
            .requests()
            .iter()
            .any(|r| r.path.contains("other/app")),
        "an index entry reached a URL"
    );
    // sha512 is a registered algorithm.
    let img = image(&format!("{}/long/app:1", server.addr));
    let d = oci(&registries, &img, &RegistrySettings::default())
        .digest(&img)
        .await
        .unwrap();
    assert_eq!(d.manifest, sha512);
}

// ---------------------------------------------------------------------------------------------
// Cloud SDKs: counted and time-limited like the rest

#[tokio::test]
async fn ecr_api_requests_are_counted_and_time_limited() {
    use crate::util::moto::Moto;
    let scratch = Scratch::new("hostile-ecr");
    let moto = Moto::start(&scratch);
    moto.ecr()
        .await
        .create_repository()
        .repository_name("team/app")
        .send()
        .await
        .unwrap();
    let settings = |endpoint: &str| RegistrySettings {
        region: Some("us-east-1".into()),
        endpoint_url: Some(endpoint.to_owned()),
        aws_access_key_id: Some("testing".into()),
        aws_secret_access_key: Some(Secret::new("testing")),
        ..RegistrySettings::default()
    };
    let registries = Registries::new(options());
    let img = image("123456789012.dkr.ecr.us-east-1.amazonaws.com/team/app:1.0");
    let r = registries
        .get(RegistryKind::Ecr, &img, &settings(&moto.endpoint))
        .unwrap();
    assert!(r.tags(&img).await.unwrap().is_empty());
    r.credential(&img).await.unwrap();
    let stats = registries.stats();
    let label = img.registry();
    // DescribeImages and GetAuthorizationToken, counted under the registry's name.
    assert_eq!(stats.count(label, "POST", "200"), 2, "{stats:#?}");

    // An ECR endpoint that stalls: the call fails within the deadline, each attempt counted.
    let slow = slow_registry();
    let registries = Registries::new(RegistryOptions {
        request_timeout: Duration::from_secs(1),
        request_deadline: Duration::from_secs(3),
        ..options()
    });
    let silent = image("123456789012.dkr.ecr.us-east-1.amazonaws.com/silent/app:1.0");
    let r = registries
        .get(
            RegistryKind::Ecr,
            &silent,
            &settings(&slow.url("/v2/silent")),
        )
        .unwrap();
    let started = Instant::now();
    let msg = r.tags(&silent).await.unwrap_err().to_string();
    assert!(
        started.elapsed() < Duration::from_secs(6),
        "{:?}",
        started.elapsed()
    );
    assert!(
        msg.contains("ECR DescribeImages") && msg.contains("silent/app"),
        "{msg}"
    );
    assert!(registries.stats().count(label, "POST", "error") >= 1);
}

#[tokio::test]
async fn google_token_requests_are_counted_time_limited_and_never_panic() {
    let scratch = Scratch::new("hostile-google");
    let key_path = scratch.join("sa-key.pem");
    crate::util::run(
        Command::new("openssl")
            .args([
                "genpkey",
                "-algorithm",
                "RSA",
                "-pkeyopt",
                "rsa_keygen_bits:2048",
                "-out",
            ])
            .arg(&key_path),
    );
    // gcp_auth itself panics on this expires_in ("DateTime + Duration overflowed").
    let token_server = FakeHttp::start(|req| {
        if req.path_only() == "/silent" {
            std::thread::sleep(Duration::from_secs(20));
        }
        Response {
            status: 200,
            headers: vec![("Content-Type".into(), "application/json".into())],
            body: br#"{"access_token":"ya29.x","expires_in":18446744073709551615,"token_type":"Bearer"}"#.to_vec(),
        }
    });
    let key_file = |token_uri: String| {
        scratch.write(
            &format!("sa-{}.json", crate::util::free_port()),
            serde_json::json!({
                "type": "service_account", "project_id": "p", "private_key_id": "k",
                "private_key": std::fs::read_to_string(&key_path).unwrap(),
                "client_email": "lookout-test@p.iam.gserviceaccount.com", "client_id": "1",
                "token_uri": token_uri,
            })
            .to_string(),
        )
    };
    let registries = Registries::new(RegistryOptions {
        request_timeout: Duration::from_secs(1),
        request_deadline: Duration::from_secs(3),
        ..options()
    });
    let img = image("us-docker.pkg.dev/p/repo/app:1");
    let settings = RegistrySettings {
        service_account_path: Some(key_file(token_server.url("/token"))),
        ..RegistrySettings::default()
    };
    let r = registries.get(RegistryKind::Gcr, &img, &settings).unwrap();
    for _ in 0..2 {
        assert_eq!(
            r.credential(&img).await.unwrap(),
            lookout::registry::Credential::basic("oauth2accesstoken", "ya29.x")
        );
    }
    assert_eq!(token_server.count("/token"), 1, "the token is reused");
    assert_eq!(registries.stats().count(img.registry(), "POST", "200"), 1);

    let silent = RegistrySettings {
        service_account_path: Some(key_file(token_server.url("/silent"))),
        ..RegistrySettings::default()
    };
    let r = registries.get(RegistryKind::Gcr, &img, &silent).unwrap();
    let started = Instant::now();
    let e = r.credential(&img).await.unwrap_err();
    assert!(matches!(e.kind, ErrorKind::TimedOut { .. }), "{e}");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    assert!(registries.stats().count(img.registry(), "POST", "error") >= 1);
}

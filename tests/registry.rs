//! The registry layer against real registries on loopback: Debian's `docker-registry` with
//! anonymous, htpasswd and bearer-token auth, `moto_server` for ECR, and fakes replaying the
//! documented wire format only for Docker Hub's web API and Google's token endpoint.

use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use lookout::config::{RegistryKind, RegistrySettings};
use lookout::reference::ImageRef;
use lookout::registry::{
    CheckCycle, DockerHubEndpoints, ErrorKind, Platform, Registries, Registry, RegistryOptions,
    RetryPolicy, check_service,
};
use lookout::secret::Secret;

use crate::util::distribution::Pusher;
use crate::util::fake_http::{FakeHttp, FaultProxy, Response};
use crate::util::token::TokenRegistry;
use crate::util::{LocalRegistry, RegistryAuth, Scratch, TestImage, free_port, run};

/// Options every test uses: no Docker config.json (the harness's `docker login` writes one),
/// linux/amd64 as the platform, short retry delays.
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

fn image(s: &str) -> ImageRef {
    ImageRef::parse(s).unwrap()
}

fn adapter(
    registries: &Registries,
    kind: RegistryKind,
    img: &ImageRef,
    settings: &RegistrySettings,
) -> Arc<dyn Registry> {
    registries.get(kind, img, settings).unwrap()
}

fn basic(user: &str, password: &str) -> RegistrySettings {
    RegistrySettings {
        username: Some(user.into()),
        password: Some(Secret::new(password)),
        ..RegistrySettings::default()
    }
}

fn tag_names(tags: &[lookout::policy::Tag]) -> Vec<String> {
    let mut names: Vec<String> = tags.iter().map(|t| t.name.clone()).collect();
    names.sort();
    names
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_digest_is_the_one_docker_pull_records() {
    let scratch = Scratch::new("registry-docker-digest");
    let registry = LocalRegistry::start(&scratch, RegistryAuth::Anonymous);
    let tag = registry.image("digest/app:1.0.0");
    let img = TestImage::build(&scratch, &tag, "1.0.0", "");
    img.push(&tag);
    run(Command::new("docker").args(["rmi", &tag]));
    run(Command::new("docker").args(["pull", "-q", &tag]));
    let pulled = crate::util::docker::repo_digest(&tag).expect("docker pull records a digest");

    let registries = Registries::new(options());
    let r = adapter(
        &registries,
        RegistryKind::Oci,
        &image(&tag),
        &RegistrySettings::default(),
    );
    let heads_by_docker = registry.count("HEAD", "/manifests/1.0.0");
    let blobs_by_docker = registry.count("GET", "/blobs/");
    let d = r.digest(&image(&tag)).await.unwrap();
    assert_eq!(d.manifest, pulled);
    assert_eq!(d.platform.as_deref(), Some(pulled.as_str()));
    assert!(!d.is_index());
    assert!(d.names(&pulled));
    // One HEAD, nothing downloaded.
    assert_eq!(
        registry.count("HEAD", "/manifests/1.0.0"),
        heads_by_docker + 1
    );
    assert_eq!(
        registry.count("GET", "/blobs/"),
        blobs_by_docker,
        "{:#?}",
        registry.access_log()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_multi_arch_tag_whose_other_platform_changed_is_not_an_update() {
    let scratch = Scratch::new("registry-multi-arch");
    let registry = LocalRegistry::start(&scratch, RegistryAuth::Anonymous);
    let (amd, arm1, arm2) = (
        registry.image("multi/app:amd64"),
        registry.image("multi/app:arm64-1"),
        registry.image("multi/app:arm64-2"),
    );
    let amd_img = TestImage::build(&scratch, &amd, "amd64", "");
    let amd_digest = amd_img.push(&amd);
    let arm_img = TestImage::build(&scratch, &arm1, "arm64 build 1", "");
    arm_img.push(&arm1);
    let pusher = Pusher::new(&registry.host, None);
    let index1 = pusher
        .index(
            "multi/app",
            "1",
            &[("amd64", "linux/amd64"), ("arm64-1", "linux/arm64/v8")],
        )
        .await;

    let tag = image(&registry.image("multi/app:1"));
    let registries = Registries::new(options());
    let r = adapter(
        &registries,
        RegistryKind::Oci,
        &tag,
        &RegistrySettings::default(),
    );
    let before = r.digest(&tag).await.unwrap();
    assert_eq!(before.manifest, index1);
    assert!(before.is_index());
    assert_eq!(before.platform.as_deref(), Some(amd_digest.as_str()));

    // What Docker records when it pulls the multi-arch tag is one of the two digests.
    run(Command::new("docker").args(["pull", "-q", &tag.to_string()]));
    let pulled = crate::util::docker::repo_digest(&tag.to_string()).unwrap();
    let _pulled_image = TestImage {
        tags: vec![tag.to_string()],
        id: String::new(),
    };
    assert!(before.names(&pulled), "{pulled} is neither {before:?}");

    // Only the arm64 image changes; the index is pushed again.
    let arm_img2 = TestImage::build(&scratch, &arm2, "arm64 build 2", "");
    arm_img2.push(&arm2);
    let index2 = pusher
        .index(
            "multi/app",
            "1",
            &[("amd64", "linux/amd64"), ("arm64-2", "linux/arm64/v8")],
        )
        .await;
    assert_ne!(index1, index2);
    let after = r.digest(&tag).await.unwrap();
    assert_eq!(after.manifest, index2);
    assert!(before.same_image(&after), "{before:?} vs {after:?}");
    assert!(after.names(&amd_digest));

    // The arm64 host sees an update.
    let arm_registries = Registries::new(RegistryOptions {
        platform: Platform::parse("linux/arm64/v8").unwrap(),
        ..options()
    });
    let arm = adapter(
        &arm_registries,
        RegistryKind::Oci,
        &tag,
        &RegistrySettings::default(),
    );
    let arm_after = arm.digest(&tag).await.unwrap();
    assert_ne!(arm_after.platform, after.platform);
}

#[tokio::test]
async fn basic_auth_from_configuration_or_docker_config_json_and_errors_without_secrets() {
    let scratch = Scratch::new("registry-basic");
    let (user, password) = ("lookout", "basic-secret-123");
    let registry = LocalRegistry::start(
        &scratch,
        RegistryAuth::Basic {
            user: user.into(),
            password: password.into(),
        },
    );
    let pusher = Pusher::new(&registry.host, Some((user, password)));
    for tag in ["1.0.0", "1.1.0", "latest"] {
        pusher
            .image("team/app", tag, tag, "2024-01-01T00:00:00Z")
            .await;
    }
    let img = image(&registry.image("team/app:1.0.0"));

    let registries = Registries::new(options());
    let r = adapter(&registries, RegistryKind::Oci, &img, &basic(user, password));
    assert_eq!(
        tag_names(&r.tags(&img).await.unwrap()),
        ["1.0.0", "1.1.0", "latest"]
    );

    // Docker's config.json, as `docker login` writes it.
    let config = scratch.write(
        "docker/config.json",
        serde_json::json!({"auths": {registry.host.clone(): {"auth": base64_of(&format!("{user}:{password}"))}}})
            .to_string(),
    );
    let from_docker = Registries::new(RegistryOptions {
        use_docker_config: true,
        docker_config: Some(config),
        ..options()
    });
    let r = adapter(
        &from_docker,
        RegistryKind::Oci,
        &img,
        &RegistrySettings::default(),
    );
    assert!(
        r.digest(&img)
            .await
            .unwrap()
            .manifest
            .starts_with("sha256:")
    );

    // Wrong password: the error names registry, repository and status, never the password.
    let wrong = adapter(
        &registries,
        RegistryKind::Oci,
        &img,
        &basic(user, "wrong-pass-456"),
    );
    let e = wrong.digest(&img).await.unwrap_err();
    let msg = e.to_string();
    assert!(matches!(e.kind, ErrorKind::Auth { .. }), "{msg}");
    assert!(
        msg.contains(&registry.host) && msg.contains("team/app") && msg.contains("401"),
        "{msg}"
    );
    assert!(
        !msg.contains("wrong-pass-456") && !msg.contains(password),
        "{msg}"
    );

    // Anonymous: told what to configure.
    let anon = adapter(
        &registries,
        RegistryKind::Oci,
        &img,
        &RegistrySettings::default(),
    );
    let msg = anon.tags(&img).await.unwrap_err().to_string();
    assert!(msg.contains("none is configured"), "{msg}");
}

fn base64_of(s: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(s)
}

#[tokio::test]
async fn a_registry_that_ignores_n_answers_the_whole_tag_list_at_once() {
    // Debian's distribution 2.8 ignores `n` on tags/list (paging came with distribution 3).
    let scratch = Scratch::new("registry-no-paging");
    let registry = LocalRegistry::start(&scratch, RegistryAuth::Anonymous);
    let pusher = Pusher::new(&registry.host, None);
    let tags = ["a1", "a2", "b1", "b2", "c1"];
    for t in tags {
        pusher
            .image("paged/app", t, t, "2024-01-01T00:00:00Z")
            .await;
    }
    let img = image(&registry.image("paged/app:a1"));
    let registries = Registries::new(RegistryOptions {
        page_size: 2,
        ..options()
    });
    let r = adapter(
        &registries,
        RegistryKind::Oci,
        &img,
        &RegistrySettings::default(),
    );
    assert_eq!(tag_names(&r.tags(&img).await.unwrap()), tags);
    assert_eq!(registry.count("GET", "/v2/paged/app/tags/list?n=2"), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_most_eight_requests_are_in_flight_to_one_registry_host() {
    // A registry that takes 100 ms per answer, asked for 24 repositories' tags at once: the
    // per-host limit (8) is reached and never passed.
    use std::sync::atomic::{AtomicUsize, Ordering};
    let (now, most) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let server = FakeHttp::start({
        let (now, most) = (now.clone(), most.clone());
        move |req| {
            let n = now.fetch_add(1, Ordering::SeqCst) + 1;
            most.fetch_max(n, Ordering::SeqCst);
            std::thread::sleep(Duration::from_millis(100));
            now.fetch_sub(1, Ordering::SeqCst);
            let name = req
                .path_only()
                .trim_start_matches("/v2/")
                .trim_end_matches("/tags/list")
                .to_owned();
            Response::json(200, &serde_json::json!({"name": name, "tags": ["1.0"]}))
        }
    });
    let registries = Registries::new(options());
    let images: Vec<ImageRef> = (0..24)
        .map(|i| image(&format!("{}/r{i}/app:1.0", server.addr)))
        .collect();
    let lists = futures_util::future::join_all(images.iter().map(|img| {
        let r = adapter(
            &registries,
            RegistryKind::Oci,
            img,
            &RegistrySettings::default(),
        );
        async move { r.tags(img).await.map(|t| t.len()) }
    }))
    .await;
    assert!(lists.iter().all(|l| matches!(l, Ok(1))), "{lists:?}");
    assert_eq!(server.count("/v2/"), 24);
    assert_eq!(most.load(Ordering::SeqCst), 8, "requests in flight at most");
}

#[tokio::test]
async fn tag_lists_are_read_page_by_page_following_link() {
    // The paging of the distribution spec (`?n=&last=`, `Link: <…>; rel="next"`), replayed by a
    // loopback server because the registry packaged here does not page.
    let all: Vec<String> = (0..5).map(|i| format!("t{i}")).collect();
    let server = FakeHttp::start(move |req| {
        if req.path_only() != "/v2/paged/app/tags/list" {
            return Response::status(404);
        }
        let n: usize = req
            .query("n")
            .and_then(|n| n.parse().ok())
            .unwrap_or(all.len());
        let start = req
            .query("last")
            .and_then(|l| all.iter().position(|t| *t == l))
            .map_or(0, |i| i + 1);
        let page: Vec<&String> = all.iter().skip(start).take(n).collect();
        let mut response =
            Response::json(200, &serde_json::json!({"name": "paged/app", "tags": page}));
        if start + n < all.len() {
            let last = page.last().unwrap();
            response = response.header(
                "Link",
                &format!("</v2/paged/app/tags/list?last={last}&n={n}>; rel=\"next\""),
            );
        }
        response
    });
    let img = image(&format!("{}/paged/app:t0", server.addr));
    let registries = Registries::new(RegistryOptions {
        page_size: 2,
        ..options()
    });
    let r = adapter(
        &registries,
        RegistryKind::Oci,
        &img,
        &RegistrySettings::default(),
    );
    assert_eq!(
        tag_names(&r.tags(&img).await.unwrap()),
        ["t0", "t1", "t2", "t3", "t4"]
    );
    let paths: Vec<String> = server.requests().into_iter().map(|r| r.path).collect();
    assert_eq!(
        paths,
        [
            "/v2/paged/app/tags/list?n=2",
            "/v2/paged/app/tags/list?last=t1&n=2",
            "/v2/paged/app/tags/list?last=t3&n=2"
        ]
    );
}

#[tokio::test]
async fn bearer_tokens_come_from_the_challenge_and_are_reused_per_scope() {
    let scratch = Scratch::new("registry-token");
    let storage = LocalRegistry::start(&scratch, RegistryAuth::Anonymous);
    let pusher = Pusher::new(&storage.host, None);
    let digest_a = pusher
        .image("team/a", "1.0", "a", "2024-01-01T00:00:00Z")
        .await;
    pusher
        .image("team/b", "1.0", "b", "2024-01-01T00:00:00Z")
        .await;
    let registry = TokenRegistry::start(&scratch, &storage, "robot", "token-pass-789");

    let registries = Registries::new(options());
    let a = image(&format!("{}/team/a:1.0", registry.host));
    let r = adapter(
        &registries,
        RegistryKind::Oci,
        &a,
        &basic("robot", "token-pass-789"),
    );
    for _ in 0..3 {
        assert_eq!(r.digest(&a).await.unwrap().manifest, digest_a);
    }
    assert_eq!(tag_names(&r.tags(&a).await.unwrap()), ["1.0"]);
    assert_eq!(
        registry.token_requests(),
        1,
        "one token for repository:team/a:pull"
    );
    let stats = registries.stats();
    assert_eq!(stats.count(&registry.host, "HEAD", "401"), 1, "{stats:#?}");
    assert_eq!(stats.count(&registry.host, "HEAD", "200"), 3, "{stats:#?}");

    // Another repository is another scope: one more token, no second challenge.
    let b = image(&format!("{}/team/b:1.0", registry.host));
    r.digest(&b).await.unwrap();
    assert_eq!(registry.token_requests(), 2);
    assert_eq!(registries.stats().count(&registry.host, "HEAD", "401"), 1);

    // The issuer refuses a wrong password; the error says so without the password.
    let wrong = adapter(
        &registries,
        RegistryKind::Oci,
        &a,
        &basic("robot", "nope-321"),
    );
    let msg = wrong.digest(&a).await.unwrap_err().to_string();
    assert!(
        msg.contains("token service") && msg.contains("401"),
        "{msg}"
    );
    assert!(!msg.contains("nope-321"), "{msg}");
}

/// A configuration of `services` services over `repos` repositories of `host`, semver policy.
fn many_services(host: &str, services: usize, repos: usize) -> lookout::config::Config {
    let mut text = String::new();
    for i in 0..services {
        let current = if i % 2 == 0 { "1.0.0" } else { "1.1.0" };
        text.push_str(&format!(
            "[[services]]\nname = \"svc{i}\"\nimage = \"{host}/many/app{}:{current}\"\ncompose_file = \"/srv/compose.yml\"\npolicy = \"semver\"\n\n",
            i % repos
        ));
    }
    lookout::config::from_text(Path::new("many.toml"), &text, &|_| None).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_check_of_200_services_over_40_repositories_asks_each_thing_once() {
    let scratch = Scratch::new("registry-many");
    let registry = LocalRegistry::start(&scratch, RegistryAuth::Anonymous);
    let pusher = Pusher::new(&registry.host, None);
    let mut newest = std::collections::HashMap::new();
    for r in 0..40 {
        for t in ["1.0.0", "1.1.0", "1.2.0"] {
            let d = pusher
                .image(
                    &format!("many/app{r}"),
                    t,
                    &format!("{r}-{t}"),
                    "2024-01-01T00:00:00Z",
                )
                .await;
            newest.insert(format!("many/app{r}"), d);
        }
    }
    let config = many_services(&registry.host, 200, 40);
    let registries = Arc::new(Registries::new(options()));
    let cycle = CheckCycle::new(registries.clone());
    let checks = futures_util::future::join_all(
        config
            .services
            .iter()
            .map(|s| check_service(&cycle, s, &s.image)),
    )
    .await;
    for check in &checks {
        let check = check.as_ref().unwrap();
        let candidate = check.candidate.as_ref().unwrap();
        assert_eq!(candidate.tag(), Some("1.2.0"));
        assert_eq!(
            check.digests.as_ref().unwrap().manifest,
            newest[candidate.repository()]
        );
    }
    assert_eq!(registry.count("GET", "/tags/list"), 40);
    assert_eq!(registry.count("HEAD", "/manifests/"), 40);
    assert_eq!(registry.count("GET", "/blobs/"), 0, "nothing is pulled");
    assert_eq!(registry.count("GET", "/manifests/"), 0);
    assert_eq!(registries.stats().total(&registry.host), 80);
}

/// `services` services of the digest policy over `repos` repositories of `host`: each
/// repository is run as `latest` (the first `repos` services) and as `stable` (the next), and
/// service 0 runs a tag that is gone.
fn digest_services(host: &str, services: usize, repos: usize) -> lookout::config::Config {
    let mut text = String::new();
    for i in 0..services {
        let tag = match i {
            0 => "gone",
            i if (i / repos) % 2 == 0 => "latest",
            _ => "stable",
        };
        text.push_str(&format!(
            "[[services]]\nname = \"svc{i}\"\nimage = \"{host}/digest/app{}:{tag}\"\ncompose_file = \"/srv/compose.yml\"\n\n",
            i % repos
        ));
    }
    lookout::config::from_text(Path::new("digest.toml"), &text, &|_| None).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_digest_policy_asks_one_head_per_distinct_reference_and_no_tag_list() {
    let scratch = Scratch::new("registry-digest-policy");
    let registry = LocalRegistry::start(&scratch, RegistryAuth::Anonymous);
    let pusher = Pusher::new(&registry.host, None);
    let mut digests = std::collections::HashMap::new();
    for r in 0..10 {
        for t in ["latest", "stable"] {
            let repo = format!("digest/app{r}");
            let d = pusher
                .image(&repo, t, &format!("{r}-{t}"), "2024-01-01T00:00:00Z")
                .await;
            digests.insert(format!("{repo}:{t}"), d);
        }
    }
    let config = digest_services(&registry.host, 50, 10);
    let registries = Arc::new(Registries::new(options()));
    let cycle = CheckCycle::new(registries.clone());
    let checks = futures_util::future::join_all(
        config
            .services
            .iter()
            .map(|s| check_service(&cycle, s, &s.image)),
    )
    .await;
    for (i, check) in checks.iter().enumerate() {
        let check = check.as_ref().unwrap();
        if i == 0 {
            assert!(check.candidate.is_none(), "{check:?}");
            assert!(check.digests.is_none(), "{check:?}");
            assert!(
                check.selection.reason.contains("does not list"),
                "{:?}",
                check.selection
            );
            continue;
        }
        let candidate = check.candidate.as_ref().unwrap();
        assert_eq!(
            candidate, &check.running,
            "the digest policy stays on its tag"
        );
        let key = format!("{}:{}", candidate.repository(), candidate.tag().unwrap());
        assert_eq!(check.digests.as_ref().unwrap().manifest, digests[&key]);
    }
    // 10 repositories × {latest, stable} plus the gone tag: 21 distinct references.
    assert_eq!(registry.count("GET", "/tags/list"), 0, "no tag list");
    assert_eq!(registry.count("HEAD", "/manifests/"), 21);
    assert_eq!(registry.count("GET", "/manifests/"), 0);
    assert_eq!(registry.count("GET", "/blobs/"), 0, "nothing is pulled");
    assert_eq!(registries.stats().total(&registry.host), 21);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_check_behind_a_token_service_asks_one_token_per_repository_per_expiry() {
    let scratch = Scratch::new("registry-token-cycle");
    let storage = LocalRegistry::start(&scratch, RegistryAuth::Anonymous);
    let pusher = Pusher::new(&storage.host, None);
    for r in 0..5 {
        for t in ["1.0.0", "1.1.0", "1.2.0"] {
            pusher
                .image(
                    &format!("many/app{r}"),
                    t,
                    &format!("{r}-{t}"),
                    "2024-01-01T00:00:00Z",
                )
                .await;
        }
    }
    let registry = TokenRegistry::start(&scratch, &storage, "robot", "cycle-pass-468");
    let mut config = many_services(&registry.host, 40, 5);
    for s in &mut config.services {
        s.registry = basic("robot", "cycle-pass-468").into();
    }
    let registries = Arc::new(Registries::new(options()));
    for round in 1..=2 {
        let cycle = CheckCycle::new(registries.clone());
        let checks = futures_util::future::join_all(
            config
                .services
                .iter()
                .map(|s| check_service(&cycle, s, &s.image)),
        )
        .await;
        assert!(checks.iter().all(Result::is_ok), "{checks:?}");
        assert_eq!(
            registry.token_requests(),
            5,
            "round {round}: one token per repository, reused until it expires"
        );
        let stats = registries.stats();
        // Per cycle: one tag list per repository and one HEAD of its chosen tag; the five
        // token GETs count under the registry too. Only the first cycle meets challenges.
        assert_eq!(
            stats.count(&registry.host, "GET", "200"),
            5 + 5 * round,
            "{stats:#?}"
        );
        let challenged =
            stats.count(&registry.host, "GET", "401") + stats.count(&registry.host, "HEAD", "401");
        assert!((1..=5).contains(&challenged), "{stats:#?}");
        assert_eq!(
            stats.count(&registry.host, "HEAD", "200"),
            5 * round,
            "{stats:#?}"
        );
    }
}

#[tokio::test]
async fn glob_policies_read_build_times_of_candidates_only_when_there_are_no_push_times() {
    let scratch = Scratch::new("registry-created");
    let registry = LocalRegistry::start(&scratch, RegistryAuth::Anonymous);
    let pusher = Pusher::new(&registry.host, None);
    // build-9 sorts last by name, but build-10 was built later.
    pusher
        .image("ci/app", "build-9", "9", "2024-03-01T00:00:00Z")
        .await;
    pusher
        .image("ci/app", "build-10", "10", "2024-05-01T00:00:00Z")
        .await;
    pusher
        .image("ci/app", "other", "o", "2025-01-01T00:00:00Z")
        .await;
    let text = format!(
        "[[services]]\nname = \"ci\"\nimage = \"{}/ci/app:build-9\"\ncompose_file = \"/c.yml\"\ntag_pattern = \"build-*\"\n",
        registry.host
    );
    let config = lookout::config::from_text(Path::new("c.toml"), &text, &|_| None).unwrap();
    let cycle = CheckCycle::new(Arc::new(Registries::new(options())));
    let s = &config.services[0];
    let check = check_service(&cycle, s, &s.image).await.unwrap();
    assert_eq!(
        check.candidate.unwrap().tag(),
        Some("build-10"),
        "{:?}",
        check.selection
    );
    assert_eq!(check.created_lookups, 2);
    // Two config blobs read: build-9's and build-10's, not `other`'s.
    assert_eq!(
        registry.count("GET", "/blobs/"),
        2,
        "{:#?}",
        registry.access_log()
    );
}

#[tokio::test]
async fn a_429_with_retry_after_is_waited_out() {
    let scratch = Scratch::new("registry-429");
    let registry = LocalRegistry::start(&scratch, RegistryAuth::Anonymous);
    let pusher = Pusher::new(&registry.host, None);
    let digest = pusher
        .image("slow/app", "1", "x", "2024-01-01T00:00:00Z")
        .await;
    let proxy = FaultProxy::start(&registry.host, 1, 1);
    let img = image(&format!("{}/slow/app:1", proxy.addr));
    let registries = Registries::new(options());
    let r = adapter(
        &registries,
        RegistryKind::Oci,
        &img,
        &RegistrySettings::default(),
    );
    let started = Instant::now();
    assert_eq!(r.digest(&img).await.unwrap().manifest, digest);
    let refused = proxy.refused_at.lock().unwrap().clone();
    let forwarded = proxy.forwarded_at.lock().unwrap().clone();
    assert_eq!(refused.len(), 1);
    assert!(
        forwarded[0].duration_since(refused[0]) >= Duration::from_secs(1),
        "retried after {:?}",
        forwarded[0].duration_since(refused[0])
    );
    assert!(started.elapsed() >= Duration::from_secs(1));
    let stats = registries.stats();
    assert_eq!(stats.count(&proxy.addr, "HEAD", "429"), 1, "{stats:#?}");
    assert_eq!(stats.count(&proxy.addr, "HEAD", "200"), 1, "{stats:#?}");

    // A registry that asks for longer than lookout waits fails at once, and says so.
    let long = FaultProxy::start(&registry.host, 1, 3600);
    let img = image(&format!("{}/slow/app:1", long.addr));
    let r = adapter(
        &registries,
        RegistryKind::Oci,
        &img,
        &RegistrySettings::default(),
    );
    let started = Instant::now();
    let msg = r.digest(&img).await.unwrap_err().to_string();
    assert!(started.elapsed() < Duration::from_secs(5));
    assert!(
        msg.contains("429") && msg.contains("3600s") && msg.contains("slow/app"),
        "{msg}"
    );
}

#[tokio::test]
async fn server_errors_are_retried_and_a_dead_registry_fails_only_its_service() {
    let scratch = Scratch::new("registry-5xx");
    let registry = LocalRegistry::start(&scratch, RegistryAuth::Anonymous);
    let pusher = Pusher::new(&registry.host, None);
    pusher
        .image("ok/app", "1.0.0", "x", "2024-01-01T00:00:00Z")
        .await;
    pusher
        .image("ok/app", "1.0.1", "y", "2024-01-01T00:00:00Z")
        .await;
    let flaky = FakeHttp::start(|_| Response::status(503));
    let dead = format!("127.0.0.1:{}", free_port());
    let text = format!(
        "[[services]]\nname = \"ok\"\nimage = \"{}/ok/app:1.0.0\"\ncompose_file = \"/c.yml\"\npolicy = \"semver\"\n\n\
         [[services]]\nname = \"flaky\"\nimage = \"{}/x/app:1\"\ncompose_file = \"/c.yml\"\n\n\
         [[services]]\nname = \"dead\"\nimage = \"{dead}/x/app:1\"\ncompose_file = \"/c.yml\"\n",
        registry.host, flaky.addr
    );
    let config = lookout::config::from_text(Path::new("c.toml"), &text, &|_| None).unwrap();
    let registries = Arc::new(Registries::new(options()));
    let cycle = CheckCycle::new(registries.clone());
    let checks = futures_util::future::join_all(
        config
            .services
            .iter()
            .map(|s| check_service(&cycle, s, &s.image)),
    )
    .await;
    assert_eq!(
        checks[0]
            .as_ref()
            .unwrap()
            .candidate
            .as_ref()
            .unwrap()
            .tag(),
        Some("1.0.1")
    );
    let flaky_err = checks[1].as_ref().unwrap_err().to_string();
    assert!(
        flaky_err.contains(&flaky.addr)
            && flaky_err.contains("x/app")
            && flaky_err.contains("HTTP 503"),
        "{flaky_err}"
    );
    assert_eq!(flaky.requests().len(), 3, "three attempts");
    let dead_err = checks[2].as_ref().unwrap_err().to_string();
    assert!(
        dead_err.contains(&dead) && dead_err.contains("cannot reach"),
        "{dead_err}"
    );
    // The digest policy asks the manifest's HEAD, never the tag list.
    assert_eq!(registries.stats().count(&dead, "HEAD", "error"), 3);
}

#[tokio::test]
async fn docker_hub_push_times_come_from_the_tags_api_and_rate_limits_are_read() {
    let scratch = Scratch::new("registry-hub");
    let registry = LocalRegistry::start(&scratch, RegistryAuth::Anonymous);
    let pusher = Pusher::new(&registry.host, None);
    let digest = pusher
        .image("library/app", "1.25", "x", "2024-01-01T00:00:00Z")
        .await;
    let hub = FakeHttp::start({
        move |req| {
            let page2 = req.query("page").as_deref() == Some("2");
            if req.path_only() != "/v2/namespaces/library/repositories/app/tags" {
                return Response::status(404);
            }
            let body = if page2 {
                serde_json::json!({"count": 3, "next": null, "previous": null, "results": [
                    {"name": "1.24", "tag_last_pushed": "2023-06-01T10:00:00.000000Z", "digest": "sha256:bb", "images": []}]})
            } else {
                let host = req.header("host").unwrap_or_default().to_owned();
                serde_json::json!({"count": 3,
                    "next": format!("http://{host}/v2/namespaces/library/repositories/app/tags?page=2&page_size=100"),
                    "previous": null, "results": [
                    {"name": "1.25", "tag_last_pushed": "2024-02-01T12:00:00.123456Z", "digest": "sha256:aa", "images": []},
                    {"name": "latest", "tag_last_pushed": "2024-02-01T12:00:00Z", "digest": "sha256:aa", "images": []}]})
            };
            Response::json(200, &body)
                .header("ratelimit-limit", "100;w=21600")
                .header("ratelimit-remaining", "76;w=21600")
        }
    });
    let registries = Registries::new(RegistryOptions {
        docker_hub: DockerHubEndpoints {
            api: hub.url(""),
            registry: format!("http://{}", registry.host),
        },
        ..options()
    });
    let img = image("app:1.25");
    assert_eq!(RegistryKind::infer(img.registry()), RegistryKind::DockerHub);
    let r = adapter(
        &registries,
        RegistryKind::DockerHub,
        &img,
        &RegistrySettings::default(),
    );
    let tags = r.tags(&img).await.unwrap();
    let pushed = |name: &str| tags.iter().find(|t| t.name == name).unwrap().pushed;
    assert_eq!(pushed("1.25"), Some(1_706_788_800));
    assert_eq!(pushed("1.24"), Some(1_685_613_600));
    assert_eq!(tags.len(), 3);
    assert_eq!(hub.count("/v2/namespaces/library/repositories/app/tags"), 2);
    assert_eq!(
        registry.count("GET", "/tags/list"),
        0,
        "Hub's API replaces tags/list"
    );
    assert_eq!(r.digest(&img).await.unwrap().manifest, digest);
    let stats = registries.stats();
    assert_eq!(stats.ratelimit_remaining.get("hub.docker.com"), Some(&76));
    assert_eq!(stats.ratelimit_limit.get("hub.docker.com"), Some(&100));
}

#[tokio::test]
async fn ecr_tags_and_push_times_come_from_describe_images_and_the_password_from_get_authorization_token()
 {
    use crate::util::moto::{Moto, PASSWORD};
    let scratch = Scratch::new("registry-ecr");
    let moto = Moto::start(&scratch);
    let registry = LocalRegistry::start(
        &scratch,
        RegistryAuth::Basic {
            user: "AWS".into(),
            password: PASSWORD.into(),
        },
    );
    let pusher = Pusher::new(&registry.host, Some(("AWS", PASSWORD)));
    let ecr = moto.ecr().await;
    ecr.create_repository()
        .repository_name("team/app")
        .send()
        .await
        .unwrap();
    let before = jiff::Timestamp::now().as_second() - 1;
    let mut digests = std::collections::HashMap::new();
    for tag in ["1.0.0", "1.1.0"] {
        let d = pusher
            .image("team/app", tag, tag, "2024-01-01T00:00:00Z")
            .await;
        let (manifest, _) = pusher.get_manifest("team/app", tag).await;
        ecr.put_image()
            .repository_name("team/app")
            .image_tag(tag)
            .image_manifest(String::from_utf8(manifest).unwrap())
            .send()
            .await
            .unwrap();
        digests.insert(tag, d);
    }
    let after = jiff::Timestamp::now().as_second() + 1;

    let settings = RegistrySettings {
        region: Some("us-east-1".into()),
        endpoint_url: Some(moto.endpoint.clone()),
        aws_access_key_id: Some("testing".into()),
        aws_secret_access_key: Some(Secret::new("testing")),
        ..RegistrySettings::default()
    };
    let img = image(&registry.image("team/app:1.0.0"));
    let registries = Registries::new(options());
    let r = adapter(&registries, RegistryKind::Ecr, &img, &settings);
    let tags = r.tags(&img).await.unwrap();
    assert_eq!(tag_names(&tags), ["1.0.0", "1.1.0"]);
    for t in &tags {
        let pushed = t.pushed.expect("DescribeImages gives imagePushedAt");
        assert!(
            (before..=after).contains(&pushed),
            "{pushed} not in {before}..={after}"
        );
    }
    assert_eq!(
        registry.count("GET", "/tags/list"),
        0,
        "tags come from DescribeImages"
    );
    // The registry accepts only the password GetAuthorizationToken gave.
    for tag in ["1.0.0", "1.1.0"] {
        let d = r.digest(&img.with_tag(tag)).await.unwrap();
        assert_eq!(d.manifest, digests[tag]);
    }

    // Without a region the adapter says what to set.
    let msg = match registries.get(RegistryKind::Ecr, &img, &RegistrySettings::default()) {
        Err(e) => e.to_string(),
        Ok(_) => panic!("an ECR adapter without a region"),
    };
    assert!(msg.contains("registry_config.region"), "{msg}");
}

#[tokio::test]
async fn google_tokens_come_from_the_key_s_token_uri_and_push_times_from_tags_list() {
    use base64::Engine;
    let scratch = Scratch::new("registry-gcr");
    let access_token = "ya29.lookout-test-token";
    // A test-only RSA key, made for this run.
    let key_path = scratch.join("sa-key.pem");
    run(Command::new("openssl")
        .args([
            "genpkey",
            "-algorithm",
            "RSA",
            "-pkeyopt",
            "rsa_keygen_bits:2048",
            "-out",
        ])
        .arg(&key_path));
    let token_server = FakeHttp::start(move |req| {
        let body = String::from_utf8_lossy(&req.body).into_owned();
        let form: std::collections::HashMap<String, String> =
            reqwest::Url::parse(&format!("http://x/?{body}"))
                .unwrap()
                .query_pairs()
                .into_owned()
                .collect();
        let assertion = form.get("assertion").cloned().unwrap_or_default();
        let claims = assertion
            .split('.')
            .nth(1)
            // gcp_auth pads its base64url segments; JWTs usually do not.
            .and_then(|c| {
                base64::engine::general_purpose::URL_SAFE_NO_PAD
                    .decode(c.trim_end_matches('='))
                    .ok()
            })
            .and_then(|c| serde_json::from_slice::<serde_json::Value>(&c).ok());
        let ok = req.method == "POST"
            && form.get("grant_type").map(String::as_str)
                == Some("urn:ietf:params:oauth:grant-type:jwt-bearer")
            && claims.as_ref().is_some_and(|c| {
                c["iss"] == "lookout-test@project.iam.gserviceaccount.com"
                    && c["scope"]
                        .as_str()
                        .unwrap_or_default()
                        .contains("cloud-platform")
            });
        if !ok {
            return Response::json(400, &serde_json::json!({"error": "invalid_grant"}));
        }
        Response::json(
            200,
            &serde_json::json!({"access_token": "ya29.lookout-test-token", "expires_in": 3600, "token_type": "Bearer"}),
        )
    });
    let key_file = scratch.write(
        "service-account.json",
        serde_json::json!({
            "type": "service_account", "project_id": "project", "private_key_id": "test-key",
            "private_key": std::fs::read_to_string(&key_path).unwrap(),
            "client_email": "lookout-test@project.iam.gserviceaccount.com", "client_id": "1",
            "token_uri": token_server.url("/token"),
        })
        .to_string(),
    );
    let settings = RegistrySettings {
        service_account_path: Some(key_file),
        ..RegistrySettings::default()
    };

    // The registry: htpasswd user oauth2accesstoken with the access token as its password.
    let registry = LocalRegistry::start(
        &scratch,
        RegistryAuth::Basic {
            user: "oauth2accesstoken".into(),
            password: access_token.into(),
        },
    );
    let pusher = Pusher::new(&registry.host, Some(("oauth2accesstoken", access_token)));
    let digest = pusher
        .image("project/repo/app", "v1", "v1", "2024-01-01T00:00:00Z")
        .await;
    let registries = Registries::new(options());
    let img = image(&registry.image("project/repo/app:v1"));
    let r = adapter(&registries, RegistryKind::Gcr, &img, &settings);
    assert_eq!(r.digest(&img).await.unwrap().manifest, digest);
    assert_eq!(
        r.digest(&img.with_tag("v1")).await.unwrap().manifest,
        digest
    );

    // Google's tags/list, with its `manifest` map, behind the same basic auth.
    let expected = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD
            .encode(format!("oauth2accesstoken:{access_token}"))
    );
    let google = FakeHttp::start(move |req| {
        if req.header("authorization") != Some(expected.as_str()) {
            return Response::status(401).header(
                "WWW-Authenticate",
                "Basic realm=\"https://us-docker.pkg.dev\"",
            );
        }
        Response::json(
            200,
            &serde_json::json!({
                "child": [],
                "manifest": {
                    "sha256:1111111111111111111111111111111111111111111111111111111111111111": {
                        "imageSizeBytes": "1000", "layerId": "",
                        "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
                        "tag": ["v1"], "timeCreatedMs": "0", "timeUploadedMs": "1700000000000"},
                    "sha256:2222222222222222222222222222222222222222222222222222222222222222": {
                        "imageSizeBytes": "1000", "layerId": "",
                        "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
                        "tag": ["v2", "latest"], "timeCreatedMs": "0", "timeUploadedMs": "1710000000000"}
                },
                "name": "project/repo/app",
                "tags": ["latest", "v1", "v2"]
            }),
        )
    });
    let gimg = image(&format!("{}/project/repo/app:v1", google.addr));
    let g = adapter(&registries, RegistryKind::Gcr, &gimg, &settings);
    let tags = g.tags(&gimg).await.unwrap();
    let pushed = |n: &str| tags.iter().find(|t| t.name == n).unwrap().pushed;
    assert_eq!(pushed("v1"), Some(1_700_000_000));
    assert_eq!(pushed("v2"), Some(1_710_000_000));
    assert_eq!(pushed("latest"), Some(1_710_000_000));
    // One challenge, then basic auth; the access token was fetched once per adapter (each
    // adapter reads the key file into its own gcp_auth provider, which caches the token).
    assert_eq!(google.requests().len(), 2);
    assert_eq!(token_server.requests().len(), 2);
}

#[tokio::test]
async fn lookout_tags_image_and_lookout_check_ask_the_live_registry() {
    let scratch = Scratch::new("registry-cli");
    let registry = LocalRegistry::start(&scratch, RegistryAuth::Anonymous);
    let pusher = Pusher::new(&registry.host, None);
    let mut newest = String::new();
    for t in ["1.0.0", "1.1.0", "1.2.0"] {
        newest = pusher.image("cli/app", t, t, "2024-01-01T00:00:00Z").await;
    }
    let docker_config = scratch.path().join("docker");
    std::fs::create_dir_all(&docker_config).unwrap();

    let out = crate::util::lookout()
        .args([
            "tags",
            &registry.image("cli/app:1.0.0"),
            "--policy",
            "semver",
            "--json",
        ])
        .env("DOCKER_CONFIG", &docker_config)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["selected"], "1.2.0");
    assert_eq!(v["digest"], newest.as_str());
    assert_eq!(v["tags"].as_array().unwrap().len(), 3);
    assert_eq!(v["requests"], 2, "one tag list, one HEAD");

    let dead = format!("127.0.0.1:{}", free_port());
    let config = scratch.write(
        "lookout.toml",
        format!(
            "[[services]]\nname = \"web\"\nimage = \"{}/cli/app:1.1.0\"\ncompose_file = \"/c.yml\"\npolicy = \"semver\"\n\n\
             [[services]]\nname = \"gone\"\nimage = \"{dead}/x/app:1\"\ncompose_file = \"/c.yml\"\n",
            registry.host
        ),
    );
    let out = crate::util::lookout()
        .args(["check", "--json", "--config"])
        .arg(&config)
        .env("DOCKER_CONFIG", &docker_config)
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let web = &v["services"][0];
    assert_eq!(web["candidate"], registry.image("cli/app:1.2.0"));
    assert_eq!(web["digest"], newest.as_str());
    assert_eq!(web["platform_digest"], newest.as_str());
    let gone = &v["services"][1];
    let err = gone["error"].as_str().unwrap();
    assert!(err.contains(&dead) && err.contains("x/app"), "{err}");
    assert_eq!(v["failed"], 1);

    let out = crate::util::lookout()
        .args(["check", "--config"])
        .arg(&config)
        .env("DOCKER_CONFIG", &docker_config)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("candidate: ") && text.contains("1 failed"),
        "{text}"
    );
}

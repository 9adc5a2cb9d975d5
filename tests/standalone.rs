//! Standalone containers (`docker run`, no compose file) on the real Docker engine: an update
//! keeps every setting (compared field by field in `docker inspect`), a bad image is rolled back
//! to the very same container, `rollback` returns to the image before, and a `kill -9` at each
//! step leaves the container running under its own name exactly once.
//!
//! The networks: at most two user networks for the whole file, made once and removed when the
//! last test using them is done.

use std::collections::BTreeMap;
use std::process::Command;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use lookout::config;
use lookout::engine::{Candidate, ContainerUpdate, Engine, ImageSource, UpdateResult};
use lookout::reference::ImageRef;
use lookout::runtime::GateOptions;
use lookout::state::ChangeKind;
use serde_json::Value;

use crate::util::{LocalRegistry, RegistryAuth, Scratch, TestImage, run};

/// Passes at once, with the image's own settings that the update must take from the new image.
fn image_lines(version: &str, health: &str) -> String {
    format!(
        "ENV IMAGE_VAR={version} PATH=/bin\nLABEL org.example.version={version}\nWORKDIR /srv{version}\n\
         VOLUME /anon\nEXPOSE 8080\nHEALTHCHECK --interval=1s --timeout=2s --retries=1 CMD [\"/bin/{health}\"]\n"
    )
}

/// The two user networks of this file, shared by its tests.
struct Networks {
    first: String,
    second: String,
    /// The first network's subnet prefix: `10.231.N` (outside Docker's default address pools,
    /// so networks other tests create cannot have taken it).
    prefix: String,
}

impl Networks {
    fn shared() -> Arc<Networks> {
        static SHARED: Mutex<Weak<Networks>> = Mutex::new(Weak::new());
        let mut slot = SHARED.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = slot.upgrade() {
            return n;
        }
        let id = std::process::id();
        let first = format!("lookout-sa1-{id}");
        let second = format!("lookout-sa2-{id}");
        let mut prefix = None;
        for n in 0..40 {
            let third = 100 + (id as usize + n * 7) % 150;
            let p = format!("10.231.{third}");
            let ok = Command::new("docker")
                .args(["network", "create", "--label", "lookout.test=standalone"])
                .args(["--subnet", &format!("{p}.0/24"), &first])
                .output()
                .unwrap()
                .status
                .success();
            if ok {
                prefix = Some(p);
                break;
            }
        }
        let prefix = prefix.expect("no free 10.231.N.0/24 subnet for the test network");
        run(Command::new("docker").args([
            "network",
            "create",
            "--label",
            "lookout.test=standalone",
            &second,
        ]));
        let n = Arc::new(Networks {
            first,
            second,
            prefix,
        });
        *slot = Arc::downgrade(&n);
        n
    }
}

impl Drop for Networks {
    fn drop(&mut self) {
        let _ = Command::new("docker")
            .args(["network", "rm", &self.first, &self.second])
            .output();
    }
}

/// One test's images, registry, volume and containers; everything goes on drop (containers
/// with their anonymous volumes).
struct Host {
    // Dropped in order: containers before the networks they use.
    containers: Vec<String>,
    volume: String,
    images: Vec<TestImage>,
    networks: Arc<Networks>,
    /// Serves the images; kept running for the test.
    _registry: LocalRegistry,
    scratch: Scratch,
    repo: String,
    /// tag → pushed digest
    digests: BTreeMap<String, String>,
}

impl Host {
    fn new(test: &str) -> Self {
        let scratch = Scratch::new(test);
        let registry = LocalRegistry::start(&scratch, RegistryAuth::Anonymous);
        let repo = registry.image("sa/app");
        let mut images = Vec::new();
        let mut digests = BTreeMap::new();
        for (tag, lines) in [
            ("1", image_lines("1", "true")),
            ("2", image_lines("2", "true")),
            ("bad", image_lines("bad", "false")),
        ] {
            let reference = format!("{repo}:{tag}");
            let image = TestImage::build(&scratch, &reference, tag, &lines);
            digests.insert(tag.to_owned(), image.push(&reference));
            images.push(image);
        }
        let volume = format!("lookout-sa-{}", scratch.id);
        run(Command::new("docker").args([
            "volume",
            "create",
            "--label",
            &format!("lookout.test={}", scratch.id),
            &volume,
        ]));
        Self {
            containers: Vec::new(),
            volume,
            images,
            networks: Networks::shared(),
            _registry: registry,
            scratch,
            repo,
            digests,
        }
    }

    /// `docker run` of the container with everything the issue lists, its network namespace
    /// shared by `NAME-side`; data in its anonymous volume.
    fn run_full(&mut self, name: &str, ip_last: u8) {
        let bind = self.scratch.join("bind");
        std::fs::create_dir_all(&bind).unwrap();
        std::fs::write(bind.join("file"), "bound").unwrap();
        self.containers.push(name.to_owned());
        let label = format!("lookout.test={}", self.scratch.id);
        run(Command::new("docker")
            .args(["run", "-d", "--name", name, "--label", &label])
            .args(["--label", "user.label=x", "-p", "127.0.0.1::8080"])
            .args(["--network", &self.networks.first, "--network-alias", "web"])
            .args(["--ip", &format!("{}.{ip_last}", self.networks.prefix)])
            .args(["-v", &format!("{}:/named", self.volume)])
            .args(["-v", &format!("{}:/bind:ro", bind.display())])
            .args(["-e", "USER_VAR=u", "--restart", "unless-stopped", "--memory", "64m"])
            .arg(format!("{}:1", self.repo))
            .args([
                "sh",
                "-c",
                "[ -f /anon/data ] || echo kept > /anon/data; trap 'exit 0' TERM; while true; do sleep 1; done",
            ]));
        run(Command::new("docker").args([
            "network",
            "connect",
            "--alias",
            "second",
            &self.networks.second,
            name,
        ]));
        let side = format!("{name}-side");
        self.containers.push(side.clone());
        self.containers.push(format!("{name}-lookout-old"));
        self.containers.push(format!("{side}-lookout-old"));
        run(Command::new("docker")
            .args(["run", "-d", "--name", &side, "--label", &label])
            .args(["--network", &format!("container:{name}")])
            .arg(format!("{}:1", self.repo)));
        wait_healthy(name);
    }

    fn config(&self) -> config::Config {
        let path = self.scratch.write(
            "lookout.toml",
            format!(
                "state_file = \"{}\"\nhealth_timeout = \"20s\"\nhealth_stable = \"0s\"\n",
                self.scratch.join("state/state.json").display()
            ),
        );
        config::load(&path).expect("the test configuration is valid")
    }

    async fn engine(&self) -> Engine<lookout::runtime::Docker> {
        let (engine, _deliveries) = Engine::start(self.config()).await.expect("engine");
        engine
    }

    fn update(&self, name: &str, tag: &str) -> ContainerUpdate {
        ContainerUpdate {
            service: name.to_owned(),
            container: name.to_owned(),
            candidate: Candidate {
                reference: ImageRef::parse(&format!("{}:{tag}", self.repo)).unwrap(),
                manifest_digest: self.digests[tag].clone(),
                platform_digest: None,
            },
            source: ImageSource::Registry { login: None },
            gate: gate(),
            include_stopped: false,
            kind: ChangeKind::Update,
            actor: "test".into(),
        }
    }

    fn image_id(&self, tag: &str) -> String {
        let i = self
            .images
            .iter()
            .find(|i| i.tags.iter().any(|t| t.ends_with(&format!(":{tag}"))));
        i.unwrap().id.clone()
    }
}

impl Drop for Host {
    fn drop(&mut self) {
        // An update mounts the old container's anonymous volumes into the new one by name, so
        // `rm -v` no longer takes them: they are listed first and removed after.
        let volumes = mounted_volumes(&self.containers);
        let _ = Command::new("docker")
            .args(["rm", "-fv"])
            .args(&self.containers)
            .output();
        if !volumes.is_empty() {
            let _ = Command::new("docker")
                .args(["volume", "rm", "-f"])
                .args(&volumes)
                .output();
        }
        let _ = Command::new("docker")
            .args(["volume", "rm", "-f", &self.volume])
            .output();
        crate::util::docker::remove_labelled(&self.scratch.id);
    }
}

/// The volumes mounted into `containers` (those that exist), by name.
fn mounted_volumes(containers: &[String]) -> Vec<String> {
    let Ok(out) = Command::new("docker")
        .args([
            "inspect",
            "-f",
            "{{range .Mounts}}{{if .Name}}{{.Name}} {{end}}{{end}}",
        ])
        .args(containers)
        .output()
    else {
        return Vec::new();
    };
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .map(str::to_owned)
        .collect()
}

fn gate() -> GateOptions {
    GateOptions {
        timeout: Duration::from_secs(20),
        stable: Duration::from_secs(0),
        probe_url: None,
        poll: Duration::from_millis(250),
    }
}

fn inspect(name: &str) -> Value {
    let out = run(Command::new("docker").args(["inspect", name]));
    let mut all: Vec<Value> = serde_json::from_str(&out).unwrap();
    all.remove(0)
}

/// Whether a container of this name exists.
fn exists(name: &str) -> bool {
    Command::new("docker")
        .args(["inspect", "--format", "{{.Id}}", name])
        .output()
        .unwrap()
        .status
        .success()
}

fn wait_healthy(name: &str) {
    crate::util::wait_for(&format!("{name} healthy"), Duration::from_secs(30), || {
        let v = inspect(name);
        (v["State"]["Health"]["Status"] == "healthy").then_some(())
    });
}

fn exec(name: &str, cmd: &str) -> String {
    run(Command::new("docker").args(["exec", name, "sh", "-c", cmd]))
}

/// `docker inspect` flattened to `path → value`, without what differs between any two
/// containers (ids, timestamps, state, files named after the id, the id-derived hostname and
/// alias, the port Docker picked this time), so that what is left must be equal.
fn comparable(v: &Value) -> BTreeMap<String, Value> {
    let id = v["Id"].as_str().unwrap().to_owned();
    let short = &id[..12];
    let mut out = BTreeMap::new();
    flatten("", v, &mut out);
    out.retain(|path, value| {
        let ignored = [
            "/Id",
            "/Created",
            "/State/",
            "/Image",
            "/ResolvConfPath",
            "/HostnamePath",
            "/HostsPath",
            "/LogPath",
            "/RestartCount",
            "/GraphDriver/",
            "/Config/Hostname",
            "/NetworkSettings/SandboxID",
            "/NetworkSettings/SandboxKey",
            "/NetworkSettings/Ports/",
        ];
        let endpoint_ids =
            path.starts_with("/NetworkSettings/Networks/") && path.ends_with("/EndpointID");
        !(ignored.iter().any(|p| path.starts_with(p)) || endpoint_ids || value == short)
    });
    out
}

fn flatten(path: &str, v: &Value, out: &mut BTreeMap<String, Value>) {
    match v {
        // `{}` and `null` say the same: nothing set.
        Value::Null => {}
        Value::Object(map) => {
            for (k, v) in map {
                flatten(&format!("{path}/{k}"), v, out);
            }
        }
        Value::Array(items) if items.iter().any(|i| i.is_object() || i.is_array()) => {
            // Mounts come in no fixed order: by destination.
            let mut items: Vec<&Value> = items.iter().collect();
            items.sort_by_key(|i| i["Destination"].as_str().unwrap_or("").to_owned());
            for (n, item) in items.into_iter().enumerate() {
                flatten(&format!("{path}/{n}"), item, out);
            }
        }
        Value::Array(items) => {
            // Env, Cmd, Aliases: compared as sets of strings.
            let mut items: Vec<Value> = items.clone();
            items.sort_by_key(|i| i.to_string());
            for (n, item) in items.into_iter().enumerate() {
                out.insert(format!("{path}/{n}"), item);
            }
        }
        other => {
            out.insert(path.to_owned(), other.clone());
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_update_keeps_every_setting_and_takes_image_defaults_from_the_new_image() {
    let mut host = Host::new("standalone-fields");
    let name = format!("lookout-sa-{}", host.scratch.id);
    host.run_full(&name, 10);
    let before = inspect(&name);
    let side_before = inspect(&format!("{name}-side"));
    let engine = host.engine().await;

    let report = engine.update_container(&host.update(&name, "2")).await;
    assert_eq!(report.result, UpdateResult::Updated, "{report:?}");

    let after = inspect(&name);
    assert_ne!(after["Id"], before["Id"], "a new container");
    assert_eq!(after["Image"], host.image_id("2"));
    assert!(
        !exists(&format!("{name}-lookout-old")),
        "the old container is removed"
    );

    // Field by field: what the old image set takes the new image's value; the rest is equal.
    let (mut b, mut a) = (comparable(&before), comparable(&after));
    let image_set = [
        (
            "/Config/Image",
            format!("{}:1", host.repo),
            format!("{}:2", host.repo),
        ),
        ("/Config/WorkingDir", "/srv1".into(), "/srv2".into()),
        ("/Config/Labels/org.example.version", "1".into(), "2".into()),
    ];
    for (path, old, new) in &image_set {
        assert_eq!(
            b.remove(*path),
            Some(Value::from(old.as_str())),
            "{path} before"
        );
        assert_eq!(
            a.remove(*path),
            Some(Value::from(new.as_str())),
            "{path} after"
        );
    }
    let env = |m: &BTreeMap<String, Value>| -> Vec<String> {
        m.iter()
            .filter(|(k, _)| k.starts_with("/Config/Env/"))
            .map(|(_, v)| v.as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(env(&b), ["IMAGE_VAR=1", "PATH=/bin", "USER_VAR=u"]);
    assert_eq!(env(&a), ["IMAGE_VAR=2", "PATH=/bin", "USER_VAR=u"]);
    b.retain(|k, _| !k.starts_with("/Config/Env/"));
    a.retain(|k, _| !k.starts_with("/Config/Env/"));
    // The anonymous volume is mounted by its name now (that is how its data is kept): it is
    // in the binds, and Docker gives a volume named in the binds its default mode `z`.
    let anon = before["Mounts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["Destination"] == "/anon")
        .unwrap();
    let anon_name = anon["Name"].as_str().unwrap();
    let binds = |m: &BTreeMap<String, Value>| -> Vec<String> {
        m.iter()
            .filter(|(k, _)| k.starts_with("/HostConfig/Binds/"))
            .map(|(_, v)| v.as_str().unwrap().to_owned())
            .collect()
    };
    let mut want_binds = binds(&b);
    want_binds.push(format!("{anon_name}:/anon"));
    want_binds.sort();
    assert_eq!(binds(&a), want_binds);
    b.retain(|k, _| !k.starts_with("/HostConfig/Binds/"));
    a.retain(|k, _| !k.starts_with("/HostConfig/Binds/"));
    assert_eq!(b.remove("/Mounts/0/Name"), Some(Value::from(anon_name)));
    assert_eq!(
        a.remove("/Mounts/0/Name"),
        Some(Value::from(anon_name)),
        "the same volume"
    );
    assert_eq!(b.remove("/Mounts/0/Mode"), Some(Value::from("")));
    assert_eq!(a.remove("/Mounts/0/Mode"), Some(Value::from("z")));
    let mut differences = Vec::new();
    for key in b
        .keys()
        .chain(a.keys())
        .collect::<std::collections::BTreeSet<_>>()
    {
        if b.get(key) != a.get(key) {
            differences.push(format!("{key}: {:?} → {:?}", b.get(key), a.get(key)));
        }
    }
    assert!(
        differences.is_empty(),
        "changed:\n{}",
        differences.join("\n")
    );
    // What the comparison covers, spelled out.
    for (path, want) in [
        (
            "/HostConfig/PortBindings/8080/tcp/0/HostIp",
            Value::from("127.0.0.1"),
        ),
        ("/HostConfig/Memory", Value::from(64 * 1024 * 1024)),
        (
            "/HostConfig/RestartPolicy/Name",
            Value::from("unless-stopped"),
        ),
        ("/Config/Labels/user.label", Value::from("x")),
        (
            &format!(
                "/NetworkSettings/Networks/{}/IPAMConfig/IPv4Address",
                host.networks.first
            ),
            Value::from(format!("{}.10", host.networks.prefix)),
        ),
    ] {
        assert_eq!(a.get(path), Some(&want), "{path}");
    }
    for (network, alias) in [
        (&host.networks.first, "web"),
        (&host.networks.second, "second"),
    ] {
        let aliases = &after["NetworkSettings"]["Networks"][network]["Aliases"];
        assert!(
            aliases.as_array().unwrap().contains(&Value::from(alias)),
            "{network}: {aliases}"
        );
    }
    let published = after["NetworkSettings"]["Ports"]["8080/tcp"][0]["HostPort"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(!published.is_empty(), "the port is published again");

    // The data of the anonymous volume survived; the bind and the named volume are there.
    assert_eq!(exec(&name, "cat /anon/data").trim(), "kept");
    assert_eq!(exec(&name, "cat /bind/file").trim(), "bound");

    // The container in its network namespace was recreated against the new container.
    let side = inspect(&format!("{name}-side"));
    assert_ne!(side["Id"], side_before["Id"]);
    assert_eq!(
        side["HostConfig"]["NetworkMode"],
        format!("container:{}", after["Id"].as_str().unwrap())
    );
    assert_eq!(side["State"]["Status"], "running");

    // `lookout rollback NAME`: back on the image before, data intact.
    let back = engine
        .rollback_container(&name, &name, gate(), "cli")
        .await
        .unwrap();
    assert_eq!(back.result, UpdateResult::Updated, "{back:?}");
    let rolled = inspect(&name);
    assert_eq!(rolled["Image"], host.image_id("1"));
    assert_eq!(rolled["Config"]["WorkingDir"], "/srv1");
    assert_eq!(exec(&name, "cat /anon/data").trim(), "kept");
    let history = lookout::engine::lock(&engine.store).state().services[&name]
        .history
        .clone();
    assert_eq!(history.len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_image_is_rolled_back_to_the_same_container() {
    let mut host = Host::new("standalone-bad");
    let name = format!("lookout-sa-{}", host.scratch.id);
    host.run_full(&name, 11);
    let before = inspect(&name);
    let engine = host.engine().await;

    let report = engine.update_container(&host.update(&name, "bad")).await;
    assert!(
        matches!(report.result, UpdateResult::RolledBack { .. }),
        "{report:?}"
    );
    let after = inspect(&name);
    assert_eq!(
        after["Id"], before["Id"],
        "the very same container runs again"
    );
    assert_eq!(after["Image"], host.image_id("1"));
    assert_eq!(after["State"]["Health"]["Status"], "healthy");
    assert_eq!(exec(&name, "cat /anon/data").trim(), "kept");
    assert!(!exists(&format!("{name}-lookout-old")));
    let side = inspect(&format!("{name}-side"));
    assert_eq!(
        side["State"]["Status"], "running",
        "its dependent runs again"
    );
    let state = lookout::engine::lock(&engine.store);
    let svc = &state.state().services[&name];
    assert!(
        svc.failed_candidate.is_some(),
        "the bad candidate is blocked"
    );
    assert!(state.standalone_in_flight().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auto_remove_containers_are_refused_and_left_alone() {
    let mut host = Host::new("standalone-rm");
    let name = format!("lookout-sa-{}", host.scratch.id);
    host.containers.push(name.clone());
    run(Command::new("docker")
        .args(["run", "-d", "--rm", "--network", "none", "--name", &name])
        .args(["--label", &format!("lookout.test={}", host.scratch.id)])
        .arg(format!("{}:1", host.repo)));
    let before = inspect(&name);
    let engine = host.engine().await;
    let report = engine.update_container(&host.update(&name, "2")).await;
    match &report.result {
        UpdateResult::Failed { reason, .. } => assert!(reason.contains("--rm"), "{reason}"),
        other => panic!("expected a refusal, got {other:?}"),
    }
    let after = inspect(&name);
    assert_eq!(after["Id"], before["Id"]);
    assert_eq!(after["State"]["Status"], "running");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_container_is_recreated_stopped_only_when_asked() {
    let mut host = Host::new("standalone-stopped");
    let name = format!("lookout-sa-{}", host.scratch.id);
    host.containers.push(name.clone());
    host.containers.push(format!("{name}-lookout-old"));
    run(Command::new("docker")
        .args(["create", "--network", "none", "--name", &name])
        .args(["--label", &format!("lookout.test={}", host.scratch.id)])
        .args(["-e", "USER_VAR=u"])
        .arg(format!("{}:1", host.repo)));
    let before = inspect(&name);
    let engine = host.engine().await;

    let refused = engine.update_container(&host.update(&name, "2")).await;
    match &refused.result {
        UpdateResult::Failed { reason, .. } => {
            assert!(reason.contains("include_stopped"), "{reason}")
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
    assert_eq!(inspect(&name)["Id"], before["Id"], "left alone");

    let mut asked = host.update(&name, "2");
    asked.include_stopped = true;
    let report = engine.update_container(&asked).await;
    assert_eq!(report.result, UpdateResult::Updated, "{report:?}");
    let after = inspect(&name);
    assert_ne!(after["Id"], before["Id"]);
    assert_eq!(after["Image"], host.image_id("2"));
    assert_eq!(
        after["State"]["Status"], "created",
        "recreated, not started"
    );
    assert!(
        after["Config"]["Env"]
            .as_array()
            .unwrap()
            .contains(&Value::from("USER_VAR=u"))
    );
    assert!(!exists(&format!("{name}-lookout-old")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn linked_and_labelled_dependents_are_recreated_after_it() {
    let mut host = Host::new("standalone-deps");
    let name = format!("lookout-sa-{}", host.scratch.id);
    let label = format!("lookout.test={}", host.scratch.id);
    let linker = format!("{name}-linker");
    let labelled = format!("{name}-labelled");
    for n in [&name, &linker, &labelled] {
        host.containers.push(n.clone());
        host.containers.push(format!("{n}-lookout-old"));
    }
    let image = format!("{}:1", host.repo);
    run(Command::new("docker").args(["run", "-d", "--name", &name, "--label", &label, &image]));
    run(Command::new("docker")
        .args(["run", "-d", "--name", &linker, "--label", &label])
        .args(["--link", &format!("{name}:db"), &image]));
    run(Command::new("docker")
        .args([
            "run",
            "-d",
            "--name",
            &labelled,
            "--label",
            &label,
            "--network",
            "none",
        ])
        .args(["--label", &format!("lookout.depends_on={name}"), &image]));
    wait_healthy(&name);
    let (linker_before, labelled_before) = (inspect(&linker), inspect(&labelled));
    let engine = host.engine().await;

    let report = engine.update_container(&host.update(&name, "2")).await;
    assert_eq!(report.result, UpdateResult::Updated, "{report:?}");
    for (dep, before) in [(&linker, &linker_before), (&labelled, &labelled_before)] {
        let after = inspect(dep);
        assert_ne!(after["Id"], before["Id"], "{dep} recreated");
        assert_eq!(after["State"]["Status"], "running", "{dep} runs");
        assert_eq!(after["Image"], before["Image"], "{dep} keeps its own image");
        assert!(!exists(&format!("{dep}-lookout-old")));
    }
    let links = &inspect(&linker)["HostConfig"]["Links"];
    assert_eq!(links, &serde_json::json!([format!("/{name}:/{linker}/db")]));
    // The link resolves to the new container.
    let hosts = exec(&linker, "cat /etc/hosts");
    let ip = inspect(&name)["NetworkSettings"]["Networks"]["bridge"]["IPAddress"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(
        hosts.lines().any(|l| {
            let words: Vec<&str> = l.split_whitespace().collect();
            words.first() == Some(&ip.as_str()) && words.contains(&"db")
        }),
        "{hosts}"
    );
}

/// The environment variable that makes [`killed_update_child`] run: what to update, as JSON.
#[cfg(feature = "failpoints")]
const CHILD_ENV: &str = "LOOKOUT_STANDALONE_CHILD";

/// The process a kill -9 case kills: this test binary, running only [`killed_update_child`],
/// which updates the container through the engine until it stops at `LOOKOUT_FAILPOINT`.
#[cfg(feature = "failpoints")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "the child process of the kill -9 tests, which run it with LOOKOUT_STANDALONE_CHILD"]
async fn killed_update_child() {
    let spec: Value = serde_json::from_str(
        &std::env::var(CHILD_ENV).expect("run by the kill -9 tests with LOOKOUT_STANDALONE_CHILD"),
    )
    .unwrap();
    let text = |k: &str| spec[k].as_str().unwrap().to_owned();
    let config = config::load(std::path::Path::new(&text("config"))).unwrap();
    let (engine, _deliveries) = Engine::start(config).await.expect("engine");
    let req = ContainerUpdate {
        service: text("name"),
        container: text("name"),
        candidate: Candidate {
            reference: ImageRef::parse(&text("reference")).unwrap(),
            manifest_digest: text("digest"),
            platform_digest: None,
        },
        source: ImageSource::Registry { login: None },
        gate: gate(),
        include_stopped: false,
        kind: ChangeKind::Update,
        actor: "test".into(),
    };
    let report = engine.update_container(&req).await;
    panic!("the update ended without reaching its failpoint: {report:?}");
}

/// Updates `NAME` to `tag` in a child process stopped with kill -9 at `failpoint`, then runs
/// recovery as a fresh lookout does at start. The container must then run healthy under its
/// own name exactly once, on the image `end` says, with its dependent and its data.
#[cfg(feature = "failpoints")]
async fn kill_at(failpoint: &str, tag: &str, ip_last: u8, end: &str) {
    use std::io::{BufRead, BufReader};
    let mut host = Host::new(&format!("standalone-kill-{failpoint}"));
    let name = format!("lookout-sa-{}", host.scratch.id);
    host.run_full(&name, ip_last);
    let before = inspect(&name);
    let config = host.scratch.join("lookout.toml");
    drop(host.config()); // writes lookout.toml
    let spec = serde_json::json!({
        "config": config.display().to_string(),
        "name": name,
        "reference": format!("{}:{tag}", host.repo),
        "digest": host.digests[tag],
    });
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "standalone::killed_update_child",
            "--ignored",
            "--nocapture",
        ])
        .env(CHILD_ENV, spec.to_string())
        .env("LOOKOUT_FAILPOINT", failpoint)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    struct Reap(std::process::Child);
    impl Drop for Reap {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let stderr = child.stderr.take().unwrap();
    let mut child = Reap(child);
    let marker = format!("{} {failpoint}", lookout::engine::failpoint::REACHED);
    let mut seen = String::new();
    let reached = tokio::task::spawn_blocking(move || {
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            seen.push_str(&line);
            seen.push('\n');
            if line.trim_end() == marker {
                return Ok(seen);
            }
        }
        Err(seen)
    });
    let seen = tokio::time::timeout(Duration::from_secs(120), reached)
        .await
        .expect("the child reached its failpoint within 120 s")
        .unwrap()
        .unwrap_or_else(|seen| panic!("the child ended before {failpoint}:\n{seen}"));
    child.0.kill().unwrap();
    let status = child.0.wait().unwrap();
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(
        status.signal(),
        Some(9),
        "killed by SIGKILL: {status}\n{seen}"
    );

    let engine = host.engine().await;
    let recovered = engine.recover().await;
    assert!(recovered.iter().all(|r| r.closed), "{recovered:?}");
    let state = lookout::engine::lock(&engine.store).standalone_in_flight();
    assert!(state.is_empty(), "the journal is closed: {state:?}");

    // Exactly once, under its own name, healthy, on the image `end` says.
    let named: Vec<String> = run(Command::new("docker").args([
        "ps",
        "-a",
        "--filter",
        &format!("label=lookout.test={}", host.scratch.id),
        "--format",
        "{{.Names}}",
    ]))
    .lines()
    .map(str::to_owned)
    .collect();
    let mut named_sorted = named.clone();
    named_sorted.sort();
    assert_eq!(
        named_sorted,
        [name.clone(), format!("{name}-side")],
        "no copy left over: {named:?}"
    );
    wait_healthy(&name);
    let after = inspect(&name);
    let want_image = host.image_id(if end == "old" { "1" } else { tag });
    assert_eq!(after["Image"], want_image, "ends on the {end} image");
    if end == "old" {
        assert_eq!(after["Id"], before["Id"], "the very same container");
    }
    assert_eq!(exec(&name, "cat /anon/data").trim(), "kept");
    let side = inspect(&format!("{name}-side"));
    assert_eq!(side["State"]["Status"], "running", "its dependent runs");
    assert_eq!(
        side["HostConfig"]["NetworkMode"],
        format!("container:{}", after["Id"].as_str().unwrap()),
        "in the namespace of the container that runs now"
    );
}

#[cfg(feature = "failpoints")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_after_pull_leaves_the_old_container() {
    kill_at("standalone_after_pull", "2", 20, "old").await;
}

#[cfg(feature = "failpoints")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_after_journal_leaves_the_old_container() {
    kill_at("standalone_after_journal", "2", 21, "old").await;
}

#[cfg(feature = "failpoints")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_after_rename_puts_the_old_container_back() {
    kill_at("standalone_after_rename", "2", 22, "old").await;
}

#[cfg(feature = "failpoints")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_after_stop_puts_the_old_container_back() {
    kill_at("standalone_after_stop", "2", 23, "old").await;
}

#[cfg(feature = "failpoints")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_after_create_gates_and_keeps_the_new_container() {
    kill_at("standalone_after_create", "2", 24, "new").await;
}

#[cfg(feature = "failpoints")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_during_the_health_gate_gates_and_keeps_the_new_container() {
    kill_at("standalone_during_health_gate", "2", 25, "new").await;
}

#[cfg(feature = "failpoints")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_after_the_gate_finishes_the_commit() {
    kill_at("standalone_after_gate", "2", 26, "new").await;
}

#[cfg(feature = "failpoints")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_while_a_dependent_is_recreated_finishes_it() {
    kill_at("standalone_during_dependents", "2", 29, "new").await;
}

#[cfg(feature = "failpoints")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_during_the_rollback_of_a_bad_image_finishes_it() {
    kill_at("standalone_during_rollback", "bad", 27, "old").await;
}

#[cfg(feature = "failpoints")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_during_the_gate_of_a_bad_image_rolls_back() {
    kill_at("standalone_during_health_gate", "bad", 28, "old").await;
}

/// The same steps on the in-memory runtime: what the engine asks of the seam, in order.
#[tokio::test]
async fn on_the_fake_runtime_an_update_and_a_failed_one_take_the_journaled_steps() {
    use crate::util::fakes::{FakeHost, WEB, digest};
    use lookout::runtime::Health;
    let host = FakeHost::new("standalone-fake", "");
    let old_id = host.runtime.run_standalone("solo", &format!("{WEB}:1.0.0"));
    let (engine, _deliveries) = host.engine();
    let fast = GateOptions {
        timeout: Duration::from_secs(2),
        stable: Duration::from_secs(0),
        probe_url: None,
        poll: Duration::from_millis(20),
    };
    let request = |tag: &str, d: &str| ContainerUpdate {
        service: "solo".into(),
        container: "solo".into(),
        candidate: Candidate {
            reference: ImageRef::parse(&format!("{WEB}:{tag}")).unwrap(),
            manifest_digest: d.to_owned(),
            platform_digest: None,
        },
        source: ImageSource::Registry { login: None },
        gate: fast.clone(),
        include_stopped: false,
        kind: ChangeKind::Update,
        actor: "test".into(),
    };

    let bad = digest("web bad");
    host.runtime.publish(WEB, &bad, Some(Health::Unhealthy));
    let report = engine.update_container(&request("bad", &bad)).await;
    assert!(
        matches!(report.result, UpdateResult::RolledBack { .. }),
        "{report:?}"
    );
    let old_image = host.runtime.image_id(&format!("{WEB}:1.0.0")).unwrap();
    assert_eq!(
        host.runtime.standalone(),
        [(
            "solo".to_owned(),
            old_id.clone(),
            old_image.clone(),
            "running".to_owned()
        )]
    );

    let good = digest("web 1.1.0");
    host.runtime.publish(WEB, &good, Some(Health::Healthy));
    let report = engine.update_container(&request("1.1.0", &good)).await;
    assert_eq!(report.result, UpdateResult::Updated, "{report:?}");
    let now = host.runtime.standalone();
    assert_eq!(now.len(), 1, "{now:?}");
    assert_eq!(now[0].0, "solo");
    assert_ne!(now[0].1, old_id);
    assert_eq!(
        Some(now[0].2.clone()),
        host.runtime.image_id(&format!("{WEB}@{good}"))
    );
    let calls: Vec<String> = host
        .runtime
        .calls()
        .into_iter()
        .filter(|c| !c.starts_with("tag ") && !c.starts_with("pull "))
        .collect();
    let new_id = &now[0].1;
    // The bad candidate: renamed, stopped, created, started, then undone; the good one kept.
    let bad_id = calls
        .iter()
        .find_map(|c| c.strip_prefix("start ").filter(|id| *id != old_id))
        .unwrap()
        .to_owned();
    assert_eq!(
        calls,
        [
            format!("rename {old_id} solo-lookout-old"),
            format!("stop {old_id}"),
            "create solo".to_owned(),
            format!("start {bad_id}"),
            format!("remove container {bad_id}"),
            format!("rename {old_id} solo"),
            format!("start {old_id}"),
            format!("rename {old_id} solo-lookout-old"),
            format!("stop {old_id}"),
            "create solo".to_owned(),
            format!("start {new_id}"),
            format!("remove container {old_id}"),
        ]
    );
    let state = lookout::engine::lock(&engine.store);
    let history = &state.state().services["solo"].history;
    assert_eq!(history.len(), 2);
    assert!(state.standalone_in_flight().is_empty());
}

// ---------------------------------------------------------------------------------------------
// Through the pass and the command line, as operators run it

/// A standalone container for the command-line tests: images 1.0.0 and 1.1.0 pushed to a
/// loopback registry, and `docker run -d --name NAME` of 1.0.0 with `labels`. The container
/// (and what an update left) is removed by name, the images by the build's label.
struct Cli {
    name: String,
    image: String,
    scratch: Scratch,
    _registry: LocalRegistry,
    _images: Vec<TestImage>,
}

impl Cli {
    fn start(test: &str, labels: &[String]) -> Self {
        let scratch = Scratch::new(test);
        let registry = LocalRegistry::start(&scratch, RegistryAuth::Anonymous);
        let image = registry.image("sa/cli");
        let images = ["1.0.0", "1.1.0"]
            .into_iter()
            .map(|v| {
                let tag = format!("{image}:{v}");
                let built = TestImage::build(&scratch, &tag, v, crate::engine::HEALTHY);
                built.push(&tag);
                built
            })
            .collect();
        let name = format!("lookout-sa-{}", scratch.id);
        let mut cmd = Command::new("docker");
        cmd.args(["run", "-d", "--name", &name, "--network", "none"]);
        for l in labels {
            cmd.args(["--label", l]);
        }
        run(cmd.arg(format!("{image}:1.0.0")));
        Self {
            name,
            image,
            scratch,
            _registry: registry,
            _images: images,
        }
    }

    fn config(&self, body: &str) -> std::path::PathBuf {
        let path = self.scratch.join("lookout.toml");
        let text = format!(
            "state_file = \"{}\"\nhealth_stable = \"1s\"\nhealth_timeout = \"60s\"\n{body}",
            self.scratch.join("state.json").display()
        );
        std::fs::write(&path, text).unwrap();
        path
    }

    /// `lookout ARGS…`: exit code and stdout.
    fn lookout(&self, config: &std::path::Path, args: &[&str]) -> (i32, String) {
        let out = crate::util::lookout()
            .arg("--config")
            .arg(config)
            .args(args)
            .output()
            .unwrap();
        eprintln!(
            "lookout {args:?}: {}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    }

    /// The image the container named NAME runs, as `Config.Image`, and its state.
    fn running(&self) -> (String, String) {
        let out = run(Command::new("docker").args([
            "inspect",
            "-f",
            "{{.Config.Image}} {{.State.Status}}",
            &self.name,
        ]));
        let (image, state) = out.trim().split_once(' ').unwrap();
        (image.to_owned(), state.to_owned())
    }
}

impl Drop for Cli {
    fn drop(&mut self) {
        let old = format!("{}-lookout-old", self.name);
        let _ = Command::new("docker")
            .args(["rm", "-fv", &self.name, &old])
            .output();
        crate::util::docker::remove_labelled(&self.scratch.id);
    }
}

#[test]
fn a_configured_container_is_updated_by_lookout_update_and_rolled_back_by_lookout_rollback() {
    let host = Cli::start(
        "standalone-cli",
        &["lookout.test.kind=standalone-cli".to_owned()],
    );
    let config = host.config(&format!(
        "[[services]]\nname = \"web\"\ncontainer = \"{}\"\nimage = \"{}:1.0.0\"\npolicy = \"semver\"\n",
        host.name, host.image
    ));
    let (code, out) = host.lookout(&config, &["update", "--json"]);
    assert_eq!(code, 0, "{out}");
    let reports: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(reports[0]["result"], "updated", "{reports}");
    assert_eq!(
        host.running(),
        (format!("{}:1.1.0", host.image), "running".to_owned())
    );
    let (code, out) = host.lookout(&config, &["rollback", "web"]);
    assert_eq!(code, 0, "{out}");
    assert_eq!(
        host.running(),
        (format!("{}:1.0.0", host.image), "running".to_owned())
    );
}

#[test]
fn a_discovered_container_labelled_for_updates_is_updated_by_the_pass() {
    let scope = format!("standalone-discovered-{}", std::process::id());
    let host = Cli::start(
        "standalone-discovered",
        &[
            "lookout.action=update".to_owned(),
            "lookout.policy=semver".to_owned(),
            format!("com.centurylinklabs.watchtower.scope={scope}"),
        ],
    );
    // Only this test's container is in scope; every other container on the host is excluded.
    let config = host.config(&format!(
        "[discovery]\nenabled = true\ndefault_action = \"notify\"\nscope = \"{scope}\"\n"
    ));
    let (code, out) = host.lookout(&config, &["update", "--json"]);
    let reports: Value = serde_json::from_str(&out).unwrap();
    let mine: Vec<&Value> = reports
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["service"] == host.name.as_str())
        .collect();
    assert_eq!(mine.len(), 1, "{reports}");
    assert_eq!(mine[0]["result"], "updated", "{reports}");
    assert_eq!(code, 0, "{out}");
    assert_eq!(
        host.running(),
        (format!("{}:1.1.0", host.image), "running".to_owned())
    );
}

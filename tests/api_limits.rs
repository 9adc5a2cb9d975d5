//! The HTTP server of a real `lookout run` under a connection flood from loopback: 1,000 idle
//! connections and 1,000 unauthenticated slow 2 MB uploads, re-opened as soon as lookout closes
//! them, while `/healthz` is probed. The daemon runs with systemd's default file descriptor limit
//! (1,024) to show the connection cap keeps it below that. Also: signed hooks reach the real
//! binary, and the systemd unit raises the limit.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::watch;

use crate::util::daemon::{Daemon, fd_limit, get, open_fds, proc_status_bytes, request};
use crate::util::{Scratch, free_port};

const TOKEN: &str = "api-token-0123456789abcdef";
const HOOK_SECRET: &str = "hook-secret-0123456789abcdef";

const IDLE: usize = 1_000;
const UPLOADS: usize = 1_000;
const UPLOAD_BYTES: usize = 2_000_000;
/// How long the flood lasts: longer than lookout's 10 s header and body read timeouts, so slow
/// clients are seen being dropped.
const FLOOD: Duration = Duration::from_secs(16);
/// An idle client opens a new connection about this long after lookout closed its last one.
const RECONNECT: Duration = Duration::from_secs(1);
/// An upload client tries again about this long after lookout refused its last upload: about
/// 200 refused uploads a second, half of what the debug build answers on a busy 2-core machine
/// (lookout's answers cost CPU time; a request flood is a different attack than slow clients).
const RETRY: Duration = Duration::from_secs(5);
/// The flood's clients start over this time, as a flood ramps up.
const RAMP: Duration = Duration::from_secs(4);

/// What the flooding clients saw.
#[derive(Default)]
struct Seen {
    connected: AtomicU64,
    open: AtomicU64,
    peak_open: AtomicU64,
    closed_by_lookout: AtomicU64,
    connect_failed: AtomicU64,
    uploads_completed: AtomicU64,
    statuses: Mutex<BTreeMap<String, u64>>,
}

impl Seen {
    fn opened(&self) {
        self.connected.fetch_add(1, Ordering::Relaxed);
        let now = self.open.fetch_add(1, Ordering::Relaxed) + 1;
        self.peak_open.fetch_max(now, Ordering::Relaxed);
    }

    fn closed(&self) {
        self.open.fetch_sub(1, Ordering::Relaxed);
    }

    fn status(&self, answer: &[u8]) {
        let status = String::from_utf8_lossy(answer.get(9..12).unwrap_or(b"---")).into_owned();
        *self.statuses.lock().unwrap().entry(status).or_default() += 1;
    }

    fn count(&self, status: &str) -> u64 {
        self.statuses
            .lock()
            .unwrap()
            .get(status)
            .copied()
            .unwrap_or(0)
    }
}

/// Resolves when the flood ends.
async fn ended(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}

/// Waits about `pause` (±50 %); `false` when the flood ended meanwhile.
async fn pause(stop: &mut watch::Receiver<bool>, pause: Duration) -> bool {
    let ms = pause.as_millis() as u64;
    let wait = Duration::from_millis(fastrand::u64(ms / 2..ms * 3 / 2));
    tokio::select! {
        () = tokio::time::sleep(wait) => !*stop.borrow(),
        () = ended(stop) => false,
    }
}

/// Holds a connection open without sending anything, until lookout closes it; then again.
async fn idle_client(addr: String, mut stop: watch::Receiver<bool>, seen: Arc<Seen>) {
    loop {
        match TcpStream::connect(&addr).await {
            Ok(mut stream) => {
                seen.opened();
                let mut buf = [0u8; 512];
                loop {
                    tokio::select! {
                        read = stream.read(&mut buf) => {
                            if matches!(read, Ok(0) | Err(_)) {
                                seen.closed_by_lookout.fetch_add(1, Ordering::Relaxed);
                                break;
                            }
                        }
                        () = ended(&mut stop) => break,
                    }
                }
                seen.closed();
            }
            Err(_) => {
                seen.connect_failed.fetch_add(1, Ordering::Relaxed);
            }
        }
        if !pause(&mut stop, RECONNECT).await {
            return;
        }
    }
}

/// The request heads of the uploads: none carries a valid credential. The signed ones are read
/// (their signature covers the body), so they are sent chunked to make lookout read; the others
/// announce their 2 MB.
fn upload_head(kind: usize, addr: &str) -> String {
    let now = jiff::Timestamp::now().as_second();
    let zeros = "0".repeat(64);
    match kind % 5 {
        0 => format!(
            "POST /hooks/github HTTP/1.1\r\nhost: {addr}\r\nx-github-event: package\r\nx-hub-signature-256: sha256={zeros}\r\ntransfer-encoding: chunked\r\n\r\n"
        ),
        1 => format!(
            "POST /hooks/registry HTTP/1.1\r\nhost: {addr}\r\nx-lookout-signature: t={now},v1={zeros}\r\ntransfer-encoding: chunked\r\n\r\n"
        ),
        2 => format!(
            "POST /hooks/registry HTTP/1.1\r\nhost: {addr}\r\ncontent-length: {UPLOAD_BYTES}\r\n\r\n"
        ),
        3 => format!(
            "POST /api/v1/check HTTP/1.1\r\nhost: {addr}\r\ncontent-length: {UPLOAD_BYTES}\r\n\r\n"
        ),
        _ => format!(
            "POST /hooks/dockerhub/not-the-secret HTTP/1.1\r\nhost: {addr}\r\ncontent-length: {UPLOAD_BYTES}\r\n\r\n"
        ),
    }
}

/// Sends a 2 MB body slowly (4 KiB every 100 ms) until lookout answers or closes; then again.
async fn upload_client(
    kind: usize,
    addr: String,
    mut stop: watch::Receiver<bool>,
    seen: Arc<Seen>,
) {
    let chunked = kind % 5 < 2;
    let piece = vec![b'x'; 4096];
    let chunk = [format!("{:x}\r\n", piece.len()).as_bytes(), &piece, b"\r\n"].concat();
    loop {
        let Ok(stream) = TcpStream::connect(&addr).await else {
            seen.connect_failed.fetch_add(1, Ordering::Relaxed);
            if !pause(&mut stop, RETRY).await {
                return;
            }
            continue;
        };
        seen.opened();
        let (mut rx, mut tx) = stream.into_split();
        let mut sent = 0;
        let mut answer = Vec::new();
        let mut buf = [0u8; 512];
        if tx
            .write_all(upload_head(kind, &addr).as_bytes())
            .await
            .is_ok()
        {
            loop {
                tokio::select! {
                    read = rx.read(&mut buf) => match read {
                        Ok(0) | Err(_) => {
                            seen.closed_by_lookout.fetch_add(1, Ordering::Relaxed);
                            break;
                        }
                        Ok(n) => {
                            answer.extend_from_slice(&buf[..n]);
                            if answer.len() >= 12 {
                                break;
                            }
                        }
                    },
                    () = ended(&mut stop) => break,
                    () = tokio::time::sleep(Duration::from_millis(100)) => {
                        if sent >= UPLOAD_BYTES {
                            seen.uploads_completed.fetch_add(1, Ordering::Relaxed);
                            break;
                        }
                        let bytes: &[u8] = if chunked { &chunk } else { &piece };
                        if tx.write_all(bytes).await.is_err() {
                            seen.closed_by_lookout.fetch_add(1, Ordering::Relaxed);
                            break;
                        }
                        sent += piece.len();
                    }
                }
            }
        }
        if !answer.is_empty() {
            seen.status(&answer);
        }
        seen.closed();
        drop((rx, tx));
        if !pause(&mut stop, RETRY).await {
            return;
        }
    }
}

/// Lets this test process open the flood's sockets.
fn raise_own_fd_limit(wanted: u64) {
    use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
    let limit = getrlimit(Resource::Nofile);
    let hard = limit.maximum.unwrap_or(u64::MAX);
    assert!(
        hard >= wanted,
        "the flood needs {wanted} file descriptors; the hard limit is {hard}"
    );
    if limit.current.is_some_and(|soft| soft < wanted) {
        setrlimit(
            Resource::Nofile,
            Rlimit {
                current: Some(wanted),
                maximum: limit.maximum,
            },
        )
        .expect("raise RLIMIT_NOFILE");
    }
}

/// One flood at a time: they measure time and memory.
static FLOODS: Mutex<()> = Mutex::new(());

/// `LimitNOFILE=` of the systemd unit, or the hard limit of this machine when that is lower
/// (both are far above the connection caps).
fn deployed_fd_limit() -> u64 {
    let hard = rustix::process::getrlimit(rustix::process::Resource::Nofile)
        .maximum
        .unwrap_or(u64::MAX);
    unit_fd_limit().min(hard)
}

/// `LimitNOFILE=` of the systemd unit.
fn unit_fd_limit() -> u64 {
    let unit = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/systemd/lookout.service"),
    )
    .unwrap();
    unit.lines()
        .find_map(|l| l.strip_prefix("LimitNOFILE="))
        .expect("LimitNOFILE= in the unit")
        .trim()
        .parse()
        .expect("LimitNOFILE= is a number")
}

/// A `lookout run` with no services, the API token and the hook secret, in its own folder.
fn daemon(name: &str, nofile: u64) -> (Scratch, Daemon) {
    let scratch = Scratch::new(name);
    let addr = format!("127.0.0.1:{}", free_port());
    let config = scratch.write(
        "lookout.toml",
        format!(
            "state_file = \"{}\"\nlisten = \"{addr}\"\napi_token = \"{TOKEN}\"\nhook_secret = \"{HOOK_SECRET}\"\nfirst_check_at_start = false\n",
            scratch.join("state/state.json").display()
        ),
    );
    let mut daemon = Daemon::start(&config, &addr, &scratch.join("lookout.log"), Some(nofile));
    daemon.wait_healthy(Duration::from_secs(30));
    assert_eq!(fd_limit(daemon.pid()), nofile);
    (scratch, daemon)
}

/// What a flood showed, measured from both sides.
struct Flood {
    seen: Arc<Seen>,
    /// Each `/healthz` probe: how long it took and the status, if it answered.
    probes: Vec<(Duration, Option<u16>)>,
    fds_before: usize,
    peak_fds: usize,
    peak_rss: u64,
    hwm: u64,
    report: String,
}

/// Floods `daemon` with `idle` silent connections and `uploads` slow uploads for `duration`,
/// probing `/healthz` every 250 ms from a fresh connection; `during` runs once, mid-flood.
fn flood(
    daemon: &Daemon,
    idle: usize,
    uploads: usize,
    duration: Duration,
    during: impl FnOnce(),
) -> Flood {
    let pid = daemon.pid();
    let addr = daemon.addr.clone();
    let fds_before = open_fds(pid);
    let (stop_tx, stop) = watch::channel(false);
    let seen = Arc::new(Seen::default());
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    for i in 0..idle.max(uploads) {
        let delay = RAMP.mul_f64(i as f64 / idle.max(uploads) as f64);
        if i < idle {
            let (a, s, n) = (addr.clone(), stop.clone(), seen.clone());
            runtime.spawn(async move {
                tokio::time::sleep(delay).await;
                idle_client(a, s, n).await;
            });
        }
        if i < uploads {
            let (a, s, n) = (addr.clone(), stop.clone(), seen.clone());
            runtime.spawn(async move {
                tokio::time::sleep(delay).await;
                upload_client(i, a, s, n).await;
            });
        }
    }
    std::thread::sleep(RAMP + Duration::from_secs(1));
    let started = Instant::now();
    let mut probes = Vec::new();
    let (mut peak_fds, mut peak_rss) = (0, 0);
    let mut during = Some(during);
    while started.elapsed() < duration {
        let t = Instant::now();
        let result = get(&addr, "/healthz", None);
        probes.push((t.elapsed(), result.map(|(status, _)| status).ok()));
        peak_fds = peak_fds.max(open_fds(pid));
        peak_rss = peak_rss.max(proc_status_bytes(pid, "VmRSS"));
        if started.elapsed() > duration / 2
            && let Some(f) = during.take()
        {
            f();
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    let _ = stop_tx.send(true);
    runtime.shutdown_timeout(Duration::from_secs(5));
    let hwm = proc_status_bytes(pid, "VmHWM");
    let mut sorted: Vec<Duration> = probes.iter().map(|(d, _)| *d).collect();
    sorted.sort();
    let report = format!(
        "{} probes: median {:?}, slowest {:?}, {} failed; flood: {} connections opened, {} open at peak, {} closed by lookout, {} connects failed, {} uploads completed, answers {:?}; lookout: {fds_before} fds before, {peak_fds} at peak (limit {}), RSS peak {} MB, VmHWM {} MB",
        probes.len(),
        sorted[sorted.len() / 2],
        sorted[sorted.len() - 1],
        probes.iter().filter(|(_, s)| *s != Some(200)).count(),
        seen.connected.load(Ordering::Relaxed),
        seen.peak_open.load(Ordering::Relaxed),
        seen.closed_by_lookout.load(Ordering::Relaxed),
        seen.connect_failed.load(Ordering::Relaxed),
        seen.uploads_completed.load(Ordering::Relaxed),
        seen.statuses.lock().unwrap(),
        fd_limit(pid),
        peak_rss / 1_000_000,
        hwm / 1_000_000,
    );
    eprintln!("{report}");
    Flood {
        seen,
        probes,
        fds_before,
        peak_fds,
        peak_rss,
        hwm,
        report,
    }
}

/// After a flood, lookout lets go of every connection.
fn wait_for_fds(pid: u32, at_most: usize) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while open_fds(pid) > at_most && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(
        open_fds(pid) <= at_most,
        "{} fds open after the flood, at most {at_most} expected",
        open_fds(pid)
    );
}

#[test]
fn healthz_answers_and_memory_stays_bounded_under_a_connection_flood() {
    let _one = FLOODS.lock().unwrap_or_else(|p| p.into_inner());
    raise_own_fd_limit(8192);
    // As deployed: the unit's file descriptor limit.
    let (_scratch, daemon) = daemon("api-limits-flood", deployed_fd_limit());
    let pid = daemon.pid();
    let f = flood(&daemon, IDLE, UPLOADS, FLOOD, || {});
    let report = &f.report;

    // The flood was real: the idle clients held their connections at once, every upload
    // client tried.
    assert!(
        f.seen.connected.load(Ordering::Relaxed) >= (IDLE + UPLOADS) as u64
            && f.seen.peak_open.load(Ordering::Relaxed) >= IDLE as u64,
        "the flood did not get going: {report}"
    );
    // Every probe answered, each within 1 s.
    for (i, (took, status)) in f.probes.iter().enumerate() {
        assert_eq!(*status, Some(200), "probe {i} failed: {report}");
        assert!(
            *took < Duration::from_secs(1),
            "probe {i} took {took:?}: {report}"
        );
    }
    assert!(
        f.hwm < 100_000_000,
        "RSS peaked at {} bytes: {report}",
        f.hwm
    );
    assert!(f.peak_rss < 100_000_000, "{report}");
    // No upload got through: lookout refused before reading (401; 413 for a body announced or
    // read past the cap), dropped the slow ones at the body deadline (408), or had no permit
    // to read one more unauthenticated body (503).
    assert_eq!(
        f.seen.uploads_completed.load(Ordering::Relaxed),
        0,
        "{report}"
    );
    assert!(f.seen.count("401") > 0, "{report}");
    assert!(
        f.seen.count("408") > 0,
        "slow signed uploads are dropped: {report}"
    );
    let statuses = f.seen.statuses.lock().unwrap().clone();
    assert!(
        statuses
            .keys()
            .all(|s| ["401", "408", "413", "503"].contains(&s.as_str())),
        "{report}"
    );
    // Silent connections are closed after the header read timeout.
    assert!(
        f.seen.closed_by_lookout.load(Ordering::Relaxed) >= IDLE as u64,
        "{report}"
    );

    wait_for_fds(pid, f.fds_before + 5);
    assert_eq!(
        get(&daemon.addr, "/api/v1/services", Some(TOKEN))
            .unwrap()
            .0,
        200
    );
    let log = daemon.log();
    assert!(!log.contains("cannot accept"), "{log}");
    assert!(!log.contains(HOOK_SECRET) && !log.contains(TOKEN), "{log}");
    assert_eq!(daemon.stop(Duration::from_secs(15)), 0);
}

/// With systemd's default limit (1,024 descriptors, as without the unit's `LimitNOFILE=`), 2,000
/// silent connections cannot all be held: lookout stays under the limit, keeps accepting,
/// answers `/healthz`, and reloads on SIGHUP meanwhile (it needs a descriptor to read the file).
#[test]
fn with_systemd_s_default_descriptor_limit_lookout_stays_under_it() {
    let _one = FLOODS.lock().unwrap_or_else(|p| p.into_inner());
    raise_own_fd_limit(8192);
    let (_scratch, daemon) = daemon("api-limits-fds", 1024);
    let pid = daemon.pid();
    let f = flood(&daemon, 2_000, 0, Duration::from_secs(6), || {
        let _ = rustix::process::kill_process(
            rustix::process::Pid::from_raw(pid as i32).unwrap(),
            rustix::process::Signal::HUP,
        );
    });
    let report = &f.report;
    // More connections came than lookout may hold; it closed the oldest to make room.
    assert!(f.seen.peak_open.load(Ordering::Relaxed) >= 768, "{report}");
    assert!(
        f.seen.closed_by_lookout.load(Ordering::Relaxed) >= 2_000,
        "{report}"
    );
    assert!(f.peak_fds < 1024, "{report}");
    for (i, (took, status)) in f.probes.iter().enumerate() {
        assert_eq!(*status, Some(200), "probe {i} failed: {report}");
        assert!(
            *took < Duration::from_secs(1),
            "probe {i} took {took:?}: {report}"
        );
    }
    let log = daemon.log();
    assert!(
        log.contains("configuration reloaded"),
        "SIGHUP during the flood:\n{log}"
    );
    assert!(log.contains("HTTP connection limit reached"), "{log}");
    assert!(
        !log.contains("cannot accept") && !log.contains("Too many open files"),
        "{log}"
    );
    wait_for_fds(pid, f.fds_before + 5);
    assert_eq!(daemon.stop(Duration::from_secs(15)), 0);
}

#[test]
fn signed_hooks_reach_the_daemon_and_replays_do_not() {
    let (_scratch, daemon) = daemon("api-limits-hooks", deployed_fd_limit());
    let addr = daemon.addr.clone();
    let secret = HOOK_SECRET.as_bytes();

    let event = format!(
        r#"{{"events":[{{"id":"ev-1","timestamp":"{}","action":"push","target":{{"mediaType":"application/vnd.oci.image.manifest.v1+json","repository":"team/app","tag":"1.0"}},"request":{{"host":"127.0.0.1:5000"}}}}]}}"#,
        jiff::Timestamp::now()
    );
    let now = jiff::Timestamp::now().as_second();
    let signed = lookout::api::sign_lookout(secret, now, event.as_bytes());
    let post = |path: &str, headers: &[(&str, &str)], body: &str| {
        request(&addr, "POST", path, headers, body.as_bytes()).unwrap()
    };
    let (status, body) = post(
        "/hooks/registry",
        &[("x-lookout-signature", &signed)],
        &event,
    );
    assert_eq!((status, body.as_str()), (202, "{\"checking\":[]}"));
    assert_eq!(
        post(
            "/hooks/registry",
            &[("x-lookout-signature", &signed)],
            &event
        )
        .0,
        409,
        "the same signed delivery again"
    );
    // The same event relayed again with a new signature: ignored, and 2xx so distribution
    // does not retry it.
    let resigned = lookout::api::sign_lookout(secret, now + 1, event.as_bytes());
    let (status, body) = post(
        "/hooks/registry",
        &[("x-lookout-signature", &resigned)],
        &event,
    );
    assert_eq!(
        (status, body.as_str()),
        (202, "{\"checking\":[],\"replayed\":1}")
    );
    let stale = lookout::api::sign_lookout(secret, now - 3600, event.as_bytes());
    assert_eq!(
        post(
            "/hooks/registry",
            &[("x-lookout-signature", &stale)],
            &event
        )
        .0,
        401
    );

    let package = r#"{"action":"published","package":{"name":"app","namespace":"team","package_type":"CONTAINER","package_version":{"container_metadata":{"tag":{"name":"1.0"}},"package_url":"ghcr.io/team/app:1.0"}}}"#;
    let github = lookout::telemetry::signature(secret, package.as_bytes());
    let headers = [
        ("x-github-event", "package"),
        ("x-github-delivery", "72d3162e-cc78-11e3-81ab-4c9367dc0958"),
        ("x-hub-signature-256", github.as_str()),
    ];
    assert_eq!(post("/hooks/github", &headers, package).0, 202);
    assert_eq!(post("/hooks/github", &headers, package).0, 409);
    assert_eq!(
        post(&format!("/hooks/registry/{HOOK_SECRET}"), &[], &event).0,
        401,
        "a secret in the URL is for Docker Hub only"
    );

    let log = daemon.log();
    assert!(log.contains("push hook"), "{log}");
    assert!(!log.contains(HOOK_SECRET), "{log}");
    assert_eq!(daemon.stop(Duration::from_secs(15)), 0);
}

#[test]
fn the_systemd_unit_raises_the_file_descriptor_limit() {
    // The connection caps take all but 256 descriptors of the limit, and at most 512 + 4,096.
    let limit = unit_fd_limit();
    assert!(limit >= 512 + 4096 + 256, "LimitNOFILE={limit}");
}

//! `lookout run` as a child process, as operators run it: started on a configuration, asked to
//! stop with SIGTERM, killed when dropped (after a test failure). Also what a test reads about
//! the process from `/proc` (memory, open descriptors).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running `lookout run`.
pub(crate) struct Daemon {
    child: Child,
    pub addr: String,
    log: PathBuf,
}

impl Daemon {
    /// Starts `lookout --config CONFIG run` with stderr in `log`. With `nofile`, the process
    /// runs with that file descriptor limit (soft and hard), as systemd's `LimitNOFILE=` sets it.
    pub(crate) fn start(config: &Path, addr: &str, log: &Path, nofile: Option<u64>) -> Self {
        Self::start_with_env(config, addr, log, nofile, &[])
    }

    /// [`Daemon::start`] with extra environment variables (`LOOKOUT_FAILPOINT`, …).
    pub(crate) fn start_with_env(
        config: &Path,
        addr: &str,
        log: &Path,
        nofile: Option<u64>,
        env: &[(&str, &str)],
    ) -> Self {
        let binary = env!("CARGO_BIN_EXE_lookout");
        let mut cmd = match nofile {
            // The shell sets the limit and replaces itself with lookout: same process id.
            Some(n) => {
                let mut c = Command::new("sh");
                c.arg("-c")
                    .arg(format!("ulimit -n {n} && exec \"$0\" \"$@\""))
                    .arg(binary);
                c
            }
            None => Command::new(binary),
        };
        let child = cmd
            .arg("--config")
            .arg(config)
            .arg("run")
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(log).expect("create the daemon's log"))
            .spawn()
            .expect("start lookout run");
        Self {
            child,
            addr: addr.to_owned(),
            log: log.to_owned(),
        }
    }

    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Where lookout's stderr goes.
    pub(crate) fn log_path(&self) -> &Path {
        &self.log
    }

    /// What lookout wrote to stderr so far.
    pub(crate) fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits until `/healthz` answers 200.
    pub(crate) fn wait_healthy(&mut self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("lookout run exited ({status}) at start:\n{}", self.log());
            }
            if get(&self.addr, "/healthz", None).is_ok_and(|(status, _)| status == 200) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "/healthz did not answer within {timeout:?}:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Sends `signal` (`TERM`, `HUP`, …) to the process.
    pub(crate) fn signal(&self, signal: rustix::process::Signal) {
        let pid = rustix::process::Pid::from_child(&self.child);
        rustix::process::kill_process(pid, signal).expect("signal lookout run");
    }

    /// SIGTERM, then waits up to `timeout` for the exit code.
    pub(crate) fn stop(self, timeout: Duration) -> i32 {
        self.stop_timed(timeout).0
    }

    /// SIGTERM, then the exit code and how long the process took to end after it.
    pub(crate) fn stop_timed(mut self, timeout: Duration) -> (i32, Duration) {
        self.signal(rustix::process::Signal::TERM);
        let sent = Instant::now();
        while sent.elapsed() < timeout {
            if let Ok(Some(status)) = self.child.try_wait() {
                return (status.code().unwrap_or(-1), sent.elapsed());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!(
            "lookout run did not stop within {timeout:?} of SIGTERM\n{}",
            self.log()
        );
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One `Connection: close` request over a fresh socket: (status, body, chunked bodies decoded).
/// Errors (refused, reset, timed out after 10 s) are returned, not panicked on.
pub(crate) fn request(
    addr: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> std::io::Result<(u16, String)> {
    request_within(addr, method, path, headers, body, Duration::from_secs(10))
}

/// A request to the API as a client waiting for a slow answer (an update runs while the
/// request waits): bearer `token` when given, a JSON `body`; panics when there is no answer
/// within 180 s.
pub(crate) fn http(
    addr: &str,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: &str,
) -> (u16, String) {
    let auth = token.map(|t| format!("Bearer {t}"));
    let mut headers = vec![("content-type", "application/json")];
    if let Some(auth) = auth.as_deref() {
        headers.push(("authorization", auth));
    }
    request_within(
        addr,
        method,
        path,
        &headers,
        body.as_bytes(),
        Duration::from_secs(180),
    )
    .unwrap_or_else(|e| panic!("{method} {path} on {addr}: {e}"))
}

fn request_within(
    addr: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
    timeout: Duration,
) -> std::io::Result<(u16, String)> {
    let mut stream = TcpStream::connect(addr)?;
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(Duration::from_secs(10)))?;
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nhost: {addr}\r\ncontent-length: {}\r\nconnection: close\r\n",
        body.len()
    );
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes())?;
    stream.write_all(body)?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw)?;
    let raw = String::from_utf8_lossy(&raw);
    let status = raw
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("not an HTTP answer: {raw:?}")))?;
    let (head, body) = raw.split_once("\r\n\r\n").unwrap_or((&raw, ""));
    let body = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        dechunk(body)
    } else {
        body.to_owned()
    };
    Ok((status, body))
}

/// The data of a chunked body.
fn dechunk(mut rest: &str) -> String {
    let mut out = String::new();
    while let Some((size, after)) = rest.split_once("\r\n") {
        let Ok(n) = usize::from_str_radix(size.trim(), 16) else {
            break;
        };
        if n == 0 || after.len() < n {
            break;
        }
        out.push_str(&after[..n]);
        rest = after[n..].trim_start_matches("\r\n");
    }
    out
}

/// `GET path`, with the bearer token when given.
pub(crate) fn get(addr: &str, path: &str, token: Option<&str>) -> std::io::Result<(u16, String)> {
    let auth = token.map(|t| format!("Bearer {t}"));
    let headers: Vec<(&str, &str)> = auth
        .as_deref()
        .map(|a| vec![("authorization", a)])
        .unwrap_or_default();
    request(addr, "GET", path, &headers, b"")
}

/// A `kB` field of `/proc/PID/status` (`VmRSS`, `VmHWM`), in bytes.
pub(crate) fn proc_status_bytes(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.trim().strip_suffix("kB")?.trim().parse::<u64>().ok())
        .map(|kb| kb * 1024)
        .unwrap_or_else(|| panic!("no {field} in /proc/{pid}/status"))
}

/// How many file descriptors the process has open.
pub(crate) fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| d.count())
        .unwrap_or(0)
}

/// The file descriptor soft limit of the process.
pub(crate) fn fd_limit(pid: u32) -> u64 {
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).unwrap();
    limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .and_then(|l| l.split_whitespace().nth(3)?.parse().ok())
        .expect("Max open files in /proc/PID/limits")
}

//! systemd's readiness and watchdog protocol (`sd_notify`), without libsystemd.
//!
//! Under a `Type=notify` unit, systemd passes the path of a datagram socket in `$NOTIFY_SOCKET`
//! (a file path, or `@name` for Linux's abstract namespace) and, with `WatchdogSec=`, the
//! watchdog period in `$WATCHDOG_USEC`. lookout sends `READY=1` once it has started, `WATCHDOG=1`
//! while its loop is alive, `RELOADING=1` / `READY=1` around a reload and `STOPPING=1` on the way
//! out. Outside systemd (no `$NOTIFY_SOCKET`) every call does nothing and returns `Ok(false)`.
//!
//! The free functions read the process environment; [`Notifier`] and [`watchdog_interval_from`]
//! take plain values so tests can point them at a socket of their own.

use std::ffi::OsStr;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::path::Path;
use std::time::Duration;

/// Where notifications go: the socket systemd named in `$NOTIFY_SOCKET`.
#[derive(Debug)]
pub struct Notifier {
    addr: SocketAddr,
}

impl Notifier {
    /// The notifier for this process, or `None` when it does not run under a notify unit.
    pub fn from_env() -> io::Result<Option<Self>> {
        Self::from_value(std::env::var_os("NOTIFY_SOCKET").as_deref())
    }

    /// Reads a `$NOTIFY_SOCKET` value: an absolute path, or `@name` for an abstract socket.
    /// `None` or an empty value means "not under systemd".
    pub fn from_value(value: Option<&OsStr>) -> io::Result<Option<Self>> {
        let Some(value) = value.filter(|v| !v.is_empty()) else {
            return Ok(None);
        };
        let bytes = value.as_bytes();
        let addr = if let Some(name) = bytes.strip_prefix(b"@") {
            abstract_addr(name)?
        } else if bytes.starts_with(b"/") {
            SocketAddr::from_pathname(Path::new(value))?
        } else {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "NOTIFY_SOCKET={} is neither an absolute path nor an @abstract name",
                    value.to_string_lossy()
                ),
            ));
        };
        Ok(Some(Self { addr }))
    }

    /// Sends one notification: newline-separated `KEY=VALUE` assignments such as `READY=1`.
    pub fn send(&self, state: &str) -> io::Result<()> {
        let socket = UnixDatagram::unbound()?;
        let sent = socket.send_to_addr(state.as_bytes(), &self.addr)?;
        if sent != state.len() {
            return Err(io::Error::new(
                io::ErrorKind::WriteZero,
                format!("sent {sent} of {} bytes to NOTIFY_SOCKET", state.len()),
            ));
        }
        Ok(())
    }
}

#[cfg(any(target_os = "linux", target_os = "android"))]
fn abstract_addr(name: &[u8]) -> io::Result<SocketAddr> {
    #[cfg(target_os = "android")]
    use std::os::android::net::SocketAddrExt;
    #[cfg(target_os = "linux")]
    use std::os::linux::net::SocketAddrExt;
    SocketAddr::from_abstract_name(name)
}

#[cfg(not(any(target_os = "linux", target_os = "android")))]
fn abstract_addr(_name: &[u8]) -> io::Result<SocketAddr> {
    Err(io::Error::new(
        io::ErrorKind::Unsupported,
        "abstract unix sockets exist only on Linux",
    ))
}

/// Sends `state` to `$NOTIFY_SOCKET`. `Ok(false)` when there is none (not under systemd).
pub fn notify(state: &str) -> io::Result<bool> {
    match Notifier::from_env()? {
        Some(n) => n.send(state).map(|()| true),
        None => Ok(false),
    }
}

/// Start-up finished: systemd marks the unit active (also sent after a reload finished).
pub fn ready() -> io::Result<bool> {
    notify("READY=1")
}

/// The main loop is alive; send at least every [`watchdog_interval`] / 2.
pub fn watchdog() -> io::Result<bool> {
    notify("WATCHDOG=1")
}

/// Shutting down: systemd shows the unit as deactivating.
pub fn stopping() -> io::Result<bool> {
    notify("STOPPING=1")
}

/// Reloading the configuration; send [`ready`] when done.
pub fn reloading() -> io::Result<bool> {
    notify("RELOADING=1")
}

/// The watchdog period systemd expects (`WatchdogSec=`), if it watches this process.
/// Send [`watchdog`] at about half this interval.
pub fn watchdog_interval() -> Option<Duration> {
    let usec = std::env::var("WATCHDOG_USEC").ok();
    let pid = std::env::var("WATCHDOG_PID").ok();
    watchdog_interval_from(usec.as_deref(), pid.as_deref(), std::process::id())
}

/// [`watchdog_interval`] from plain values: `WATCHDOG_USEC` must be a positive number of
/// microseconds, and `WATCHDOG_PID`, when set, must name this process (`own_pid`) — otherwise the
/// variables were meant for another process (a parent that did not unset them).
pub fn watchdog_interval_from(
    usec: Option<&str>,
    pid: Option<&str>,
    own_pid: u32,
) -> Option<Duration> {
    if let Some(pid) = pid
        && pid.trim().parse::<u32>().ok() != Some(own_pid)
    {
        return None;
    }
    let usec: u64 = usec?.trim().parse().ok()?;
    (usec > 0).then(|| Duration::from_micros(usec))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A datagram socket bound where systemd's would be; returns what one notification carried.
    struct FakeSystemd {
        socket: UnixDatagram,
        _dir: tempfile::TempDir,
        path: std::path::PathBuf,
    }

    impl FakeSystemd {
        fn bind() -> Self {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("notify");
            let socket = UnixDatagram::bind(&path).unwrap();
            socket
                .set_read_timeout(Some(Duration::from_secs(5)))
                .unwrap();
            Self {
                socket,
                _dir: dir,
                path,
            }
        }

        fn receive(&self) -> String {
            let mut buf = [0u8; 4096];
            let n = self.socket.recv(&mut buf).unwrap();
            String::from_utf8(buf[..n].to_vec()).unwrap()
        }
    }

    fn notifier(value: &str) -> Notifier {
        Notifier::from_value(Some(OsStr::new(value)))
            .unwrap()
            .expect("a notifier for a non-empty value")
    }

    #[test]
    fn sends_each_state_as_one_datagram_to_a_path_socket() {
        let systemd = FakeSystemd::bind();
        let n = notifier(systemd.path.to_str().unwrap());
        for state in ["READY=1", "WATCHDOG=1", "RELOADING=1", "STOPPING=1"] {
            n.send(state).unwrap();
            assert_eq!(systemd.receive(), state);
        }
        n.send("STATUS=checking 3 services\nWATCHDOG=1").unwrap();
        assert_eq!(systemd.receive(), "STATUS=checking 3 services\nWATCHDOG=1");
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn sends_to_an_abstract_socket_named_with_at() {
        use std::os::linux::net::SocketAddrExt;
        let name = format!("lookout-notify-test-{}", std::process::id());
        let addr = SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
        let socket = UnixDatagram::bind_addr(&addr).unwrap();
        socket
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        notifier(&format!("@{name}")).send("READY=1").unwrap();
        let mut buf = [0u8; 64];
        let n = socket.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"READY=1");
    }

    #[test]
    fn no_socket_means_not_under_systemd() {
        assert!(Notifier::from_value(None).unwrap().is_none());
        assert!(
            Notifier::from_value(Some(OsStr::new("")))
                .unwrap()
                .is_none()
        );
    }

    #[test]
    fn a_relative_socket_path_is_refused() {
        let err = Notifier::from_value(Some(OsStr::new("run/notify"))).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
        assert!(err.to_string().contains("run/notify"), "{err}");
    }

    #[test]
    fn a_socket_nobody_listens_on_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let n = notifier(dir.path().join("gone").to_str().unwrap());
        assert!(n.send("READY=1").is_err());
    }

    #[test]
    fn watchdog_interval_reads_usec_for_this_process_only() {
        let check = |usec, pid, expect: Option<u64>| {
            assert_eq!(
                watchdog_interval_from(usec, pid, 42),
                expect.map(Duration::from_micros),
                "WATCHDOG_USEC={usec:?} WATCHDOG_PID={pid:?}"
            );
        };
        check(Some("30000000"), None, Some(30_000_000));
        check(Some("30000000"), Some("42"), Some(30_000_000));
        check(Some("500"), Some(" 42 "), Some(500));
        check(Some("30000000"), Some("41"), None);
        check(Some("30000000"), Some("not-a-pid"), None);
        check(None, Some("42"), None);
        check(Some("0"), None, None);
        check(Some("-5"), None, None);
        check(Some("soon"), None, None);
    }

    /// Re-runs this test binary with only `test` selected, `LOOKOUT_NOTIFY_TEST_CHILD` set and
    /// `env` applied (`None` removes a variable), so the environment-reading functions can be
    /// tested without touching the test process's own environment.
    fn run_child(test: &str, env: &[(&str, Option<&OsStr>)]) {
        let mut cmd = std::process::Command::new(std::env::current_exe().unwrap());
        cmd.args(["--exact", test, "--nocapture", "--test-threads=1"])
            .env(CHILD, "1");
        for (name, value) in env {
            match value {
                Some(v) => cmd.env(name, v),
                None => cmd.env_remove(name),
            };
        }
        let out = cmd.output().unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success() && stdout.contains("1 passed"),
            "child {test} failed:\n{stdout}{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    const CHILD: &str = "LOOKOUT_NOTIFY_TEST_CHILD";

    #[test]
    fn the_free_functions_use_notify_socket_from_the_environment() {
        if std::env::var_os(CHILD).is_some() {
            assert!(ready().unwrap());
            assert!(watchdog().unwrap());
            assert!(reloading().unwrap());
            assert!(stopping().unwrap());
            assert_eq!(watchdog_interval(), Some(Duration::from_secs(20)));
            return;
        }
        let systemd = FakeSystemd::bind();
        run_child(
            "notify::tests::the_free_functions_use_notify_socket_from_the_environment",
            &[
                ("NOTIFY_SOCKET", Some(systemd.path.as_os_str())),
                ("WATCHDOG_USEC", Some(OsStr::new("20000000"))),
                ("WATCHDOG_PID", None),
            ],
        );
        let sent: Vec<String> = (0..4).map(|_| systemd.receive()).collect();
        assert_eq!(sent, ["READY=1", "WATCHDOG=1", "RELOADING=1", "STOPPING=1"]);
    }

    #[test]
    fn the_free_functions_do_nothing_outside_systemd() {
        if std::env::var_os(CHILD).is_some() {
            assert!(!ready().unwrap());
            assert!(!watchdog().unwrap());
            assert!(!stopping().unwrap());
            assert_eq!(watchdog_interval(), None);
            return;
        }
        run_child(
            "notify::tests::the_free_functions_do_nothing_outside_systemd",
            &[
                ("NOTIFY_SOCKET", None),
                ("WATCHDOG_USEC", None),
                ("WATCHDOG_PID", None),
            ],
        );
    }
}

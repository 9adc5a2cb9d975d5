//! systemd's readiness and watchdog protocol (`sd_notify`), spoken through the `sd-notify`
//! crate.
//!
//! Under a `Type=notify` unit, systemd passes the path of a datagram socket in `$NOTIFY_SOCKET`
//! and, with `WatchdogSec=`, the watchdog period in `$WATCHDOG_USEC`. lookout sends `READY=1`
//! once it has started, `WATCHDOG=1` while its loop is alive, `RELOADING=1` / `READY=1` around a
//! reload and `STOPPING=1` on the way out. Outside systemd (no `$NOTIFY_SOCKET`, or an empty
//! one) every call does nothing and returns `Ok(false)`.
//!
//! What the crate does not do: `$NOTIFY_SOCKET` must be a file path. An `@name` (Linux's
//! abstract namespace, which old systemd versions and some other service managers hand out) or
//! a `vsock:` address is not reached: the send fails with an error, which the daemon ignores,
//! so lookout runs on but systemd never hears it is ready.

use std::io;
use std::time::Duration;

use sd_notify::NotifyState;

/// Sends `states` as one datagram. `Ok(false)` when not under systemd.
fn send(states: &[NotifyState<'_>]) -> io::Result<bool> {
    if std::env::var_os("NOTIFY_SOCKET").is_none_or(|v| v.is_empty()) {
        return Ok(false);
    }
    sd_notify::notify(states).map(|()| true)
}

/// Start-up finished: systemd marks the unit active (also sent after a reload finished).
pub(crate) fn ready() -> io::Result<bool> {
    send(&[NotifyState::Ready])
}

/// The main loop is alive; send at least every [`watchdog_interval`] / 2.
pub(crate) fn watchdog() -> io::Result<bool> {
    send(&[NotifyState::Watchdog])
}

/// Shutting down: systemd shows the unit as deactivating.
pub(crate) fn stopping() -> io::Result<bool> {
    send(&[NotifyState::Stopping])
}

/// Reloading the configuration; send [`ready`] when done. Carries the monotonic time, which
/// systemd 253 and newer require with `RELOADING=1` (for `Type=notify-reload`).
pub(crate) fn reloading() -> io::Result<bool> {
    send(&[NotifyState::Reloading, NotifyState::monotonic_usec_now()?])
}

/// The watchdog period systemd expects (`WatchdogSec=`), if it watches this process: from
/// `$WATCHDOG_USEC`, unless `$WATCHDOG_PID` names another process (a parent that did not unset
/// them). Send [`watchdog`] at about half this interval. Never zero.
pub(crate) fn watchdog_interval() -> Option<Duration> {
    sd_notify::watchdog_enabled().filter(|every| !every.is_zero())
}

#[cfg(test)]
mod tests {
    //! The functions read the process environment, which a test must not change while other
    //! tests run in threads beside it. So each test that needs an environment runs this test
    //! binary again as a child with only itself selected and the environment set on the child.

    use std::ffi::OsStr;
    use std::os::unix::net::UnixDatagram;

    use super::*;

    /// A datagram socket bound where systemd's would be, in a folder of its own.
    struct FakeSystemd {
        socket: UnixDatagram,
        dir: tempfile::TempDir,
    }

    impl FakeSystemd {
        fn bind() -> Self {
            let dir = tempfile::tempdir().unwrap();
            let socket = UnixDatagram::bind(dir.path().join("notify")).unwrap();
            socket
                .set_read_timeout(Some(Duration::from_secs(5)))
                .unwrap();
            Self { socket, dir }
        }

        fn path(&self) -> std::path::PathBuf {
            self.dir.path().join("notify")
        }

        /// The next datagram, or a failure after 5 s.
        fn receive(&self) -> String {
            let mut buf = [0u8; 4096];
            let n = self
                .socket
                .recv(&mut buf)
                .expect("a notification within 5s");
            String::from_utf8(buf[..n].to_vec()).unwrap()
        }
    }

    const CHILD: &str = "LOOKOUT_NOTIFY_TEST_CHILD";
    const NOTIFY_VARS: [&str; 3] = ["NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID"];

    /// Whether this process is the child [`run_child`] started.
    fn in_child() -> bool {
        std::env::var_os(CHILD).is_some()
    }

    /// Re-runs this test binary with only `test` selected, [`CHILD`] set, the notify variables
    /// cleared and `env` applied; fails unless the child's test passed.
    fn run_child(test: &str, env: &[(&str, &OsStr)]) {
        let cmd = std::process::Command::new(std::env::current_exe().unwrap());
        run_child_command(cmd, test, env);
    }

    /// [`run_child`] with `WATCHDOG_PID` set to the child's own pid: a shell exports its pid
    /// and execs the test binary, which keeps it.
    fn run_child_watched(test: &str, env: &[(&str, &OsStr)]) {
        let mut cmd = std::process::Command::new("sh");
        cmd.args(["-c", "export WATCHDOG_PID=$$; exec \"$0\" \"$@\""])
            .arg(std::env::current_exe().unwrap());
        run_child_command(cmd, test, env);
    }

    fn run_child_command(mut cmd: std::process::Command, test: &str, env: &[(&str, &OsStr)]) {
        cmd.args(["--exact", test, "--nocapture", "--test-threads=1"])
            .env(CHILD, "1");
        for name in NOTIFY_VARS {
            cmd.env_remove(name);
        }
        cmd.envs(env.iter().copied());
        let out = cmd.output().unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success() && stdout.contains("1 passed"),
            "child {test} with {env:?} failed:\n{stdout}{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    #[test]
    fn each_notification_reaches_notify_socket_as_one_datagram() {
        if in_child() {
            assert!(ready().unwrap());
            assert!(watchdog().unwrap());
            assert!(reloading().unwrap());
            assert!(stopping().unwrap());
            assert_eq!(watchdog_interval(), Some(Duration::from_secs(20)));
            return;
        }
        let systemd = FakeSystemd::bind();
        run_child(
            "notify::tests::each_notification_reaches_notify_socket_as_one_datagram",
            &[
                ("NOTIFY_SOCKET", systemd.path().as_os_str()),
                ("WATCHDOG_USEC", OsStr::new("20000000")),
            ],
        );
        assert_eq!(systemd.receive(), "READY=1\n");
        assert_eq!(systemd.receive(), "WATCHDOG=1\n");
        let reloading = systemd.receive();
        let usec = reloading
            .strip_prefix("RELOADING=1\nMONOTONIC_USEC=")
            .and_then(|rest| rest.strip_suffix('\n'))
            .unwrap_or_else(|| panic!("{reloading:?}"));
        assert!(usec.parse::<u64>().is_ok_and(|n| n > 0), "{reloading:?}");
        assert_eq!(systemd.receive(), "STOPPING=1\n");
    }

    #[test]
    fn nothing_is_sent_outside_systemd() {
        if in_child() {
            assert!(!ready().unwrap());
            assert!(!watchdog().unwrap());
            assert!(!reloading().unwrap());
            assert!(!stopping().unwrap());
            assert_eq!(watchdog_interval(), None);
            return;
        }
        let test = "notify::tests::nothing_is_sent_outside_systemd";
        run_child(test, &[]);
        run_child(test, &[("NOTIFY_SOCKET", OsStr::new(""))]);
    }

    #[test]
    fn a_socket_that_cannot_be_reached_is_an_error_not_a_panic() {
        if in_child() {
            let err = ready().unwrap_err();
            assert!(
                matches!(
                    err.kind(),
                    io::ErrorKind::NotFound | io::ErrorKind::ConnectionRefused
                ),
                "{err:?}"
            );
            return;
        }
        let test = "notify::tests::a_socket_that_cannot_be_reached_is_an_error_not_a_panic";
        let dir = tempfile::tempdir().unwrap();
        run_child(
            test,
            &[("NOTIFY_SOCKET", dir.path().join("gone").as_os_str())],
        );
        // An abstract name is taken as a (missing) relative path: not supported by the crate.
        let name = format!("@lookout-notify-test-{}", std::process::id());
        run_child(test, &[("NOTIFY_SOCKET", OsStr::new(&name))]);
    }

    #[test]
    fn the_watchdog_interval_is_for_this_process_only_and_never_zero() {
        const WANT: &str = "LOOKOUT_NOTIFY_TEST_WANT_USEC";
        const OWN_PID: &str = "LOOKOUT_NOTIFY_TEST_OWN_PID";
        if in_child() {
            let want = std::env::var(WANT).unwrap();
            let want = (want != "none").then(|| Duration::from_micros(want.parse().unwrap()));
            assert_eq!(watchdog_interval(), want);
            if std::env::var_os(OWN_PID).is_some() {
                assert_eq!(
                    std::env::var("WATCHDOG_PID").ok(),
                    Some(std::process::id().to_string())
                );
            }
            return;
        }
        let test = "notify::tests::the_watchdog_interval_is_for_this_process_only_and_never_zero";
        // The child's pid is not known before it starts; pid 1 is never a test process.
        for (usec, pid, want) in [
            (Some("30000000"), None, "30000000"),
            (Some("30000000"), Some("1"), "none"),
            (Some("0"), None, "none"),
            (Some("soon"), None, "none"),
            (None, None, "none"),
        ] {
            let mut env = vec![(WANT, OsStr::new(want))];
            if let Some(usec) = usec {
                env.push(("WATCHDOG_USEC", OsStr::new(usec)));
            }
            if let Some(pid) = pid {
                env.push(("WATCHDOG_PID", OsStr::new(pid)));
            }
            run_child(test, &env);
        }
        run_child_watched(
            test,
            &[
                (WANT, OsStr::new("500")),
                (OWN_PID, OsStr::new("1")),
                ("WATCHDOG_USEC", OsStr::new("500")),
            ],
        );
    }
}

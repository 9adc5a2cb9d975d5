//! `lookout run` under a service manager that speaks systemd's notification protocol: a
//! datagram socket in `$NOTIFY_SOCKET` receives `READY=1` once the daemon serves, `WATCHDOG=1`
//! at half the `$WATCHDOG_USEC` period, `RELOADING=1` (with the monotonic time) and `READY=1`
//! around a SIGHUP reload, and `STOPPING=1` on SIGTERM.

use std::os::unix::net::UnixDatagram;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use crate::util::{Scratch, free_port, lookout};

/// The child, killed when dropped (after a failure).
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn signal(child: &Child, name: &str) {
    let status = std::process::Command::new("kill")
        .args([&format!("-{name}"), &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success(), "kill -{name} failed");
}

/// The next datagram other than `WATCHDOG=1`, waiting at most 30 s; counts the watchdog pings
/// in between.
fn next_state(socket: &UnixDatagram, pings: &mut u32) -> String {
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut buf = [0u8; 4096];
    while Instant::now() < deadline {
        let Ok(n) = socket.recv(&mut buf) else {
            continue;
        };
        let text = String::from_utf8_lossy(&buf[..n]).into_owned();
        if text == "WATCHDOG=1\n" {
            *pings += 1;
        } else {
            return text;
        }
    }
    panic!("no notification within 30 s");
}

#[test]
fn the_daemon_tells_systemd_when_it_is_ready_alive_reloading_and_stopping() {
    let scratch = Scratch::new("systemd-notify");
    let config = scratch.write(
        "lookout.toml",
        format!(
            "listen = \"127.0.0.1:{}\"\nstate_file = \"{}\"\ncheck_interval = \"1h\"\n\
             first_check_at_start = false\n",
            free_port(),
            scratch.join("state/state.json").display()
        ),
    );
    let path = scratch.join("notify");
    let socket = UnixDatagram::bind(&path).unwrap();
    socket
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let child = lookout()
        .arg("--config")
        .arg(&config)
        .arg("run")
        .env("NOTIFY_SOCKET", &path)
        // A 400 ms watchdog: lookout pings every 200 ms.
        .env("WATCHDOG_USEC", "400000")
        .env_remove("WATCHDOG_PID")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut daemon = Running(child);
    let mut pings = 0;

    assert_eq!(next_state(&socket, &mut pings), "READY=1\n");
    std::thread::sleep(Duration::from_secs(2));
    signal(&daemon.0, "HUP");
    let reloading = next_state(&socket, &mut pings);
    assert!(
        reloading.starts_with("RELOADING=1\nMONOTONIC_USEC="),
        "{reloading:?}"
    );
    assert_eq!(next_state(&socket, &mut pings), "READY=1\n");
    assert!(
        pings >= 5,
        "{pings} watchdog pings in 2 s at a 400 ms watchdog"
    );

    signal(&daemon.0, "TERM");
    assert_eq!(next_state(&socket, &mut pings), "STOPPING=1\n");
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = daemon.0.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "lookout run did not exit");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "{status:?}");
}

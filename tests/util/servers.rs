//! Real servers for the notification tests, on free loopback ports: aiosmtpd (PyPI) as the SMTP
//! server, with STARTTLS or implicit TLS and AUTH required, writing every mail it accepts as
//! one JSON line; Debian's mosquitto as the MQTT broker, with a password file and a TLS
//! listener, read and written with mosquitto_sub and mosquitto_pub. Certificates come from
//! `openssl`: a CA and a server certificate for 127.0.0.1 signed by it.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::{Scratch, free_port, run};

/// A CA and a server certificate for `127.0.0.1`/`localhost` signed by it.
pub(crate) struct Certs {
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl Certs {
    pub(crate) fn new(scratch: &Scratch) -> Self {
        let dir = scratch.join("tls");
        std::fs::create_dir_all(&dir).unwrap();
        let p = |n: &str| dir.join(n);
        let openssl = || {
            let mut c = Command::new("openssl");
            c.current_dir(&dir);
            c
        };
        let missing = "openssl is missing: run tests/run, which installs it";
        Command::new("openssl")
            .arg("version")
            .output()
            .expect(missing);
        run(openssl().args([
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=lookout test CA",
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
        ]));
        run(openssl().args([
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-subj",
            "/CN=127.0.0.1",
            "-keyout",
            "server.key",
            "-out",
            "server.csr",
        ]));
        std::fs::write(
            p("ext.cnf"),
            "subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n",
        )
        .unwrap();
        run(openssl().args([
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "2",
            "-extfile",
            "ext.cnf",
            "-out",
            "server.pem",
        ]));
        Self {
            ca: p("ca.pem"),
            cert: p("server.pem"),
            key: p("server.key"),
        }
    }
}

/// Waits until something listens on `port`, or fails naming `what` (and its log).
fn wait_listening(child: &mut Child, port: u16, what: &str, log: &PathBuf) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        if let Ok(Some(status)) = child.try_wait() {
            panic!(
                "{what} exited ({status}):\n{}",
                std::fs::read_to_string(log).unwrap_or_default()
            );
        }
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!(
        "{what} did not listen on {port}:\n{}",
        std::fs::read_to_string(log).unwrap_or_default()
    );
}

/// How the SMTP server protects its port.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum SmtpTls {
    /// Plain, then STARTTLS, which it requires before anything else.
    StartTls,
    /// TLS from the first byte (SMTPS).
    Implicit,
}

const SMTP_SERVER: &str = r#"
import json, ssl, sys, time
from email import policy
from email.parser import BytesParser
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

mode, port, cert, key, out, user, password = sys.argv[1:8]

class Handler:
    async def handle_DATA(self, server, session, envelope):
        msg = BytesParser(policy=policy.default).parsebytes(envelope.original_content)
        plain = msg.get_body(preferencelist=("plain",))
        html = msg.get_body(preferencelist=("html",))
        login = session.auth_data if isinstance(session.auth_data, str) else None
        rec = {
            "mail_from": envelope.mail_from,
            "rcpt_tos": envelope.rcpt_tos,
            "tls": session.ssl is not None or server.transport.get_extra_info("ssl_object") is not None,
            "authenticated": session.authenticated,
            "login": login,
            "from": str(msg["From"]),
            "to": str(msg["To"]),
            "subject": str(msg["Subject"]),
            "message_id": str(msg["Message-ID"]),
            "content_type": msg.get_content_type(),
            "plain": plain.get_content() if plain is not None else None,
            "html": html.get_content() if html is not None and html.get_content_type() == "text/html" else None,
        }
        with open(out, "a") as f:
            f.write(json.dumps(rec) + "\n")
        return "250 OK"

def authenticator(server, session, envelope, mechanism, auth_data):
    ok = (isinstance(auth_data, LoginPassword)
          and auth_data.login.decode() == user and auth_data.password.decode() == password)
    return AuthResult(success=ok, handled=False, auth_data=auth_data.login.decode() if ok else None)

ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
ctx.load_cert_chain(cert, key)
common = dict(hostname="127.0.0.1", port=int(port), authenticator=authenticator, auth_required=True)
if mode == "starttls":
    c = Controller(Handler(), tls_context=ctx, require_starttls=True, auth_require_tls=True, **common)
else:
    c = Controller(Handler(), ssl_context=ctx, auth_require_tls=False, **common)
c.start()
print("ready", flush=True)
while True:
    time.sleep(3600)
"#;

/// aiosmtpd on a free loopback port; every mail it accepts is a JSON line in `mails()`.
pub(crate) struct Smtp {
    child: Child,
    pub port: u16,
    out: PathBuf,
}

impl Smtp {
    pub(crate) fn start(
        scratch: &Scratch,
        certs: &Certs,
        tls: SmtpTls,
        user: &str,
        password: &str,
    ) -> Self {
        let script = scratch.write("smtp_server.py", SMTP_SERVER);
        let port = free_port();
        let out = scratch.join(&format!("mails-{port}.jsonl"));
        let log = scratch.join(&format!("smtp-{port}.log"));
        let check = Command::new("python3")
            .args(["-c", "import aiosmtpd"])
            .output()
            .expect("python3 is missing");
        assert!(
            check.status.success(),
            "aiosmtpd is missing: run tests/run, which installs it from PyPI"
        );
        let mode = match tls {
            SmtpTls::StartTls => "starttls",
            SmtpTls::Implicit => "implicit",
        };
        let mut child = Command::new("python3")
            .arg(&script)
            .args([mode, &port.to_string()])
            .arg(&certs.cert)
            .arg(&certs.key)
            .arg(&out)
            .args([user, password])
            .stdout(std::fs::File::create(&log).unwrap())
            .stderr(std::fs::File::options().append(true).open(&log).unwrap())
            .stdin(Stdio::null())
            .spawn()
            .expect("cannot start python3");
        wait_listening(&mut child, port, "aiosmtpd", &log);
        Self { child, port, out }
    }

    /// The mails received so far, oldest first.
    pub(crate) fn mails(&self) -> Vec<Value> {
        std::fs::read_to_string(&self.out)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }
}

impl Drop for Smtp {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// mosquitto with a password file: a plain listener on `port` and a TLS one on `tls_port`.
pub(crate) struct Mosquitto {
    child: Child,
    pub port: u16,
    pub tls_port: u16,
    pub user: String,
    pub password: String,
    ca: PathBuf,
}

impl Mosquitto {
    pub(crate) fn start(scratch: &Scratch, certs: &Certs, user: &str, password: &str) -> Self {
        let dir = scratch.join("mosquitto");
        std::fs::create_dir_all(&dir).unwrap();
        let passwd = dir.join("passwd");
        run(Command::new("mosquitto_passwd")
            .args(["-b", "-c"])
            .arg(&passwd)
            .args([user, password]));
        let port = free_port();
        let tls_port = free_port();
        let conf = dir.join("mosquitto.conf");
        std::fs::write(
            &conf,
            format!(
                "user root\npersistence false\nallow_anonymous false\npassword_file {}\nlistener {port} 127.0.0.1\nlistener {tls_port} 127.0.0.1\ncertfile {}\nkeyfile {}\nlog_dest stderr\nlog_type all\n",
                passwd.display(),
                certs.cert.display(),
                certs.key.display()
            ),
        )
        .unwrap();
        let log = dir.join("mosquitto.log");
        let mut child = Command::new("mosquitto")
            .arg("-c")
            .arg(&conf)
            .stdout(std::fs::File::create(&log).unwrap())
            .stderr(std::fs::File::options().append(true).open(&log).unwrap())
            .stdin(Stdio::null())
            .spawn()
            .expect("mosquitto is missing: run tests/run, which installs Debian's mosquitto");
        wait_listening(&mut child, port, "mosquitto", &log);
        wait_listening(&mut child, tls_port, "mosquitto (TLS)", &log);
        Self {
            child,
            port,
            tls_port,
            user: user.to_owned(),
            password: password.to_owned(),
            ca: certs.ca.clone(),
        }
    }

    fn client(&self, tool: &str, tls: bool) -> Command {
        let mut c = Command::new(tool);
        c.args(["-h", "127.0.0.1", "-u", &self.user, "-P", &self.password]);
        if tls {
            c.args(["-p", &self.tls_port.to_string(), "--cafile"])
                .arg(&self.ca);
        } else {
            c.args(["-p", &self.port.to_string()]);
        }
        c
    }

    /// The retained messages under `filter`, as `(topic, payload)`, read with mosquitto_sub.
    pub(crate) fn retained(&self, filter: &str) -> Vec<(String, String)> {
        let out = self
            .client("mosquitto_sub", false)
            .args(["-t", filter, "--retained-only", "-W", "2", "-F", "%t\t%p"])
            .output()
            .expect("mosquitto_sub is missing: run tests/run, which installs mosquitto-clients");
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| l.split_once('\t'))
            .map(|(t, p)| (t.to_owned(), p.to_owned()))
            .collect()
    }

    /// The retained JSON on `topic`, once `ready` holds for it (within 10 s).
    pub(crate) fn retained_json(&self, topic: &str, ready: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut last = None;
        while Instant::now() < deadline {
            if let Some((_, p)) = self.retained(topic).into_iter().next() {
                let v: Value = serde_json::from_str(&p)
                    .unwrap_or_else(|e| panic!("{topic}: not JSON ({e}): {p}"));
                if ready(&v) {
                    return v;
                }
                last = Some(v);
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("{topic}: no retained JSON as expected within 10 s; last: {last:?}");
    }

    /// Subscribes to `filter` with mosquitto_sub in the background (plain or TLS listener),
    /// printing `topic<TAB>payload` lines; read them with [`Subscription::lines`].
    pub(crate) fn subscribe(&self, filter: &str, tls: bool) -> Subscription {
        let out = tempfile::NamedTempFile::new().unwrap();
        let child = self
            .client("mosquitto_sub", tls)
            .args(["-t", filter, "-F", "%t\t%p"])
            .stdout(out.reopen().unwrap())
            .stderr(Stdio::null())
            .spawn()
            .expect("mosquitto_sub is missing: run tests/run, which installs mosquitto-clients");
        Subscription { child, out }
    }

    /// Publishes `payload` on `topic` with mosquitto_pub.
    pub(crate) fn publish(&self, topic: &str, payload: &str) {
        run(self
            .client("mosquitto_pub", false)
            .args(["-q", "1", "-t", topic, "-m", payload]));
    }
}

impl Drop for Mosquitto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub(crate) struct Subscription {
    child: Child,
    out: tempfile::NamedTempFile,
}

impl Subscription {
    pub(crate) fn lines(&self) -> Vec<(String, String)> {
        std::fs::read_to_string(self.out.path())
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.split_once('\t'))
            .map(|(t, p)| (t.to_owned(), p.to_owned()))
            .collect()
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

//! Small loopback HTTP servers for what cannot run here: cloud token endpoints, Docker Hub's web
//! API, hostile registries, and a fault proxy that answers 429 before forwarding to a real
//! registry.
//!
//! One thread per connection, one request per connection (`Connection: close`); every request
//! is recorded so tests can count them. [`FakeHttp::start`] answers with a [`Response`];
//! [`FakeHttp::start_raw`] lets the handler write the answer itself (stream 300 MB, drip one
//! byte a second, stall), and [`FakeHttp::with_tls`] serves HTTPS with a [`TestCa`]
//! certificate.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::{Scratch, run};

/// A request as the fake server read it.
#[derive(Debug, Clone)]
pub(crate) struct Request {
    pub method: String,
    /// Path and query: `/v2/x/tags/list?n=2`.
    pub path: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    pub at: Instant,
}

impl Request {
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// A query parameter, percent-decoded.
    pub(crate) fn query(&self, name: &str) -> Option<String> {
        let url = reqwest::Url::parse(&format!("http://fake{}", self.path)).ok()?;
        url.query_pairs()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.into_owned())
    }

    pub(crate) fn path_only(&self) -> &str {
        self.path.split('?').next().unwrap_or(&self.path)
    }
}

/// What the fake answers.
#[derive(Debug, Clone)]
pub(crate) struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    pub(crate) fn json(status: u16, value: &serde_json::Value) -> Self {
        Self {
            status,
            headers: vec![("Content-Type".into(), "application/json".into())],
            body: value.to_string().into_bytes(),
        }
    }

    pub(crate) fn status(status: u16) -> Self {
        Self {
            status,
            headers: Vec::new(),
            body: Vec::new(),
        }
    }

    pub(crate) fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }
}

/// Writes a whole answer (status line, headers, body) to the connection.
type RawHandler = dyn Fn(&Request, &mut dyn Write) -> std::io::Result<()> + Send + Sync;

/// A fake HTTP(S) server on `127.0.0.1:PORT`, stopped on drop.
pub(crate) struct FakeHttp {
    /// `127.0.0.1:PORT`.
    pub addr: String,
    /// `http` or `https`.
    pub scheme: &'static str,
    requests: Arc<Mutex<Vec<Request>>>,
    stop: Arc<AtomicBool>,
}

impl FakeHttp {
    pub(crate) fn start(handler: impl Fn(&Request) -> Response + Send + Sync + 'static) -> Self {
        Self::start_raw(move |req, out| write_response(out, req, &handler(req)))
    }

    /// A server whose handler writes each answer itself.
    pub(crate) fn start_raw(
        handler: impl Fn(&Request, &mut dyn Write) -> std::io::Result<()> + Send + Sync + 'static,
    ) -> Self {
        Self::serve(None, Arc::new(handler))
    }

    /// An HTTPS server with `ca`'s certificate, answering with `handler`.
    pub(crate) fn with_tls(
        ca: &TestCa,
        handler: impl Fn(&Request) -> Response + Send + Sync + 'static,
    ) -> Self {
        Self::with_tls_raw(ca, move |req, out| write_response(out, req, &handler(req)))
    }

    /// An HTTPS server whose handler writes each answer itself.
    pub(crate) fn with_tls_raw(
        ca: &TestCa,
        handler: impl Fn(&Request, &mut dyn Write) -> std::io::Result<()> + Send + Sync + 'static,
    ) -> Self {
        Self::serve(Some(ca.server_config()), Arc::new(handler))
    }

    fn serve(tls: Option<Arc<rustls::ServerConfig>>, handler: Arc<RawHandler>) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let scheme = if tls.is_some() { "https" } else { "http" };
        {
            let (requests, stop) = (requests.clone(), stop.clone());
            std::thread::spawn(move || {
                for conn in listener.incoming() {
                    if stop.load(Ordering::SeqCst) {
                        return;
                    }
                    let Ok(conn) = conn else { continue };
                    let (requests, handler, tls) = (requests.clone(), handler.clone(), tls.clone());
                    std::thread::spawn(move || match tls {
                        None => serve(conn, &requests, handler.as_ref()),
                        Some(config) => {
                            let Ok(server) = rustls::ServerConnection::new(config) else {
                                return;
                            };
                            let mut stream = rustls::StreamOwned::new(server, conn);
                            let Some(request) = read_request(&mut stream) else {
                                return;
                            };
                            requests.lock().unwrap().push(request.clone());
                            let _ = handler(&request, &mut stream);
                            stream.conn.send_close_notify();
                            let _ = stream.flush();
                            let _ = stream.sock.shutdown(Shutdown::Both);
                        }
                    });
                }
            });
        }
        Self {
            addr,
            scheme,
            requests,
            stop,
        }
    }

    pub(crate) fn url(&self, path: &str) -> String {
        format!("{}://{}{path}", self.scheme, self.addr)
    }

    /// The port, for a name that resolves to this server (`registry.test:PORT`).
    pub(crate) fn port(&self) -> u16 {
        self.addr.rsplit_once(':').unwrap().1.parse().unwrap()
    }

    pub(crate) fn requests(&self) -> Vec<Request> {
        self.requests.lock().unwrap().clone()
    }

    /// Requests whose path (without query) starts with `prefix`.
    pub(crate) fn count(&self, prefix: &str) -> usize {
        self.requests()
            .iter()
            .filter(|r| r.path_only().starts_with(prefix))
            .count()
    }
}

impl Drop for FakeHttp {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(&self.addr);
    }
}

fn serve(mut conn: TcpStream, requests: &Mutex<Vec<Request>>, handler: &RawHandler) {
    let Some(request) = read_request(&mut conn) else {
        return;
    };
    requests.lock().unwrap().push(request.clone());
    let _ = handler(&request, &mut conn);
    let _ = conn.flush();
    let _ = conn.shutdown(Shutdown::Both);
}

/// Writes `response` with `Content-Length` (no body for HEAD).
fn write_response(
    out: &mut dyn Write,
    request: &Request,
    response: &Response,
) -> std::io::Result<()> {
    let mut head = format!(
        "HTTP/1.1 {} X\r\nContent-Length: {}\r\nConnection: close\r\n",
        response.status,
        response.body.len()
    );
    for (k, v) in &response.headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    out.write_all(head.as_bytes())?;
    if request.method != "HEAD" {
        out.write_all(&response.body)?;
    }
    out.flush()
}

/// Writes a status line and headers (and `Connection: close`), no body yet.
pub(crate) fn write_head(
    out: &mut dyn Write,
    status: u16,
    headers: &[(&str, &str)],
) -> std::io::Result<()> {
    let mut head = format!("HTTP/1.1 {status} X\r\nConnection: close\r\n");
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    out.write_all(head.as_bytes())?;
    out.flush()
}

/// Writes a chunked body: `prefix`, then `filler` over and over until `total` bytes are out or
/// the client stops reading; returns how many bytes went out. Use after [`write_head`] with
/// `Transfer-Encoding: chunked`.
pub(crate) fn stream_chunked(
    out: &mut dyn Write,
    prefix: &[u8],
    filler: &[u8],
    total: usize,
) -> usize {
    let mut sent = 0;
    let mut chunk = |bytes: &[u8], sent: &mut usize| -> bool {
        let ok = out
            .write_all(format!("{:x}\r\n", bytes.len()).as_bytes())
            .and_then(|_| out.write_all(bytes))
            .and_then(|_| out.write_all(b"\r\n"))
            .is_ok();
        if ok {
            *sent += bytes.len();
        }
        ok
    };
    if !chunk(prefix, &mut sent) {
        return sent;
    }
    let block: Vec<u8> = filler.iter().copied().cycle().take(64 * 1024).collect();
    while sent < total {
        let n = block.len().min(total - sent);
        if !chunk(&block[..n], &mut sent) {
            return sent;
        }
    }
    let _ = out.write_all(b"0\r\n\r\n");
    sent
}

/// Writes `body` one byte every `every` until it is out or the client hangs up.
pub(crate) fn drip(out: &mut dyn Write, body: &[u8], every: Duration) -> usize {
    for (i, b) in body.iter().enumerate() {
        if out.write_all(&[*b]).and_then(|_| out.flush()).is_err() {
            return i;
        }
        std::thread::sleep(every);
    }
    body.len()
}

/// Reads one request: the request line, headers, and a `Content-Length` body.
fn read_request(conn: &mut dyn Read) -> Option<Request> {
    let mut reader = BufReader::new(conn);
    let mut line = String::new();
    reader.read_line(&mut line).ok()?;
    let mut parts = line.split_whitespace();
    let (method, path) = (parts.next()?.to_owned(), parts.next()?.to_owned());
    let mut headers = Vec::new();
    loop {
        let mut h = String::new();
        reader.read_line(&mut h).ok()?;
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            headers.push((k.trim().to_owned(), v.trim().to_owned()));
        }
    }
    let len: usize = headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0);
    let mut body = vec![0; len];
    reader.read_exact(&mut body).ok()?;
    Some(Request {
        method,
        path,
        headers,
        body,
        at: Instant::now(),
    })
}

/// A certificate authority made for one test, and one server certificate it signed for the
/// given DNS names (resolved to loopback through `RegistryOptions::resolve`). Clients trust
/// it through `registry_config.ca_file` = [`TestCa::ca_file`].
pub(crate) struct TestCa {
    pub ca_file: PathBuf,
    cert: PathBuf,
    key: PathBuf,
}

impl TestCa {
    pub(crate) fn new(scratch: &Scratch, names: &[&str]) -> Self {
        let dir = scratch.join(&format!("ca-{}", super::free_port()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = |f: &str| dir.join(f);
        let openssl = || Command::new("openssl");
        run(openssl()
            .args([
                "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
            ])
            .args(["-subj", "/CN=lookout test CA", "-keyout"])
            .arg(p("ca.key"))
            .arg("-out")
            .arg(p("ca.pem")));
        run(openssl()
            .args([
                "req",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-subj",
                "/CN=lookout test server",
            ])
            .arg("-keyout")
            .arg(p("server.key"))
            .arg("-out")
            .arg(p("server.csr")));
        let san: Vec<String> = names.iter().map(|n| format!("DNS:{n}")).collect();
        std::fs::write(
            p("server.ext"),
            format!(
                "basicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\nsubjectAltName={}\n",
                san.join(",")
            ),
        )
        .unwrap();
        run(openssl()
            .args(["x509", "-req", "-days", "1", "-in"])
            .arg(p("server.csr"))
            .arg("-CA")
            .arg(p("ca.pem"))
            .arg("-CAkey")
            .arg(p("ca.key"))
            .args(["-CAcreateserial", "-out"])
            .arg(p("server.pem"))
            .arg("-extfile")
            .arg(p("server.ext")));
        Self {
            ca_file: p("ca.pem"),
            cert: p("server.pem"),
            key: p("server.key"),
        }
    }

    fn server_config(&self) -> Arc<rustls::ServerConfig> {
        use rustls::pki_types::pem::PemObject;
        use rustls::pki_types::{CertificateDer, PrivateKeyDer};
        let certs: Vec<CertificateDer<'static>> =
            CertificateDer::pem_slice_iter(&std::fs::read(&self.cert).unwrap())
                .collect::<Result<_, _>>()
                .unwrap();
        let key = PrivateKeyDer::from_pem_slice(&std::fs::read(&self.key).unwrap()).unwrap();
        let config = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .unwrap();
        Arc::new(config)
    }
}

/// A TCP proxy to a real server that answers the first `faults` requests itself with
/// `429 Too Many Requests` and `Retry-After: SECONDS`, then forwards every connection as is.
pub(crate) struct FaultProxy {
    pub addr: String,
    /// When each 429 was sent, and when each forwarded connection arrived.
    pub refused_at: Arc<Mutex<Vec<Instant>>>,
    pub forwarded_at: Arc<Mutex<Vec<Instant>>>,
    stop: Arc<AtomicBool>,
}

impl FaultProxy {
    pub(crate) fn start(upstream: &str, faults: usize, retry_after_secs: u64) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let refused_at = Arc::new(Mutex::new(Vec::new()));
        let forwarded_at = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let left = Arc::new(AtomicUsize::new(faults));
        {
            let (refused_at, forwarded_at, stop) =
                (refused_at.clone(), forwarded_at.clone(), stop.clone());
            let upstream = upstream.to_owned();
            std::thread::spawn(move || {
                for conn in listener.incoming() {
                    if stop.load(Ordering::SeqCst) {
                        return;
                    }
                    let Ok(mut conn) = conn else { continue };
                    let refuse = left
                        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                        .is_ok();
                    if refuse {
                        let _ = read_request(&mut conn);
                        refused_at.lock().unwrap().push(Instant::now());
                        let _ = conn.write_all(
                            format!("HTTP/1.1 429 Too Many Requests\r\nRetry-After: {retry_after_secs}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n").as_bytes(),
                        );
                        let _ = conn.shutdown(Shutdown::Both);
                        continue;
                    }
                    forwarded_at.lock().unwrap().push(Instant::now());
                    let Ok(up) = TcpStream::connect(&upstream) else {
                        continue;
                    };
                    pipe(conn, up);
                }
            });
        }
        Self {
            addr,
            refused_at,
            forwarded_at,
            stop,
        }
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(&self.addr);
    }
}

/// Copies bytes both ways until either side closes.
fn pipe(a: TcpStream, b: TcpStream) {
    let (mut a2, mut b2) = (a.try_clone().unwrap(), b.try_clone().unwrap());
    let (mut a, mut b) = (a, b);
    std::thread::spawn(move || {
        let _ = std::io::copy(&mut a2, &mut b2);
        let _ = b2.shutdown(Shutdown::Write);
    });
    std::thread::spawn(move || {
        let _ = std::io::copy(&mut b, &mut a);
        let _ = a.shutdown(Shutdown::Write);
    });
}

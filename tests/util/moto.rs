//! `moto_server`, the AWS emulator (PyPI `moto[server]`), on a free loopback port: the real ECR
//! API (`DescribeImages`, `GetAuthorizationToken`, `PutImage`) without an AWS account.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::{Scratch, free_port};

/// The account moto answers as, and so the registry password its `GetAuthorizationToken` gives.
pub(crate) const ACCOUNT: &str = "123456789012";
pub(crate) const PASSWORD: &str = "123456789012-auth-token";

pub(crate) struct Moto {
    child: Child,
    /// `http://127.0.0.1:PORT`.
    pub endpoint: String,
}

impl Moto {
    pub(crate) fn start(scratch: &Scratch) -> Self {
        for _ in 0..5 {
            let port = free_port();
            let log = scratch.join(&format!("moto-{port}.log"));
            let mut child = Command::new("moto_server")
                .args(["-H", "127.0.0.1", "-p", &port.to_string()])
                .stdout(std::fs::File::create(&log).unwrap())
                .stderr(std::fs::File::options().append(true).open(&log).unwrap())
                .stdin(Stdio::null())
                .spawn()
                .expect("moto_server is missing: run tests/run, which installs moto[server]");
            let addr = format!("127.0.0.1:{port}");
            let deadline = Instant::now() + Duration::from_secs(30);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    break;
                }
                if std::net::TcpStream::connect(&addr).is_ok() {
                    return Self {
                        child,
                        endpoint: format!("http://{addr}"),
                    };
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        panic!("moto_server did not start");
    }

    /// An ECR client of this emulator, with moto's dummy credentials.
    pub(crate) async fn ecr(&self) -> aws_sdk_ecr::Client {
        let config = aws_config::defaults(aws_config::BehaviorVersion::latest())
            .region(aws_sdk_ecr::config::Region::new("us-east-1"))
            .endpoint_url(&self.endpoint)
            .credentials_provider(aws_sdk_ecr::config::Credentials::new(
                "testing", "testing", None, None, "test",
            ))
            .load()
            .await;
        aws_sdk_ecr::Client::new(&config)
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

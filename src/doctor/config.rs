//! The configuration: that it loads (else the only line of the report, listing every problem),
//! what it leaves unset, and whether the HTTP API it configures is open to the network.

use std::io;
use std::net::SocketAddr;
use std::path::Path;

use super::report::Check;
use crate::config::{Config, ConfigError};

/// The configuration did not load: what to do depends on why.
pub(super) fn config_failure(path: &Path, e: &ConfigError) -> Check {
    let fix = match e {
        ConfigError::Read { source, .. } if source.kind() == io::ErrorKind::NotFound => format!(
            "create {} (the documented default is config/lookout.toml in lookout's sources), or \
             name another file with --config or LOOKOUT_CONFIG",
            path.display()
        ),
        ConfigError::Read { .. } => format!(
            "let lookout's user read {} (it may hold credentials: mode 0640, group lookout)",
            path.display()
        ),
        ConfigError::Syntax { .. } | ConfigError::Invalid { .. } => format!(
            "correct the file; `lookout config validate {}` lists every problem",
            path.display()
        ),
    };
    Check::fail("config", e.to_string(), fix)
}

/// The configuration loads; its warnings (variables left unset) are worth fixing.
pub(super) fn config_check(path: &Path, config: &Config) -> Check {
    let enabled = config.services.iter().filter(|s| s.enabled).count();
    let detail = format!(
        "{} loads: {} service(s), {enabled} enabled",
        path.display(),
        config.services.len()
    );
    if config.warnings.is_empty() {
        Check::pass("config", detail)
    } else {
        let list: Vec<String> = config.warnings.iter().map(ToString::to_string).collect();
        Check::warn(
            "config",
            format!("{detail}; {}", list.join("; ")),
            "set the variables named (or give a default: ${VAR:-value})",
        )
    }
}

/// What the `api` check looks at, taken from the configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct ApiExposure {
    pub listen: SocketAddr,
    pub token_set: bool,
    pub hooks_on: bool,
    /// The operator allows a non-loopback `listen` without a token knowingly.
    pub allowed_without_token: bool,
}

impl ApiExposure {
    pub(super) fn of(config: &Config) -> Self {
        Self {
            listen: config.listen,
            token_set: config.api_token.is_some(),
            hooks_on: config.hook_secret.is_some(),
            allowed_without_token: config.listen_without_token,
        }
    }
}

/// Whether the HTTP API can be reached from beyond this host without a token: then anyone who
/// can reach the port reads every service, the history and `/metrics`.
pub(super) fn api_check(api: ApiExposure) -> Check {
    let name = "api";
    let listen = api.listen;
    // `::ffff:127.0.0.1` is loopback too.
    if listen.ip().to_canonical().is_loopback() {
        return Check::pass(name, format!("listening on {listen} (loopback only)"));
    }
    if api.token_set {
        return Check::pass(
            name,
            format!(
                "listening on {listen}, beyond loopback; reads, /metrics and changes need the \
                 api_token"
            ),
        );
    }
    let hooks = if api.hooks_on {
        ", and the registry push hooks are guarded by the hook secret alone"
    } else {
        ""
    };
    let detail = format!(
        "listening on {listen}, beyond loopback, and no api_token is set: anyone who can reach \
         the port reads /api/v1/services, /api/v1/history and /metrics{hooks}"
    );
    let fix = format!(
        "set api_token to a long random value (`openssl rand -hex 32`; put it in lookout.env as \
         LOOKOUT_API_TOKEN and write api_token = \"${{LOOKOUT_API_TOKEN}}\"), or listen on \
         127.0.0.1:{} behind a reverse proxy with authentication",
        listen.port()
    );
    if api.allowed_without_token {
        Check::warn(
            name,
            format!("{detail} (allowed by listen_without_token = true)"),
            fix,
        )
    } else {
        Check::fail(name, detail, fix)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exposure(listen: &str, token_set: bool) -> ApiExposure {
        ApiExposure {
            listen: listen.parse().unwrap(),
            token_set,
            hooks_on: false,
            allowed_without_token: false,
        }
    }

    #[test]
    fn a_loopback_api_passes_with_or_without_a_token() {
        for listen in [
            "127.0.0.1:9100",
            "127.0.0.2:80",
            "[::1]:9100",
            "[::ffff:127.0.0.1]:9100",
        ] {
            for token in [false, true] {
                let c = api_check(exposure(listen, token));
                assert_eq!(c.status(), "PASS", "{listen}: {c:?}");
                assert!(c.detail().ends_with("(loopback only)"), "{c:?}");
            }
        }
    }

    #[test]
    fn an_exposed_api_without_a_token_fails_naming_what_is_open_and_how_to_set_a_token() {
        for listen in ["0.0.0.0:9100", "[::]:9100", "192.168.1.5:9100"] {
            let c = api_check(exposure(listen, false));
            assert!(c.is_failure(), "{listen}: {c:?}");
            assert!(
                c.detail().contains("no api_token is set")
                    && c.detail().contains("/api/v1/services")
                    && c.detail().contains("/metrics"),
                "{c:?}"
            );
            let fix = c.fix().unwrap();
            assert!(
                fix.contains("set api_token") && fix.contains("openssl rand -hex 32"),
                "{fix}"
            );
            assert!(fix.contains("127.0.0.1:9100"), "{fix}");
        }
        let hooks = api_check(ApiExposure {
            hooks_on: true,
            ..exposure("0.0.0.0:9100", false)
        });
        assert!(
            hooks
                .detail()
                .contains("push hooks are guarded by the hook secret alone"),
            "{hooks:?}"
        );
    }

    #[test]
    fn an_exposed_api_with_a_token_passes() {
        let c = api_check(exposure("0.0.0.0:9100", true));
        assert_eq!(c.status(), "PASS", "{c:?}");
        assert!(c.detail().contains("need the api_token"), "{c:?}");
    }

    #[test]
    fn allowing_an_exposed_api_knowingly_makes_it_a_warning() {
        let c = api_check(ApiExposure {
            allowed_without_token: true,
            ..exposure("0.0.0.0:9100", false)
        });
        assert_eq!(c.status(), "WARN", "{c:?}");
        assert!(
            c.detail()
                .ends_with("(allowed by listen_without_token = true)")
        );
        assert!(c.fix().unwrap().contains("set api_token"));
    }
}

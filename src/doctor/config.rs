//! The configuration: that it loads (else the only line of the report, listing every problem),
//! and what it leaves unset.

use std::io;
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

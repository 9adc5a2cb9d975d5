//! Stack files: the compose file `docker stack deploy -c FILE STACK` deploys Swarm services
//! from. Swarm names each service `<STACK>_<service>` and labels it with the stack's name
//! ([`NAMESPACE_LABEL`]); these functions say which service of the file a Swarm service is.
//! The edit itself is the compose editor's ([`super::plan_set_image`]).

use std::path::Path;

use super::{ComposeError, FileSet};
use crate::config::{MAX_FILE_BYTES, read_text};

/// The label `docker stack deploy` gives every service of a stack: the stack's name.
pub const NAMESPACE_LABEL: &str = "com.docker.stack.namespace";

/// The stack file's name of Swarm service `swarm_service`, deployed in stack `namespace`
/// (its [`NAMESPACE_LABEL`]): `web` for `shop_web` in stack `shop`. Pure.
pub fn stack_service<'a>(
    swarm_service: &'a str,
    namespace: Option<&str>,
) -> Result<&'a str, String> {
    let Some(namespace) = namespace.filter(|n| !n.is_empty()) else {
        return Err(format!(
            "Swarm service {swarm_service:?} has no label {NAMESPACE_LABEL}: it was not \
             deployed with `docker stack deploy`; remove stack_file, or deploy it as a stack"
        ));
    };
    swarm_service
        .strip_prefix(namespace)
        .and_then(|rest| rest.strip_prefix('_'))
        .filter(|name| !name.is_empty())
        .ok_or_else(|| {
            format!(
                "Swarm service {swarm_service:?} is in stack {namespace:?} (label \
                 {NAMESPACE_LABEL}) but its name does not start with \"{namespace}_\""
            )
        })
}

/// The services of `file` that Swarm service `swarm_service` can be, whatever the stack's
/// name: those it ends with as `_<service>`. Pure.
pub fn candidates<'a>(swarm_service: &str, file_services: &'a [String]) -> Vec<&'a str> {
    file_services
        .iter()
        .filter(|s| {
            swarm_service
                .strip_suffix(s.as_str())
                .and_then(|rest| rest.strip_suffix('_'))
                .is_some_and(|stack| !stack.is_empty())
        })
        .map(String::as_str)
        .collect()
}

/// The services a stack file defines, read through the one bounded reader.
pub fn services_of(path: &Path) -> Result<Vec<String>, ComposeError> {
    let read = |p: &Path| {
        read_text(p, MAX_FILE_BYTES).map_err(|source| ComposeError::Io {
            action: "read",
            path: p.to_path_buf(),
            source,
        })
    };
    FileSet::new(vec![path.to_path_buf()], &read).services()
}

/// The check `stack_file` gets when the configuration is loaded: `path` is a regular file, a
/// compose file, and defines a service that `swarm_service` is (`<stack>_<service>`). The
/// error names the file, the Swarm service and the services the file has.
pub fn check(path: &Path, swarm_service: &str) -> Result<(), String> {
    let services = services_of(path).map_err(|e| e.to_string())?;
    if candidates(swarm_service, &services).is_empty() {
        return Err(format!(
            "{} defines no service that Swarm service {swarm_service:?} can be (stack STACK \
             deploys service S as STACK_S); it defines {}",
            path.display(),
            if services.is_empty() {
                "no services".to_owned()
            } else {
                services.join(", ")
            }
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_swarm_service_s_stack_name_is_its_name_less_the_namespace() {
        let cases: &[(&str, Option<&str>, Result<&str, &str>)] = &[
            ("shop_web", Some("shop"), Ok("web")),
            ("shop_web_1", Some("shop"), Ok("web_1")),
            ("my_shop_web", Some("my_shop"), Ok("web")),
            ("shop_web", None, Err("no label com.docker.stack.namespace")),
            (
                "shop_web",
                Some(""),
                Err("no label com.docker.stack.namespace"),
            ),
            (
                "shop_web",
                Some("other"),
                Err("does not start with \"other_\""),
            ),
            ("shop_", Some("shop"), Err("does not start with")),
            ("shopweb", Some("shop"), Err("does not start with")),
        ];
        for (name, namespace, want) in cases {
            match (stack_service(name, *namespace), want) {
                (Ok(got), Ok(want)) => assert_eq!(got, *want, "{name}"),
                (Err(e), Err(want)) => assert!(e.contains(want) && e.contains(name), "{e}"),
                (got, want) => panic!("{name} {namespace:?}: {got:?}, want {want:?}"),
            }
        }
    }

    #[test]
    fn a_stack_file_s_candidates_are_the_services_the_name_ends_with() {
        let services: Vec<String> = ["web", "db", "b_web"].map(String::from).to_vec();
        assert_eq!(candidates("shop_web", &services), ["web"]);
        assert_eq!(candidates("a_b_web", &services), ["web", "b_web"]);
        assert!(candidates("web", &services).is_empty());
        assert!(candidates("_web", &services).is_empty());
        assert!(candidates("shop_cache", &services).is_empty());
    }

    #[test]
    fn the_load_time_check_names_the_file_the_service_and_what_the_file_has() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("stack.yml");
        std::fs::write(
            &file,
            "# a stack\nservices:\n  web:   # the site\n    image: app:1.0.0\n  db:\n    image: pg:16\n",
        )
        .unwrap();
        check(&file, "shop_web").unwrap();
        let e = check(&file, "shop_cache").unwrap_err();
        assert!(
            e.contains("stack.yml") && e.contains("\"shop_cache\"") && e.contains("web, db"),
            "{e}"
        );
        let e = check(&dir.path().join("missing.yml"), "shop_web").unwrap_err();
        assert!(e.contains("missing.yml"), "{e}");
        let e = check(dir.path(), "shop_web").unwrap_err();
        assert!(e.contains("not a regular file"), "{e}");
    }
}

//! Discovery: what it finds on this host, the containers lookout cannot manage and why, and
//! labels that disagree or are wrong.

use super::Check;
use crate::discovery::Discovery;

/// One check for what discovery found, then one per container it cannot manage, per service
/// whose labels disagree, and per service with a bad label.
pub(super) fn discovery_checks(d: &Discovery) -> Vec<Check> {
    let names: Vec<&str> = d.found.iter().map(|f| f.name.as_str()).collect();
    let mut checks = vec![Check::pass(
        "discovery",
        format!(
            "{} service(s) found{}{}; {} container(s) excluded by labels or [discovery]",
            names.len(),
            if names.is_empty() { "" } else { ": " },
            names.join(", "),
            d.excluded.len()
        ),
    )];
    for l in &d.unmanaged {
        checks.push(Check::warn(
            format!("container {}", l.container),
            format!("lookout cannot manage it: {}", l.reason),
            "label it lookout.action=ignore to say it is not lookout's, or recreate it as the \
             reason says",
        ));
    }
    for f in &d.found {
        if !f.problems.is_empty() {
            checks.push(Check::fail(
                format!("labels of {}", f.name),
                f.problems.join("; "),
                "correct the label on the container (its compose file's `labels:`) and recreate \
                 it; the service's checks fail until then",
            ));
        }
        if !f.conflicts.is_empty() {
            checks.push(Check::warn(
                format!("labels of {}", f.name),
                format!("labels disagree: {}", f.conflicts.join("; ")),
                "remove the label that loses (lookout's own labels win, then the configuration, \
                 then Watchtower's, What's Up Docker's and Diun's)",
            ));
        }
    }
    checks
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::discovery::{Left, groups, resolve};
    use crate::runtime::{ContainerState, ContainerSummary};

    #[test]
    fn unmanaged_containers_conflicts_and_bad_labels_each_get_a_line() {
        let c = |name: &str, labels: &[(&str, &str)]| ContainerSummary {
            id: name.to_owned(),
            name: name.to_owned(),
            labels: labels
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
            image_id: "sha256:00".into(),
            state: ContainerState::Running,
        };
        let listed = [
            c(
                "a",
                &[("lookout.policy", "semver"), ("wud.watch.digest", "true")],
            ),
            c("b", &[("lookout.update_level", "huge")]),
        ];
        let refs = listed
            .iter()
            .map(|c| (c.id.clone(), "nginx:1.27.0".to_owned()))
            .collect();
        let config =
            crate::config::validate(&serde_json::json!({"discovery": {}}), &|_| None).unwrap();
        let mut d = resolve(groups(&listed, false), &refs, &config, &|p| {
            Some(p.to_owned())
        });
        d.unmanaged.push(Left {
            container: "one-off".into(),
            reason: "made by `compose run`".into(),
        });
        let checks = discovery_checks(&d);
        let lines: Vec<(String, &str)> = checks
            .iter()
            .map(|c| (c.name.clone(), c.status()))
            .collect();
        assert_eq!(
            lines,
            [
                ("discovery".to_owned(), "PASS"),
                ("container one-off".to_owned(), "WARN"),
                ("labels of a".to_owned(), "WARN"),
                ("labels of b".to_owned(), "FAIL"),
            ]
        );
        assert!(checks[3].detail().contains("label lookout.update_level"));
    }
}

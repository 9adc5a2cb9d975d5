//! One service's registry check: its tags, the tag its policy chooses, and that tag's digests.
//!
//! The reference that runs comes in as a value: until the runtime module reads it from Docker,
//! callers pass the configured image. Comparing the candidate's digests with the local image's
//! is the engine's decision, not this module's.
//!
//! A check has an overall deadline, [`super::RegistryOptions::check_timeout`], besides each
//! request's own: a slow registry fails the services that use it, within that time, and no
//! others.

use crate::config::ServiceSpec;
use crate::policy::{Policy, PolicyKind, Selection, Tag, natural_cmp};
use crate::reference::ImageRef;

use super::{CheckCycle, Digests, ErrorKind, Registry, RegistryError};

/// What the registry says about one service.
#[derive(Debug, Clone)]
pub struct ServiceCheck {
    pub service: String,
    /// The reference the service runs.
    pub running: ImageRef,
    /// How many tags the repository has (for the digest policy, which lists no tags: 1 when
    /// the running tag exists, else 0).
    pub tags: usize,
    /// Tags whose push time came from reading the image config (`created`).
    pub created_lookups: usize,
    pub selection: Selection,
    /// The reference the policy chose (the running tag itself for the digest policy).
    pub candidate: Option<ImageRef>,
    /// The candidate's digests now.
    pub digests: Option<Digests>,
}

/// Checks `service`, which runs `running`, within `cycle`, in at most the options'
/// `check_timeout`.
pub async fn check_service(
    cycle: &CheckCycle,
    service: &ServiceSpec,
    running: &ImageRef,
) -> Result<ServiceCheck, RegistryError> {
    let timeout = cycle.registries().options().check_timeout;
    check_service_within(cycle, service, running, timeout).await
}

/// Checks `service` as [`check_service`] does, in at most `timeout` (`None`: only the
/// requests' own deadlines bound it).
pub async fn check_service_within(
    cycle: &CheckCycle,
    service: &ServiceSpec,
    running: &ImageRef,
    timeout: Option<std::time::Duration>,
) -> Result<ServiceCheck, RegistryError> {
    let check = check_unbounded(cycle, service, running);
    let Some(timeout) = timeout else {
        return check.await;
    };
    let timeout = timeout.min(super::http::MAX_WAIT);
    match tokio::time::timeout(timeout, check).await {
        Ok(result) => result,
        Err(_) => {
            tracing::warn!(service = %service.name, registry = running.registry(), timeout_s = timeout.as_secs_f64(), "registry check of the service timed out");
            Err(ErrorKind::TimedOut {
                what: format!("the check of service {}", service.name),
                after: timeout,
            }
            .at(running.registry(), running.repository()))
        }
    }
}

async fn check_unbounded(
    cycle: &CheckCycle,
    service: &ServiceSpec,
    running: &ImageRef,
) -> Result<ServiceCheck, RegistryError> {
    let registry = cycle.registry(service)?;
    let current = running.tag().unwrap_or("latest");
    if service.policy.kind() == PolicyKind::Digest {
        return check_digest(cycle, registry.as_ref(), service, running, current).await;
    }
    let mut tags = cycle.tags(registry.as_ref(), running).await?.to_vec();
    let limit = cycle.registries().options().max_created_lookups;
    let created_lookups = fill_push_times(
        registry.as_ref(),
        &service.policy,
        running,
        &mut tags,
        limit,
    )
    .await?;
    let selection = service.policy.select(current, &tags);
    let candidate = selection.selected(current).map(|t| running.with_tag(t));
    let digests = match &candidate {
        Some(c) => Some(cycle.digest(registry.as_ref(), c).await?),
        None => None,
    };
    Ok(ServiceCheck {
        service: service.name.clone(),
        running: running.clone(),
        tags: tags.len(),
        created_lookups,
        selection,
        candidate,
        digests,
    })
}

/// The digest policy needs no tag list: one `HEAD` of the running reference answers both
/// whether the tag still exists (a 404 says it is gone) and what it points to now.
async fn check_digest(
    cycle: &CheckCycle,
    registry: &dyn Registry,
    service: &ServiceSpec,
    running: &ImageRef,
    current: &str,
) -> Result<ServiceCheck, RegistryError> {
    let candidate = running.with_tag(current);
    let digests = match cycle.digest(registry, &candidate).await {
        Ok(d) => Some(d),
        Err(e) if matches!(e.kind, ErrorKind::NotFound { .. }) => None,
        Err(e) => return Err(e),
    };
    let listed: Vec<Tag> = digests.iter().map(|_| Tag::new(current, None)).collect();
    let selection = service.policy.select(current, &listed);
    Ok(ServiceCheck {
        service: service.name.clone(),
        running: running.clone(),
        tags: listed.len(),
        created_lookups: 0,
        selection,
        candidate: digests.as_ref().map(|_| candidate),
        digests,
    })
}

/// Glob and regex policies choose the tag pushed last. When the registry gave no push times,
/// read the build time (`created`) of at most `limit` candidates — the latest in natural order,
/// the ones most likely to win — and use it as the push time. Returns how many were read.
async fn fill_push_times(
    registry: &dyn Registry,
    policy: &Policy,
    running: &ImageRef,
    tags: &mut [Tag],
    limit: usize,
) -> Result<usize, RegistryError> {
    let wanted = tags_needing_push_times(policy, running.tag().unwrap_or("latest"), tags, limit);
    for &i in &wanted {
        let Some(tag) = tags.get_mut(i) else { continue };
        let image = running.with_tag(&tag.name);
        tag.pushed = registry.created(&image).await?;
    }
    Ok(wanted.len())
}

/// The indexes of the tags whose push time a policy needs and the registry did not give: only
/// for glob and regex policies, only candidates the policy would consider, at most `limit`.
pub(super) fn tags_needing_push_times(
    policy: &Policy,
    current: &str,
    tags: &[Tag],
    limit: usize,
) -> Vec<usize> {
    if !matches!(policy.kind(), PolicyKind::Glob | PolicyKind::Regex) {
        return Vec::new();
    }
    // `select` over one tag counts it as a candidate exactly when it passes the policy's
    // filters, which keeps the filter rules in the policy module.
    let mut wanted: Vec<(usize, &Tag)> = tags
        .iter()
        .enumerate()
        .filter(|(_, t)| t.pushed.is_none())
        .filter(|(_, t)| policy.select(current, std::slice::from_ref(*t)).candidates > 0)
        .collect();
    wanted.sort_by(|(_, a), (_, b)| natural_cmp(&b.name, &a.name));
    wanted.truncate(limit);
    wanted.into_iter().map(|(i, _)| i).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::PolicySpec;

    #[test]
    fn only_unknown_push_times_of_matching_tags_are_read_latest_first_and_bounded() {
        let glob = Policy::compile(&PolicySpec {
            tag_pattern: Some("build-*".into()),
            ..PolicySpec::default()
        })
        .unwrap();
        let tags: Vec<Tag> = [
            ("build-9", None),
            ("build-10", None),
            ("build-11", Some(5)),
            ("other", None),
            ("build-2", None),
        ]
        .into_iter()
        .map(|(n, p)| Tag::new(n, p))
        .collect();
        let names = |ix: Vec<usize>| {
            ix.into_iter()
                .map(|i| tags[i].name.clone())
                .collect::<Vec<_>>()
        };
        assert_eq!(
            names(tags_needing_push_times(&glob, "build-2", &tags, 20)),
            ["build-10", "build-9", "build-2"]
        );
        assert_eq!(
            names(tags_needing_push_times(&glob, "build-2", &tags, 2)),
            ["build-10", "build-9"]
        );
        let semver = Policy::compile(&PolicySpec {
            policy: Some(PolicyKind::Semver),
            ..PolicySpec::default()
        })
        .unwrap();
        assert!(tags_needing_push_times(&semver, "1.0.0", &tags, 20).is_empty());
    }
}

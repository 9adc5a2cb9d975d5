//! Links to an image's source, from its `org.opencontainers.image.source`, `…revision` and
//! `…version` annotations or labels: the repository, the running and the candidate commit, the
//! candidate's release notes, and a compare view between the two revisions on GitHub and GitLab.
//! Pure.
//!
//! These values come from whoever built the image, so they are checked before they become a
//! link: the source must be an `http(s)` URL without credentials, query or fragment; a revision
//! or version must look like one (`[A-Za-z0-9._+-]`, at most 128 characters). Anything else is
//! left out, never shown as a link.

use crate::api::model::ImageOrigin;

/// What the page links to; each `None` when it cannot be said.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub(crate) struct Links {
    pub source: Option<String>,
    pub running_commit: Option<String>,
    pub candidate_commit: Option<String>,
    pub release_notes: Option<String>,
    pub compare: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Forge {
    GitHub,
    GitLab,
    Other,
}

/// The repository URL without `.git` or a trailing `/`, and which forge it is on.
fn repository(source: &str) -> Option<(String, Forge)> {
    let url = url::Url::parse(source.trim()).ok()?;
    if !matches!(url.scheme(), "https" | "http")
        || !url.username().is_empty()
        || url.password().is_some()
        || url.query().is_some()
        || url.fragment().is_some()
    {
        return None;
    }
    let host = url.host_str()?.to_ascii_lowercase();
    let path = url.path().trim_end_matches('/');
    let path = path.strip_suffix(".git").unwrap_or(path);
    let segments = path.split('/').filter(|s| !s.is_empty()).count();
    let forge = if host == "github.com" || host == "www.github.com" {
        if segments != 2 {
            return None;
        }
        Forge::GitHub
    } else if host == "gitlab.com" || host.starts_with("gitlab.") {
        if segments < 2 {
            return None;
        }
        Forge::GitLab
    } else {
        Forge::Other
    };
    let port = url.port().map(|p| format!(":{p}")).unwrap_or_default();
    Some((format!("{}://{host}{port}{path}", url.scheme()), forge))
}

/// A commit, tag or version that can go into a URL as it is.
fn plain(s: Option<&str>) -> Option<&str> {
    let s = s?.trim();
    let ok = !s.is_empty()
        && s.len() <= 128
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b'+'))
        && !s.starts_with('.');
    ok.then_some(s)
}

/// The links for a service that runs `running` and may move to `candidate`.
pub(crate) fn links(running: Option<&ImageOrigin>, candidate: Option<&ImageOrigin>) -> Links {
    // The candidate's source wins: it is what the service moves to.
    let Some((repo, forge)) = candidate
        .and_then(|c| c.source.as_deref())
        .or_else(|| running.and_then(|r| r.source.as_deref()))
        .and_then(repository)
    else {
        return Links::default();
    };
    let old = plain(running.and_then(|r| r.revision.as_deref()));
    let new = plain(candidate.and_then(|c| c.revision.as_deref()));
    let version = plain(candidate.and_then(|c| c.version.as_deref()));
    let commit = |rev: Option<&str>| {
        rev.and_then(|rev| match forge {
            Forge::GitHub => Some(format!("{repo}/commit/{rev}")),
            Forge::GitLab => Some(format!("{repo}/-/commit/{rev}")),
            Forge::Other => None,
        })
    };
    let compare = match (old, new) {
        (Some(old), Some(new)) if old != new => match forge {
            Forge::GitHub => Some(format!("{repo}/compare/{old}...{new}")),
            Forge::GitLab => Some(format!("{repo}/-/compare/{old}...{new}")),
            Forge::Other => None,
        },
        _ => None,
    };
    let release_notes = version.and_then(|v| match forge {
        Forge::GitHub => Some(format!("{repo}/releases/tag/{v}")),
        Forge::GitLab => Some(format!("{repo}/-/releases/{v}")),
        Forge::Other => None,
    });
    Links {
        running_commit: commit(old),
        candidate_commit: commit(new),
        source: Some(repo),
        release_notes,
        compare,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn origin(source: &str, revision: &str, version: &str) -> ImageOrigin {
        let some = |s: &str| (!s.is_empty()).then(|| s.to_owned());
        ImageOrigin {
            source: some(source),
            revision: some(revision),
            version: some(version),
        }
    }

    #[test]
    fn github_sources_get_commits_a_compare_and_release_notes() {
        let running = origin("https://github.com/acme/app", "1111aaa", "1.0.0");
        let candidate = origin("https://github.com/acme/app.git", "2222bbb", "v1.1.0");
        assert_eq!(
            links(Some(&running), Some(&candidate)),
            Links {
                source: Some("https://github.com/acme/app".into()),
                running_commit: Some("https://github.com/acme/app/commit/1111aaa".into()),
                candidate_commit: Some("https://github.com/acme/app/commit/2222bbb".into()),
                release_notes: Some("https://github.com/acme/app/releases/tag/v1.1.0".into()),
                compare: Some("https://github.com/acme/app/compare/1111aaa...2222bbb".into()),
            }
        );
    }

    #[test]
    fn gitlab_sources_use_its_paths_and_nested_groups() {
        let running = origin("https://gitlab.com/acme/tools/app/", "1111aaa", "");
        let candidate = origin("https://gitlab.com/acme/tools/app", "2222bbb", "2.0.0");
        let l = links(Some(&running), Some(&candidate));
        assert_eq!(
            l.compare.as_deref(),
            Some("https://gitlab.com/acme/tools/app/-/compare/1111aaa...2222bbb")
        );
        assert_eq!(
            l.release_notes.as_deref(),
            Some("https://gitlab.com/acme/tools/app/-/releases/2.0.0")
        );
    }

    #[test]
    fn other_forges_get_the_source_link_only() {
        let l = links(
            Some(&origin("https://git.example.org/app", "1", "")),
            Some(&origin("https://git.example.org/app", "2", "2.0")),
        );
        assert_eq!(
            l,
            Links {
                source: Some("https://git.example.org/app".into()),
                ..Links::default()
            }
        );
    }

    #[test]
    fn what_cannot_be_a_safe_link_is_left_out() {
        for source in [
            "javascript:alert(1)",
            "ftp://github.com/a/b",
            "https://user:pw@github.com/a/b",
            "https://github.com/a/b?x=1",
            "https://github.com/a",
            "https://github.com/a/b/c",
            "not a url",
        ] {
            assert_eq!(
                links(Some(&origin(source, "1", "")), None),
                Links::default(),
                "{source}"
            );
        }
        let l = links(
            Some(&origin("https://github.com/a/b", "x\"><script>", "")),
            Some(&origin("https://github.com/a/b", "../../x", "1.0/../../y")),
        );
        assert_eq!(
            l,
            Links {
                source: Some("https://github.com/a/b".into()),
                ..Links::default()
            }
        );
    }

    #[test]
    fn the_same_revision_has_no_compare() {
        let o = origin("https://github.com/a/b", "abc", "");
        assert_eq!(links(Some(&o), Some(&o)).compare, None);
    }
}

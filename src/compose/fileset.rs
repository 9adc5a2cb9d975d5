//! Which file of a project decides a service's image.
//!
//! Compose reads every `-f` file in order and merges them: a later file's `image:` for a service
//! replaces an earlier one, and a file that mentions the service without `image:` (an override
//! adding environment or volumes) leaves it as it was. Within a file, a service that `extends:`
//! another (in the same file, or in `file:` relative to the extending file's folder) takes the
//! other's image unless it sets its own. So the value to edit is the `image:` of the last file in
//! merge order that gives the service one, directly or through `extends:` — and only that value.
//!
//! Pure over file texts: the caller says how to read a file (the files compose reads, and the
//! ones `extends:` names).

use std::cell::RefCell;
use std::collections::HashMap;
use std::path::{Component, Path, PathBuf};
use std::rc::Rc;

use super::ComposeError;
use super::locate::Project;

/// How many `extends:` steps lookout follows before calling the chain circular.
const MAX_EXTENDS: usize = 16;

/// The `image:` that decides what a service runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageOwner {
    /// The file holding the value.
    pub file: PathBuf,
    /// The service of that file whose `image:` it is: the service itself, or the one it
    /// extends.
    pub service: String,
}

/// Reads one file's text (its errors name the file).
pub type ReadFn<'r> = dyn Fn(&Path) -> Result<String, ComposeError> + 'r;

/// A project's compose files in `-f` order, and the files their `extends:` name, each read and
/// parsed once.
pub struct FileSet<'r> {
    files: Vec<PathBuf>,
    read: &'r ReadFn<'r>,
    texts: RefCell<HashMap<PathBuf, Rc<String>>>,
    summaries: RefCell<HashMap<PathBuf, Rc<Summary>>>,
}

/// What one file says about the services it defines: all [`FileSet::owner`] needs, so a file
/// is parsed once however many services are asked about.
struct Summary {
    /// In file order.
    names: Vec<String>,
    services: HashMap<String, Entry>,
}

struct Entry {
    /// The service has an `image:` key of its own (possibly through an anchor or merge key).
    has_image: bool,
    /// The image value, when it is a text value.
    image: Option<String>,
    /// Its `extends:` as (service, file), or why it cannot be read.
    extends: Result<Option<(String, Option<String>)>, String>,
}

impl Summary {
    fn of(project: &Project<'_>) -> Result<Summary, ComposeError> {
        let names = project.service_names();
        let mut services = HashMap::new();
        for name in &names {
            let image = project.image_of(name)?;
            let extends = match project.service_node(name) {
                Some(node) => project.extends_of(node),
                None => Ok(None),
            };
            let entry = Entry {
                has_image: image.is_some(),
                image: image
                    .and_then(|r| project.doc.scalar(r.node))
                    .map(str::to_owned),
                extends,
            };
            services.insert(name.clone(), entry);
        }
        Ok(Summary { names, services })
    }
}

impl<'r> FileSet<'r> {
    pub fn new(files: Vec<PathBuf>, read: &'r ReadFn<'r>) -> FileSet<'r> {
        FileSet {
            files,
            read,
            texts: RefCell::new(HashMap::new()),
            summaries: RefCell::new(HashMap::new()),
        }
    }

    /// The text of `path`, read once.
    pub(super) fn text(&self, path: &Path) -> Result<Rc<String>, ComposeError> {
        if let Some(t) = self.texts.borrow().get(path) {
            return Ok(t.clone());
        }
        let text = Rc::new((self.read)(path)?);
        self.texts
            .borrow_mut()
            .insert(path.to_owned(), text.clone());
        Ok(text)
    }

    fn summary(&self, path: &Path) -> Result<Rc<Summary>, ComposeError> {
        if let Some(s) = self.summaries.borrow().get(path) {
            return Ok(s.clone());
        }
        let text = self.text(path)?;
        let project = Project::parse(&text).map_err(|e| e.in_file(path))?;
        let summary = Rc::new(Summary::of(&project).map_err(|e| e.in_file(path))?);
        self.summaries
            .borrow_mut()
            .insert(path.to_owned(), summary.clone());
        Ok(summary)
    }

    /// Every file read so far: the `-f` files in order, then the ones `extends:` led to, by
    /// path.
    pub(super) fn read_files(&self) -> Vec<PathBuf> {
        let texts = self.texts.borrow();
        let mut out: Vec<PathBuf> = self
            .files
            .iter()
            .filter(|f| texts.contains_key(*f))
            .cloned()
            .collect();
        let mut others: Vec<PathBuf> = texts
            .keys()
            .filter(|k| !self.files.contains(k))
            .cloned()
            .collect();
        others.sort();
        out.extend(others);
        out
    }

    /// Every service any file defines, in order of first appearance.
    pub fn services(&self) -> Result<Vec<String>, ComposeError> {
        let mut out: Vec<String> = Vec::new();
        for file in &self.files {
            for name in &self.summary(file)?.names {
                if !out.contains(name) {
                    out.push(name.clone());
                }
            }
        }
        Ok(out)
    }

    /// The `image:` that decides what `service` runs, or why there is none.
    pub(crate) fn owner(&self, service: &str) -> Result<ImageOwner, ComposeError> {
        let mut owner = None;
        let mut defined_in = None;
        for file in &self.files {
            let summary = self.summary(file)?;
            if !summary.services.contains_key(service) {
                continue;
            }
            defined_in = Some(file);
            if let Some(found) = self.in_file(file, &summary, service, 0)? {
                owner = Some(found);
            }
        }
        match (owner, defined_in) {
            (Some(owner), _) => Ok(owner),
            // The last file that defines it says why (build only, or no image).
            (None, Some(file)) => {
                let text = self.text(file)?;
                Err(super::locate(&text, service)
                    .err()
                    .unwrap_or_else(|| ComposeError::NoImage {
                        service: service.to_owned(),
                    })
                    .in_file(file))
            }
            (None, None) => {
                let e = ComposeError::UnknownService {
                    service: service.to_owned(),
                    known: self.services()?,
                };
                // With one file, that file is where the service is missing.
                Err(match &self.files[..] {
                    [one] => e.in_file(one),
                    _ => e,
                })
            }
        }
    }

    /// The image value `owner` names, when it is a text value.
    pub(super) fn image_value(&self, owner: &ImageOwner) -> Result<Option<String>, ComposeError> {
        Ok(self
            .summary(&owner.file)?
            .services
            .get(&owner.service)
            .and_then(|e| e.image.clone()))
    }

    /// Every service whose image is decided by `owner` (the service itself included): changing
    /// that value changes them all.
    pub fn sharing(&self, owner: &ImageOwner) -> Result<Vec<String>, ComposeError> {
        let mut out = Vec::new();
        for service in self.services()? {
            if self.owner(&service).is_ok_and(|o| o == *owner) {
                out.push(service);
            }
        }
        Ok(out)
    }

    /// The image `service` gets from `file` alone: its own `image:`, else through `extends:`.
    fn in_file(
        &self,
        file: &Path,
        summary: &Summary,
        service: &str,
        depth: usize,
    ) -> Result<Option<ImageOwner>, ComposeError> {
        let extends_error = |reason: String| {
            ComposeError::Extends {
                service: service.to_owned(),
                reason,
            }
            .in_file(file)
        };
        if depth > MAX_EXTENDS {
            return Err(extends_error(format!(
                "`extends:` goes more than {MAX_EXTENDS} steps deep; is it circular?"
            )));
        }
        let Some(entry) = summary.services.get(service) else {
            return Err(extends_error("no such service".into()));
        };
        if entry.has_image {
            return Ok(Some(ImageOwner {
                file: file.to_owned(),
                service: service.to_owned(),
            }));
        }
        let Some((base, base_file)) = entry.extends.clone().map_err(extends_error)? else {
            return Ok(None);
        };
        match base_file {
            None => {
                if !summary.services.contains_key(&base) {
                    return Err(extends_error(format!(
                        "it extends {base:?}, which this file does not define"
                    )));
                }
                self.in_file(file, summary, &base, depth + 1)
            }
            Some(name) => {
                let base_path = clean_path(&file.parent().unwrap_or(Path::new("")).join(&name));
                let base_summary = self.summary(&base_path)?;
                if !base_summary.services.contains_key(&base) {
                    return Err(extends_error(format!(
                        "it extends {base:?} in {name}, which does not define it"
                    )));
                }
                self.in_file(&base_path, &base_summary, &base, depth + 1)
            }
        }
    }
}

/// `/a/./b/../c` → `/a/c`, as Go's `filepath.Clean` (which compose uses), without touching the
/// file system.
pub fn clean_path(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => {
                if out.file_name().is_some() {
                    out.pop();
                } else if !out.has_root() {
                    out.push("..");
                }
            }
            other => out.push(other),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn owner_of(
        files: &[(&str, &str)],
        order: &[&str],
        service: &str,
    ) -> Result<ImageOwner, String> {
        let texts: HashMap<PathBuf, String> = files
            .iter()
            .map(|(p, t)| (PathBuf::from(p), (*t).to_owned()))
            .collect();
        let read = |p: &Path| {
            texts.get(p).cloned().ok_or_else(|| ComposeError::Io {
                action: "read",
                path: p.to_owned(),
                source: std::io::ErrorKind::NotFound.into(),
            })
        };
        let set = FileSet::new(order.iter().map(PathBuf::from).collect(), &read);
        set.owner(service).map_err(|e| e.to_string())
    }

    fn at(file: &str, service: &str) -> Result<ImageOwner, String> {
        Ok(ImageOwner {
            file: file.into(),
            service: service.into(),
        })
    }

    const BASE: &str = "services:\n  web:\n    image: app:1.0\n  db:\n    image: pg:16\n";

    #[test]
    fn an_override_without_image_leaves_the_base_file_in_charge() {
        let over = "services:\n  web:\n    environment: [A=1]\n    volumes: [data:/data]\n";
        let files = [("/p/compose.yml", BASE), ("/p/compose.override.yml", over)];
        let order = ["/p/compose.yml", "/p/compose.override.yml"];
        assert_eq!(owner_of(&files, &order, "web"), at("/p/compose.yml", "web"));
    }

    #[test]
    fn the_last_file_that_sets_the_image_decides() {
        let prod = "services:\n  web:\n    image: registry.example/app:1.0\n";
        let files = [("/p/compose.yml", BASE), ("/p/prod.yml", prod)];
        let order = ["/p/compose.yml", "/p/prod.yml"];
        assert_eq!(owner_of(&files, &order, "web"), at("/p/prod.yml", "web"));
        assert_eq!(owner_of(&files, &order, "db"), at("/p/compose.yml", "db"));
        // In the other order the base file is last and wins.
        let order = ["/p/prod.yml", "/p/compose.yml"];
        assert_eq!(owner_of(&files, &order, "web"), at("/p/compose.yml", "web"));
    }

    #[test]
    fn a_service_defined_only_in_an_override_is_found_there() {
        let over = "services:\n  cache:\n    image: redis:7\n";
        let files = [("/p/compose.yml", BASE), ("/p/o.yml", over)];
        let order = ["/p/compose.yml", "/p/o.yml"];
        assert_eq!(owner_of(&files, &order, "cache"), at("/p/o.yml", "cache"));
    }

    #[test]
    fn extends_in_the_same_file_and_in_another_file_lead_to_the_base_image() {
        let main = "services:\n  web:\n    extends: base\n    ports: ['80']\n  base:\n    image: app:1\n  \
                    worker:\n    extends:\n      service: common\n      file: ../common/common.yml\n";
        let common = "services:\n  common:\n    extends: { service: root }\n  root:\n    image: zabbix/zabbix-agent:7.0\n";
        let files = [
            ("/p/app/compose.yml", main),
            ("/p/common/common.yml", common),
        ];
        let order = ["/p/app/compose.yml"];
        assert_eq!(
            owner_of(&files, &order, "web"),
            at("/p/app/compose.yml", "base")
        );
        assert_eq!(
            owner_of(&files, &order, "worker"),
            at("/p/common/common.yml", "root")
        );
    }

    #[test]
    fn an_own_image_wins_over_the_extended_one() {
        let main =
            "services:\n  web:\n    extends: base\n    image: app:2\n  base:\n    image: app:1\n";
        let files = [("/p/compose.yml", main)];
        assert_eq!(
            owner_of(&files, &["/p/compose.yml"], "web"),
            at("/p/compose.yml", "web")
        );
    }

    #[test]
    fn broken_extends_are_refused_with_the_reason() {
        let cases = [
            (
                "services:\n  web:\n    extends: nope\n",
                "extends \"nope\", which this file does not define",
            ),
            (
                "services:\n  web:\n    extends: {file: x.yml}\n",
                "`extends:` has no `service:`",
            ),
            (
                "services:\n  web:\n    extends: [a]\n",
                "neither a service name nor a mapping",
            ),
            (
                "services:\n  a:\n    extends: b\n  b:\n    extends: a\n  web:\n    extends: a\n",
                "circular",
            ),
            (
                "services:\n  web:\n    extends: {service: x, file: missing.yml}\n",
                "/p/missing.yml",
            ),
        ];
        for (text, want) in cases {
            let files = [("/p/compose.yml", text)];
            let got = owner_of(&files, &["/p/compose.yml"], "web").unwrap_err();
            assert!(got.contains(want), "{text:?}: {got}");
        }
    }

    #[test]
    fn no_image_anywhere_says_why_from_the_last_file_that_defines_the_service() {
        let build = "services:\n  web:\n    build: .\n";
        let over = "services:\n  web:\n    environment: [A=1]\n";
        let files = [("/p/compose.yml", build), ("/p/o.yml", over)];
        let got = owner_of(&files, &["/p/compose.yml", "/p/o.yml"], "web").unwrap_err();
        assert!(got.starts_with("/p/o.yml: "), "{got}");
        let got = owner_of(&files, &["/p/compose.yml", "/p/o.yml"], "nope").unwrap_err();
        assert!(
            got.contains("no service \"nope\"; the services are: web"),
            "{got}"
        );
    }

    #[test]
    fn paths_are_cleaned_as_compose_cleans_them() {
        for (path, want) in [
            ("/a/./b/../c", "/a/c"),
            ("/..", "/"),
            ("a/../../b", "../b"),
            ("../../x", "../../x"),
            ("./", ""),
        ] {
            assert_eq!(clean_path(Path::new(path)), Path::new(want), "{path}");
        }
    }

    #[test]
    fn services_extending_one_base_share_its_image() {
        let main = "services:\n  a:\n    extends: base\n  b:\n    extends: base\n  c:\n    image: x:1\n  base:\n    image: app:1\n";
        let read = |_: &Path| Ok(main.to_owned());
        let set = FileSet::new(vec!["/p/compose.yml".into()], &read);
        let owner = set.owner("a").unwrap();
        assert_eq!(set.sharing(&owner).unwrap(), ["a", "b", "base"]);
    }

    #[test]
    fn the_single_file_editor_refuses_an_image_from_extends_naming_where_it_is() {
        let text = "services:\n  web:\n    extends: base\n  base:\n    image: app:1\n  \
                    w2:\n    extends: {service: root, file: common.yml}\n";
        let e = crate::compose::locate(text, "web").unwrap_err().to_string();
        assert!(
            e.contains("takes its settings from service \"base\" through `extends:`"),
            "{e}"
        );
        let e = crate::compose::locate(text, "w2").unwrap_err().to_string();
        assert!(
            e.contains("from service \"root\" of common.yml through `extends:`"),
            "{e}"
        );
    }
}

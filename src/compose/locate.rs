//! Finding where a service's image is really defined.
//!
//! A service's image is its own `image:` value, a value it merges in (`<<: *base`) or aliases
//! (`image: *img`), or a `${VAR}` inside that value. When the value is shared, every service that
//! reads the same bytes is named, so nothing changes behind an operator's back.

use std::ops::Range;

use super::yaml::{Doc, Kind, NodeId, ScalarStyle, line_col};
use super::{ComposeError, ImageSite, Quote, interp};

/// The parsed file with its `services` mapping found.
pub(crate) struct Project<'t> {
    pub doc: Doc<'t>,
    /// Each service's name and its (alias-resolved) node, in file order, merged ones last.
    services: Vec<(String, NodeId, Vec<usize>)>,
}

/// Where one service's image value is, after following merges and aliases.
pub(crate) struct Resolved {
    pub node: NodeId,
    /// Anchors passed through to reach the value.
    pub via: Vec<usize>,
}

impl<'t> Project<'t> {
    pub(super) fn parse(text: &'t str) -> Result<Project<'t>, ComposeError> {
        let doc = Doc::parse(text)?;
        if !matches!(
            doc.nodes[doc.resolve(doc.root, &mut Vec::new())].kind,
            Kind::Map { .. }
        ) {
            return Err(ComposeError::NotCompose {
                reason: "the top level is not a mapping".into(),
            });
        }
        let mut via = Vec::new();
        let services_node = doc
            .get(doc.root, "services", &mut via)
            .map(|s| doc.resolve(s, &mut via))
            .filter(|&s| matches!(doc.nodes[s].kind, Kind::Map { .. }))
            .ok_or_else(|| ComposeError::NotCompose {
                reason: "it has no `services:` mapping".into(),
            })?;
        // Own entries directly (a large file has thousands); merged ones through `get`.
        let mut services: Vec<(String, NodeId, Vec<usize>)> = Vec::new();
        if let Kind::Map { entries } = &doc.nodes[services_node].kind {
            for &(k, v) in entries {
                if let Some(name) = doc.scalar(k).filter(|&n| n != "<<") {
                    let mut via = via.clone();
                    let node = doc.resolve(v, &mut via);
                    services.push((name.to_string(), node, via));
                }
            }
        }
        for name in doc.keys(services_node).into_iter().skip(services.len()) {
            let mut via = via.clone();
            if let Some(node) = doc.get(services_node, &name, &mut via) {
                let node = doc.resolve(node, &mut via);
                services.push((name, node, via));
            }
        }
        Ok(Project { doc, services })
    }

    pub(super) fn service_names(&self) -> Vec<String> {
        self.services.iter().map(|(n, _, _)| n.clone()).collect()
    }

    fn service(&self, service: &str) -> Result<&(String, NodeId, Vec<usize>), ComposeError> {
        self.services
            .iter()
            .find(|(n, _, _)| n == service)
            .ok_or_else(|| ComposeError::UnknownService {
                service: service.to_string(),
                known: self.service_names(),
            })
    }

    /// The (alias-resolved) mapping of `service`, or `None` when the file does not define it.
    pub(super) fn service_node(&self, service: &str) -> Option<NodeId> {
        self.services
            .iter()
            .find(|(n, _, _)| n == service)
            .map(|(_, node, _)| *node)
    }

    /// The node holding `service`'s image, or `None` when it has no `image:` key.
    pub(super) fn image_of(&self, service: &str) -> Result<Option<Resolved>, ComposeError> {
        let entry = self.service(service)?;
        Ok(self.image_in(entry))
    }

    fn image_in(&self, (_, node, via): &(String, NodeId, Vec<usize>)) -> Option<Resolved> {
        let mut via = via.clone();
        let image = self.doc.get(*node, "image", &mut via)?;
        let node = self.doc.resolve(image, &mut via);
        Some(Resolved { node, via })
    }

    fn has_build(&self, service: &str) -> bool {
        self.service(service)
            .is_ok_and(|(_, node, _)| self.doc.get(*node, "build", &mut Vec::new()).is_some())
    }

    /// Why a service without an `image:` of its own cannot be edited here when it takes its
    /// settings from `extends:`: the image, if any, is set where the extended service is.
    fn extends(&self, service: &str) -> Option<String> {
        let (_, node, _) = self.service(service).ok()?;
        let (base, file) = self.extends_of(*node).ok()??;
        let from = match file {
            Some(file) => format!("service {base:?} of {file}"),
            None => format!("service {base:?}"),
        };
        Some(format!(
            "it has no `image:` of its own and takes its settings from {from} through \
             `extends:`; set the image there, or give {service:?} its own `image:`"
        ))
    }

    /// A service's `extends:` as (service, file): `extends: base` or
    /// `extends: {service: base, file: common.yml}`; `None` when it has none.
    pub(super) fn extends_of(
        &self,
        node: NodeId,
    ) -> Result<Option<(String, Option<String>)>, String> {
        let doc = &self.doc;
        let mut via = Vec::new();
        let Some(value) = doc.get(node, "extends", &mut via) else {
            return Ok(None);
        };
        let value = doc.resolve(value, &mut via);
        if let Some(name) = doc.scalar(value) {
            return Ok(Some((name.to_owned(), None)));
        }
        if !matches!(
            doc.nodes.get(value).map(|n| &n.kind),
            Some(Kind::Map { .. })
        ) {
            return Err("`extends:` is neither a service name nor a mapping".into());
        }
        let field = |key: &str| {
            doc.get(value, key, &mut Vec::new())
                .map(|n| doc.resolve(n, &mut Vec::new()))
                .and_then(|n| doc.scalar(n))
                .map(str::to_owned)
        };
        let service = field("service").ok_or("`extends:` has no `service:`")?;
        Ok(Some((service, field("file"))))
    }

    /// Every service with an image, and where that image is.
    pub(super) fn images(&self) -> impl Iterator<Item = (&str, Resolved)> + '_ {
        self.services
            .iter()
            .filter_map(|entry| Some((entry.0.as_str(), self.image_in(entry)?)))
    }
}

/// Says where `service`'s image is defined in compose `text`.
///
/// Errors name what is wrong: an unknown service (with the known ones), a service with only
/// `build:`, a value that is not a plain or quoted single scalar, or text that is not YAML.
pub fn locate(text: &str, service: &str) -> Result<ImageSite, ComposeError> {
    let project = Project::parse(text)?;
    locate_in(&project, service)
}

pub(crate) fn locate_in(project: &Project<'_>, service: &str) -> Result<ImageSite, ComposeError> {
    let ImageScalar {
        span: token,
        quote,
        value,
        readers: sharing,
        anchor,
    } = image_scalar(project, service)?;
    if token.is_empty() || value.trim().is_empty() {
        // `image:` with nothing after it (or only an anchor, `image: &name`): there is no
        // reference to change, and no bytes to change it in.
        return Err(ComposeError::Unsupported {
            service: service.to_string(),
            reason: "its `image:` is empty; write the image reference it runs".into(),
        });
    }
    if value.contains('$') {
        let variables = interp::variables(&value);
        if variables.len() > 1 {
            interp::parse(&value).map_err(|reason| ComposeError::Unsupported {
                service: service.to_string(),
                reason,
            })?;
            return Ok(ImageSite::Template {
                span: token,
                template: value,
                variables,
            });
        }
        let template = interp::template(&value).map_err(|reason| ComposeError::Unsupported {
            service: service.to_string(),
            reason,
        })?;
        let services = services_using_variable(project, &template.name)?;
        return Ok(ImageSite::Variable {
            span: token,
            template: value,
            name: template.name,
            default: template.default,
            services,
        });
    }
    if sharing.len() > 1 {
        return Ok(ImageSite::Anchor {
            anchor,
            span: token,
            quote,
            value,
            services: sharing,
        });
    }
    Ok(ImageSite::Inline {
        span: token,
        quote,
        value,
    })
}

/// The scalar holding a service's image value, whatever it holds (`${VAR}`s included).
pub(crate) struct ImageScalar {
    /// The token's bytes, quotes included.
    pub span: Range<usize>,
    pub quote: Quote,
    pub value: String,
    /// Every service reading this very scalar (through anchors, aliases or merge keys), the
    /// service itself included.
    pub readers: Vec<String>,
    /// The anchors passed through to reach it (`&base, &img`), empty when none.
    pub anchor: String,
}

/// Finds the scalar of `service`'s own image value, or says why there is none lookout edits.
pub(crate) fn image_scalar(
    project: &Project<'_>,
    service: &str,
) -> Result<ImageScalar, ComposeError> {
    let doc = &project.doc;
    let resolved = match project.image_of(service)? {
        Some(r) => r,
        None => {
            if let Some(reason) = project.extends(service) {
                return Err(ComposeError::Unsupported {
                    service: service.to_string(),
                    reason,
                });
            }
            return Err(if project.has_build(service) {
                ComposeError::BuildOnly {
                    service: service.to_string(),
                }
            } else {
                ComposeError::NoImage {
                    service: service.to_string(),
                }
            });
        }
    };
    let (value, span, quote) = scalar_parts(doc, resolved.node, service)?;

    // Every service reading the very same node shares this value.
    let mut readers = Vec::new();
    let mut anchors: Vec<usize> = Vec::new();
    for (name, other) in project.images() {
        if other.node == resolved.node {
            for a in other.via {
                if !anchors.contains(&a) {
                    anchors.push(a);
                }
            }
            readers.push(name.to_string());
        }
    }
    let anchor = anchors
        .iter()
        .map(|&a| format!("&{}", doc.anchor_name(a)))
        .collect::<Vec<_>>()
        .join(", ");
    Ok(ImageScalar {
        span,
        quote,
        value,
        readers,
        anchor,
    })
}

/// The value, token bytes and quote style of an image scalar, or why lookout will not edit it.
fn scalar_parts(
    doc: &Doc<'_>,
    node: NodeId,
    service: &str,
) -> Result<(String, Range<usize>, Quote), ComposeError> {
    let unsupported = |reason: &str| ComposeError::Unsupported {
        service: service.to_string(),
        reason: reason.to_string(),
    };
    let Kind::Scalar {
        value,
        style,
        token,
    } = &doc.nodes[node].kind
    else {
        return Err(unsupported(
            "its `image:` is a mapping or a list, not a text value",
        ));
    };
    let quote = match style {
        ScalarStyle::Plain => Quote::Plain,
        ScalarStyle::SingleQuoted => Quote::Single,
        ScalarStyle::DoubleQuoted => Quote::Double,
        ScalarStyle::Literal | ScalarStyle::Folded => {
            let (line, _) = line_col(doc.text, token.start);
            return Err(unsupported(&format!(
                "its `image:` value on line {line} is a block scalar (`|` or `>`); write it on one line"
            )));
        }
    };
    if doc.nodes[node].tag.as_deref() == Some("!reset") {
        let (line, _) = line_col(doc.text, token.start);
        return Err(unsupported(&format!(
            "its `image:` on line {line} is tagged `!reset`, which removes the value; edit the file that sets the image"
        )));
    }
    if value.is_empty() {
        return Err(unsupported("its `image:` is empty"));
    }
    Ok((value.clone(), token.clone(), quote))
}

/// Services whose image uses `name`. A use anywhere else in the file (an environment value, a
/// label) is refused: changing the variable would change that too.
pub(crate) fn services_using_variable(
    project: &Project<'_>,
    name: &str,
) -> Result<Vec<String>, ComposeError> {
    let doc = &project.doc;
    let mut image_nodes = Vec::new();
    let mut services = Vec::new();
    for (service, r) in project.images() {
        if doc
            .scalar(r.node)
            .is_some_and(|v| interp::variables(v).iter().any(|n| n == name))
        {
            image_nodes.push(r.node);
            services.push(service.to_string());
        }
    }
    for (id, node) in doc.nodes.iter().enumerate() {
        if let Kind::Scalar { value, token, .. } = &node.kind
            && !image_nodes.contains(&id)
            && interp::variables(value).iter().any(|n| n == name)
        {
            let (line, _) = line_col(doc.text, token.start);
            return Err(ComposeError::VariableUsedElsewhere {
                variable: name.to_string(),
                line,
            });
        }
    }
    Ok(services)
}

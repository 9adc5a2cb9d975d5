//! Compose variable interpolation in a value: `$VAR`, `${VAR}`, `${VAR:-default}` and friends.
//!
//! lookout never writes a substituted value; it needs to know which variables a value uses and,
//! for a new image, which one part of the value must change: one variable's value, or else one
//! literal part of the value itself ([`solve`]).

use std::ops::Range;

/// One piece of a value: literal text or a variable reference.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Piece {
    Literal(String),
    Var {
        name: String,
        /// `-`, `:-`, `?`, `:?`, `+`, `:+`, or empty for a plain reference.
        op: String,
        /// The text after the operator (a default, an error message, an alternative).
        arg: String,
    },
}

/// Splits a value into literal text and variable references. `$$` is a literal `$`.
/// Nested references (`${A:-${B}}`) are refused: lookout could not say which value to change.
pub(crate) fn parse(value: &str) -> Result<Vec<Piece>, String> {
    Ok(parse_spans(value)?.into_iter().map(|(p, _)| p).collect())
}

/// [`parse`], with the bytes of `value` each piece comes from.
fn parse_spans(value: &str) -> Result<Vec<(Piece, Range<usize>)>, String> {
    let mut pieces = Vec::new();
    let mut literal = String::new();
    // Where the literal text being collected starts in `value`.
    let mut literal_start = 0;
    let mut rest = value;
    let at = |rest: &str| value.len() - rest.len();
    while let Some(pos) = rest.find('$') {
        literal.push_str(&rest[..pos]);
        let dollar = at(rest) + pos;
        let after = &rest[pos + 1..];
        if let Some(tail) = after.strip_prefix('$') {
            literal.push('$');
            rest = tail;
        } else if let Some(inner) = after.strip_prefix('{') {
            let close = inner
                .find('}')
                .ok_or_else(|| format!("unclosed `${{` in {value:?}"))?;
            let body = &inner[..close];
            if body.contains('$') {
                return Err(format!("nested variable reference in {value:?}"));
            }
            let name_len = name_len(body);
            if name_len == 0 {
                return Err(format!("`${{{body}}}` does not start with a variable name"));
            }
            let (name, modifier) = body.split_at(name_len);
            let op_len = match modifier.as_bytes() {
                [] => 0,
                [b':', b'-' | b'?' | b'+', ..] => 2,
                [b'-' | b'?' | b'+', ..] => 1,
                _ => return Err(format!("unknown modifier in `${{{body}}}`")),
            };
            flush(&mut literal, literal_start..dollar, &mut pieces);
            rest = &inner[close + 1..];
            pieces.push((
                Piece::Var {
                    name: name.to_string(),
                    op: modifier[..op_len].to_string(),
                    arg: modifier[op_len..].to_string(),
                },
                dollar..at(rest),
            ));
            literal_start = at(rest);
        } else {
            let n = name_len(after);
            if n == 0 {
                // A lone `$` stays literal, as compose leaves it.
                literal.push('$');
                rest = after;
            } else {
                flush(&mut literal, literal_start..dollar, &mut pieces);
                rest = &after[n..];
                pieces.push((
                    Piece::Var {
                        name: after[..n].to_string(),
                        op: String::new(),
                        arg: String::new(),
                    },
                    dollar..at(rest),
                ));
                literal_start = at(rest);
            }
        }
    }
    literal.push_str(rest);
    flush(&mut literal, literal_start..value.len(), &mut pieces);
    Ok(pieces)
}

fn flush(literal: &mut String, span: Range<usize>, pieces: &mut Vec<(Piece, Range<usize>)>) {
    if !literal.is_empty() {
        pieces.push((Piece::Literal(std::mem::take(literal)), span));
    }
}

/// Length of a variable name at the start of `s`: `[A-Za-z_][A-Za-z0-9_]*`.
fn name_len(s: &str) -> usize {
    let bytes = s.as_bytes();
    if !bytes
        .first()
        .is_some_and(|b| b.is_ascii_alphabetic() || *b == b'_')
    {
        return 0;
    }
    bytes
        .iter()
        .take_while(|b| b.is_ascii_alphanumeric() || **b == b'_')
        .count()
}

/// The variables a value refers to, in order, without repeats.
pub(crate) fn variables(value: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for piece in parse(value).unwrap_or_default() {
        if let Piece::Var { name, .. } = piece
            && !out.contains(&name)
        {
            out.push(name);
        }
    }
    out
}

/// A value built around exactly one variable: `prefix${NAME…}suffix`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Template {
    pub name: String,
    pub default: Option<String>,
}

/// Reads `value` as a [`Template`], or says why lookout cannot edit it through one variable.
pub(crate) fn template(value: &str) -> Result<Template, String> {
    let pieces = parse(value)?;
    let vars: Vec<_> = pieces
        .iter()
        .enumerate()
        .filter(|(_, p)| matches!(p, Piece::Var { .. }))
        .collect();
    let [(_, Piece::Var { name, op, arg })] = vars[..] else {
        return Err(format!(
            "{value:?} uses {} variables; lookout edits an image held in exactly one",
            vars.len()
        ));
    };
    let default = match op.as_str() {
        "" | "?" | ":?" => None,
        "-" | ":-" => Some(arg.clone()),
        _ => {
            return Err(format!(
                "`${{{name}{op}{arg}}}` substitutes another value when {name} is set; \
                 lookout cannot say which value to change"
            ));
        }
    };
    Ok(Template {
        name: name.clone(),
        default,
    })
}

/// What a variable reference expands to, given the variable's value (`None` when unset), as
/// compose expands it. `${V:?msg}` unset is compose's error; it is treated as empty here, since
/// compose itself would refuse to run.
fn expand(op: &str, arg: &str, value: Option<&str>) -> String {
    let set = value.is_some();
    let non_empty = value.is_some_and(|v| !v.is_empty());
    match op {
        ":-" if !non_empty => arg.to_owned(),
        "-" if !set => arg.to_owned(),
        ":+" => {
            if non_empty {
                arg.to_owned()
            } else {
                String::new()
            }
        }
        "+" => {
            if set {
                arg.to_owned()
            } else {
                String::new()
            }
        }
        _ => value.unwrap_or_default().to_owned(),
    }
}

/// What to change in an image value so that it reads a new image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Change {
    /// It reads the new image already.
    Unchanged,
    /// Give variable `name` this value.
    Variable { name: String, value: String },
    /// Write `value` instead: a literal part of the value holds the change, the variables keep
    /// their text and their values.
    Literal { value: String },
}

/// What to change in image value `value` (`${REGISTRY:-docker.io}/app:${TAG}`,
/// `${PREFIX:-}postgres:15.12-alpine`) so that it reads `image`, every variable expanding to
/// what it does now (`current` gives each variable's value, `None` when unset).
///
/// The change must fit in one part of the value: one variable, or else one literal part. A
/// variable that can hold it is preferred (that is what the variable is for); a literal part is
/// chosen only when no variable can, that is when the variables' current values leave the rest
/// of the reference as it is. Refused when no single part does it (the image differs in more
/// than one place), when two variables or two literal parts could, or when the one that would
/// is a variable referenced more than once or through `+` (its value is not what the image
/// shows).
pub(crate) fn solve(
    value: &str,
    current: impl Fn(&str) -> Option<String>,
    image: &str,
) -> Result<Change, String> {
    let pieces = parse_spans(value)?;
    let expanded: Vec<String> = pieces
        .iter()
        .map(|(p, _)| match p {
            Piece::Literal(l) => l.clone(),
            Piece::Var { name, op, arg } => expand(op, arg, current(name).as_deref()),
        })
        .collect();
    let now = expanded.concat();
    if now == image {
        return Ok(Change::Unchanged);
    }
    // What piece `i` must read for the whole value to read `image`, when that changes it.
    let middle = |i: usize| -> Option<&str> {
        let before = expanded.get(..i)?.concat();
        let after = expanded.get(i + 1..)?.concat();
        let middle = image.strip_prefix(&before)?.strip_suffix(&after)?;
        (!middle.is_empty()
            && !middle.contains('$')
            && Some(middle) != expanded.get(i).map(String::as_str))
        .then_some(middle)
    };
    let mut names: Vec<&str> = Vec::new();
    let mut variables: Vec<(String, String)> = Vec::new();
    let mut literals: Vec<String> = Vec::new();
    for (i, (piece, span)) in pieces.iter().enumerate() {
        match piece {
            Piece::Var { name, .. } => {
                if names.contains(&name.as_str()) {
                    continue;
                }
                names.push(name);
                let mut uses = pieces.iter().filter_map(|(p, _)| match p {
                    Piece::Var { name: n, op, .. } if n == name => Some(op.as_str()),
                    _ => None,
                });
                let single =
                    uses.next().is_some_and(|op| !op.contains('+')) && uses.next().is_none();
                if let Some(m) = middle(i).filter(|_| single) {
                    variables.push((name.clone(), m.to_owned()));
                }
            }
            Piece::Literal(_) => {
                if let Some(m) = middle(i) {
                    literals.push(format!("{}{m}{}", &value[..span.start], &value[span.end..]));
                }
            }
        }
    }
    match (&variables[..], &literals[..]) {
        ([(name, value)], _) => Ok(Change::Variable {
            name: name.clone(),
            value: value.clone(),
        }),
        ([], [one]) => Ok(Change::Literal { value: one.clone() }),
        ([], []) => Err(format!(
            "{value:?} reads {now:?} now; no single one of its variables ({}) or of its literal \
             parts can make it read {image:?}",
            names.join(", ")
        )),
        ([], _) => Err(format!(
            "{value:?}: more than one of its literal parts could hold the change to {image:?}; \
             lookout cannot say which to change"
        )),
        (several, _) => Err(format!(
            "{value:?}: more than one variable could hold the change to {image:?} ({}); \
             lookout cannot say which to change",
            several
                .iter()
                .map(|(n, _)| n.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        )),
    }
}

/// What `value` reads once its variables are expanded (`current` gives each variable's value,
/// `None` when unset), as compose expands it.
pub fn interpolate(
    value: &str,
    current: impl Fn(&str) -> Option<String>,
) -> Result<String, String> {
    Ok(parse(value)?
        .into_iter()
        .map(|p| match p {
            Piece::Literal(l) => l,
            Piece::Var { name, op, arg } => expand(&op, &arg, current(&name).as_deref()),
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(value: &str, expect: &str) {
        let got = match template(value) {
            Ok(t) => format!("{}|{}", t.name, t.default.as_deref().unwrap_or("-")),
            Err(e) => format!("error: {e}"),
        };
        assert_eq!(got, expect, "template({value:?})");
    }

    #[test]
    fn templates() {
        check("${IMAGE}", "IMAGE|-");
        check("$IMAGE", "IMAGE|-");
        check("${IMAGE:-nginx:1.25}", "IMAGE|nginx:1.25");
        check("${IMAGE-nginx}", "IMAGE|nginx");
        check("${IMAGE:?set IMAGE}", "IMAGE|-");
        check("postgres:${PG_TAG}", "PG_TAG|-");
        check("${REG}/app:1", "REG|-");
        check("$$HOME/${TAG}", "TAG|-");
        check(
            "nginx:1",
            "error: \"nginx:1\" uses 0 variables; lookout edits an image held in exactly one",
        );
        check(
            "${REG}/app:${TAG}",
            "error: \"${REG}/app:${TAG}\" uses 2 variables; lookout edits an image held in exactly one",
        );
        check(
            "${A:-${B}}",
            "error: nested variable reference in \"${A:-${B}}\"",
        );
        check(
            "${A:+x}",
            "error: `${A:+x}` substitutes another value when A is set; lookout cannot say which value to change",
        );
        check("${A", "error: unclosed `${` in \"${A\"");
    }

    #[test]
    fn pieces_know_the_bytes_they_come_from() {
        let value = "a$$b${X:-1}$Y-$";
        let got: Vec<(Piece, &str)> = parse_spans(value)
            .unwrap()
            .into_iter()
            .map(|(p, r)| (p, &value[r]))
            .collect();
        let var = |name: &str, op: &str, arg: &str| Piece::Var {
            name: name.into(),
            op: op.into(),
            arg: arg.into(),
        };
        assert_eq!(
            got,
            [
                (Piece::Literal("a$b".into()), "a$$b"),
                (var("X", ":-", "1"), "${X:-1}"),
                (var("Y", "", ""), "$Y"),
                (Piece::Literal("-$".into()), "-$"),
            ]
        );
    }

    #[test]
    fn interpolate_expands_as_compose_does() {
        let env = |n: &str| (n == "SET").then(|| "v".to_owned());
        for (value, want) in [
            ("${UNSET:-d}/${SET:-d}", "d/v"),
            ("${UNSET-d}${SET+alt}", "dalt"),
            ("$$SET:$SET", "$SET:v"),
            ("${UNSET}x", "x"),
        ] {
            assert_eq!(interpolate(value, env).unwrap(), want, "{value}");
        }
    }

    #[test]
    fn solve_changes_the_one_part_that_holds_the_change() {
        let env = |pairs: &'static [(&'static str, &'static str)]| {
            move |n: &str| {
                pairs
                    .iter()
                    .find(|(k, _)| *k == n)
                    .map(|(_, v)| (*v).to_owned())
            }
        };
        let var = |name: &str, value: &str| {
            Ok(Change::Variable {
                name: name.into(),
                value: value.into(),
            })
        };
        let literal = |value: &str| {
            Ok(Change::Literal {
                value: value.into(),
            })
        };
        let tagged = "${REGISTRY:-docker.io}/org/app:${APP_TAG:-1.4}";
        let posthog = "${DOCKER_REGISTRY_PREFIX:-}postgres:15.12-alpine";
        type Case = (
            &'static str,
            &'static [(&'static str, &'static str)],
            &'static str,
            Result<Change, &'static str>,
        );
        let cases: Vec<Case> = vec![
            (tagged, &[], "docker.io/org/app:1.5", var("APP_TAG", "1.5")),
            (
                tagged,
                &[("REGISTRY", "reg.example:5000")],
                "reg.example:5000/org/app:2.0",
                var("APP_TAG", "2.0"),
            ),
            (
                tagged,
                &[("APP_TAG", "1.4")],
                "ghcr.io/org/app:1.4",
                var("REGISTRY", "ghcr.io"),
            ),
            (tagged, &[], "docker.io/org/app:1.4", Ok(Change::Unchanged)),
            (
                tagged,
                &[],
                "ghcr.io/org/app:1.5",
                Err("no single one of its variables (REGISTRY, APP_TAG) or of its literal parts"),
            ),
            // The repository is literal text between the variables: it is the part to edit.
            (
                tagged,
                &[],
                "docker.io/other/app:1.4",
                literal("${REGISTRY:-docker.io}/other/app:${APP_TAG:-1.4}"),
            ),
            (tagged, &[], "docker.io/other/app:1.5", Err("no single one")),
            ("${A}${B}", &[("A", "x"), ("B", "y")], "xz", var("B", "z")),
            (
                "${A}${B}",
                &[("A", "x"), ("B", "")],
                "xy",
                Err("more than one variable could hold the change to \"xy\" (A, B)"),
            ),
            ("${T}-${T}", &[("T", "1")], "2-2", Err("no single one")),
            ("app:${T:+x}${U}", &[], "app:2", var("U", "2")),
            ("${IMAGE}", &[], "nginx:1", var("IMAGE", "nginx:1")),
            // A literal tag beside a variable that expands to nothing (posthog's `db`).
            (
                posthog,
                &[],
                "postgres:15.13-alpine",
                literal("${DOCKER_REGISTRY_PREFIX:-}postgres:15.13-alpine"),
            ),
            (
                posthog,
                &[("DOCKER_REGISTRY_PREFIX", "mirror.example/")],
                "mirror.example/postgres:16",
                literal("${DOCKER_REGISTRY_PREFIX:-}postgres:16"),
            ),
            // The variable can hold the change: it is preferred over the literal.
            (
                posthog,
                &[],
                "mirror.example/postgres:15.12-alpine",
                var("DOCKER_REGISTRY_PREFIX", "mirror.example/"),
            ),
            // With the prefix empty, the literal is the whole reference.
            (
                posthog,
                &[],
                "mirror.example/postgres:16",
                literal("${DOCKER_REGISTRY_PREFIX:-}mirror.example/postgres:16"),
            ),
            (
                posthog,
                &[("DOCKER_REGISTRY_PREFIX", "mirror.example/")],
                "other.example/postgres:16",
                Err("no single one of its variables (DOCKER_REGISTRY_PREFIX)"),
            ),
            (
                "${REG:-docker.io}/app:1.0",
                &[],
                "docker.io/app:1.1",
                literal("${REG:-docker.io}/app:1.1"),
            ),
            (
                "app:1.0${SUFFIX:-}",
                &[],
                "app:1.1",
                literal("app:1.1${SUFFIX:-}"),
            ),
            // With nothing set, `postgres:` + empty: the variable holds the tag, as before.
            (
                "postgres:${PG_TAG}",
                &[],
                "postgres:17",
                var("PG_TAG", "17"),
            ),
            // `$$` in the literal stays as written.
            ("reg$$/${T}", &[("T", "1")], "reg$/2", var("T", "2")),
            (
                "a${T}${T}b",
                &[("T", "")],
                "acb",
                Err("more than one of its literal parts could hold the change"),
            ),
        ];
        for (value, pairs, image, want) in cases {
            let got = solve(value, env(pairs), image);
            match want {
                Ok(change) => assert_eq!(got, Ok(change), "{value} -> {image}"),
                Err(e) => assert!(
                    got.as_ref().is_err_and(|g| g.contains(e)),
                    "{value} -> {image}: {got:?}"
                ),
            }
        }
    }
}

//! Compose variable interpolation in a value: `$VAR`, `${VAR}`, `${VAR:-default}` and friends.
//!
//! lookout never substitutes variables; it only needs to know which variables a value uses and,
//! for an image value built around one variable (`${IMAGE}`, `postgres:${PG_TAG}`), which part of
//! a new image reference that variable must hold.

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
    let mut pieces = Vec::new();
    let mut literal = String::new();
    let mut rest = value;
    while let Some(pos) = rest.find('$') {
        literal.push_str(&rest[..pos]);
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
            flush(&mut literal, &mut pieces);
            pieces.push(Piece::Var {
                name: name.to_string(),
                op: modifier[..op_len].to_string(),
                arg: modifier[op_len..].to_string(),
            });
            rest = &inner[close + 1..];
        } else {
            let n = name_len(after);
            if n == 0 {
                // A lone `$` stays literal, as compose leaves it.
                literal.push('$');
            } else {
                flush(&mut literal, &mut pieces);
                pieces.push(Piece::Var {
                    name: after[..n].to_string(),
                    op: String::new(),
                    arg: String::new(),
                });
            }
            rest = &after[n..];
        }
    }
    literal.push_str(rest);
    flush(&mut literal, &mut pieces);
    Ok(pieces)
}

fn flush(literal: &mut String, pieces: &mut Vec<Piece>) {
    if !literal.is_empty() {
        pieces.push(Piece::Literal(std::mem::take(literal)));
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
    pub prefix: String,
    pub name: String,
    pub default: Option<String>,
    pub suffix: String,
}

/// Reads `value` as a [`Template`], or says why lookout cannot edit it through one variable.
pub(crate) fn template(value: &str) -> Result<Template, String> {
    let pieces = parse(value)?;
    let vars: Vec<_> = pieces
        .iter()
        .enumerate()
        .filter(|(_, p)| matches!(p, Piece::Var { .. }))
        .collect();
    let [(at, Piece::Var { name, op, arg })] = vars[..] else {
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
    let literal = |p: Option<&Piece>| match p {
        Some(Piece::Literal(s)) => s.clone(),
        _ => String::new(),
    };
    Ok(Template {
        prefix: if at > 0 {
            literal(pieces.first())
        } else {
            String::new()
        },
        name: name.clone(),
        default,
        suffix: literal(pieces.get(at + 1)),
    })
}

impl Template {
    /// The value the variable must hold so the whole value reads `image`.
    pub(super) fn value_for(&self, image: &str) -> Option<String> {
        let middle = image
            .strip_prefix(&self.prefix)?
            .strip_suffix(&self.suffix)?;
        (!middle.is_empty()).then(|| middle.to_string())
    }
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

/// The one variable of an image value built from several (`${REGISTRY:-docker.io}/app:${TAG}`)
/// whose change makes the value read `image`, with the value it must hold; the others keep what
/// they expand to now (`current` gives each variable's value, `None` when unset).
///
/// Refused when no single variable does it (the image differs in more than one place, or in a
/// literal part), when two could, or when the one that would is referenced more than once or
/// through `+` (its value is not what the image shows).
pub(crate) fn solve(
    value: &str,
    current: impl Fn(&str) -> Option<String>,
    image: &str,
) -> Result<(String, String), String> {
    let pieces = parse(value)?;
    let mut names: Vec<&str> = Vec::new();
    for p in &pieces {
        if let Piece::Var { name, .. } = p
            && !names.contains(&name.as_str())
        {
            names.push(name);
        }
    }
    let render = |skip: &str| -> (String, String) {
        let (mut before, mut after) = (String::new(), String::new());
        let mut seen = false;
        for p in &pieces {
            let text = match p {
                Piece::Literal(l) => l.clone(),
                Piece::Var { name, .. } if name == skip => {
                    seen = true;
                    continue;
                }
                Piece::Var { name, op, arg } => expand(op, arg, current(name).as_deref()),
            };
            if seen {
                after.push_str(&text)
            } else {
                before.push_str(&text)
            }
        }
        (before, after)
    };
    let now = render("").0;
    let mut solutions: Vec<(String, String)> = Vec::new();
    for name in &names {
        let uses: Vec<&str> = pieces
            .iter()
            .filter_map(|p| match p {
                Piece::Var { name: n, op, .. } if n == name => Some(op.as_str()),
                _ => None,
            })
            .collect();
        if uses.len() != 1 || uses.iter().any(|op| op.contains('+')) {
            continue;
        }
        let (before, after) = render(name);
        let Some(middle) = image
            .strip_prefix(&before)
            .and_then(|r| r.strip_suffix(&after))
        else {
            continue;
        };
        if middle.is_empty() || middle.contains('$') {
            continue;
        }
        solutions.push(((*name).to_owned(), middle.to_owned()));
    }
    if now == image {
        // Nothing changes: keep every variable's value (the first one stands for the no-op).
        return solutions
            .into_iter()
            .next()
            .ok_or_else(|| format!("{value:?} has no variable lookout could keep"));
    }
    let changing: Vec<_> = solutions
        .into_iter()
        .filter(|(name, new)| {
            let (before, after) = render(name);
            format!("{before}{new}{after}") != now
        })
        .collect();
    match &changing[..] {
        [one] => Ok(one.clone()),
        [] => Err(format!(
            "{value:?} reads {now:?} now; no single one of its variables ({}) can make it read              {image:?}",
            names.join(", ")
        )),
        several => Err(format!(
            "{value:?}: more than one variable could hold the change to {image:?} ({});              lookout cannot say which to change",
            several
                .iter()
                .map(|(n, _)| n.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(value: &str, expect: &str) {
        let got = match template(value) {
            Ok(t) => format!(
                "{}|{}|{}|{}",
                t.prefix,
                t.name,
                t.default.as_deref().unwrap_or("-"),
                t.suffix
            ),
            Err(e) => format!("error: {e}"),
        };
        assert_eq!(got, expect, "template({value:?})");
    }

    #[test]
    fn templates() {
        check("${IMAGE}", "|IMAGE|-|");
        check("$IMAGE", "|IMAGE|-|");
        check("${IMAGE:-nginx:1.25}", "|IMAGE|nginx:1.25|");
        check("${IMAGE-nginx}", "|IMAGE|nginx|");
        check("${IMAGE:?set IMAGE}", "|IMAGE|-|");
        check("postgres:${PG_TAG}", "postgres:|PG_TAG|-|");
        check("${REG}/app:1", "|REG|-|/app:1");
        check("$$HOME/${TAG}", "$HOME/|TAG|-|");
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
    fn value_for_keeps_prefix_and_suffix() {
        let t = template("postgres:${PG_TAG}").unwrap();
        assert_eq!(t.value_for("postgres:17").as_deref(), Some("17"));
        assert_eq!(t.value_for("mysql:8"), None);
        assert_eq!(t.value_for("postgres:"), None);
    }

    #[test]
    fn solve_changes_the_one_variable_that_holds_the_change() {
        let env = |pairs: &'static [(&'static str, &'static str)]| {
            move |n: &str| {
                pairs
                    .iter()
                    .find(|(k, _)| *k == n)
                    .map(|(_, v)| (*v).to_owned())
            }
        };
        let tagged = "${REGISTRY:-docker.io}/org/app:${APP_TAG:-1.4}";
        type Case = (
            &'static str,
            &'static [(&'static str, &'static str)],
            &'static str,
            Result<(&'static str, &'static str), &'static str>,
        );
        let cases: &[Case] = &[
            (tagged, &[], "docker.io/org/app:1.5", Ok(("APP_TAG", "1.5"))),
            (
                tagged,
                &[("REGISTRY", "reg.example:5000")],
                "reg.example:5000/org/app:2.0",
                Ok(("APP_TAG", "2.0")),
            ),
            (
                tagged,
                &[("APP_TAG", "1.4")],
                "ghcr.io/org/app:1.4",
                Ok(("REGISTRY", "ghcr.io")),
            ),
            (
                tagged,
                &[],
                "docker.io/org/app:1.4",
                Ok(("REGISTRY", "docker.io")),
            ),
            (
                tagged,
                &[],
                "ghcr.io/org/app:1.5",
                Err("no single one of its variables (REGISTRY, APP_TAG)"),
            ),
            (tagged, &[], "docker.io/other/app:1.5", Err("no single one")),
            ("${A}${B}", &[("A", "x"), ("B", "y")], "xz", Ok(("B", "z"))),
            (
                "${A}${B}",
                &[("A", "x"), ("B", "")],
                "xy",
                Err("more than one variable"),
            ),
            ("${T}-${T}", &[("T", "1")], "2-2", Err("no single one")),
            ("app:${T:+x}${U}", &[], "app:2", Ok(("U", "2"))),
            ("${IMAGE}", &[], "nginx:1", Ok(("IMAGE", "nginx:1"))),
        ];
        for (value, pairs, image, want) in cases {
            let got = solve(value, env(pairs), image);
            match want {
                Ok((n, v)) => assert_eq!(
                    got,
                    Ok(((*n).to_owned(), (*v).to_owned())),
                    "{value} -> {image}"
                ),
                Err(e) => assert!(
                    got.as_ref().is_err_and(|g| g.contains(e)),
                    "{value} -> {image}: {got:?}"
                ),
            }
        }
    }
}

//! Reading and surgically editing a compose `.env` file.
//!
//! The format is compose's: `NAME=value` per line, an optional `export ` prefix, values bare,
//! in single quotes (literal) or double quotes; `#` starts a comment line, and after a bare value
//! a `#` preceded by whitespace starts a comment. [`set_env_var`] changes the bytes of one value
//! and nothing else: comments, quotes, the `export ` prefix, blank lines and CRLF stay.

use std::ops::Range;

use super::{ComposeError, Quote};

/// One `NAME=value` line of an env file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnvEntry {
    pub name: String,
    /// The value as compose reads it (quotes removed).
    pub value: String,
    /// The bytes of the value inside its quotes.
    pub span: Range<usize>,
    pub quote: Quote,
    /// 1-based line number.
    pub line: usize,
    /// A quoted value that continues over several lines; lookout does not edit those.
    pub multiline: bool,
}

/// Parses the `NAME=value` entries of an env file. Lines without `=` are ignored.
pub fn parse_env(text: &str) -> Vec<EnvEntry> {
    let mut entries = Vec::new();
    let mut line_no = 0;
    let mut pos = 0;
    while pos < text.len() {
        line_no += 1;
        let first_line = line_no;
        let line_end = text[pos..].find('\n').map_or(text.len(), |i| pos + i);
        let line = text[pos..line_end].trim_end_matches('\r');
        let next = line_end + 1;
        let trimmed = line.trim_start();
        let indent = line.len() - trimmed.len();
        let body = trimmed.strip_prefix("export ").unwrap_or(trimmed);
        let body_start = pos + indent + (trimmed.len() - body.len());
        let Some(eq) = body.find('=').filter(|_| !body.starts_with('#')) else {
            pos = next;
            continue;
        };
        let name = body[..eq].trim().to_string();
        let after_eq = &body[eq + 1..];
        let value_text = after_eq.trim_start_matches([' ', '\t']);
        let value_start = body_start + eq + 1 + (after_eq.len() - value_text.len());
        let quote = match value_text.as_bytes().first() {
            Some(b'\'') => Quote::Single,
            Some(b'"') => Quote::Double,
            _ => Quote::Plain,
        };
        let (value, span, multiline, resume) = match quote {
            Quote::Plain => {
                let end = comment_start(value_text).unwrap_or(value_text.len());
                let value = value_text[..end].trim_end();
                let span = value_start..value_start + value.len();
                (value.to_string(), span, false, next)
            }
            Quote::Single | Quote::Double => {
                let q = if quote == Quote::Single { '\'' } else { '"' };
                let inner_start = value_start + 1;
                match closing_quote(&text[inner_start..], q) {
                    Some(len) => {
                        let span = inner_start..inner_start + len;
                        let multiline = text[span.clone()].contains('\n');
                        let close_line_end = text[span.end..]
                            .find('\n')
                            .map_or(text.len(), |i| span.end + i);
                        line_no += text[span.clone()].matches('\n').count();
                        let raw = &text[span.clone()];
                        let value = if q == '"' {
                            unescape_double(raw)
                        } else {
                            raw.to_string()
                        };
                        (value, span, multiline, close_line_end + 1)
                    }
                    None => {
                        // An unclosed quote: compose would fail too; keep the raw text.
                        let span = inner_start..pos + line.len();
                        (text[span.clone()].to_string(), span, true, next)
                    }
                }
            }
        };
        entries.push(EnvEntry {
            name,
            value,
            span,
            quote,
            line: first_line,
            multiline,
        });
        pos = resume;
    }
    entries
}

/// Where an inline comment starts after a bare value: a `#` at the start or after whitespace.
fn comment_start(value: &str) -> Option<usize> {
    let bytes = value.as_bytes();
    (0..bytes.len()).find(|&i| bytes[i] == b'#' && (i == 0 || matches!(bytes[i - 1], b' ' | b'\t')))
}

fn closing_quote(s: &str, q: char) -> Option<usize> {
    let mut escaped = false;
    for (i, c) in s.char_indices() {
        match c {
            '\\' if q == '"' && !escaped => escaped = true,
            c if c == q && !escaped => return Some(i),
            _ => escaped = false,
        }
    }
    None
}

fn unescape_double(raw: &str) -> String {
    let mut out = String::with_capacity(raw.len());
    let mut chars = raw.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            match chars.next() {
                Some('n') => out.push('\n'),
                Some('t') => out.push('\t'),
                Some(other) => out.push(other),
                None => out.push('\\'),
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// Refuses a value that would need quoting or escaping in an env file (image references never
/// do).
fn check_writable_value(value: &str) -> Result<(), ComposeError> {
    if value.is_empty()
        || value
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || "\"'\\$#`".contains(c))
    {
        return Err(ComposeError::InvalidImage {
            image: value.to_string(),
            reason: "an env value lookout writes may not be empty or hold whitespace, quotes, \
                     `\\`, `$`, `#` or backquotes"
                .into(),
        });
    }
    Ok(())
}

/// Adds `NAME=value` as a new last line of env-file text that does not define `name` (a
/// variable whose default lives in the compose file). Every byte before stays as it was; a
/// missing final newline is added first. The result is parsed again: it must read as before
/// plus the one new entry.
pub fn add_env_var(text: &str, name: &str, value: &str) -> Result<String, ComposeError> {
    let entries = parse_env(text);
    if entries.iter().any(|e| e.name == name) {
        return set_env_var(text, name, value);
    }
    check_writable_value(value)?;
    if let Some(last) = entries.last().filter(|e| e.multiline) {
        return Err(ComposeError::EnvValueUnsupported {
            variable: last.name.clone(),
            line: last.line,
            reason: format!(
                "its value spans several lines or is not closed, so a line {name}=… added after \
                 it could be read as part of it; add {name}={value} yourself"
            ),
        });
    }
    // A file with Windows line ends gets one more of the same.
    let eol = if text.contains("\r\n") { "\r\n" } else { "\n" };
    let mut out = String::with_capacity(text.len() + name.len() + value.len() + 3);
    out.push_str(text);
    if !out.is_empty() && !out.ends_with('\n') {
        out.push_str(eol);
    }
    out.push_str(name);
    out.push('=');
    out.push_str(value);
    out.push_str(eol);
    let got: Vec<(String, String)> = parse_env(&out)
        .into_iter()
        .map(|e| (e.name, e.value))
        .collect();
    let mut expected: Vec<(String, String)> =
        entries.into_iter().map(|e| (e.name, e.value)).collect();
    expected.push((name.to_owned(), value.to_owned()));
    if got != expected {
        return Err(ComposeError::VerifyFailed {
            detail: format!("adding {name} would change how the env file reads beyond it"),
        });
    }
    Ok(out)
}

/// Sets `name` to `value` in env-file text, changing only the bytes of that value.
///
/// Refuses when `name` is not defined, is defined more than once, spans several lines, or when
/// `value` holds characters that would need quoting or escaping (image references never do).
/// The result is parsed again: every other entry must read as before.
pub fn set_env_var(text: &str, name: &str, value: &str) -> Result<String, ComposeError> {
    let entries = parse_env(text);
    let matching: Vec<&EnvEntry> = entries.iter().filter(|e| e.name == name).collect();
    let entry = match matching[..] {
        [] => {
            return Err(ComposeError::EnvVarMissing {
                variable: name.to_string(),
            });
        }
        [one] => one,
        _ => {
            return Err(ComposeError::EnvVarRepeated {
                variable: name.to_string(),
                lines: matching.iter().map(|e| e.line).collect(),
            });
        }
    };
    if entry.multiline {
        return Err(ComposeError::EnvValueUnsupported {
            variable: name.to_string(),
            line: entry.line,
            reason: "its value spans several lines or is not closed".into(),
        });
    }
    check_writable_value(value)?;
    let mut out = String::with_capacity(text.len() + value.len());
    out.push_str(&text[..entry.span.start]);
    out.push_str(value);
    out.push_str(&text[entry.span.end..]);

    let after = parse_env(&out);
    let expected: Vec<(String, String)> = entries
        .iter()
        .map(|e| {
            let v = if e.name == name { value } else { &e.value };
            (e.name.clone(), v.to_string())
        })
        .collect();
    let got: Vec<(String, String)> = after.into_iter().map(|e| (e.name, e.value)).collect();
    if got != expected {
        return Err(ComposeError::VerifyFailed {
            detail: format!("the env file would read differently beyond {name}"),
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(input: &str, name: &str, value: &str, expect: &str) {
        let got = match set_env_var(input, name, value) {
            Ok(text) => text,
            Err(e) => format!("error: {e}"),
        };
        assert_eq!(got, expect, "set_env_var({input:?}, {name}, {value})");
    }

    #[test]
    fn edits_only_the_value() {
        check("TAG=1.25\n", "TAG", "1.26", "TAG=1.26\n");
        check("A=1\nTAG=1.25\nB=2", "TAG", "1.26", "A=1\nTAG=1.26\nB=2");
        check("export TAG=1.25\n", "TAG", "1.26", "export TAG=1.26\n");
        check(
            "TAG='1.25'  # pinned\n",
            "TAG",
            "1.26",
            "TAG='1.26'  # pinned\n",
        );
        check(
            "TAG=\"1.25\"\r\nX=y\r\n",
            "TAG",
            "1.26",
            "TAG=\"1.26\"\r\nX=y\r\n",
        );
        check(
            "TAG=1.25 # comment\n",
            "TAG",
            "1.26",
            "TAG=1.26 # comment\n",
        );
        check("TAG = 1.25\n", "TAG", "1.26", "TAG = 1.26\n");
        check("TAG=\n", "TAG", "1.26", "TAG=1.26\n");
        check(
            "# TAG=old\nTAG=1.25\n",
            "TAG",
            "1.26",
            "# TAG=old\nTAG=1.26\n",
        );
        check("TAGX=1\nTAG=1.25\n", "TAG", "1.26", "TAGX=1\nTAG=1.26\n");
        check("  TAG=1.25\r\n", "TAG", "1.26", "  TAG=1.26\r\n");
        check(
            "NOTE=\"a\nb\"\nTAG=1\n",
            "TAG",
            "2",
            "NOTE=\"a\nb\"\nTAG=2\n",
        );
    }

    #[test]
    fn refusals() {
        check(
            "A=1\n",
            "TAG",
            "1.26",
            "error: TAG is not defined in the env file",
        );
        check(
            "TAG=1\nTAG=2\n",
            "TAG",
            "3",
            "error: TAG is defined more than once in the env file (lines 1, 2); keep one definition",
        );
        check(
            "TAG=\"a\nb\"\n",
            "TAG",
            "3",
            "error: TAG (line 1) cannot be edited: its value spans several lines or is not closed",
        );
        assert!(set_env_var("TAG=1\n", "TAG", "a b").is_err());
        assert!(set_env_var("TAG=1\n", "TAG", "").is_err());
        assert!(set_env_var("TAG=1\n", "TAG", "x#y").is_err());
    }

    #[test]
    fn parses_values() {
        let e = parse_env("A='x y' # c\nexport B=\"q\\\"r\"\nC=v#w\n#D=1\nE\n");
        let got: Vec<_> = e
            .iter()
            .map(|e| (e.name.as_str(), e.value.as_str(), e.line))
            .collect();
        assert_eq!(got, [("A", "x y", 1), ("B", "q\"r", 2), ("C", "v#w", 3)]);
    }

    #[test]
    fn a_missing_variable_is_added_as_a_last_line_leaving_every_byte_before() {
        let cases: &[(&str, &str)] = &[
            ("", "APP_TAG=1.5\n"),
            ("A=1\n", "A=1\nAPP_TAG=1.5\n"),
            ("A=1", "A=1\nAPP_TAG=1.5\n"),
            (
                "# settings\r\nA=1\r\n",
                "# settings\r\nA=1\r\nAPP_TAG=1.5\r\n",
            ),
            ("APP_TAG=1.4 # pinned\n", "APP_TAG=1.5 # pinned\n"),
        ];
        for (input, want) in cases {
            assert_eq!(
                add_env_var(input, "APP_TAG", "1.5").unwrap(),
                *want,
                "{input:?}"
            );
        }
        // An unclosed quote at the end would swallow the new line: refused.
        let e = add_env_var("A=\"open\n", "APP_TAG", "1.5").unwrap_err();
        assert!(e.to_string().contains("A (line 1) cannot be edited"), "{e}");
        assert!(add_env_var("", "APP_TAG", "a b").is_err());
    }
}

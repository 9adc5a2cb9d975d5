//! The text format of a tag list: one `TAG[<TAB>PUSHED_UNIX_SECONDS]` per line, `#` comments.
//!
//! It is the format of the shared fixtures (`tests/fixtures/tags/*.tsv`) and of
//! `lookout tags --from-file`.

use super::Tag;

/// A line of a tag list that cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {message}")]
pub struct TagListError {
    pub line: usize,
    pub message: String,
}

/// Parses a tag list. Blank lines and lines starting with `#` are skipped.
pub fn parse_tag_list(text: &str) -> Result<Vec<Tag>, TagListError> {
    let mut tags = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim_end_matches('\r');
        if line.trim().is_empty() || line.trim_start().starts_with('#') {
            continue;
        }
        let mut fields = line.split('\t');
        let name = fields.next().unwrap_or_default().trim();
        let pushed = match fields.next().map(str::trim) {
            None | Some("") => None,
            Some(s) => Some(s.parse::<i64>().map_err(|_| TagListError {
                line: i + 1,
                message: format!(
                    "push time {s:?} of tag {name:?} is not a whole number of Unix seconds"
                ),
            })?),
        };
        if name.is_empty() || name.contains(char::is_whitespace) {
            return Err(TagListError {
                line: i + 1,
                message: format!(
                    "{line:?} is not `TAG` or `TAG<TAB>PUSHED_UNIX_SECONDS` (tags have no spaces)"
                ),
            });
        }
        if let Some(extra) = fields.next() {
            return Err(TagListError {
                line: i + 1,
                message: format!("unexpected third field {extra:?} after tag {name:?}"),
            });
        }
        tags.push(Tag::new(name, pushed));
    }
    Ok(tags)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_fixture_format() {
        let text = "# tag\tfirst_seen\n1.0\t100\n\nlatest\n  # indented comment\r\n2.0\t200\r\n";
        let tags = parse_tag_list(text).unwrap();
        assert_eq!(
            tags,
            vec![
                Tag::new("1.0", Some(100)),
                Tag::new("latest", None),
                Tag::new("2.0", Some(200))
            ]
        );
    }

    #[test]
    fn names_the_bad_line() {
        let e = parse_tag_list("1.0\t100\n2.0\tyesterday\n").unwrap_err();
        assert_eq!(e.line, 2);
        assert!(e.to_string().contains("\"yesterday\""), "{e}");
        assert_eq!(parse_tag_list("a b\n").unwrap_err().line, 1);
        assert_eq!(parse_tag_list("a\t1\t2\n").unwrap_err().line, 1);
    }
}

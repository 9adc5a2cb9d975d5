//! Natural version order, and integer comparison of digit strings of any length.
//!
//! Natural order splits a string into runs of digits and runs of other characters and compares
//! run by run: digit runs as integers, other runs as strings, a digit run before a non-digit run,
//! and a sequence that is a prefix of a longer one first. So `1.9 < 1.10`, `rc2 < rc10`,
//! `17.0.9_9 < 17.0.10_7`.

use std::cmp::Ordering;

/// Compares two strings in natural version order.
pub fn natural_cmp(a: &str, b: &str) -> Ordering {
    let mut a = Runs(a);
    let mut b = Runs(b);
    loop {
        match (a.next(), b.next()) {
            (None, None) => return Ordering::Equal,
            (None, Some(_)) => return Ordering::Less,
            (Some(_), None) => return Ordering::Greater,
            (Some(x), Some(y)) => {
                let ord = match (is_digits(x), is_digits(y)) {
                    (true, true) => int_cmp(x, y),
                    (true, false) => Ordering::Less,
                    (false, true) => Ordering::Greater,
                    (false, false) => x.cmp(y),
                };
                if ord != Ordering::Equal {
                    return ord;
                }
            }
        }
    }
}

/// Compares two non-empty ASCII digit strings as integers, whatever their length.
pub(super) fn int_cmp(a: &str, b: &str) -> Ordering {
    let a = a.trim_start_matches('0');
    let b = b.trim_start_matches('0');
    a.len().cmp(&b.len()).then_with(|| a.cmp(b))
}

fn is_digits(run: &str) -> bool {
    run.as_bytes().first().is_some_and(u8::is_ascii_digit)
}

/// Iterator over the maximal runs of digits and of non-digits.
struct Runs<'a>(&'a str);

impl<'a> Iterator for Runs<'a> {
    type Item = &'a str;
    fn next(&mut self) -> Option<&'a str> {
        let first = *self.0.as_bytes().first()?;
        let digit = first.is_ascii_digit();
        let end = self
            .0
            .bytes()
            .position(|b| b.is_ascii_digit() != digit)
            .unwrap_or(self.0.len());
        let (run, rest) = self.0.split_at(end);
        self.0 = rest;
        Some(run)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Ordering::*;

    fn check(a: &str, b: &str, expect: Ordering) {
        assert_eq!(natural_cmp(a, b), expect, "{a:?} vs {b:?}");
        assert_eq!(natural_cmp(b, a), expect.reverse(), "{b:?} vs {a:?}");
    }

    #[test]
    fn natural_order_rules() {
        let cases = [
            ("1.9", "1.10", Less),
            ("1.10", "1.10", Equal),
            ("rc2", "rc10", Less),
            ("17.0.9_9", "17.0.10_7", Less),
            ("1.0", "1.0.1", Less), // a prefix comes first
            ("1", "a", Less),       // a digit run before a non-digit run
            ("1.0", "1a", Less),    // `.` and `a` are non-digit runs, compared as text
            ("v2", "v10", Less),
            ("007", "7", Equal), // integers, not strings
            ("99999999999999999999999", "100000000000000000000000", Less), // beyond u64
            ("alpine3.19", "alpine3.20", Less),
            ("", "0", Less),
            ("abc", "abd", Less),
        ];
        for (a, b, expect) in cases {
            check(a, b, expect);
        }
    }
}

//! One line for an error and everything that caused it.

/// An error and its sources on one line: `error sending request: connection refused`.
///
/// `Display` of most library errors (reqwest, hyper, gcp_auth) names only the outermost
/// layer; the cause an operator needs is further down the `source()` chain.
pub(crate) fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::error_chain;

    #[derive(Debug, thiserror::Error)]
    #[error("error sending request")]
    struct Outer(#[source] std::io::Error);

    #[test]
    fn names_every_cause_in_order() {
        let e = Outer(std::io::Error::other("connection refused"));
        assert_eq!(error_chain(&e), "error sending request: connection refused");
    }
}

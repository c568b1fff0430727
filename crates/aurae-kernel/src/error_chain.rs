//! One line for an error and its causes, the only formatter of error chains
//! in auraed (logs, gRPC messages built from a chain, the exit message).
//!
//! The rule for the error types it walks: a variant either shows its cause
//! in its message (`{source}`, and then the cause is not a `#[source]`) or
//! marks it `#[source]` and leaves it out of the message, never both. Errors
//! from other crates do not all follow it (`#[error(transparent)]` layers,
//! wrappers that repeat their cause), so a cause whose text was already
//! printed is left out: each distinct message appears once.

use std::error::Error;

/// `e` and its sources joined by ": ", each distinct message once.
pub fn chain(e: &dyn Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        let text = cause.to_string();
        if !text.is_empty() && !out.contains(&text) {
            if !out.is_empty() {
                out.push_str(": ");
            }
            out.push_str(&text);
        }
        source = cause.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fmt;

    /// An error with a message and an optional cause.
    #[derive(Debug)]
    struct E(&'static str, Option<Box<E>>);

    impl fmt::Display for E {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str(self.0)
        }
    }

    impl Error for E {
        fn source(&self) -> Option<&(dyn Error + 'static)> {
            self.1.as_deref().map(|e| e as &(dyn Error + 'static))
        }
    }

    fn e(msg: &'static str, cause: Option<E>) -> E {
        E(msg, cause.map(Box::new))
    }

    #[test]
    fn joins_each_cause_once() {
        assert_eq!(chain(&e("alone", None)), "alone");
        let err = e("outer", Some(e("middle", Some(e("inner", None)))));
        assert_eq!(chain(&err), "outer: middle: inner");
    }

    #[test]
    fn skips_causes_already_in_the_message() {
        // A wrapper that shows its source, and a transparent layer.
        let os = "No such file or directory (os error 2)";
        let err = e(
            "reading x: No such file or directory (os error 2)",
            Some(e(os, Some(e(os, None)))),
        );
        assert_eq!(chain(&err), format!("reading x: {os}"));
        // The same for a cause that shows its own source further down.
        let err = e("start", Some(e("spawn: boom", Some(e("boom", None)))));
        assert_eq!(chain(&err), "start: spawn: boom");
    }

    #[test]
    fn skips_empty_messages() {
        let err = e("outer", Some(e("", Some(e("inner", None)))));
        assert_eq!(chain(&err), "outer: inner");
        assert_eq!(chain(&e("", Some(e("inner", None)))), "inner");
    }

    #[test]
    fn io_errors_in_a_thiserror_chain_print_once() {
        #[derive(Debug, thiserror::Error)]
        #[error("reading policy {path}")]
        struct Read {
            path: &'static str,
            #[source]
            source: std::io::Error,
        }
        let io = std::fs::read("/nonexistent/aurae-policy").expect_err("missing");
        let text = io.to_string();
        let err = Read {
            path: "/nonexistent/aurae-policy",
            source: io,
        };
        assert_eq!(
            chain(&err),
            format!("reading policy /nonexistent/aurae-policy: {text}")
        );
        let anyhow = anyhow::Error::new(err).context("loading the daemon");
        assert_eq!(chain(anyhow.as_ref()).matches(&text).count(), 1);
    }
}

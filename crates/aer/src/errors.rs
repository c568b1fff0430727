//! An error as one line with its whole cause chain, the gRPC status shown by
//! its code and message (tonic's own Display adds a Debug dump of the source).

/// `context: cause: cause ...`
pub fn render(err: &anyhow::Error) -> String {
    let mut parts: Vec<String> = Vec::new();
    for cause in err.chain() {
        let part = match cause.downcast_ref::<tonic::Status>() {
            Some(status) => status_text(status),
            None => cause.to_string(),
        };
        // Wrappers that repeat their source's text would print it twice.
        if !part.is_empty() && parts.last() != Some(&part) {
            parts.push(part);
        }
    }
    parts.join(": ")
}

/// `PermissionDenied: <message>`, or the code's description when there is no message.
pub fn status_text(status: &tonic::Status) -> String {
    if status.message().is_empty() {
        format!("{:?} ({})", status.code(), status.code().description())
    } else {
        format!("{:?}: {}", status.code(), status.message())
    }
}

#[cfg(test)]
mod tests {
    use anyhow::Context;

    use super::*;

    #[test]
    fn status_shows_code_and_message_in_the_chain() {
        let err: Result<(), _> = Err(aurae_client::ClientError::from(
            tonic::Status::permission_denied("not for you"),
        ));
        let err = err.context("could not run the command").expect_err("error");
        assert_eq!(
            render(&err),
            "could not run the command: the call failed: PermissionDenied: not for you"
        );
    }

    #[test]
    fn plain_chains_are_joined() {
        let io = std::io::Error::new(std::io::ErrorKind::NotFound, "no such file");
        let err = anyhow::Error::new(io)
            .context("reading x")
            .context("loading config");
        assert_eq!(render(&err), "loading config: reading x: no such file");
    }

    #[test]
    fn empty_status_message_shows_the_code_description() {
        let text = status_text(&tonic::Status::unavailable(""));
        assert!(text.starts_with("Unavailable ("), "{text}");
    }
}

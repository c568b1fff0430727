use std::time::Duration;

use thiserror::Error;

/// What stops an instance's PID 1 from bringing the system up. Each is
/// printed on the console before the instance powers off.
#[derive(Debug, Error)]
pub enum InitError {
    #[error("kernel command line: {0}")]
    Cmdline(String),
    #[error("{what}")]
    Io {
        what: String,
        source: std::io::Error,
    },
    #[error("the image has no kernel module {0} (see hack/build-instance-image.sh)")]
    MissingModule(String),
    #[error("no network device {0} appeared within {1:?}")]
    NoLink(String, Duration),
}

impl InitError {
    pub(crate) fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> InitError {
        let what = what.into();
        move |source| InitError::Io { what, source }
    }
}

use std::os::unix::process::ExitStatusExt;
use std::process::ExitStatus;

/// How a process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitKind {
    Code(i32),
    Signal(i32),
}

impl ExitKind {
    pub fn from_status(s: ExitStatus) -> Self {
        match (s.code(), s.signal()) {
            (Some(c), _) => ExitKind::Code(c),
            (None, Some(sig)) => ExitKind::Signal(sig),
            // Neither happens for a reaped child; report it as a failure rather than guess.
            (None, None) => ExitKind::Code(-1),
        }
    }

    /// The shell convention: the exit code, or 128 + signal number.
    pub fn code(self) -> i32 {
        match self {
            ExitKind::Code(c) => c,
            ExitKind::Signal(s) => 128 + s,
        }
    }

    pub fn success(self) -> bool {
        self == ExitKind::Code(0)
    }

    /// A sentence for `meta.message`, e.g. `exited with code 3` or `killed by signal 9 (SIGKILL)`.
    pub fn describe(self) -> String {
        let (code, signal) = match self {
            ExitKind::Code(c) => (Some(c), None),
            ExitKind::Signal(s) => (None, Some(s)),
        };
        crate::logs::describe_exit(code, signal).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn describes_codes_and_signals() {
        assert_eq!(ExitKind::Code(3).describe(), "exited with code 3");
        assert_eq!(
            ExitKind::Signal(9).describe(),
            "killed by signal 9 (SIGKILL)"
        );
        assert_eq!(ExitKind::Signal(15).code(), 143);
        assert_eq!(
            ExitKind::from_status(ExitStatus::from_raw(3 << 8)),
            ExitKind::Code(3)
        );
        assert_eq!(
            ExitKind::from_status(ExitStatus::from_raw(9)),
            ExitKind::Signal(9)
        );
    }
}

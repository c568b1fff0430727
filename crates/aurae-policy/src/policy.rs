//! The policy file: parsed, checked against the served API, and matched
//! against a caller's names.

use std::fmt;
use std::path::Path;

use serde::Deserialize;
use thiserror::Error;

use crate::catalog::{Catalog, ALWAYS_ALLOWED};
use crate::closest::closest;

#[derive(Debug, Error)]
pub enum PolicyError {
    #[error("reading authorization policy {path}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("parsing authorization policy {path}")]
    Parse {
        path: String,
        source: toml::de::Error,
    },
    #[error("authorization policy {path}: {}", join(.problems))]
    Invalid {
        path: String,
        problems: Vec<Problem>,
    },
}

/// One bad entry: which rule, and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub rule: usize,
    pub reason: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "rule {}: {}", self.rule, self.reason)
    }
}

fn join(problems: &[Problem]) -> String {
    problems
        .iter()
        .map(Problem::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

impl PolicyError {
    /// Each problem on a line of its own, prefixed by the file: for the
    /// check commands and the daemon's start error alike.
    pub fn lines(&self) -> Vec<String> {
        match self {
            PolicyError::Invalid { path, problems } => {
                problems.iter().map(|p| format!("{path}: {p}")).collect()
            }
            PolicyError::Read { source, .. } => vec![format!("{self}: {source}")],
            PolicyError::Parse { source, .. } => {
                vec![format!("{self}: {}", source.to_string().trim_end())]
            }
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PolicyFile {
    #[serde(default)]
    allow: Vec<Rule>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct Rule {
    identities: Vec<String>,
    methods: Vec<String>,
}

/// The loaded policy, or `AllowAll` when the daemon runs without one.
#[derive(Debug, Clone)]
pub enum Policy {
    AllowAll,
    Rules(Vec<RuleSet>),
}

#[derive(Debug, Clone)]
pub struct RuleSet {
    identities: Vec<String>,
    methods: Vec<String>,
}

impl Policy {
    /// Reads and checks a policy against the API this build serves.
    pub fn load(path: &Path) -> Result<Self, PolicyError> {
        let p = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| PolicyError::Read {
            path: p.clone(),
            source,
        })?;
        Self::parse(&text, &p)
    }

    pub fn parse(text: &str, path: &str) -> Result<Self, PolicyError> {
        Self::parse_against(text, path, &Catalog::served())
    }

    /// Parses `text` and checks every name in it against `catalog`. Every
    /// bad entry is reported, not only the first.
    pub fn parse_against(text: &str, path: &str, catalog: &Catalog) -> Result<Self, PolicyError> {
        let file: PolicyFile = toml::from_str(text).map_err(|source| PolicyError::Parse {
            path: path.into(),
            source,
        })?;
        let mut problems = Vec::new();
        let mut rules = Vec::new();
        for (i, r) in file.allow.into_iter().enumerate() {
            let mut problem = |reason: String| {
                problems.push(Problem {
                    rule: i + 1,
                    reason,
                })
            };
            if r.identities.is_empty() {
                problem("identities is empty".into());
            }
            if r.methods.is_empty() {
                problem("methods is empty".into());
            }
            for m in &r.methods {
                if let Err(reason) = check_method(m, catalog) {
                    problem(reason);
                }
            }
            rules.push(RuleSet {
                identities: r.identities,
                methods: r.methods,
            });
        }
        if problems.is_empty() {
            Ok(Policy::Rules(rules))
        } else {
            Err(PolicyError::Invalid {
                path: path.into(),
                problems,
            })
        }
    }

    /// Whether a client known by `names` may call `path` (`/package.Service/Method`).
    pub fn allows(&self, names: &[String], path: &str) -> bool {
        let method = path.trim_start_matches('/');
        let service = method.split('/').next().unwrap_or_default();
        if ALWAYS_ALLOWED.contains(&service) {
            return true;
        }
        match self {
            Policy::AllowAll => true,
            Policy::Rules(rules) => rules.iter().any(|r| {
                r.identities
                    .iter()
                    .any(|i| i == "*" || names.iter().any(|n| n == i))
                    && r.methods
                        .iter()
                        .any(|m| m == "*" || m == service || m == method)
            }),
        }
    }
}

/// A method entry is `*`, a served `package.Service`, or one of its methods.
fn check_method(m: &str, catalog: &Catalog) -> Result<(), String> {
    if m == "*" {
        return Ok(());
    }
    let (service, method) = match m.split_once('/') {
        Some((s, meth)) => (s, Some(meth)),
        None => (m, None),
    };
    let ok_ident =
        |s: &str| !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    let mut parts = service.split('.');
    let well_formed = service.contains('.') && parts.all(ok_ident) && method.is_none_or(ok_ident);
    if !well_formed {
        return Err(format!(
            "method {m:?} is not \"*\", \"package.Service\" or \"package.Service/Method\" (e.g. \"runtime.Core/RunExecutable\")"
        ));
    }
    let known = match method {
        None => catalog.has_service(service),
        Some(meth) => catalog.has_method(service, meth),
    };
    if known {
        return Ok(());
    }
    let what = if method.is_some() && catalog.has_service(service) {
        "method"
    } else {
        "service"
    };
    let hint = match method {
        None => closest(m, catalog.services()).map(str::to_string),
        Some(_) => {
            let all = catalog.methods();
            closest(m, all.iter().map(String::as_str)).map(str::to_string)
        }
    };
    Err(match hint {
        Some(h) => format!("unknown {what} {m:?}: did you mean {h:?}?"),
        None => format!("unknown {what} {m:?}: the daemon serves no such {what}"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const POLICY: &str = r#"
[[allow]]
identities = ["admin"]
methods = ["*"]

[[allow]]
identities = ["viewer", "ci"]
methods = ["observe.Observe", "runtime.Core/RunExecutable"]
"#;

    fn names(n: &[&str]) -> Vec<String> {
        n.iter().map(|s| s.to_string()).collect()
    }

    fn problems(text: &str) -> Vec<String> {
        match Policy::parse(text, "p.toml") {
            Err(PolicyError::Invalid { problems, .. }) => {
                problems.iter().map(Problem::to_string).collect()
            }
            other => panic!("not a list of problems: {other:?}"),
        }
    }

    #[test]
    fn rules_grant_services_and_methods() {
        let p = Policy::parse(POLICY, "t").expect("parses");
        assert!(p.allows(&names(&["admin"]), "/schedule.ScheduleExecutable/Enable"));
        assert!(p.allows(&names(&["viewer"]), "/observe.Observe/Status"));
        assert!(p.allows(&names(&["ci"]), "/runtime.Core/RunExecutable"));
        assert!(!p.allows(&names(&["ci"]), "/runtime.Core/RunCell"));
        assert!(!p.allows(&names(&["viewer"]), "/schedule.ScheduleExecutable/Enable"));
        assert!(!p.allows(&names(&["mallory"]), "/observe.Observe/Status"));
        assert!(!p.allows(&[], "/observe.Observe/Status"));
    }

    #[test]
    fn any_of_the_names_may_match() {
        let p = Policy::parse(POLICY, "t").expect("parses");
        assert!(p.allows(&names(&["cn-x", "viewer"]), "/observe.Observe/Status"));
    }

    #[test]
    fn health_and_reflection_are_open() {
        let p = Policy::parse("", "t").expect("empty policy parses");
        assert!(p.allows(&names(&["nobody"]), "/grpc.health.v1.Health/Check"));
        assert!(!p.allows(&names(&["nobody"]), "/observe.Observe/Status"));
    }

    #[test]
    fn wildcard_identity() {
        let p = Policy::parse(
            "[[allow]]\nidentities=[\"*\"]\nmethods=[\"observe.Observe/Status\"]",
            "t",
        )
        .expect("parses");
        assert!(p.allows(&names(&["anyone"]), "/observe.Observe/Status"));
        assert!(!p.allows(
            &names(&["anyone"]),
            "/observe.Observe/GetAuraeDaemonLogStream"
        ));
    }

    #[test]
    fn bad_policies_are_refused_with_a_reason() {
        let e = problems("[[allow]]\nidentities=[\"a\"]\nmethods=[\"RunExecutable\"]");
        assert!(
            e[0].starts_with("rule 1: method \"RunExecutable\""),
            "{e:?}"
        );
        assert!(Policy::parse("[[allow]]\nidentities=[]\nmethods=[\"*\"]", "p").is_err());
        assert!(
            Policy::parse("[[allow]]\nidentity=[\"a\"]\nmethods=[\"*\"]", "p").is_err(),
            "unknown key"
        );
        assert!(Policy::parse("not toml", "p").is_err());
    }

    #[test]
    fn typos_are_named_with_the_closest_served_name() {
        let e = problems(
            r#"
[[allow]]
identities = ["ci"]
methods = ["runtime.Core/RunExecutabel", "observe.Observe"]

[[allow]]
identities = ["viewer"]
methods = ["schedule.Schedul", "cells.Cells/Stop", "nothing.Like/This"]
"#,
        );
        assert_eq!(
            e,
            [
                "rule 1: unknown method \"runtime.Core/RunExecutabel\": did you mean \"runtime.Core/RunExecutable\"?",
                "rule 2: unknown service \"schedule.Schedul\": did you mean \"schedule.Schedule\"?",
                "rule 2: unknown service \"nothing.Like/This\": the daemon serves no such service",
            ]
        );
    }

    #[test]
    fn every_problem_is_one_line_naming_the_file() {
        let err = Policy::parse(
            "[[allow]]\nidentities=[]\nmethods=[\"runtime.Core/Nope\"]",
            "p.toml",
        )
        .expect_err("invalid");
        assert_eq!(err.lines().len(), 2);
        assert!(err
            .lines()
            .iter()
            .all(|l| l.starts_with("p.toml: rule 1: ")));
    }
}

//! Authorization by client identity: a TOML policy maps identities (the CN
//! and SAN names of the verified client certificate) to the services or
//! methods they may call.
//!
//! ```toml
//! [[allow]]
//! identities = ["admin"]          # "*" matches every authenticated identity
//! methods = ["*"]
//!
//! [[allow]]
//! identities = ["ci", "viewer"]
//! methods = ["observe.Observe", "schedule.Schedule", "runtime.Core/RunExecutable"]
//! ```
//! Health checks and reflection are open to every authenticated identity.

use std::path::Path;

use serde::Deserialize;
use thiserror::Error;

/// Services every CA-signed client may call whatever the policy says.
const ALWAYS_ALLOWED: &[&str] = &[
    "grpc.health.v1.Health",
    "grpc.reflection.v1.ServerReflection",
    "grpc.reflection.v1alpha.ServerReflection",
];

#[derive(Debug, Error)]
pub enum AuthzError {
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
    #[error("authorization policy {path}: rule {rule}: {reason}")]
    Invalid {
        path: String,
        rule: usize,
        reason: String,
    },
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
    pub fn load(path: &Path) -> Result<Self, AuthzError> {
        let p = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| AuthzError::Read {
            path: p.clone(),
            source,
        })?;
        Self::parse(&text, &p)
    }

    pub fn parse(text: &str, path: &str) -> Result<Self, AuthzError> {
        let file: PolicyFile = toml::from_str(text).map_err(|source| AuthzError::Parse {
            path: path.into(),
            source,
        })?;
        let mut rules = Vec::new();
        for (i, r) in file.allow.into_iter().enumerate() {
            let invalid = |reason: String| AuthzError::Invalid {
                path: path.into(),
                rule: i + 1,
                reason,
            };
            if r.identities.is_empty() {
                return Err(invalid("identities is empty".into()));
            }
            if r.methods.is_empty() {
                return Err(invalid("methods is empty".into()));
            }
            for m in &r.methods {
                validate_method_pattern(m).map_err(invalid)?;
            }
            rules.push(RuleSet {
                identities: r.identities,
                methods: r.methods,
            });
        }
        Ok(Policy::Rules(rules))
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

fn validate_method_pattern(m: &str) -> Result<(), String> {
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
    if well_formed {
        Ok(())
    } else {
        Err(format!(
            "method {m:?} is not \"*\", \"package.Service\" or \"package.Service/Method\" (e.g. \"runtime.Core/RunExecutable\")"
        ))
    }
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
        let e = Policy::parse(
            "[[allow]]\nidentities=[\"a\"]\nmethods=[\"RunExecutable\"]",
            "p.toml",
        )
        .err()
        .map(|e| e.to_string());
        assert!(
            e.as_deref()
                .is_some_and(|e| e
                    .starts_with("authorization policy p.toml: rule 1: method \"RunExecutable\"")),
            "{e:?}"
        );
        assert!(Policy::parse("[[allow]]\nidentities=[]\nmethods=[\"*\"]", "p").is_err());
        assert!(
            Policy::parse("[[allow]]\nidentity=[\"a\"]\nmethods=[\"*\"]", "p").is_err(),
            "unknown key"
        );
        assert!(Policy::parse("not toml", "p").is_err());
    }
}

/// Property tests (proptest): any text loads or fails with an error, never a
/// panic; a loaded policy grants exactly what a plain model of its rules
/// grants (so `runtime.Core` never grants `runtime.CoreX/...`).
#[cfg(test)]
mod props {
    use super::*;
    use proptest::prelude::*;

    fn pattern() -> impl Strategy<Value = String> {
        prop_oneof![
            Just("*".to_string()),
            "(runtime|cells|images)\\.(Core|CoreX|Cells|Images)",
            "(runtime|cells|images)\\.(Core|CoreX|Cells|Images)/(Run|RunX|Pull|List)",
        ]
    }

    fn path() -> impl Strategy<Value = String> {
        "/?(runtime|cells|images|grpc\\.health\\.v1)\\.(Core|CoreX|Cells|Images|Health)(/(Run|RunX|Pull|List|Check))?(/x)?"
    }

    fn model(rules: &[(Vec<String>, Vec<String>)], names: &[String], path: &str) -> bool {
        let method = path.trim_start_matches('/');
        let service = method.split('/').next().unwrap_or_default();
        ALWAYS_ALLOWED.contains(&service)
            || rules.iter().any(|(ids, methods)| {
                ids.iter().any(|i| i == "*" || names.contains(i))
                    && methods
                        .iter()
                        .any(|m| m == "*" || m == service || m == method)
            })
    }

    proptest! {
        #[test]
        fn arbitrary_text_never_panics(text in any::<String>()) {
            let _ = Policy::parse(&text, "fuzz.toml");
        }

        #[test]
        fn toml_shaped_text_never_panics(text in "(\\[\\[allow\\]\\]\n|identities = \\[\"[a-z*]{0,4}\"\\]\n|methods = \\[\"[a-zA-Z./*]{0,12}\"\\]\n|[a-z\"=\\[\\]\n ]{0,8}){0,8}") {
            let _ = Policy::parse(&text, "fuzz.toml");
        }

        #[test]
        fn policies_grant_what_their_rules_say(
            rules in proptest::collection::vec(
                (proptest::collection::vec("(\\*|admin|ci|viewer)", 1..3),
                 proptest::collection::vec(pattern(), 1..3)),
                0..4),
            names in proptest::collection::vec("(admin|ci|viewer|other)", 0..3),
            path in path(),
        ) {
            let mut text = String::new();
            for (ids, methods) in &rules {
                text.push_str(&format!(
                    "[[allow]]\nidentities = {ids:?}\nmethods = {methods:?}\n"
                ));
            }
            let policy = Policy::parse(&text, "generated.toml");
            prop_assert!(policy.is_ok(), "{:?}", policy.err());
            let policy = policy.unwrap_or(Policy::AllowAll);
            prop_assert_eq!(policy.allows(&names, &path), model(&rules, &names, &path));
        }
    }
}

//! Names (`meta.name`) become paths, cgroup directories and database keys:
//! they are checked here, once, before they touch any of those.

use thiserror::Error;

/// Longest accepted name: short enough for a cgroup directory and a unit-like label.
pub const MAX_NAME_LEN: usize = 64;

#[derive(Debug, Error, PartialEq, Eq)]
pub enum NameError {
    #[error("{what} is empty: give a name of 1 to {MAX_NAME_LEN} characters from [A-Za-z0-9._-]")]
    Empty { what: &'static str },
    #[error("{what} is {len} characters long: at most {MAX_NAME_LEN} are allowed")]
    TooLong { what: &'static str, len: usize },
    #[error("{what} {name:?} contains {found:?}: only [A-Za-z0-9._-] are allowed")]
    BadChar {
        what: &'static str,
        name: String,
        found: char,
    },
    #[error("{what} {name:?} is reserved: names may not be \".\" or \"..\" or start with a dot")]
    Reserved { what: &'static str, name: String },
}

/// Checks a user-supplied name; `what` says which field it came from, for the message.
pub fn validate_name(what: &'static str, name: &str) -> Result<(), NameError> {
    if name.is_empty() {
        return Err(NameError::Empty { what });
    }
    let len = name.chars().count();
    if len > MAX_NAME_LEN {
        return Err(NameError::TooLong { what, len });
    }
    if let Some(found) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
    {
        return Err(NameError::BadChar {
            what,
            name: name.to_string(),
            found,
        });
    }
    // A leading dot would allow "." and "..", and hidden entries in state dirs.
    if name.starts_with('.') {
        return Err(NameError::Reserved {
            what,
            name: name.to_string(),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_ordinary_names() {
        for n in ["web", "web-1", "a.b_c", "X", &"a".repeat(MAX_NAME_LEN)] {
            assert_eq!(validate_name("name", n), Ok(()), "{n}");
        }
    }

    #[test]
    fn rejects_bad_names() {
        assert!(matches!(
            validate_name("name", ""),
            Err(NameError::Empty { .. })
        ));
        assert!(matches!(
            validate_name("name", ".."),
            Err(NameError::Reserved { .. })
        ));
        assert!(matches!(
            validate_name("name", "."),
            Err(NameError::Reserved { .. })
        ));
        assert!(matches!(
            validate_name("name", ".hidden"),
            Err(NameError::Reserved { .. })
        ));
        assert!(matches!(
            validate_name("name", "a/b"),
            Err(NameError::BadChar { found: '/', .. })
        ));
        assert!(matches!(
            validate_name("name", "a b"),
            Err(NameError::BadChar { found: ' ', .. })
        ));
        assert!(matches!(
            validate_name("name", "é"),
            Err(NameError::BadChar { .. })
        ));
        assert!(matches!(
            validate_name("name", "a\0"),
            Err(NameError::BadChar { .. })
        ));
        let long = "a".repeat(MAX_NAME_LEN + 1);
        assert!(matches!(
            validate_name("name", &long),
            Err(NameError::TooLong { .. })
        ));
    }

    #[test]
    fn message_names_the_field() {
        let e = validate_name("meta.name", "a/b")
            .err()
            .map(|e| e.to_string());
        assert_eq!(
            e.as_deref(),
            Some("meta.name \"a/b\" contains '/': only [A-Za-z0-9._-] are allowed")
        );
    }
}

/// Property tests (proptest): a name is accepted exactly when it matches the
/// documented pattern, and an accepted name is always one plain path component.
#[cfg(test)]
mod props {
    use super::*;
    use proptest::prelude::*;

    fn model(name: &str) -> bool {
        let len = name.chars().count();
        (1..=MAX_NAME_LEN).contains(&len)
            && !name.starts_with('.')
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
    }

    proptest! {
        #[test]
        fn arbitrary_strings_follow_the_model(name in any::<String>()) {
            let ok = validate_name("name", &name).is_ok();
            prop_assert_eq!(ok, model(&name));
        }

        #[test]
        fn near_miss_names_follow_the_model(name in "[A-Za-z0-9._/\\\\ \0-]{0,70}") {
            let ok = validate_name("name", &name).is_ok();
            prop_assert_eq!(ok, model(&name));
            if ok {
                let comps: Vec<_> = std::path::Path::new(&name).components().collect();
                prop_assert_eq!(comps.len(), 1);
                prop_assert!(matches!(comps[0], std::path::Component::Normal(n) if n == name.as_str()));
            }
        }
    }
}

//! Who a workload runs as: a user and group given by name or numeric id,
//! resolved in the daemon before the child is cloned (the vfork child may
//! not read /etc/passwd: that allocates and takes locks).

use std::ffi::CString;

use nix::unistd::{Gid, Group, Uid, User};
use serde::{Deserialize, Serialize};
use thiserror::Error;

/// Longest accepted user or group name.
const MAX_NAME_LEN: usize = 256;

/// The credentials a workload gets between its clone and its exec.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Identity {
    pub uid: u32,
    pub gid: u32,
    /// Supplementary groups (as `initgroups` would set them for the user).
    pub groups: Vec<u32>,
    /// For `USER`, `LOGNAME` and `HOME`, as systemd sets them with `User=`.
    pub user_name: Option<String>,
    pub home: Option<String>,
}

#[derive(Debug, Error, PartialEq, Eq)]
pub enum IdentityError {
    #[error("user {0:?} does not exist on this node: give a user name from /etc/passwd or a numeric uid")]
    UnknownUser(String),
    #[error("group {0:?} does not exist on this node: give a group name from /etc/group or a numeric gid")]
    UnknownGroup(String),
    #[error("{what} {value:?} is not a valid name: at most {MAX_NAME_LEN} bytes, no NUL, no ':' and no whitespace")]
    BadName { what: &'static str, value: String },
    #[error("looking up {what} {value:?}: {reason}")]
    Lookup {
        what: &'static str,
        value: String,
        reason: String,
    },
}

/// The identity for `user` and `group` (names or numeric ids); empty ones
/// fall back to `default_user` (which may be empty too). None means "as
/// the daemon" (root).
///
/// A named user brings its primary group and supplementary groups unless
/// `group` is given; a numeric uid unknown to /etc/passwd is allowed (as in
/// containers), with gid = uid unless `group` is given.
pub fn resolve(
    user: &str,
    group: &str,
    default_user: &str,
) -> Result<Option<Identity>, IdentityError> {
    let user = if user.is_empty() { default_user } else { user };
    if user.is_empty() && group.is_empty() {
        return Ok(None);
    }
    let mut id = match user {
        "" => Identity {
            uid: 0,
            gid: 0,
            groups: Vec::new(),
            user_name: None,
            home: None,
        },
        u => lookup_user(u)?,
    };
    if !group.is_empty() {
        id.gid = lookup_group(group)?;
        // An explicit group replaces the user's groups, as `sg`/`runuser -g` do.
        id.groups = vec![id.gid];
    }
    Ok(Some(id))
}

fn check(what: &'static str, value: &str) -> Result<(), IdentityError> {
    let bad = value.len() > MAX_NAME_LEN
        || value
            .chars()
            .any(|c| c == '\0' || c == ':' || c.is_whitespace());
    if bad {
        return Err(IdentityError::BadName {
            what,
            value: value.to_string(),
        });
    }
    Ok(())
}

fn lookup_user(user: &str) -> Result<Identity, IdentityError> {
    check("user", user)?;
    let lookup_err = |e: nix::Error| IdentityError::Lookup {
        what: "user",
        value: user.to_string(),
        reason: e.to_string(),
    };
    let found = match user.parse::<u32>() {
        Ok(uid) => User::from_uid(Uid::from_raw(uid)).map_err(lookup_err)?,
        Err(_) => Some(
            User::from_name(user)
                .map_err(lookup_err)?
                .ok_or_else(|| IdentityError::UnknownUser(user.to_string()))?,
        ),
    };
    let Some(u) = found else {
        // A bare uid with no passwd entry: its own group, no others.
        let uid: u32 = user.parse().unwrap_or_default();
        return Ok(Identity {
            uid,
            gid: uid,
            groups: vec![uid],
            user_name: None,
            home: None,
        });
    };
    let groups = CString::new(u.name.as_bytes())
        .ok()
        .and_then(|name| nix::unistd::getgrouplist(&name, u.gid).ok())
        .map(|gs| gs.into_iter().map(Gid::as_raw).collect())
        .unwrap_or_else(|| vec![u.gid.as_raw()]);
    Ok(Identity {
        uid: u.uid.as_raw(),
        gid: u.gid.as_raw(),
        groups,
        user_name: Some(u.name),
        home: Some(u.dir.display().to_string()),
    })
}

fn lookup_group(group: &str) -> Result<u32, IdentityError> {
    check("group", group)?;
    if let Ok(gid) = group.parse::<u32>() {
        return Ok(gid);
    }
    Group::from_name(group)
        .map_err(|e| IdentityError::Lookup {
            what: "group",
            value: group.to_string(),
            reason: e.to_string(),
        })?
        .map(|g| g.gid.as_raw())
        .ok_or_else(|| IdentityError::UnknownGroup(group.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_means_as_the_daemon_unless_there_is_a_default() {
        assert_eq!(resolve("", "", ""), Ok(None));
        let nobody = resolve("", "", "nobody").expect("nobody").expect("some");
        assert_eq!(nobody.user_name.as_deref(), Some("nobody"));
        assert_ne!(nobody.uid, 0);
    }

    #[test]
    fn names_and_numbers_resolve() {
        let root = resolve("root", "", "").expect("root").expect("some");
        assert_eq!((root.uid, root.gid), (0, 0));
        assert!(root.groups.contains(&0));
        let n = resolve("65534", "", "").expect("uid").expect("some");
        assert_eq!(n.uid, 65534);
        let bare = resolve("123456", "", "").expect("bare uid").expect("some");
        assert_eq!(
            (bare.uid, bare.gid, bare.groups.clone()),
            (123456, 123456, vec![123456])
        );
        let g = resolve("nobody", "0", "").expect("group").expect("some");
        assert_eq!((g.gid, g.groups.clone()), (0, vec![0]));
        let only_group = resolve("", "root", "").expect("group").expect("some");
        assert_eq!((only_group.uid, only_group.gid), (0, 0));
    }

    #[test]
    fn unknown_or_malformed_names_are_refused_with_the_name() {
        let err = resolve("no-such-user-aurae", "", "").expect_err("unknown");
        assert_eq!(err, IdentityError::UnknownUser("no-such-user-aurae".into()));
        let err = resolve("", "no-such-group-aurae", "").expect_err("unknown");
        assert!(err.to_string().contains("no-such-group-aurae"), "{err}");
        for bad in ["a b", "a:b", "a\0b"] {
            assert!(matches!(
                resolve(bad, "", ""),
                Err(IdentityError::BadName { what: "user", .. })
            ));
        }
    }
}

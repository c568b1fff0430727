//! The image's `user` as numbers: `uid[:gid]` as given, names looked up in the
//! root filesystem's `/etc/passwd` and `/etc/group` (read without ever
//! leaving the root filesystem, whatever its symlinks say).

use std::ffi::CString;
use std::fs::File;
use std::io::{self, Read};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

/// Largest /etc/passwd or /etc/group read.
const MAX_DB_FILE: u64 = 4 << 20;

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ResolvedUser {
    pub uid: u32,
    pub gid: u32,
    /// Supplementary groups listing the user by name in /etc/group.
    pub additional_gids: Vec<u32>,
    /// The passwd entry's home directory, when there is one.
    pub home: Option<String>,
}

struct PasswdEntry {
    name: String,
    uid: u32,
    gid: u32,
    home: String,
}

struct GroupEntry {
    name: String,
    gid: u32,
    members: Vec<String>,
}

/// The ':'-separated fields of each line of an /etc/passwd-style file that
/// has at least `min_fields` of them; comment lines are left out.
fn records(content: &str, min_fields: usize) -> impl Iterator<Item = Vec<&str>> {
    content
        .lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .map(|line| line.split(':').collect::<Vec<_>>())
        .filter(move |f| f.len() >= min_fields)
}

fn parse_passwd(content: &str) -> Vec<PasswdEntry> {
    records(content, 4)
        .filter_map(|f| {
            Some(PasswdEntry {
                name: f[0].to_string(),
                uid: f[2].parse().ok()?,
                gid: f[3].parse().ok()?,
                home: f.get(5).map(|s| s.to_string()).unwrap_or_default(),
            })
        })
        .collect()
}

fn parse_group(content: &str) -> Vec<GroupEntry> {
    records(content, 3)
        .filter_map(|f| {
            Some(GroupEntry {
                name: f[0].to_string(),
                gid: f[2].parse().ok()?,
                members: f
                    .get(3)
                    .map(|m| {
                        m.split(',')
                            .filter(|s| !s.is_empty())
                            .map(str::to_string)
                            .collect()
                    })
                    .unwrap_or_default(),
            })
        })
        .collect()
}

/// A decimal id, refusing -1 (4294967295 means "no change" to the kernel).
fn numeric(s: &str) -> Option<Result<u32, String>> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some(match s.parse::<u32>() {
        Ok(n) if n != u32::MAX => Ok(n),
        _ => Err(format!("{s} is not a valid id (0 to {})", u32::MAX - 1)),
    })
}

/// Resolves `user` (`""`, `name`, `uid`, `name:group`, `uid:gid`, ...) against
/// the contents of /etc/passwd and /etc/group (None when the file is absent).
pub(crate) fn resolve(
    user: &str,
    passwd: Option<&str>,
    group: Option<&str>,
) -> Result<ResolvedUser, String> {
    let users = passwd.map(parse_passwd).unwrap_or_default();
    let groups = group.map(parse_group).unwrap_or_default();
    let (user_part, group_part) = match user.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (user, None),
    };
    let user_part = if user_part.is_empty() { "0" } else { user_part };

    let (uid, entry) = match numeric(user_part) {
        Some(uid) => {
            let uid = uid?;
            (uid, users.iter().find(|e| e.uid == uid))
        }
        None => {
            let e = users.iter().find(|e| e.name == user_part).ok_or_else(|| {
                if passwd.is_none() {
                    format!("the image has no /etc/passwd to look up user {user_part:?}: use a numeric uid")
                } else {
                    format!("no user {user_part:?} in the image's /etc/passwd")
                }
            })?;
            (e.uid, Some(e))
        }
    };

    let gid = match group_part {
        Some("") => return Err("the group after ':' is empty".to_string()),
        Some(g) => match numeric(g) {
            Some(gid) => gid?,
            None => groups
                .iter()
                .find(|e| e.name == g)
                .map(|e| e.gid)
                .ok_or_else(|| {
                    if group.is_none() {
                        format!(
                            "the image has no /etc/group to look up group {g:?}: use a numeric gid"
                        )
                    } else {
                        format!("no group {g:?} in the image's /etc/group")
                    }
                })?,
        },
        // Like runc and Docker: the passwd entry's group, else root's.
        None => entry.map(|e| e.gid).unwrap_or(0),
    };

    let mut additional_gids = Vec::new();
    // Supplementary groups only come with a user name and no explicit group.
    if let (Some(e), None) = (entry, group_part) {
        for g in &groups {
            if g.members.contains(&e.name) && g.gid != gid && !additional_gids.contains(&g.gid) {
                additional_gids.push(g.gid);
            }
        }
    }
    Ok(ResolvedUser {
        uid,
        gid,
        additional_gids,
        home: entry.map(|e| e.home.clone()).filter(|h| !h.is_empty()),
    })
}

/// Resolves `user` against the files of the root filesystem at `rootfs`.
pub(crate) fn resolve_in_rootfs(user: &str, rootfs: &Path) -> Result<ResolvedUser, String> {
    let read = |rel: &str| {
        read_in_root(rootfs, rel).map_err(|e| format!("reading /{rel} of the image: {e}"))
    };
    let passwd = read("etc/passwd")?;
    let group = read("etc/group")?;
    resolve(user, passwd.as_deref(), group.as_deref())
}

/// `struct open_how` of openat2(2).
#[repr(C)]
struct OpenHow {
    flags: u64,
    mode: u64,
    resolve: u64,
}

/// RESOLVE_IN_ROOT: "/" and ".." stop at the directory fd, symlinks included.
const RESOLVE_IN_ROOT: u64 = 0x10;
/// RESOLVE_NO_MAGICLINKS: no /proc/<pid>/fd-style jumps.
const RESOLVE_NO_MAGICLINKS: u64 = 0x02;

/// The content of `rel` inside `root`, resolved as if `root` were "/"; None
/// when it does not exist. Bounded to [`MAX_DB_FILE`] bytes.
pub(crate) fn read_in_root(root: &Path, rel: &str) -> io::Result<Option<String>> {
    let root_dir = File::open(root)?;
    let path = CString::new(Path::new(rel).as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "path contains NUL"))?;
    let how = OpenHow {
        flags: (libc::O_RDONLY | libc::O_CLOEXEC | libc::O_NOCTTY | libc::O_NONBLOCK) as u64,
        mode: 0,
        resolve: RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS,
    };
    // SAFETY: openat2 reads `path` (NUL-terminated, alive for the call) and
    // `how` (a properly sized, initialised open_how); it returns a new fd or -1.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_openat2,
            root_dir.as_raw_fd(),
            path.as_ptr(),
            &how as *const OpenHow,
            std::mem::size_of::<OpenHow>(),
        )
    };
    if fd < 0 {
        let err = io::Error::last_os_error();
        return match err.kind() {
            io::ErrorKind::NotFound => Ok(None),
            _ => Err(err),
        };
    }
    let fd = i32::try_from(fd).map_err(|_| io::Error::other("openat2 returned a bad fd"))?;
    // SAFETY: openat2 just returned this fd, and nothing else owns it.
    let file = File::from(unsafe { OwnedFd::from_raw_fd(fd) });
    if !file.metadata()?.is_file() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "not a regular file",
        ));
    }
    let mut content = String::new();
    file.take(MAX_DB_FILE).read_to_string(&mut content)?;
    Ok(Some(content))
}

#[cfg(test)]
mod tests {
    use super::*;
    use tempfile::TempDir;

    const PASSWD: &str = "\
root:x:0:0:root:/root:/bin/sh
# a comment
daemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin
www:x:33:34:web:/var/www:/bin/sh
broken:line
nobody:x:65534:65534:nobody:/nonexistent:/bin/false
";
    const GROUP: &str = "\
root:x:0:
daemon:x:1:
www-data:x:34:
web:x:500:www,other
logs:x:501:daemon,www
nogroup:x:65534:
";

    fn ok(user: &str) -> ResolvedUser {
        resolve(user, Some(PASSWD), Some(GROUP)).expect(user)
    }

    #[test]
    fn empty_user_is_root() {
        let r = ok("");
        assert_eq!((r.uid, r.gid), (0, 0));
        assert_eq!(r.home.as_deref(), Some("/root"));
        let bare = resolve("", None, None).expect("no files");
        assert_eq!((bare.uid, bare.gid, bare.home), (0, 0, None));
    }

    #[test]
    fn names_resolve_with_primary_and_supplementary_groups() {
        let r = ok("www");
        assert_eq!((r.uid, r.gid), (33, 34));
        assert_eq!(r.additional_gids, [500, 501]);
        assert_eq!(r.home.as_deref(), Some("/var/www"));
        let r = ok("www:web");
        assert_eq!((r.uid, r.gid), (33, 500));
        assert!(r.additional_gids.is_empty(), "explicit group: no extras");
        assert_eq!(ok("daemon:0").gid, 0);
    }

    #[test]
    fn numbers_resolve_with_or_without_entries() {
        let r = ok("1");
        assert_eq!((r.uid, r.gid), (1, 1), "gid from the passwd entry");
        assert_eq!(r.additional_gids, [501]);
        let r = ok("1234");
        assert_eq!((r.uid, r.gid, r.home.clone()), (1234, 0, None));
        let r = ok("1234:42");
        assert_eq!((r.uid, r.gid), (1234, 42));
        let r = ok("65534:nogroup");
        assert_eq!((r.uid, r.gid), (65534, 65534));
        let r = resolve("7:8", None, None).expect("numbers need no files");
        assert_eq!((r.uid, r.gid), (7, 8));
    }

    #[test]
    fn unknown_or_malformed_users_are_explained() {
        let err = resolve("ghost", Some(PASSWD), Some(GROUP)).expect_err("unknown");
        assert!(err.contains("no user \"ghost\""), "{err}");
        let err = resolve("ghost", None, None).expect_err("no passwd");
        assert!(
            err.contains("no /etc/passwd") && err.contains("numeric"),
            "{err}"
        );
        let err = resolve("www:ghosts", Some(PASSWD), Some(GROUP)).expect_err("group");
        assert!(err.contains("no group \"ghosts\""), "{err}");
        let err = resolve("1:", Some(PASSWD), Some(GROUP)).expect_err("empty group");
        assert!(err.contains("empty"), "{err}");
        let err = resolve("4294967295", None, None).expect_err("-1");
        assert!(err.contains("not a valid id"), "{err}");
        let err = resolve("99999999999", None, None).expect_err("overflow");
        assert!(err.contains("not a valid id"), "{err}");
    }

    #[test]
    fn rootfs_files_are_read_inside_the_root_only() {
        let outside = TempDir::new().expect("tempdir");
        std::fs::write(outside.path().join("passwd"), "evil:x:0:0::/:/bin/sh\n").expect("write");
        let root = TempDir::new().expect("tempdir");
        std::fs::create_dir(root.path().join("etc")).expect("mkdir");
        std::fs::write(root.path().join("etc/group"), GROUP).expect("write");
        // An absolute symlink is resolved inside the root: it points at nothing there.
        std::os::unix::fs::symlink(
            outside.path().join("passwd"),
            root.path().join("etc/passwd"),
        )
        .expect("symlink");
        assert_eq!(read_in_root(root.path(), "etc/passwd").expect("read"), None);
        let err = resolve_in_rootfs("evil", root.path()).expect_err("escape");
        assert!(err.contains("no /etc/passwd"), "{err}");

        std::fs::remove_file(root.path().join("etc/passwd")).expect("rm");
        std::fs::write(root.path().join("etc/passwd"), PASSWD).expect("write");
        let r = resolve_in_rootfs("www", root.path()).expect("resolve");
        assert_eq!((r.uid, r.gid), (33, 34));
        // Relative escapes stop at the root too.
        std::fs::create_dir(root.path().join("etc/sub")).expect("mkdir");
        std::os::unix::fs::symlink(
            "../../../../../../etc/passwd",
            root.path().join("etc/sub/p"),
        )
        .expect("symlink");
        let via = read_in_root(root.path(), "etc/sub/p")
            .expect("read")
            .expect("found");
        assert_eq!(via, PASSWD, "../ stops at the root");
    }
}

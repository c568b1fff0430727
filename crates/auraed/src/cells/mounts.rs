//! Mounts under a cell's directory: a private bind mount of the directory on
//! itself (so nothing mounted below it propagates to other mount
//! namespaces), and a sweep that unmounts everything below a directory,
//! found in /proc/self/mountinfo, so teardown and leftover clean-up never
//! depend on remembering what was mounted.

use std::io;
use std::path::{Path, PathBuf};

use nix::mount::{mount, umount2, MntFlags, MsFlags};

/// Mount points of a mountinfo text, in mount order (field 5, unescaped).
pub(crate) fn parse_mountinfo(content: &str) -> Vec<PathBuf> {
    content
        .lines()
        .filter_map(|line| line.split(' ').nth(4))
        .map(|p| PathBuf::from(unescape(p)))
        .collect()
}

/// Undoes the kernel's octal escapes (`\040` for a space, `\011`, `\012`, `\134`).
fn unescape(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\' && i + 4 <= bytes.len() {
            let oct = &bytes[i + 1..i + 4];
            if oct.iter().all(|b| (b'0'..=b'7').contains(b)) {
                let value = oct.iter().fold(0u32, |v, b| v * 8 + u32::from(b - b'0'));
                if let Ok(v) = u8::try_from(value) {
                    out.push(v);
                    i += 4;
                    continue;
                }
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Mount points at or below `dir` in `mounts`, in mount order.
pub(crate) fn under(mounts: &[PathBuf], dir: &Path) -> Vec<PathBuf> {
    mounts
        .iter()
        .filter(|m| m.starts_with(dir))
        .cloned()
        .collect()
}

/// Mount points at or below `dir` in the daemon's mount namespace.
pub(crate) fn mounted_under(dir: &Path) -> io::Result<Vec<PathBuf>> {
    let content = std::fs::read_to_string("/proc/self/mountinfo")?;
    Ok(under(&parse_mountinfo(&content), dir))
}

/// Unmounts everything at or below `dir`, newest first (lazily, so a busy
/// mount cannot keep the rest in place). Fails if anything is still mounted.
pub(crate) fn unmount_under(dir: &Path) -> io::Result<()> {
    // Stacked mounts show up once per layer: a few rounds take them all.
    for _ in 0..8 {
        let mounted = mounted_under(dir)?;
        if mounted.is_empty() {
            return Ok(());
        }
        for point in mounted.iter().rev() {
            match umount2(point, MntFlags::MNT_DETACH) {
                Ok(()) | Err(nix::errno::Errno::EINVAL) | Err(nix::errno::Errno::ENOENT) => {}
                Err(e) => {
                    return Err(io::Error::other(format!(
                        "unmounting {}: {e}",
                        point.display()
                    )))
                }
            }
        }
    }
    let left = mounted_under(dir)?;
    if left.is_empty() {
        Ok(())
    } else {
        Err(io::Error::other(format!("still mounted: {left:?}")))
    }
}

/// Bind-mounts `dir` on itself and makes it private: mounts made below it
/// (namespace files, root filesystems) then stay in the daemon's namespace.
pub(crate) fn make_private(dir: &Path) -> io::Result<()> {
    mount(
        Some(dir),
        dir,
        None::<&str>,
        MsFlags::MS_BIND | MsFlags::MS_REC,
        None::<&str>,
    )
    .map_err(|e| io::Error::other(format!("bind-mounting {} on itself: {e}", dir.display())))?;
    if let Err(e) = mount(
        None::<&str>,
        dir,
        None::<&str>,
        MsFlags::MS_PRIVATE | MsFlags::MS_REC,
        None::<&str>,
    ) {
        let _ = umount2(dir, MntFlags::MNT_DETACH);
        return Err(io::Error::other(format!(
            "making {} a private mount: {e}",
            dir.display()
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const MOUNTINFO: &str = "\
22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw
30 22 0:25 / /run rw,nosuid shared:5 - tmpfs tmpfs rw
40 30 0:25 /aurae/cells/web /run/aurae/cells/web rw - tmpfs tmpfs rw
41 40 0:4 net:[4026532] /run/aurae/cells/web/ns/net rw - nsfs nsfs rw
42 40 0:50 / /run/aurae/cells/web/containers/a\\040b/rootfs rw - overlay overlay rw
43 30 0:26 / /run/aurae/cells/web2 rw - tmpfs tmpfs rw
";

    #[test]
    fn parses_mount_points_with_escapes() {
        let points = parse_mountinfo(MOUNTINFO);
        assert_eq!(points.len(), 6);
        assert_eq!(points[0], Path::new("/"));
        assert_eq!(
            points[4],
            Path::new("/run/aurae/cells/web/containers/a b/rootfs")
        );
        assert_eq!(unescape("a\\011b\\134c\\012"), "a\tb\\c\n");
        assert_eq!(unescape("trailing\\04"), "trailing\\04");
        assert_eq!(unescape("x\\999"), "x\\999");
    }

    #[test]
    fn selects_mounts_at_or_below_a_directory_only() {
        let points = parse_mountinfo(MOUNTINFO);
        let got = under(&points, Path::new("/run/aurae/cells/web"));
        assert_eq!(
            got,
            [
                PathBuf::from("/run/aurae/cells/web"),
                "/run/aurae/cells/web/ns/net".into(),
                "/run/aurae/cells/web/containers/a b/rootfs".into(),
            ],
            "web2 is a sibling, not a child"
        );
    }

    #[test]
    fn unmount_under_a_directory_without_mounts_is_a_no_op() {
        let dir = tempfile::TempDir::new().expect("tempdir");
        unmount_under(dir.path()).expect("nothing to do");
    }
}

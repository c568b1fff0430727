//! /proc/self/mountinfo, read once for everyone: the cells' teardown sweep
//! and the image layer's root filesystem removal both ask "what is mounted
//! at or below this directory?".
//!
//! A line is `id parent major:minor root mount-point options [optional
//! fields...] - fstype source super-options`; the mount point (field 5)
//! comes before the variable-length optional fields, and the kernel escapes
//! space, tab, newline and backslash in it as `\040`, `\011`, `\012`, `\134`.

use std::io;
use std::path::{Path, PathBuf};

/// Mount points of a mountinfo text, in mount order (field 5, unescaped).
pub fn parse(content: &str) -> Vec<PathBuf> {
    content
        .lines()
        .filter_map(|line| line.split(' ').nth(4))
        .map(|p| PathBuf::from(unescape(p)))
        .collect()
}

/// Undoes the kernel's octal escapes (`\040` for a space, `\011`, `\012`,
/// `\134`); anything that is not a three-digit octal byte stays as it is.
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

/// Mount points at or below `dir` in `mounts`, in mount order (a stacked
/// mount point shows up once per layer).
pub fn under(mounts: &[PathBuf], dir: &Path) -> Vec<PathBuf> {
    mounts
        .iter()
        .filter(|m| m.starts_with(dir))
        .cloned()
        .collect()
}

/// Mount points at or below `dir` in this process's mount namespace, in
/// mount order. `dir` must be resolved (mountinfo shows no symlinks).
pub fn mounted_under(dir: &Path) -> io::Result<Vec<PathBuf>> {
    let content = std::fs::read_to_string("/proc/self/mountinfo")?;
    Ok(under(&parse(&content), dir))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Optional fields (none, one, several), escapes, a stacked mount, a sibling.
    const MOUNTINFO: &str = "\
22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw
30 22 0:25 / /run rw,nosuid shared:5 master:2 propagate_from:3 - tmpfs tmpfs rw
40 30 0:25 /aurae/cells/web /run/aurae/cells/web rw - tmpfs tmpfs rw
41 40 0:4 net:[4026532] /run/aurae/cells/web/ns/net rw - nsfs nsfs rw
42 40 0:50 / /run/aurae/cells/web/containers/a\\040b/rootfs rw - overlay overlay rw,lowerdir=/x\\040y
44 42 0:51 / /run/aurae/cells/web/containers/a\\040b/rootfs rw unbindable - tmpfs tmpfs rw
43 30 0:26 / /run/aurae/cells/web2 rw - tmpfs tmpfs rw
";

    #[test]
    fn parses_mount_points_whatever_the_optional_fields() {
        let points = parse(MOUNTINFO);
        assert_eq!(points.len(), 7);
        assert_eq!(points[0], Path::new("/"));
        assert_eq!(points[1], Path::new("/run"));
        assert_eq!(
            points[4],
            Path::new("/run/aurae/cells/web/containers/a b/rootfs")
        );
        assert_eq!(points[4], points[5], "a stacked mount is listed per layer");
        assert!(parse("").is_empty());
        assert!(parse("garbage\n").is_empty(), "short lines are skipped");
    }

    #[test]
    fn decodes_octal_escapes_and_leaves_the_rest() {
        assert_eq!(unescape("/a\\040b"), "/a b");
        assert_eq!(unescape("a\\011b\\134c\\012"), "a\tb\\c\n");
        assert_eq!(unescape("/plain"), "/plain");
        assert_eq!(unescape("trailing\\04"), "trailing\\04");
        assert_eq!(unescape("x\\999"), "x\\999", "not octal");
        assert_eq!(unescape("x\\777"), "x\\777", "more than a byte");
        assert_eq!(unescape("end\\"), "end\\");
    }

    #[test]
    fn selects_mounts_at_or_below_a_directory_only() {
        let points = parse(MOUNTINFO);
        let got = under(&points, Path::new("/run/aurae/cells/web"));
        assert_eq!(
            got,
            [
                PathBuf::from("/run/aurae/cells/web"),
                "/run/aurae/cells/web/ns/net".into(),
                "/run/aurae/cells/web/containers/a b/rootfs".into(),
                "/run/aurae/cells/web/containers/a b/rootfs".into(),
            ],
            "web2 is a sibling, not a child"
        );
    }

    #[test]
    fn reads_this_process_mounts() {
        let root = mounted_under(Path::new("/")).expect("mountinfo");
        assert!(root.iter().any(|p| p == Path::new("/")), "{root:?}");
        let dir = tempfile::TempDir::new().expect("tempdir");
        assert!(mounted_under(dir.path()).expect("mountinfo").is_empty());
    }
}

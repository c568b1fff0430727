//! Unpack tests with tarballs built in memory, hostile ones included. The
//! whiteout tests need root (device nodes, trusted.* attributes) and the
//! overlay one a mountable overlayfs: without them they say why they are
//! skipped, and fail when `CI` is set.

#![allow(clippy::unwrap_used)]

use std::io::Write;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use tar::{EntryType, Header};

use super::digest::Digest;
use super::rootfs::{copy_layers, mount_rootfs, RootfsKind};
use super::unpack::{unpack_layer, UnpackError, UnpackOptions, OVERLAY_OPAQUE_XATTR};
use aurae_kernel::test_support::{require_root, skip};
use aurae_kernel::xattr;

fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// A tarball built entry by entry with raw names, so hostile names survive.
struct Tarball {
    builder: tar::Builder<Vec<u8>>,
}

impl Tarball {
    fn new() -> Self {
        Self {
            builder: tar::Builder::new(Vec::new()),
        }
    }

    fn header(path: &str, kind: EntryType, size: u64, mode: u32) -> Header {
        let mut h = Header::new_gnu();
        let name = path.as_bytes();
        assert!(name.len() < 100, "test names must fit the old header");
        h.as_old_mut().name[..name.len()].copy_from_slice(name);
        h.set_entry_type(kind);
        h.set_size(size);
        h.set_mode(mode);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(1_700_000_000);
        h
    }

    fn append(mut self, mut h: Header, data: &[u8]) -> Self {
        h.set_cksum();
        self.builder.append(&h, data).unwrap();
        self
    }

    fn dir(self, path: &str) -> Self {
        let h = Self::header(path, EntryType::Directory, 0, 0o755);
        self.append(h, &[])
    }

    fn file(self, path: &str, content: &str) -> Self {
        self.file_mode(path, content, 0o644)
    }

    fn file_mode(self, path: &str, content: &str, mode: u32) -> Self {
        let h = Self::header(path, EntryType::Regular, content.len() as u64, mode);
        self.append(h, content.as_bytes())
    }

    fn link(self, path: &str, kind: EntryType, target: &str) -> Self {
        let mut h = Self::header(path, kind, 0, 0o777);
        h.set_link_name_literal(target.as_bytes()).unwrap();
        self.append(h, &[])
    }

    fn symlink(self, path: &str, target: &str) -> Self {
        self.link(path, EntryType::Symlink, target)
    }

    fn hardlink(self, path: &str, target: &str) -> Self {
        self.link(path, EntryType::Link, target)
    }

    fn device(self, path: &str, kind: EntryType) -> Self {
        let mut h = Self::header(path, kind, 0, 0o666);
        h.set_device_major(1).unwrap();
        h.set_device_minor(3).unwrap();
        self.append(h, &[])
    }

    fn bytes(self) -> Vec<u8> {
        self.builder.into_inner().unwrap()
    }

    fn gzip(self) -> Vec<u8> {
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&self.bytes()).unwrap();
        gz.finish().unwrap()
    }

    fn zstd(self) -> Vec<u8> {
        zstd::stream::encode_all(self.bytes().as_slice(), 3).unwrap()
    }
}

/// A store-like sandbox: `store/` holds staging and layer dirs; `outside/`
/// is what a hostile layer would like to write.
struct Sandbox {
    dir: tempfile::TempDir,
}

impl Sandbox {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("store")).unwrap();
        std::fs::create_dir(dir.path().join("outside")).unwrap();
        Self { dir }
    }

    fn store(&self) -> PathBuf {
        self.dir.path().join("store")
    }

    fn outside(&self) -> PathBuf {
        self.dir.path().join("outside")
    }

    fn unpack(&self, name: &str, tar: &[u8]) -> Result<PathBuf, UnpackError> {
        let dest = self.store().join(name);
        let staging = self.store().join(format!("staging-{name}"));
        unpack_layer(tar, &staging, &dest, &UnpackOptions::default())?;
        assert!(!staging.exists(), "staging dir left behind");
        Ok(dest)
    }

    /// A refused layer: the error, and proof that nothing stayed anywhere.
    fn refuse(&self, name: &str, tar: &[u8]) -> UnpackError {
        let e = self.unpack(name, tar).expect_err("the layer was accepted");
        assert!(e.is_refusal(), "not a refusal: {e}");
        let left: Vec<_> = std::fs::read_dir(self.store())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert!(left.is_empty(), "the store kept {left:?} after refusing");
        let outside: Vec<_> = walk(&self.outside());
        assert!(outside.is_empty(), "written outside the layer: {outside:?}");
        e
    }
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let p = entry.unwrap().path();
        if std::fs::symlink_metadata(&p).unwrap().is_dir() {
            out.extend(walk(&p));
        }
        out.push(p);
    }
    out
}

#[test]
fn a_plain_layer_unpacks_with_modes_links_and_implicit_parents() {
    let sb = Sandbox::new();
    let tar = Tarball::new()
        .dir("./")
        .dir("bin/")
        .file_mode("bin/busybox", "#!binary", 0o4755)
        .symlink("bin/sh", "/bin/busybox")
        .symlink("bin/sh2", "busybox")
        .hardlink("bin/ls", "bin/busybox")
        .file("deep/er/file", "implicit parents")
        .file("/abs/file", "normalised")
        .file("./dot/./file", "dots")
        .gzip();
    let layer = sb.unpack("layer", &tar).unwrap();
    let busybox = std::fs::metadata(layer.join("bin/busybox")).unwrap();
    assert_eq!(busybox.permissions().mode() & 0o7777, 0o4755);
    assert_eq!(busybox.nlink(), 2);
    assert_eq!(
        std::fs::read_link(layer.join("bin/sh")).unwrap(),
        Path::new("/bin/busybox")
    );
    assert_eq!(
        std::fs::read_to_string(layer.join("deep/er/file")).unwrap(),
        "implicit parents"
    );
    assert_eq!(
        std::fs::read_to_string(layer.join("abs/file")).unwrap(),
        "normalised"
    );
    assert_eq!(
        std::fs::read_to_string(layer.join("dot/file")).unwrap(),
        "dots"
    );
    assert_eq!(
        std::fs::metadata(layer.join("bin")).unwrap().mtime(),
        1_700_000_000
    );
}

#[test]
fn parent_dir_components_are_refused() {
    let sb = Sandbox::new();
    let tar = Tarball::new()
        .file("ok", "fine")
        .file("../outside/escape", "escaped")
        .bytes();
    let e = sb.refuse("layer", &tar);
    assert!(matches!(e, UnpackError::ParentComponent { .. }), "{e}");
    assert!(e.to_string().contains("../outside/escape"), "{e}");

    let tar = Tarball::new().file("a/../../outside/x", "escaped").bytes();
    assert!(matches!(
        sb.refuse("layer", &tar),
        UnpackError::ParentComponent { .. }
    ));
}

#[test]
fn absolute_names_land_inside_the_layer() {
    let sb = Sandbox::new();
    let outside = sb.outside().join("abs");
    let name = format!("{}", outside.display());
    let tar = Tarball::new().file(&name, "inside").bytes();
    let layer = sb.unpack("layer", &tar).unwrap();
    assert!(
        !outside.exists(),
        "the absolute name was written on the host"
    );
    let inside = layer.join(name.trim_start_matches('/'));
    assert_eq!(std::fs::read_to_string(inside).unwrap(), "inside");
}

#[test]
fn symlinks_climbing_out_are_refused_and_never_written_through() {
    let sb = Sandbox::new();
    let tar = Tarball::new()
        .symlink("x", "../../../etc")
        .file("x/passwd", "root::0:0::/:/bin/sh")
        .bytes();
    let e = sb.refuse("layer", &tar);
    assert!(matches!(e, UnpackError::SymlinkEscape { .. }), "{e}");
    assert!(e.to_string().contains("../../../etc"), "{e}");

    let tar = Tarball::new().symlink("a/b/c", "../../../x").bytes();
    assert!(matches!(
        sb.refuse("layer", &tar),
        UnpackError::SymlinkEscape { .. }
    ));

    // An absolute target is inside the root filesystem by container
    // semantics, so the link is kept, but nothing is written through it.
    let target = sb.outside().display().to_string();
    let tar = Tarball::new()
        .symlink("x", &target)
        .file("x/passwd", "root::0:0::/:/bin/sh")
        .bytes();
    let e = sb.refuse("layer", &tar);
    assert!(matches!(e, UnpackError::ParentNotDirectory { .. }), "{e}");
    assert!(e.to_string().contains("x/passwd"), "{e}");

    // Same with a relative link that stays inside.
    let tar = Tarball::new()
        .dir("real")
        .symlink("x", "real")
        .file("x/file", "through a link")
        .bytes();
    assert!(matches!(
        sb.refuse("layer", &tar),
        UnpackError::ParentNotDirectory { .. }
    ));

    // A link replaced by a file of the same name is fine.
    let tar = Tarball::new()
        .symlink("x", &target)
        .file("x", "plain file now")
        .bytes();
    let layer = sb.unpack("ok", &tar).unwrap();
    assert_eq!(
        std::fs::read_to_string(layer.join("x")).unwrap(),
        "plain file now"
    );
    assert!(walk(&sb.outside()).is_empty());
}

#[test]
fn hard_links_must_stay_in_the_layer_and_exist() {
    let sb = Sandbox::new();
    let tar = Tarball::new()
        .hardlink("passwd", "../../etc/passwd")
        .bytes();
    let e = sb.refuse("layer", &tar);
    assert!(matches!(e, UnpackError::HardlinkEscape { .. }), "{e}");
    assert!(e.to_string().contains("../../etc/passwd"), "{e}");

    let tar = Tarball::new()
        .hardlink("early", "later")
        .file("later", "x")
        .bytes();
    assert!(matches!(
        sb.refuse("layer", &tar),
        UnpackError::HardlinkMissing { .. }
    ));

    // Through a symlinked directory: refused, even though the target exists.
    let outside_file = sb.outside().join("secret");
    std::fs::write(&outside_file, "host secret").unwrap();
    let tar = Tarball::new()
        .symlink("out", &sb.outside().display().to_string())
        .hardlink("stolen", "out/secret")
        .bytes();
    let e = unpack_layer(
        tar.as_slice(),
        &sb.store().join("staging"),
        &sb.store().join("layer"),
        &UnpackOptions::default(),
    )
    .unwrap_err();
    assert!(matches!(e, UnpackError::HardlinkEscape { .. }), "{e}");
    assert_eq!(std::fs::metadata(&outside_file).unwrap().nlink(), 1);
    assert!(!sb.store().join("layer").exists());

    // An absolute link name means the layer's own file.
    let tar = Tarball::new()
        .file("etc/passwd", "image passwd")
        .hardlink("passwd-copy", "/etc/passwd")
        .bytes();
    let layer = sb.unpack("ok", &tar).unwrap();
    assert_eq!(
        std::fs::read_to_string(layer.join("passwd-copy")).unwrap(),
        "image passwd"
    );
}

#[test]
fn device_nodes_are_refused() {
    let sb = Sandbox::new();
    let tar = Tarball::new().device("dev/null", EntryType::Char).bytes();
    let e = sb.refuse("layer", &tar);
    assert!(
        matches!(
            e,
            UnpackError::Device {
                kind: "character",
                ..
            }
        ),
        "{e}"
    );
    assert!(e.to_string().contains("dev/null"), "{e}");

    let tar = Tarball::new().device("dev/sda", EntryType::Block).bytes();
    assert!(matches!(
        sb.refuse("layer", &tar),
        UnpackError::Device { kind: "block", .. }
    ));
}

#[test]
fn zstd_layers_unpack_through_the_same_checks() {
    let sb = Sandbox::new();
    let tar = Tarball::new()
        .dir("etc")
        .file("etc/motd", "zstd layer\n")
        .symlink("etc/link", "motd");
    let raw = tar.bytes();
    let zst = zstd::stream::encode_all(raw.as_slice(), 3).unwrap();
    let opts = UnpackOptions {
        diff_id: Some(Digest::of(&raw)),
        ..UnpackOptions::default()
    };
    let dest = sb.store().join("zstd");
    let stats = unpack_layer(zst.as_slice(), &sb.store().join("s"), &dest, &opts).unwrap();
    assert_eq!(stats.diff_id, Digest::of(&raw));
    assert_eq!(
        std::fs::read_to_string(dest.join("etc/motd")).unwrap(),
        "zstd layer\n"
    );
    assert_eq!(
        std::fs::read_link(dest.join("etc/link")).unwrap(),
        Path::new("motd")
    );

    let sb = Sandbox::new();
    let hostile = Tarball::new().file("a/../../outside/x", "escape").zstd();
    assert!(matches!(
        sb.refuse("hostile", &hostile),
        UnpackError::ParentComponent { .. }
    ));
    assert_eq!(std::fs::read_dir(sb.outside()).unwrap().count(), 0);

    let mut truncated = Tarball::new().file("a", &"b".repeat(4096)).zstd();
    truncated.truncate(truncated.len() / 2);
    assert!(matches!(
        sb.refuse("truncated", &truncated),
        UnpackError::Corrupt(_)
    ));
}

#[test]
fn unsupported_compression_and_garbage_are_refused() {
    let sb = Sandbox::new();
    let xz = [0xfd, b'7', b'z', b'X', b'Z', 0, 0, 0];
    assert!(matches!(
        sb.refuse("layer", &xz),
        UnpackError::Compression("xz")
    ));
    let mut bad_gzip = Tarball::new().file("a", "b").gzip();
    let n = bad_gzip.len();
    bad_gzip.truncate(n / 2);
    assert!(matches!(
        sb.refuse("layer", &bad_gzip),
        UnpackError::Corrupt(_)
    ));
}

#[test]
fn the_diff_id_is_checked() {
    let sb = Sandbox::new();
    let tar = Tarball::new().file("a", "b").bytes();
    let right = Digest::of(&tar);
    let opts = |diff_id| UnpackOptions {
        diff_id: Some(diff_id),
        ..UnpackOptions::default()
    };
    let gz = {
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&tar).unwrap();
        gz.finish().unwrap()
    };
    let stats = unpack_layer(
        gz.as_slice(),
        &sb.store().join("s1"),
        &sb.store().join("l1"),
        &opts(right.clone()),
    )
    .unwrap();
    assert_eq!(stats.diff_id, right);

    let e = unpack_layer(
        tar.as_slice(),
        &sb.store().join("s2"),
        &sb.store().join("l2"),
        &opts(Digest::of(b"something else")),
    )
    .unwrap_err();
    assert!(matches!(e, UnpackError::DiffIdMismatch { .. }), "{e}");
    assert!(!sb.store().join("l2").exists());
    assert!(!sb.store().join("s2").exists());
}

#[test]
fn later_entries_replace_earlier_ones() {
    let sb = Sandbox::new();
    let tar = Tarball::new()
        .file("a", "file")
        .dir("a")
        .file("a/inner", "inner")
        .dir("b")
        .file("b/x", "x")
        .file("b", "b is a file now")
        .file("c", "first")
        .file("c", "second")
        .bytes();
    let layer = sb.unpack("layer", &tar).unwrap();
    assert_eq!(
        std::fs::read_to_string(layer.join("a/inner")).unwrap(),
        "inner"
    );
    assert_eq!(
        std::fs::read_to_string(layer.join("b")).unwrap(),
        "b is a file now"
    );
    assert_eq!(std::fs::read_to_string(layer.join("c")).unwrap(), "second");
}

fn two_layers(test: &str, sb: &Sandbox) -> Option<(PathBuf, PathBuf)> {
    if !require_root(test, "overlay whiteouts: mknod 0:0, trusted.* xattrs") {
        return None;
    }
    let lower = Tarball::new()
        .file("keep", "keep")
        .file("a/f1", "f1")
        .file("a/f2", "f2")
        .file("d/x", "x")
        .file("d/y", "y")
        .file("gone-dir/inner", "inner")
        .gzip();
    let upper = Tarball::new()
        .file("a/.wh.f1", "")
        .file("d/.wh..wh..opq", "")
        .file("d/z", "z")
        .file(".wh.gone-dir", "")
        // A whiteout only hides lower layers: same-layer content stays.
        .file("both", "kept")
        .file(".wh.both", "")
        .file(".wh..wh.plnk", "")
        .bytes();
    let l1 = sb.unpack("l1", &lower).unwrap();
    let l2 = sb.unpack("l2", &upper).unwrap();
    Some((l1, l2))
}

fn assert_merged(root: &Path) {
    assert_eq!(std::fs::read_to_string(root.join("keep")).unwrap(), "keep");
    assert!(!root.join("a/f1").exists(), "the whiteout did not apply");
    assert_eq!(std::fs::read_to_string(root.join("a/f2")).unwrap(), "f2");
    let mut d: Vec<_> = std::fs::read_dir(root.join("d"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    d.sort();
    assert_eq!(d, vec!["z"], "the opaque directory kept lower entries");
    assert!(!root.join("gone-dir").exists());
    assert_eq!(std::fs::read_to_string(root.join("both")).unwrap(), "kept");
}

#[test]
fn whiteouts_become_overlay_whiteouts() {
    let sb = Sandbox::new();
    let Some((_, l2)) = two_layers("whiteouts_become_overlay_whiteouts", &sb) else {
        return;
    };
    let f1 = std::fs::symlink_metadata(l2.join("a/f1")).unwrap();
    assert!(f1.file_type().is_char_device());
    assert_eq!(f1.rdev(), 0);
    assert!(!l2.join("a/.wh.f1").exists());
    assert_eq!(
        xattr::lget(&l2.join("d"), OVERLAY_OPAQUE_XATTR).unwrap(),
        Some(b"y".to_vec())
    );
    assert!(!l2.join("d/.wh..wh..opq").exists());
    assert!(!l2.join(".wh..wh.plnk").exists());
    assert!(std::fs::symlink_metadata(l2.join("both"))
        .unwrap()
        .is_file());
}

#[test]
fn whiteouts_apply_across_two_layers_when_copied() {
    let sb = Sandbox::new();
    let Some((l1, l2)) = two_layers("whiteouts_apply_across_two_layers_when_copied", &sb) else {
        return;
    };
    let merged = sb.dir.path().join("merged");
    std::fs::create_dir(&merged).unwrap();
    copy_layers(&[l1, l2], &merged).unwrap();
    assert_merged(&merged);
}

#[test]
fn whiteouts_apply_across_two_layers_in_overlayfs() {
    let test = "whiteouts_apply_across_two_layers_in_overlayfs";
    let sb = Sandbox::new();
    let Some((l1, l2)) = two_layers(test, &sb) else {
        return;
    };
    let container = sb.dir.path().join("container");
    let rootfs = mount_rootfs(&[l1.clone(), l2.clone()], &container).unwrap();
    if rootfs.kind != RootfsKind::Overlay {
        // The copy fallback has its own test: this one is about overlayfs.
        skip(
            test,
            "overlayfs cannot be mounted here (mount_rootfs fell back to a copy)",
        );
        return;
    }
    assert_merged(&rootfs.path);
    // Writes go to the container's own layer, never to the shared ones.
    std::fs::write(rootfs.path.join("a/f2"), "changed").unwrap();
    std::fs::remove_file(rootfs.path.join("keep")).unwrap();
    assert_eq!(std::fs::read_to_string(l1.join("a/f2")).unwrap(), "f2");
    assert!(l1.join("keep").exists());
    let path = rootfs.path.clone();
    rootfs.unmount().unwrap();
    assert!(!path.exists());
    assert!(!container.exists());
}

#[test]
fn empty_owner_fields_read_as_root() {
    let sb = Sandbox::new();
    let mut h = Tarball::header("file", EntryType::Regular, 2, 0o644);
    h.as_old_mut().uid = [0; 8];
    h.as_old_mut().gid = [0; 8];
    let layer = sb
        .unpack("layer", &Tarball::new().append(h, b"hi").bytes())
        .unwrap();
    assert_eq!(std::fs::read_to_string(layer.join("file")).unwrap(), "hi");
    if is_root() {
        assert_eq!(std::fs::metadata(layer.join("file")).unwrap().uid(), 0);
    }
}

#[test]
fn implicit_parents_take_the_attributes_of_the_layers_below() {
    let sb = Sandbox::new();
    let mut tmp = Tarball::header("tmp/", EntryType::Directory, 0, 0o1777);
    tmp.set_mtime(1_600_000_000);
    let lower = Tarball::new()
        .append(tmp, &[])
        .file("tmp/x", "x")
        .file("tmp/y", "y")
        .bytes();
    let lower = sb.unpack("lower", &lower).unwrap();
    // No tmp/ entry: the layer only deletes tmp/x and adds tmp/z and new/z.
    let mut upper = Tarball::new().file("tmp/z", "z").file("new/z", "z");
    if is_root() {
        upper = upper.file("tmp/.wh.x", "");
    }
    let dest = sb.store().join("upper");
    unpack_layer(
        upper.bytes().as_slice(),
        &sb.store().join("staging"),
        &dest,
        &UnpackOptions {
            lower_layers: vec![lower],
            ..UnpackOptions::default()
        },
    )
    .unwrap();
    let tmp = std::fs::metadata(dest.join("tmp")).unwrap();
    assert_eq!(tmp.permissions().mode() & 0o7777, 0o1777);
    assert_eq!(tmp.mtime(), 1_600_000_000);
    let new = std::fs::metadata(dest.join("new")).unwrap();
    assert_eq!(new.permissions().mode() & 0o7777, 0o755);
}

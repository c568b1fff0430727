//! Safe layer unpack: one layer tarball (gzip, zstd or plain) becomes one directory
//! whose whiteouts are in overlayfs form, so that layer directories stack as
//! overlay lower dirs.
//!
//! The rules (docs/images.md repeats them for operators):
//! - Entries are written into a fresh staging directory and it is renamed
//!   into place only when the whole layer succeeded; on any error it is
//!   removed, so a refused layer leaves nothing behind.
//! - Paths are normalised: a leading `/` and `.` components are dropped (an
//!   absolute name lands inside the layer, as GNU tar does); any `..`
//!   component refuses the layer.
//! - Nothing is written through a symlink: every parent component is opened
//!   with `O_NOFOLLOW | O_DIRECTORY` from the layer root down, missing parents
//!   are created as directories (with the attributes the same directory has
//!   in the layers below, else root's 0755), and a parent that is a symlink
//!   or a file refuses the layer. Files are created with `O_CREAT | O_EXCL |
//!   O_NOFOLLOW` after removing whatever the name held.
//! - Symlink targets are checked lexically from the link's own directory: an
//!   absolute target is inside the root filesystem (container semantics:
//!   `/bin/busybox` is the container's), a relative target whose `..`
//!   components climb above the root refuses the layer. Host-side code must
//!   still never follow symlinks of a root filesystem (use
//!   `openat2(RESOLVE_IN_ROOT)`): chains of individually harmless links can
//!   climb when followed on the host.
//! - Hard links must name a file created earlier in the same layer (no `..`,
//!   no symlink among the target's parents, not a directory or device).
//! - Character and block devices refuse the layer; FIFOs are allowed.
//! - Whiteouts: `.wh.<name>` becomes a 0:0 character device `<name>` (overlay
//!   whiteout), unless the same layer already holds `<name>` (a whiteout only
//!   hides lower layers); `.wh..wh..opq` sets `trusted.overlay.opaque=y` on
//!   its directory; other `.wh..wh.` names (aufs bookkeeping) are skipped.
//!   Both need root (CAP_MKNOD, CAP_SYS_ADMIN).
//! - Extended attributes from PAX headers: only `security.capability` and
//!   `user.*` are applied; `trusted.*` (which could forge overlay markers)
//!   and the rest are ignored.
//! - Owners are applied when unpacking as root; modes keep setuid/setgid
//!   bits, which is why the store directory is mode 0700.

use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{openat, AtFlags, OFlag};
use nix::sys::stat::{fchmod, fstatat, futimens, makedev, mkdirat, mknodat, Mode, SFlag};
use nix::sys::time::TimeSpec;
use nix::unistd::{fchown, fchownat, linkat, symlinkat, unlinkat, Gid, Uid, UnlinkatFlags};
use sha2::{Digest as _, Sha256};
use thiserror::Error;

use super::digest::Digest;
use aurae_kernel::xattr;

/// Prefix of a whiteout entry in an OCI layer.
pub const WHITEOUT_PREFIX: &str = ".wh.";
/// Prefix of whiteout-metadata names (aufs), skipped.
pub const WHITEOUT_META_PREFIX: &str = ".wh..wh.";
/// An opaque-directory marker in an OCI layer.
pub const OPAQUE_WHITEOUT: &str = ".wh..wh..opq";
/// The overlayfs attribute that makes a directory opaque.
pub const OVERLAY_OPAQUE_XATTR: &str = "trusted.overlay.opaque";
/// Default bound on the bytes of file content one layer may unpack to.
pub const DEFAULT_MAX_LAYER_BYTES: u64 = 64 << 30;

#[derive(Debug, Error)]
pub enum UnpackError {
    #[error("entry {entry:?} has a '..' component")]
    ParentComponent { entry: String },
    #[error("entry {entry:?} has no name")]
    EmptyName { entry: String },
    #[error("entry {entry:?}: symlink target {target:?} leaves the root filesystem")]
    SymlinkEscape { entry: String, target: String },
    #[error("entry {entry:?}: the symlink has an empty target")]
    EmptySymlink { entry: String },
    #[error("entry {entry:?}: hard link target {target:?} is outside the layer")]
    HardlinkEscape { entry: String, target: String },
    #[error("entry {entry:?}: hard link target {target:?} is not a file unpacked earlier from the layer")]
    HardlinkMissing { entry: String, target: String },
    #[error("entry {entry:?}: {kind} device nodes are not allowed in images")]
    Device { entry: String, kind: &'static str },
    #[error("entry {entry:?}: {parent:?} is not a directory (an earlier entry made it a symlink or a file)")]
    ParentNotDirectory { entry: String, parent: String },
    #[error("entry {entry:?}: {detail}")]
    Unsupported { entry: String, detail: String },
    #[error("the layer unpacks to more than {limit} bytes")]
    TooBig { limit: u64 },
    #[error("the layer is compressed with {0}, which auraed does not support (gzip, zstd or uncompressed tar only)")]
    Compression(&'static str),
    #[error(
        "the uncompressed layer has digest {actual} but the image configuration says {expected}"
    )]
    DiffIdMismatch { expected: String, actual: String },
    #[error("the layer is not a valid tar archive: {0}")]
    Corrupt(io::Error),
    #[error("entry {entry:?}: {what}: {error}")]
    Io {
        entry: String,
        what: &'static str,
        error: io::Error,
    },
    #[error("staging directory {}: {what}: {error}", path.display())]
    Staging {
        path: PathBuf,
        what: &'static str,
        error: io::Error,
    },
}

impl UnpackError {
    /// Whether the layer itself is at fault (hostile or unsupported content),
    /// as opposed to the host failing to write it.
    pub fn is_refusal(&self) -> bool {
        !matches!(self, UnpackError::Io { .. } | UnpackError::Staging { .. })
    }
}

/// How to unpack.
#[derive(Debug, Clone)]
pub struct UnpackOptions {
    /// Apply the owners recorded in the tar (needs root); otherwise every
    /// file belongs to the caller.
    pub same_owner: bool,
    /// Refuse a layer whose files add up to more bytes than this.
    pub max_bytes: u64,
    /// The layer's diff ID (digest of the uncompressed tar), checked once the
    /// whole stream was read.
    pub diff_id: Option<Digest>,
    /// The unpacked layers below this one, lowest first: directories the tar
    /// creates implicitly take their attributes from these.
    pub lower_layers: Vec<PathBuf>,
}

impl Default for UnpackOptions {
    fn default() -> Self {
        Self {
            same_owner: nix::unistd::geteuid().is_root(),
            max_bytes: DEFAULT_MAX_LAYER_BYTES,
            diff_id: None,
            lower_layers: Vec::new(),
        }
    }
}

/// What an unpack did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnpackStats {
    pub entries: u64,
    /// Bytes of file content written.
    pub bytes: u64,
    /// Whiteouts and opaque markers created.
    pub whiteouts: u64,
    /// Digest of the uncompressed tar stream.
    pub diff_id: Digest,
}

/// Unpacks a layer (gzip, zstd or uncompressed tar, detected by its first bytes)
/// into `staging`, which must not exist, then renames `staging` to `dest`.
/// When `dest` already exists (unpacked meanwhile by someone else) the new
/// copy is dropped. On any error `staging` is removed and `dest` untouched.
pub fn unpack_layer(
    blob: impl Read,
    staging: &Path,
    dest: &Path,
    opts: &UnpackOptions,
) -> Result<UnpackStats, UnpackError> {
    let staging_err = |what, source| UnpackError::Staging {
        path: staging.to_path_buf(),
        what,
        error: source,
    };
    std::fs::create_dir(staging).map_err(|e| staging_err("creating it", e))?;
    match unpack_into(blob, staging, opts) {
        Ok(stats) => match std::fs::rename(staging, dest) {
            Ok(()) => Ok(stats),
            Err(e) if dest.is_dir() => {
                tracing::debug!(dest = %dest.display(), error = %e, "layer already unpacked");
                let _ = std::fs::remove_dir_all(staging);
                Ok(stats)
            }
            Err(e) => {
                let _ = std::fs::remove_dir_all(staging);
                Err(staging_err("renaming it into place", e))
            }
        },
        Err(e) => {
            if let Err(rm) = std::fs::remove_dir_all(staging) {
                tracing::warn!(path = %staging.display(), error = %rm, "could not remove a staging directory");
            }
            Err(e)
        }
    }
}

/// Unpacks a layer (gzip, zstd or uncompressed tar) into the existing, empty
/// directory `root`. Leaves partial content behind on error: callers use
/// [`unpack_layer`], which removes it.
pub fn unpack_into(
    blob: impl Read,
    root: &Path,
    opts: &UnpackOptions,
) -> Result<UnpackStats, UnpackError> {
    let mut reader = BufReader::with_capacity(128 * 1024, blob);
    let magic = reader.fill_buf().map_err(UnpackError::Corrupt)?;
    let tar: Box<dyn Read> = match magic {
        [0x1f, 0x8b, ..] => Box::new(flate2::read::MultiGzDecoder::new(reader)),
        // Streaming: the decoder holds one window (at most 128 MiB, the
        // format's limit for a frame without `--long`), never the layer.
        [0x28, 0xb5, 0x2f, 0xfd, ..] => Box::new(
            zstd::stream::read::Decoder::with_buffer(reader).map_err(UnpackError::Corrupt)?,
        ),
        [b'B', b'Z', b'h', ..] => return Err(UnpackError::Compression("bzip2")),
        [0xfd, b'7', b'z', b'X', b'Z', 0x00, ..] => return Err(UnpackError::Compression("xz")),
        _ => Box::new(reader),
    };
    let mut hashed = HashingReader {
        inner: tar,
        hasher: Sha256::new(),
    };
    let mut unpacker = Unpacker::new(root, opts)?;
    {
        let mut archive = tar::Archive::new(&mut hashed);
        let entries = archive.entries().map_err(UnpackError::Corrupt)?;
        for entry in entries {
            let mut entry = entry.map_err(UnpackError::Corrupt)?;
            unpacker.entry(&mut entry)?;
        }
    }
    // Hash the end-of-archive blocks and any padding too.
    io::copy(&mut hashed, &mut io::sink()).map_err(UnpackError::Corrupt)?;
    let diff_id = Digest::from_sha256(&hashed.hasher.finalize());
    if let Some(expected) = &opts.diff_id {
        if *expected != diff_id {
            return Err(UnpackError::DiffIdMismatch {
                expected: expected.to_string(),
                actual: diff_id.to_string(),
            });
        }
    }
    unpacker.finish()?;
    Ok(UnpackStats {
        entries: unpacker.entries,
        bytes: unpacker.bytes,
        whiteouts: unpacker.whiteouts,
        diff_id,
    })
}

struct HashingReader<R> {
    inner: R,
    hasher: Sha256,
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
}

/// The components of an entry's path inside the layer: a leading `/` and `.`
/// components are dropped, `..` is refused.
pub fn normalise_entry_path(path: &Path) -> Result<Vec<OsString>, UnpackError> {
    let mut out = Vec::new();
    for c in path.components() {
        match c {
            Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
            Component::ParentDir => {
                return Err(UnpackError::ParentComponent {
                    entry: path.display().to_string(),
                })
            }
            Component::Normal(n) => out.push(n.to_os_string()),
        }
    }
    Ok(out)
}

/// Whether a symlink at `link` (components inside the root) pointing to
/// `target` stays inside the root filesystem when resolved from the link's
/// own directory. Absolute targets are resolved against the root filesystem
/// and so stay inside (`..` at `/` is `/`).
pub fn symlink_stays_inside(link: &[OsString], target: &Path) -> bool {
    if target.is_absolute() {
        return true;
    }
    let mut depth = link.len().saturating_sub(1);
    for c in target.components() {
        match c {
            Component::ParentDir => {
                if depth == 0 {
                    return false;
                }
                depth -= 1;
            }
            Component::Normal(_) => depth += 1,
            Component::CurDir | Component::RootDir | Component::Prefix(_) => {}
        }
    }
    true
}

struct Unpacker<'a> {
    root_path: PathBuf,
    root: OwnedFd,
    opts: &'a UnpackOptions,
    /// The directory of the previous entry, reused while entries stay in it.
    cached: Option<(Vec<OsString>, OwnedFd)>,
    /// The layers below, topmost first (for implicit directories).
    lowers: Vec<OwnedFd>,
    /// Directories with the mode and mtime to apply once everything is written.
    dirs: Vec<(Vec<OsString>, u32, u64)>,
    entries: u64,
    bytes: u64,
    whiteouts: u64,
}

fn join(comps: &[OsString]) -> String {
    comps
        .iter()
        .map(|c| c.to_string_lossy())
        .collect::<Vec<_>>()
        .join("/")
}

fn is_dir(stat: &nix::sys::stat::FileStat) -> bool {
    stat.st_mode & libc::S_IFMT == libc::S_IFDIR
}

impl<'a> Unpacker<'a> {
    fn new(root: &Path, opts: &'a UnpackOptions) -> Result<Self, UnpackError> {
        let fd = nix::fcntl::open(
            root,
            OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| UnpackError::Staging {
            path: root.to_path_buf(),
            what: "opening it",
            error: e.into(),
        })?;
        let mut lowers = Vec::new();
        for lower in opts.lower_layers.iter().rev() {
            match nix::fcntl::open(
                lower.as_path(),
                OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
                Mode::empty(),
            ) {
                Ok(fd) => lowers.push(fd),
                Err(e) => {
                    tracing::debug!(layer = %lower.display(), error = %e, "lower layer not readable")
                }
            }
        }
        Ok(Self {
            root_path: root.to_path_buf(),
            root: fd,
            opts,
            cached: None,
            lowers,
            dirs: Vec::new(),
            entries: 0,
            bytes: 0,
            whiteouts: 0,
        })
    }

    fn entry<R: Read>(&mut self, entry: &mut tar::Entry<'_, R>) -> Result<(), UnpackError> {
        let kind = entry.header().entry_type();
        if matches!(
            kind,
            tar::EntryType::XGlobalHeader
                | tar::EntryType::XHeader
                | tar::EntryType::GNULongName
                | tar::EntryType::GNULongLink
        ) {
            return Ok(());
        }
        let raw = entry.path().map_err(UnpackError::Corrupt)?.into_owned();
        let shown = raw.display().to_string();
        let comps = normalise_entry_path(&raw)?;
        self.entries += 1;
        let Some((name, parent)) = comps.split_last() else {
            if kind == tar::EntryType::Directory {
                let (mode, mtime) = (header_mode(entry, &shown)?, header_mtime(entry));
                self.chown_fd(self.root.as_fd(), entry, &shown)?;
                self.dirs.push((Vec::new(), mode, mtime));
                return Ok(());
            }
            return Err(UnpackError::EmptyName { entry: shown });
        };
        let result = self.entry_at(entry, kind, &comps, parent, name, &shown);
        // Whatever replaced `comps` may have been a parent of the cached directory.
        if self
            .cached
            .as_ref()
            .is_some_and(|(cached, _)| cached.starts_with(&comps))
        {
            self.cached = None;
        }
        result
    }

    fn entry_at<R: Read>(
        &mut self,
        entry: &mut tar::Entry<'_, R>,
        kind: tar::EntryType,
        comps: &[OsString],
        parent: &[OsString],
        name: &OsStr,
        shown: &str,
    ) -> Result<(), UnpackError> {
        let name_bytes = name.as_bytes();
        if name_bytes == OPAQUE_WHITEOUT.as_bytes() {
            let dir = self.open_parent(parent, shown)?;
            xattr::fset(dir.as_fd(), OVERLAY_OPAQUE_XATTR, b"y")
                .map_err(|e| io_err(shown, "marking the directory opaque (needs root)", e))?;
            self.whiteouts += 1;
            return Ok(());
        }
        if name_bytes.starts_with(WHITEOUT_META_PREFIX.as_bytes()) {
            tracing::debug!(entry = shown, "skipping whiteout metadata");
            return Ok(());
        }
        if let Some(hidden) = name_bytes.strip_prefix(WHITEOUT_PREFIX.as_bytes()) {
            if hidden.is_empty() {
                return Err(UnpackError::EmptyName {
                    entry: shown.to_string(),
                });
            }
            let hidden = OsStr::from_bytes(hidden);
            let dir = self.open_parent(parent, shown)?;
            match fstatat(&dir, hidden, AtFlags::AT_SYMLINK_NOFOLLOW) {
                // The same layer has the name: a whiteout only hides lower layers.
                Ok(_) => return Ok(()),
                Err(Errno::ENOENT) => {}
                Err(e) => return Err(io_err(shown, "checking the whited-out name", e.into())),
            }
            mknodat(&dir, hidden, SFlag::S_IFCHR, Mode::empty(), makedev(0, 0)).map_err(|e| {
                io_err(shown, "creating an overlay whiteout (needs root)", e.into())
            })?;
            self.whiteouts += 1;
            return Ok(());
        }

        let dir = self.open_parent(parent, shown)?;
        match kind {
            tar::EntryType::Directory => {
                match fstatat(&dir, name, AtFlags::AT_SYMLINK_NOFOLLOW) {
                    Ok(st) if is_dir(&st) => {}
                    Ok(_) => {
                        self.remove_existing(&dir, parent, name, shown)?;
                        self.mkdir(&dir, name, shown)?;
                    }
                    Err(Errno::ENOENT) => self.mkdir(&dir, name, shown)?,
                    Err(e) => return Err(io_err(shown, "checking the name", e.into())),
                }
                let fd = open_dir_nofollow(&dir, name).map_err(|e| match e {
                    Errno::ENOTDIR | Errno::ELOOP => UnpackError::ParentNotDirectory {
                        entry: shown.to_string(),
                        parent: join(comps),
                    },
                    e => io_err(shown, "opening the directory", e.into()),
                })?;
                self.apply_xattrs(&fd, entry, shown)?;
                self.chown_fd(fd.as_fd(), entry, shown)?;
                self.dirs.push((
                    comps.to_vec(),
                    header_mode(entry, shown)?,
                    header_mtime(entry),
                ));
            }
            tar::EntryType::Regular | tar::EntryType::Continuous => {
                self.remove_existing(&dir, parent, name, shown)?;
                let fd = openat(
                    &dir,
                    name,
                    OFlag::O_WRONLY
                        | OFlag::O_CREAT
                        | OFlag::O_EXCL
                        | OFlag::O_NOFOLLOW
                        | OFlag::O_CLOEXEC,
                    Mode::from_bits_truncate(0o600),
                )
                .map_err(|e| io_err(shown, "creating the file", e.into()))?;
                let mut file = File::from(fd);
                self.copy_content(entry, &mut file, shown)?;
                self.apply_xattrs(&file, entry, shown)?;
                self.chown_fd(file.as_fd(), entry, shown)?;
                fchmod(&file, Mode::from_bits_truncate(header_mode(entry, shown)?))
                    .map_err(|e| io_err(shown, "setting the mode", e.into()))?;
                let t = TimeSpec::new(header_mtime(entry) as i64, 0);
                futimens(&file, &t, &t).map_err(|e| io_err(shown, "setting the time", e.into()))?;
            }
            tar::EntryType::Symlink => {
                let target = entry
                    .link_name()
                    .map_err(UnpackError::Corrupt)?
                    .map(|t| t.into_owned())
                    .unwrap_or_default();
                if target.as_os_str().is_empty() {
                    return Err(UnpackError::EmptySymlink {
                        entry: shown.to_string(),
                    });
                }
                if !symlink_stays_inside(comps, &target) {
                    return Err(UnpackError::SymlinkEscape {
                        entry: shown.to_string(),
                        target: target.display().to_string(),
                    });
                }
                self.remove_existing(&dir, parent, name, shown)?;
                symlinkat(target.as_path(), &dir, name)
                    .map_err(|e| io_err(shown, "creating the symlink", e.into()))?;
                self.chown_at(&dir, name, entry, shown)?;
            }
            tar::EntryType::Link => self.hard_link(entry, &dir, parent, name, shown)?,
            tar::EntryType::Fifo => {
                self.remove_existing(&dir, parent, name, shown)?;
                let mode = Mode::from_bits_truncate(header_mode(entry, shown)? & 0o777);
                mknodat(&dir, name, SFlag::S_IFIFO, mode, 0)
                    .map_err(|e| io_err(shown, "creating the fifo", e.into()))?;
                // mknod applies the umask: set the mode as recorded.
                nix::sys::stat::fchmodat(
                    &dir,
                    name,
                    mode,
                    nix::sys::stat::FchmodatFlags::FollowSymlink,
                )
                .map_err(|e| io_err(shown, "setting the mode", e.into()))?;
                self.chown_at(&dir, name, entry, shown)?;
            }
            tar::EntryType::Char => {
                return Err(UnpackError::Device {
                    entry: shown.to_string(),
                    kind: "character",
                })
            }
            tar::EntryType::Block => {
                return Err(UnpackError::Device {
                    entry: shown.to_string(),
                    kind: "block",
                })
            }
            other => {
                return Err(UnpackError::Unsupported {
                    entry: shown.to_string(),
                    detail: format!("unsupported tar entry type {other:?}"),
                })
            }
        }
        Ok(())
    }

    fn hard_link<R: Read>(
        &mut self,
        entry: &mut tar::Entry<'_, R>,
        dir: &OwnedFd,
        parent: &[OsString],
        name: &OsStr,
        shown: &str,
    ) -> Result<(), UnpackError> {
        let raw_target = entry
            .link_name()
            .map_err(UnpackError::Corrupt)?
            .map(|t| t.into_owned())
            .unwrap_or_default();
        let target_shown = raw_target.display().to_string();
        let escape = || UnpackError::HardlinkEscape {
            entry: shown.to_string(),
            target: target_shown.clone(),
        };
        let missing = || UnpackError::HardlinkMissing {
            entry: shown.to_string(),
            target: target_shown.clone(),
        };
        let target = normalise_entry_path(&raw_target).map_err(|_| escape())?;
        let Some((target_name, target_parent)) = target.split_last() else {
            return Err(missing());
        };
        let target_dir = walk_nofollow(&self.root, target_parent).map_err(|e| match e {
            Errno::ENOENT => missing(),
            Errno::ENOTDIR | Errno::ELOOP => escape(),
            e => io_err(shown, "opening the hard link target's directory", e.into()),
        })?;
        let st = match fstatat(
            &target_dir,
            target_name.as_os_str(),
            AtFlags::AT_SYMLINK_NOFOLLOW,
        ) {
            Ok(st) => st,
            Err(Errno::ENOENT) => return Err(missing()),
            Err(e) => return Err(io_err(shown, "checking the hard link target", e.into())),
        };
        let fmt = st.st_mode & libc::S_IFMT;
        if fmt == libc::S_IFDIR || fmt == libc::S_IFCHR || fmt == libc::S_IFBLK {
            return Err(missing());
        }
        if target == [parent, &[name.to_os_string()]].concat() {
            return Ok(());
        }
        self.remove_existing(dir, parent, name, shown)?;
        linkat(
            &target_dir,
            target_name.as_os_str(),
            dir,
            name,
            AtFlags::empty(),
        )
        .map_err(|e| io_err(shown, "creating the hard link", e.into()))?;
        Ok(())
    }

    fn mkdir(&self, dir: &OwnedFd, name: &OsStr, shown: &str) -> Result<(), UnpackError> {
        mkdirat(dir, name, Mode::from_bits_truncate(0o700))
            .map_err(|e| io_err(shown, "creating the directory", e.into()))
    }

    /// Opens the directory `comps` under the root, creating missing
    /// components, never following a symlink.
    fn open_parent(&mut self, comps: &[OsString], shown: &str) -> Result<OwnedFd, UnpackError> {
        if let Some((cached, fd)) = &self.cached {
            if cached.as_slice() == comps {
                return fd
                    .try_clone()
                    .map_err(|e| io_err(shown, "duplicating a descriptor", e));
            }
        }
        let mut created = Vec::new();
        let fd = self
            .walk_creating(comps, &mut created)
            .map_err(|e| match e {
                Errno::ENOTDIR | Errno::ELOOP | Errno::EEXIST => UnpackError::ParentNotDirectory {
                    entry: shown.to_string(),
                    parent: join(comps),
                },
                e => io_err(shown, "opening the parent directory", e.into()),
            })?;
        for depth in created {
            self.implicit_dir(&comps[..depth], shown)?;
        }
        let copy = fd
            .try_clone()
            .map_err(|e| io_err(shown, "duplicating a descriptor", e))?;
        self.cached = Some((comps.to_vec(), copy));
        Ok(fd)
    }

    /// Walks `comps` from the root with `O_NOFOLLOW | O_DIRECTORY`, creating
    /// missing directories; `created` gets the depth (component count) of
    /// each directory it made.
    fn walk_creating(
        &self,
        comps: &[OsString],
        created: &mut Vec<usize>,
    ) -> Result<OwnedFd, Errno> {
        let mut fd = self.root.try_clone().map_err(|_| Errno::EMFILE)?;
        for (i, c) in comps.iter().enumerate() {
            let next = match open_dir_nofollow(&fd, c) {
                Ok(next) => next,
                Err(Errno::ENOENT) => {
                    match mkdirat(&fd, c.as_os_str(), Mode::from_bits_truncate(0o700)) {
                        Ok(()) => created.push(i + 1),
                        Err(Errno::EEXIST) => {}
                        Err(e) => return Err(e),
                    }
                    open_dir_nofollow(&fd, c)?
                }
                Err(e) => return Err(e),
            };
            fd = next;
        }
        Ok(fd)
    }

    /// A directory the tar did not list (a parent of an entry): it takes
    /// the attributes of the same directory in the layers below, so that a
    /// layer deleting `/tmp/x` does not turn `/tmp` into 0755 in the merged
    /// view (overlayfs shows the topmost layer's directory attributes);
    /// without one it is root's 0755.
    fn implicit_dir(&mut self, comps: &[OsString], shown: &str) -> Result<(), UnpackError> {
        let attrs = self.lower_dir_attrs(comps);
        let (mode, uid, gid, mtime) = attrs.unwrap_or((0o755, 0, 0, 0));
        if self.opts.same_owner {
            let fd = walk_nofollow(&self.root, comps)
                .map_err(|e| io_err(shown, "opening a parent directory", e.into()))?;
            fchown(&fd, Some(Uid::from_raw(uid)), Some(Gid::from_raw(gid)))
                .map_err(|e| io_err(shown, "setting the owner", e.into()))?;
        }
        let mtime = if attrs.is_some() {
            mtime
        } else {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs())
        };
        self.dirs.push((comps.to_vec(), mode, mtime));
        Ok(())
    }

    /// Mode, owner and mtime of `comps` in the topmost lower layer that has
    /// something there, if that is a directory.
    fn lower_dir_attrs(&self, comps: &[OsString]) -> Option<(u32, u32, u32, u64)> {
        let (name, parent) = comps.split_last()?;
        for lower in &self.lowers {
            let Ok(dir) = walk_nofollow(lower, parent) else {
                continue;
            };
            match fstatat(&dir, name.as_os_str(), AtFlags::AT_SYMLINK_NOFOLLOW) {
                Ok(st) if is_dir(&st) => {
                    return Some((
                        st.st_mode & 0o7777,
                        st.st_uid,
                        st.st_gid,
                        st.st_mtime.max(0) as u64,
                    ))
                }
                Ok(_) => return None,
                Err(_) => continue,
            }
        }
        None
    }

    /// Removes whatever `name` holds in `dir` (a directory with its content).
    fn remove_existing(
        &mut self,
        dir: &OwnedFd,
        parent: &[OsString],
        name: &OsStr,
        shown: &str,
    ) -> Result<(), UnpackError> {
        match fstatat(dir, name, AtFlags::AT_SYMLINK_NOFOLLOW) {
            Err(Errno::ENOENT) => Ok(()),
            Err(e) => Err(io_err(shown, "checking the name", e.into())),
            Ok(st) if is_dir(&st) => {
                // Every parent was just opened without following symlinks and
                // nothing else writes the staging tree: the path is the same
                // directory. remove_dir_all does not follow symlinks.
                let mut path = self.root_path.clone();
                path.extend(parent);
                path.push(name);
                self.cached = None;
                std::fs::remove_dir_all(&path)
                    .map_err(|e| io_err(shown, "replacing a directory", e))
            }
            Ok(_) => unlinkat(dir, name, UnlinkatFlags::NoRemoveDir)
                .map_err(|e| io_err(shown, "replacing a file", e.into())),
        }
    }

    fn copy_content<R: Read>(
        &mut self,
        entry: &mut tar::Entry<'_, R>,
        file: &mut File,
        shown: &str,
    ) -> Result<(), UnpackError> {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = match entry.read(&mut buf) {
                Ok(0) => return Ok(()),
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(UnpackError::Corrupt(e)),
            };
            self.bytes += n as u64;
            if self.bytes > self.opts.max_bytes {
                return Err(UnpackError::TooBig {
                    limit: self.opts.max_bytes,
                });
            }
            file.write_all(&buf[..n])
                .map_err(|e| io_err(shown, "writing the file", e))?;
        }
    }

    fn apply_xattrs<R: Read>(
        &self,
        fd: &impl AsFd,
        entry: &mut tar::Entry<'_, R>,
        shown: &str,
    ) -> Result<(), UnpackError> {
        let Some(exts) = entry.pax_extensions().map_err(UnpackError::Corrupt)? else {
            return Ok(());
        };
        for ext in exts {
            let ext = ext.map_err(UnpackError::Corrupt)?;
            let Ok(key) = ext.key() else { continue };
            let Some(name) = key.strip_prefix("SCHILY.xattr.") else {
                continue;
            };
            if name == "security.capability" || name.starts_with("user.") {
                if let Err(e) = xattr::fset(fd.as_fd(), name, ext.value_bytes()) {
                    if name.starts_with("user.") && e.raw_os_error() == Some(libc::ENOTSUP) {
                        continue;
                    }
                    return Err(io_err(shown, "setting an extended attribute", e));
                }
            } else {
                tracing::debug!(
                    entry = shown,
                    xattr = name,
                    "ignoring an extended attribute"
                );
            }
        }
        Ok(())
    }

    fn owner<R: Read>(
        &self,
        entry: &tar::Entry<'_, R>,
        shown: &str,
    ) -> Result<Option<(Uid, Gid)>, UnpackError> {
        if !self.opts.same_owner {
            return Ok(None);
        }
        let h = entry.header();
        let id = |v: io::Result<u64>, raw: &[u8], what: &str| -> Result<u32, UnpackError> {
            // An empty field reads as 0, as Go's archive/tar (and so Docker) does.
            let v = match v {
                Ok(v) => v,
                Err(_) if raw.iter().all(|b| *b == 0 || *b == b' ') => 0,
                Err(e) => return Err(UnpackError::Corrupt(e)),
            };
            u32::try_from(v)
                .ok()
                .filter(|v| *v != u32::MAX)
                .ok_or_else(|| UnpackError::Unsupported {
                    entry: shown.to_string(),
                    detail: format!("{what} {v} is out of range"),
                })
        };
        Ok(Some((
            Uid::from_raw(id(h.uid(), &h.as_old().uid, "uid")?),
            Gid::from_raw(id(h.gid(), &h.as_old().gid, "gid")?),
        )))
    }

    fn chown_fd<R: Read>(
        &self,
        fd: std::os::fd::BorrowedFd<'_>,
        entry: &tar::Entry<'_, R>,
        shown: &str,
    ) -> Result<(), UnpackError> {
        if let Some((uid, gid)) = self.owner(entry, shown)? {
            fchown(fd, Some(uid), Some(gid))
                .map_err(|e| io_err(shown, "setting the owner", e.into()))?;
        }
        Ok(())
    }

    fn chown_at<R: Read>(
        &self,
        dir: &OwnedFd,
        name: &OsStr,
        entry: &tar::Entry<'_, R>,
        shown: &str,
    ) -> Result<(), UnpackError> {
        if let Some((uid, gid)) = self.owner(entry, shown)? {
            fchownat(
                dir,
                name,
                Some(uid),
                Some(gid),
                AtFlags::AT_SYMLINK_NOFOLLOW,
            )
            .map_err(|e| io_err(shown, "setting the owner", e.into()))?;
        }
        Ok(())
    }

    /// Applies directory modes and times now that nothing more is written:
    /// the last record of each directory wins, deepest directories first.
    fn finish(&mut self) -> Result<(), UnpackError> {
        self.cached = None;
        let mut root_mode = 0o755;
        let mut last: std::collections::HashMap<Vec<OsString>, (u32, u64)> =
            std::collections::HashMap::new();
        for (comps, mode, mtime) in std::mem::take(&mut self.dirs) {
            if comps.is_empty() {
                root_mode = mode;
            } else {
                last.insert(comps, (mode, mtime));
            }
        }
        let mut dirs: Vec<_> = last.into_iter().collect();
        dirs.sort_by(|a, b| b.0.len().cmp(&a.0.len()).then_with(|| a.0.cmp(&b.0)));
        for (comps, (mode, mtime)) in dirs {
            let shown = join(&comps);
            // A later entry may have replaced the directory: skip it then.
            let Ok(fd) = walk_nofollow(&self.root, &comps) else {
                continue;
            };
            fchmod(&fd, Mode::from_bits_truncate(mode))
                .map_err(|e| io_err(&shown, "setting the mode", e.into()))?;
            let t = TimeSpec::new(mtime as i64, 0);
            futimens(&fd, &t, &t).map_err(|e| io_err(&shown, "setting the time", e.into()))?;
        }
        fchmod(&self.root, Mode::from_bits_truncate(root_mode))
            .map_err(|e| io_err(".", "setting the mode", e.into()))?;
        Ok(())
    }
}

fn walk_nofollow(root: &OwnedFd, comps: &[OsString]) -> Result<OwnedFd, Errno> {
    let mut fd = root.try_clone().map_err(|_| Errno::EMFILE)?;
    for c in comps {
        fd = open_dir_nofollow(&fd, c)?;
    }
    Ok(fd)
}

fn open_dir_nofollow(dir: &OwnedFd, name: &OsStr) -> Result<OwnedFd, Errno> {
    openat(
        dir,
        name,
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
}

fn header_mode<R: Read>(entry: &tar::Entry<'_, R>, shown: &str) -> Result<u32, UnpackError> {
    entry
        .header()
        .mode()
        .map(|m| m & 0o7777)
        .map_err(|e| UnpackError::Unsupported {
            entry: shown.to_string(),
            detail: format!("unreadable mode: {e}"),
        })
}

fn header_mtime<R: Read>(entry: &tar::Entry<'_, R>) -> u64 {
    entry.header().mtime().unwrap_or(0).min(i64::MAX as u64)
}

fn io_err(entry: &str, what: &'static str, source: io::Error) -> UnpackError {
    UnpackError::Io {
        entry: entry.to_string(),
        what,
        error: source,
    }
}

//! Property tests (proptest) of the layer unpack: tar streams built from
//! hostile pieces (`..`, absolute names, symlinks and hard links pointing
//! anywhere, whiteouts, devices, names reused as files, links and
//! directories), compressed or not, and random byte corruptions of them.
//! Whatever the stream, the unpack returns (no panic), nothing appears
//! outside the layer directory, a refused layer leaves nothing behind, and
//! every symlink in an accepted layer stays inside the root filesystem.

#![allow(clippy::unwrap_used)]

use std::ffi::OsString;
use std::io::Write;
use std::path::Path;

use proptest::prelude::*;
use tar::{EntryType, Header};

use super::unpack::{symlink_stays_inside, unpack_layer, UnpackOptions};

#[derive(Debug, Clone)]
enum Kind {
    File(Vec<u8>),
    Dir,
    Symlink(String),
    Hardlink(String),
    Fifo,
    Char,
}

fn component() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => "[a-c]",
        1 => Just("..".to_string()),
        1 => Just(".".to_string()),
        1 => Just(".wh.a".to_string()),
        1 => Just(".wh..wh..opq".to_string()),
        1 => Just("".to_string()),
    ]
}

fn entry_path() -> impl Strategy<Value = String> {
    (any::<bool>(), proptest::collection::vec(component(), 1..4))
        .prop_map(|(abs, comps)| format!("{}{}", if abs { "/" } else { "" }, comps.join("/")))
}

fn kind() -> impl Strategy<Value = Kind> {
    prop_oneof![
        3 => proptest::collection::vec(any::<u8>(), 0..64).prop_map(Kind::File),
        2 => Just(Kind::Dir),
        2 => entry_path().prop_map(Kind::Symlink),
        1 => entry_path().prop_map(Kind::Hardlink),
        1 => Just(Kind::Fifo),
        1 => Just(Kind::Char),
    ]
}

fn tarball(entries: &[(String, Kind)]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (path, kind) in entries {
        let mut h = Header::new_gnu();
        let name = path.as_bytes();
        h.as_old_mut().name[..name.len()].copy_from_slice(name);
        h.set_mode(0o755);
        h.set_mtime(1_700_000_000);
        let data: &[u8] = match kind {
            Kind::File(d) => {
                h.set_entry_type(EntryType::Regular);
                d
            }
            Kind::Dir => {
                h.set_entry_type(EntryType::Directory);
                &[]
            }
            Kind::Symlink(t) | Kind::Hardlink(t) => {
                let kind = if matches!(kind, Kind::Symlink(_)) {
                    EntryType::Symlink
                } else {
                    EntryType::Link
                };
                h.set_entry_type(kind);
                h.set_link_name_literal(t.as_bytes()).unwrap();
                &[]
            }
            Kind::Fifo => {
                h.set_entry_type(EntryType::Fifo);
                &[]
            }
            Kind::Char => {
                h.set_entry_type(EntryType::Char);
                &[]
            }
        };
        h.set_size(data.len() as u64);
        h.set_cksum();
        b.append(&h, data).unwrap();
    }
    b.into_inner().unwrap()
}

#[derive(Debug, Clone, Copy)]
enum Wrap {
    Plain,
    Gzip,
    Zstd,
}

fn wrap(tar: Vec<u8>, w: Wrap) -> Vec<u8> {
    match w {
        Wrap::Plain => tar,
        Wrap::Gzip => {
            let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            gz.write_all(&tar).unwrap();
            gz.finish().unwrap()
        }
        Wrap::Zstd => zstd::stream::encode_all(tar.as_slice(), 1).unwrap(),
    }
}

/// Every path below `dir`, symlinks not followed.
fn walk(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            let p = e.path();
            out.push(p.clone());
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                walk(&p, out);
            }
        }
    }
}

fn check(blob: &[u8]) -> Result<(), TestCaseError> {
    let base = tempfile::tempdir().unwrap();
    let store = base.path().join("store");
    let outside = base.path().join("outside");
    std::fs::create_dir_all(store.join("tmp")).unwrap();
    std::fs::create_dir(&outside).unwrap();
    let dest = store.join("layer");
    let staging = store.join("tmp/staging");
    let result = unpack_layer(blob, &staging, &dest, &UnpackOptions::default());
    prop_assert!(!staging.exists(), "staging left behind");
    let mut stray = Vec::new();
    walk(&outside, &mut stray);
    walk(&store.join("tmp"), &mut stray);
    prop_assert!(stray.is_empty(), "written outside the layer: {stray:?}");
    let top: Vec<_> = std::fs::read_dir(&store)
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .collect();
    match result {
        Ok(_) => {
            prop_assert!(dest.is_dir());
            let mut all = Vec::new();
            walk(&dest, &mut all);
            for p in all {
                let meta = std::fs::symlink_metadata(&p).unwrap();
                if meta.file_type().is_symlink() {
                    let target = std::fs::read_link(&p).unwrap();
                    let comps: Vec<OsString> = p
                        .strip_prefix(&dest)
                        .unwrap()
                        .iter()
                        .map(|c| c.to_os_string())
                        .collect();
                    prop_assert!(
                        symlink_stays_inside(&comps, &target),
                        "{} -> {} escapes",
                        p.display(),
                        target.display()
                    );
                }
            }
        }
        Err(_) => prop_assert!(!dest.exists(), "a refused layer left {top:?}"),
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 192, ..ProptestConfig::default() })]

    #[test]
    fn hostile_tar_streams_stay_inside(
        entries in proptest::collection::vec((entry_path(), kind()), 0..10),
        w in prop_oneof![Just(Wrap::Plain), Just(Wrap::Gzip), Just(Wrap::Zstd)],
    ) {
        check(&wrap(tarball(&entries), w))?;
    }

    #[test]
    fn corrupted_streams_fail_cleanly(
        entries in proptest::collection::vec((entry_path(), kind()), 1..6),
        w in prop_oneof![Just(Wrap::Plain), Just(Wrap::Gzip), Just(Wrap::Zstd)],
        flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
        cut in proptest::option::of(any::<prop::sample::Index>()),
    ) {
        let mut blob = wrap(tarball(&entries), w);
        for (at, byte) in flips {
            let i = at.index(blob.len());
            blob[i] = byte;
        }
        if let Some(cut) = cut {
            blob.truncate(cut.index(blob.len()));
        }
        check(&blob)?;
    }

    #[test]
    fn random_bytes_fail_cleanly(blob in proptest::collection::vec(any::<u8>(), 0..2048)) {
        check(&blob)?;
    }
}

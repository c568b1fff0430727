//! Helpers for the schedule integration tests: requests, the status line
//! parser, and finding processes by their command line and cgroup.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::PathBuf;

use aurae_proto::meta::AuraeMeta;
use aurae_proto::runtime::Executable;
use auraed::cgroups::WORKLOAD_SUFFIX;

use crate::common::{cgroup_mounts, pids_under, TestDaemon};

pub fn exe(name: &str, command: &str) -> Executable {
    Executable {
        meta: Some(AuraeMeta {
            name: name.into(),
            message: String::new(),
        }),
        command: command.into(),
        comment: format!("test {name}"),
        ..Default::default()
    }
}

/// The name alone, as Disable and Destroy need it.
pub fn named(name: &str) -> Executable {
    exe(name, "")
}

/// `status=STATUS_ACTIVE pid=1234 restarts=2 last_exit="..." [error="..."]`, parsed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Line {
    pub status: String,
    pub pid: i32,
    pub restarts: u32,
    pub last_exit: String,
    pub error: Option<String>,
}

pub fn parse(message: &str) -> Line {
    let mut fields = BTreeMap::new();
    let mut rest = message.trim_start();
    while !rest.is_empty() {
        let (key, after) = rest
            .split_once('=')
            .unwrap_or_else(|| panic!("no '=' in {message:?}"));
        let (value, after) = if let Some(q) = after.strip_prefix('"') {
            let mut v = String::new();
            let mut chars = q.char_indices();
            let mut end = None;
            while let Some((i, c)) = chars.next() {
                match c {
                    '\\' => v.push(chars.next().map(|(_, c)| c).unwrap_or('\\')),
                    '"' => {
                        end = Some(i + 1);
                        break;
                    }
                    c => v.push(c),
                }
            }
            let end = end.unwrap_or_else(|| panic!("unterminated quote in {message:?}"));
            (v, &q[end..])
        } else {
            let end = after.find(' ').unwrap_or(after.len());
            (after[..end].to_string(), &after[end..])
        };
        fields.insert(key.to_string(), value);
        rest = after.trim_start();
    }
    let get = |k: &str| {
        fields
            .get(k)
            .cloned()
            .unwrap_or_else(|| panic!("no {k} in {message:?}"))
    };
    Line {
        status: get("status"),
        pid: get("pid").parse().expect("pid"),
        restarts: get("restarts").parse().expect("restarts"),
        last_exit: get("last_exit"),
        error: fields.get("error").cloned(),
    }
}

/// name -> (command, parsed status line) of one list.
pub fn by_name(list: &[Executable]) -> BTreeMap<String, (String, Line)> {
    list.iter()
        .map(|e| {
            let meta = e.meta.clone().unwrap_or_default();
            (meta.name, (e.command.clone(), parse(&meta.message)))
        })
        .collect()
}

pub async fn enabled(d: &TestDaemon) -> BTreeMap<String, (String, Line)> {
    by_name(
        &d.client()
            .await
            .show_enabled()
            .await
            .expect("ShowEnabled")
            .executables,
    )
}

pub async fn disabled(d: &TestDaemon) -> BTreeMap<String, (String, Line)> {
    by_name(
        &d.client()
            .await
            .show_disabled()
            .await
            .expect("ShowDisabled")
            .executables,
    )
}

/// The cgroup directories of scheduled executable `name`, in every hierarchy.
pub fn cgroup_dirs(d: &TestDaemon, name: &str) -> Vec<PathBuf> {
    cgroup_mounts()
        .into_iter()
        .map(|m| {
            m.join(d.cgroup_root())
                .join("schedule")
                .join(format!("{name}{WORKLOAD_SUFFIX}"))
        })
        .collect()
}

/// Every pid in the cgroup of `name` (all hierarchies, deduplicated).
pub fn cgroup_pids(d: &TestDaemon, name: &str) -> Vec<i32> {
    let mut v: Vec<i32> = cgroup_dirs(d, name)
        .iter()
        .flat_map(|dir| pids_under(dir))
        .collect();
    v.sort();
    v.dedup();
    v
}

/// Every pid under `<root>/schedule`.
pub fn schedule_pids(d: &TestDaemon) -> Vec<i32> {
    let mut v: Vec<i32> = cgroup_mounts()
        .into_iter()
        .flat_map(|m| pids_under(&m.join(d.cgroup_root()).join("schedule")))
        .collect();
    v.sort();
    v.dedup();
    v
}

/// Live processes (not zombies) whose argv is exactly `argv`.
pub fn processes_with_argv(argv: &[&str]) -> Vec<i32> {
    let want: Vec<u8> = argv
        .iter()
        .flat_map(|a| a.bytes().chain(std::iter::once(0)))
        .collect();
    let Ok(rd) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut out: Vec<i32> = rd
        .flatten()
        .filter_map(|e| e.file_name().to_str().and_then(|s| s.parse::<i32>().ok()))
        .filter(|pid| std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| c == want))
        .filter(|pid| crate::common::alive(*pid))
        .collect();
    out.sort();
    out
}

/// The gRPC code of a failed client call.
pub fn code<T: std::fmt::Debug>(r: Result<T, aurae_client::ClientError>) -> tonic::Code {
    match r {
        Ok(v) => panic!("expected an error, got {v:?}"),
        Err(e) => e
            .status()
            .map(|s| s.code())
            .unwrap_or_else(|| panic!("not a status: {e}")),
    }
}

/// The daemon's log without ANSI colour codes, so `pid=123` can be searched.
pub fn plain_log(d: &TestDaemon) -> String {
    let log = d.log();
    let mut out = String::with_capacity(log.len());
    let mut chars = log.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            // CSI: ESC [ parameters final-byte
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// After a SIGKILL of the daemon: waits (bounded) until nothing holds its
/// listening socket any more. A child the daemon forked just before it died
/// holds a copy of every descriptor until it execs, and the daemon's start
/// check ("another auraed is answering") would see it.
pub async fn socket_released(d: &TestDaemon) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while std::os::unix::net::UnixStream::connect(&d.socket).is_ok() {
        assert!(
            std::time::Instant::now() < deadline,
            "something still listens on {}",
            d.socket.display()
        );
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
}

//! Request-level fuzzing: thousands of random and mutated protobuf messages
//! sent to every RPC of a live daemon, as raw bytes over a tonic channel.
//! The RPCs come from the generated descriptor set, so a new service is
//! fuzzed without touching this file. Afterwards the daemon is alive and
//! answers, its log has no panic, and nothing of the calls is left: no
//! process or cgroup below its cgroup root, no mount below its directories,
//! no named network namespace and no cell bundle directory.
//!
//! Messages are built by a seeded generator (the seed is printed; set
//! `AURAE_FUZZ_SEED` to replay one run, `AURAE_FUZZ_MESSAGES` to change the
//! count): random bytes, well-formed protobuf of random fields whose strings
//! come from an alphabet of names, paths, image references and hostile
//! text, and byte-level mutations (flips, truncation, splices) of those.

#![allow(clippy::unwrap_used)]

mod common;

use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

use common::{alive, pids_under, require_registry, TestDaemon, REGISTRY};
use futures::StreamExt;
use proptest::prelude::Rng as _;
use proptest::test_runner::{RngAlgorithm, TestRng};
use prost::bytes::{Buf, BufMut};
use prost::Message;
use prost_types::field_descriptor_proto::{Label, Type};
use prost_types::DescriptorProto;
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::Status;

/// Sends and receives messages as the raw bytes they are.
#[derive(Clone, Copy, Default)]
struct RawCodec;

impl Codec for RawCodec {
    type Encode = Vec<u8>;
    type Decode = Vec<u8>;
    type Encoder = RawCodec;
    type Decoder = RawCodec;
    fn encoder(&mut self) -> Self::Encoder {
        RawCodec
    }
    fn decoder(&mut self) -> Self::Decoder {
        RawCodec
    }
}

impl Encoder for RawCodec {
    type Item = Vec<u8>;
    type Error = Status;
    fn encode(&mut self, item: Vec<u8>, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        dst.put_slice(&item);
        Ok(())
    }
}

impl Decoder for RawCodec {
    type Item = Vec<u8>;
    type Error = Status;
    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Vec<u8>>, Status> {
        let n = src.remaining();
        Ok(Some(src.copy_to_bytes(n).to_vec()))
    }
}

/// proptest's seeded ChaCha generator, with the two draws the generator needs.
struct Rng(TestRng);

impl Rng {
    fn seeded(seed: u64) -> Self {
        let mut bytes = [0u8; 32];
        bytes[..8].copy_from_slice(&seed.to_le_bytes());
        Rng(TestRng::from_seed(RngAlgorithm::ChaCha, &bytes))
    }
    fn next(&mut self) -> u64 {
        self.0.next_u64()
    }
    /// Uniform enough below `n` (at least 1) for picking cases.
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }
}

fn strings() -> Vec<String> {
    let mut v: Vec<String> = [
        "",
        "fz",
        "fz-a",
        "fz.b",
        "fz_c",
        ".",
        "..",
        "../../etc",
        "/",
        "/etc/passwd",
        "a/b",
        "fz\0nul",
        "with space",
        "\u{202e}rtl",
        "*",
        "runtime.Core/RunExecutable",
        "/nonexistent/binary --flag",
        "\"unterminated",
        "trailing\\",
        "\\x00",
        "Busybox",
        "127.0.0.1:5999/aurae/busybox:latest",
        "127.0.0.1:5000/aurae/no-such:latest",
        "localhost:5000/aurae/busybox@sha256:0000000000000000000000000000000000000000000000000000000000000000",
        "0",
        "-1",
        "18446744073709551615",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    v.push(format!("{REGISTRY}/aurae/busybox:latest"));
    v.push("fz".repeat(40));
    v.push("x".repeat(5000));
    v
}

fn varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// A well-formed protobuf message of random fields.
fn message(rng: &mut Rng, words: &[String], depth: u32) -> Vec<u8> {
    let mut out = Vec::new();
    for _ in 0..rng.below(7) {
        let range = if rng.chance(90) { 8 } else { 600 };
        let field = 1 + rng.below(range) as u64;
        match rng.below(5) {
            0 => {
                varint(&mut out, field << 3);
                let v = match rng.below(4) {
                    0 => rng.below(4) as u64,
                    1 => u64::MAX - rng.below(3) as u64,
                    2 => 1 << rng.below(64),
                    _ => rng.next(),
                };
                varint(&mut out, v);
            }
            1 | 2 => {
                let bytes = words[rng.below(words.len())].clone().into_bytes();
                varint(&mut out, (field << 3) | 2);
                varint(&mut out, bytes.len() as u64);
                out.extend(bytes);
            }
            3 if depth < 3 => {
                let inner = message(rng, words, depth + 1);
                varint(&mut out, (field << 3) | 2);
                varint(&mut out, inner.len() as u64);
                out.extend(inner);
            }
            _ => {
                let wide = rng.chance(50);
                varint(&mut out, (field << 3) | if wide { 1 } else { 5 });
                let n = if wide { 8 } else { 4 };
                out.extend((0..n).map(|_| rng.next() as u8));
            }
        }
    }
    out
}

fn mutate(rng: &mut Rng, mut m: Vec<u8>) -> Vec<u8> {
    for _ in 0..1 + rng.below(4) {
        if m.is_empty() {
            m.push(rng.next() as u8);
            continue;
        }
        let i = rng.below(m.len());
        match rng.below(4) {
            0 => m[i] ^= 1 << rng.below(8),
            1 => m[i] = rng.next() as u8,
            2 => m.truncate(i),
            _ => {
                let j = rng.below(m.len());
                let piece: Vec<u8> = m[i.min(j)..i.max(j)].to_vec();
                m.splice(i..i, piece);
            }
        }
    }
    m
}

/// Message types by full name (`.package.Message`), nested ones included.
type Types = HashMap<String, DescriptorProto>;

fn collect_types(prefix: &str, messages: &[DescriptorProto], types: &mut Types) {
    for m in messages {
        let name = format!("{prefix}.{}", m.name());
        collect_types(&name, &m.nested_type, types);
        types.insert(name, m.clone());
    }
}

/// A message of type `name` with random values in the right fields and
/// wire types: it decodes, so the call reaches validation and beyond.
fn typed_message(
    rng: &mut Rng,
    words: &[String],
    types: &Types,
    name: &str,
    depth: u32,
) -> Vec<u8> {
    let mut out = Vec::new();
    let Some(desc) = types.get(name) else {
        return out;
    };
    for field in &desc.field {
        if !rng.chance(70) {
            continue;
        }
        let repeated = field.label() == Label::Repeated;
        for _ in 0..if repeated { rng.below(4) } else { 1 } {
            let number = field.number() as u64;
            match field.r#type() {
                Type::String | Type::Bytes => {
                    let bytes = words[rng.below(words.len())].clone().into_bytes();
                    varint(&mut out, (number << 3) | 2);
                    varint(&mut out, bytes.len() as u64);
                    out.extend(bytes);
                }
                Type::Message if depth < 5 => {
                    let inner = typed_message(rng, words, types, field.type_name(), depth + 1);
                    varint(&mut out, (number << 3) | 2);
                    varint(&mut out, inner.len() as u64);
                    out.extend(inner);
                }
                Type::Message | Type::Group => {}
                Type::Double | Type::Fixed64 | Type::Sfixed64 => {
                    varint(&mut out, (number << 3) | 1);
                    out.extend(rng.next().to_le_bytes());
                }
                Type::Float | Type::Fixed32 | Type::Sfixed32 => {
                    varint(&mut out, (number << 3) | 5);
                    out.extend((rng.next() as u32).to_le_bytes());
                }
                _ => {
                    varint(&mut out, number << 3);
                    let v = match rng.below(4) {
                        0 => rng.below(3) as u64,
                        1 => u64::MAX,
                        2 => 1 << rng.below(64),
                        _ => rng.next(),
                    };
                    varint(&mut out, v);
                }
            }
        }
    }
    out
}

fn random_message(rng: &mut Rng, words: &[String], types: &Types, input: &str) -> Vec<u8> {
    match rng.below(10) {
        0 => (0..rng.below(200)).map(|_| rng.next() as u8).collect(),
        1 => message(rng, words, 0),
        2 => {
            let m = message(rng, words, 0);
            mutate(rng, m)
        }
        3..=6 => typed_message(rng, words, types, input, 0),
        _ => {
            let m = typed_message(rng, words, types, input, 0);
            mutate(rng, m)
        }
    }
}

/// `/package.Service/Method` and input type of every RPC in the generated
/// descriptor set, and every message type.
fn rpcs() -> (Vec<(String, String)>, Types) {
    let set = prost_types::FileDescriptorSet::decode(aurae_proto::FILE_DESCRIPTOR_SET).unwrap();
    let mut rpcs = Vec::new();
    let mut types = Types::new();
    for file in &set.file {
        collect_types(
            &format!(".{}", file.package()),
            &file.message_type,
            &mut types,
        );
        for service in &file.service {
            for method in &service.method {
                rpcs.push((
                    format!("/{}.{}/{}", file.package(), service.name(), method.name()),
                    method.input_type().to_string(),
                ));
            }
        }
    }
    (rpcs, types)
}

/// One call: the message as the whole request stream; the answer is read
/// until it ends, for at most a few messages and seconds.
async fn call(channel: tonic::transport::Channel, path: String, body: Vec<u8>) -> Option<Status> {
    let mut grpc = tonic::client::Grpc::new(channel);
    let work = async move {
        grpc.ready()
            .await
            .map_err(|e| Status::unknown(e.to_string()))?;
        let request = tonic::Request::new(futures::stream::iter([body]));
        let path = http::uri::PathAndQuery::try_from(path).unwrap();
        let mut answer = grpc.streaming(request, path, RawCodec).await?.into_inner();
        for _ in 0..8 {
            if answer.message().await?.is_none() {
                break;
            }
        }
        Ok::<(), Status>(())
    };
    match tokio::time::timeout(Duration::from_secs(3), work).await {
        Ok(Err(status)) => Some(status),
        _ => None,
    }
}

fn mounts_under(dir: &Path) -> Vec<String> {
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .filter(|m| Path::new(m).starts_with(dir))
        .map(str::to_string)
        .collect()
}

fn fuzz_netns() -> Vec<String> {
    std::fs::read_dir("/run/netns")
        .map(|rd| {
            rd.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.contains("fz"))
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_rpc_must_survive_random_and_mutated_messages() {
    // The registry makes RunCell reach real pulls and container set-up.
    if !require_registry(module_path!()) {
        return;
    }
    let seed = std::env::var("AURAE_FUZZ_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
                | 1
        });
    let count: usize = std::env::var("AURAE_FUZZ_MESSAGES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(20_000);
    eprintln!("fuzzing with AURAE_FUZZ_SEED={seed} AURAE_FUZZ_MESSAGES={count}");
    let netns_before = fuzz_netns();

    let d = TestDaemon::start().await;
    let client = d.client().await;
    let cgroup_tree = || -> Vec<std::path::PathBuf> {
        let mut v: Vec<_> = d.cgroup_dirs().iter().flat_map(|c| walk_dirs(c)).collect();
        v.sort();
        v
    };
    let cgroups_before = cgroup_tree();
    let (paths, types) = rpcs();
    assert!(paths.len() >= 20, "{paths:?}");
    let words = strings();
    let mut rng = Rng::seeded(seed);
    let calls: Vec<(String, Vec<u8>)> = (0..count)
        .map(|i| {
            // Every RPC in turn, so each gets its share.
            let (path, input) = &paths[i % paths.len()];
            (
                path.clone(),
                random_message(&mut rng, &words, &types, input),
            )
        })
        .collect();
    let started = std::time::Instant::now();
    let statuses: Vec<Option<Status>> = futures::stream::iter(calls)
        .map(|(path, body)| call(client.channel(), path, body))
        .buffer_unordered(16)
        .collect()
        .await;
    // A client's bytes are never the server's fault: no INTERNAL at all
    // (malformed messages are INVALID_ARGUMENT, see aurae-proto's codec).
    let internal: Vec<&Status> = statuses
        .iter()
        .flatten()
        .filter(|s| s.code() == tonic::Code::Internal || s.message().contains("panic"))
        .collect();
    eprintln!(
        "{} messages to {} RPCs in {:.1} s; {} answered with an error status",
        statuses.len(),
        paths.len(),
        started.elapsed().as_secs_f64(),
        statuses.iter().flatten().count()
    );
    let mut codes = std::collections::BTreeMap::new();
    for s in statuses.iter().flatten() {
        *codes.entry(format!("{:?}", s.code())).or_insert(0u32) += 1;
    }
    eprintln!("status codes: {codes:?}");
    assert!(
        internal.is_empty(),
        "{} INTERNAL or panic statuses, e.g. {:?}",
        internal.len(),
        internal.iter().take(5).collect::<Vec<_>>()
    );

    // The daemon is alive and answers.
    let pid = d.pid().unwrap() as i32;
    assert!(alive(pid), "the daemon died; log:\n{}", d.log());
    client
        .list_images()
        .await
        .unwrap_or_else(|e| panic!("the daemon does not answer: {e}\n{}", d.log()));

    // Detached cells (cells.Cells/Start) stay by design until removed, as a
    // user would: remove them; their removal must leave nothing either.
    let cells = client.list_cells().await.expect("list cells").cells;
    for cell in cells.iter().filter(|c| c.detached) {
        let name = cell
            .meta
            .as_ref()
            .map(|m| m.name.clone())
            .unwrap_or_default();
        client
            .remove_cell(name.clone(), true)
            .await
            .unwrap_or_else(|e| panic!("removing detached cell {name}: {e}\n{}", d.log()));
    }
    eprintln!(
        "{} detached cells removed",
        cells.iter().filter(|c| c.detached).count()
    );

    // Nothing of the calls is left (cancelled calls end asynchronously).
    let leftovers = || {
        let pids: Vec<i32> = d.cgroup_dirs().iter().flat_map(|c| pids_under(c)).collect();
        let mounts = mounts_under(d.dir.path());
        let bundles: Vec<_> = std::fs::read_dir(d.dir.path().join("run/cells"))
            .map(|rd| rd.flatten().map(|e| e.path()).collect())
            .unwrap_or_default();
        let netns: Vec<String> = fuzz_netns()
            .into_iter()
            .filter(|n| !netns_before.contains(n))
            .collect();
        (pids, mounts, bundles, netns)
    };
    let clean = common::eventually(30, || {
        let (p, m, b, n) = leftovers();
        p.is_empty() && m.is_empty() && b.is_empty() && n.is_empty()
    })
    .await;
    let (pids, mounts, bundles, netns) = leftovers();
    assert!(
        clean,
        "left behind: pids {pids:?}, mounts {mounts:?}, bundles {bundles:?}, netns {netns:?}; log:\n{}",
        d.log()
    );
    // The daemon makes its per-kind parents (exec, cells, schedule) on first use.
    let roots = d.cgroup_dirs();
    let structural = |c: &std::path::PathBuf| {
        c.parent().is_some_and(|p| roots.iter().any(|r| r == p))
            && c.file_name()
                .is_some_and(|n| ["exec", "cells", "schedule"].iter().any(|s| n == *s))
    };
    let cgroups: Vec<_> = cgroup_tree()
        .into_iter()
        .filter(|c| !cgroups_before.contains(c) && !structural(c))
        .collect();
    assert!(cgroups.is_empty(), "cgroups left behind: {cgroups:?}");
    let log = d.log();
    assert!(
        !log.contains("panicked"),
        "the daemon log has a panic:\n{log}"
    );
}

fn walk_dirs(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                out.push(e.path());
                out.extend(walk_dirs(&e.path()));
            }
        }
    }
    out
}

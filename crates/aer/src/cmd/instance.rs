//! `aer instance spawn|list|free`: nested auraed instances (micro-VMs the
//! node spawns, each its own auraed, reachable with `aer --address`).
use std::process::ExitCode;

use anyhow::{Context, Result};
use aurae_proto::runtime::{Instance, SpawnRequest, SpawnResponse};
use clap::Subcommand;
use serde_json::{json, Value};

use super::Ctx;
use crate::output::{meta, print_json, proc};

#[derive(Debug, Subcommand)]
pub enum InstanceCommand {
    /// Spawn a nested instance; returns once its auraed answers
    Spawn {
        /// Instance name (a DNS label); generated when absent
        name: Option<String>,
        /// Memory in MiB [default: 512]
        #[arg(long)]
        memory: Option<u32>,
        /// Virtual CPUs [default: 1]
        #[arg(long)]
        vcpus: Option<u32>,
    },
    /// Show this node with its instances, recursively, as a tree
    List,
    /// Stop an instance and remove everything of it
    Free { name: String },
}

pub async fn run(ctx: &Ctx, cmd: InstanceCommand) -> Result<ExitCode> {
    let client = ctx.client().await?;
    match cmd {
        InstanceCommand::Spawn {
            name,
            memory,
            vcpus,
        } => {
            if !ctx.json() {
                eprintln!("aer: booting the instance and waiting for its auraed...");
            }
            let r = client
                .spawn(SpawnRequest {
                    name: name.unwrap_or_default(),
                    memory_mib: memory.unwrap_or(0),
                    vcpus: vcpus.unwrap_or(0),
                })
                .await
                .context("could not spawn an instance")?;
            if ctx.json() {
                print_json(&spawn_response(&r));
            } else {
                let pid = r.proc.as_ref().map_or(0, |p| p.pid);
                println!("{}\t{}\tpid {pid}", r.name, r.address);
                eprintln!(
                    "aer: reach it with: aer --address {} --server-name {} status",
                    r.address, r.name
                );
            }
        }
        InstanceCommand::List => {
            let g = client
                .instance_graph()
                .await
                .context("could not read the instance graph")?;
            if ctx.json() {
                print_json(&instance(&g));
            } else {
                print!("{}", tree(&g));
            }
        }
        InstanceCommand::Free { name } => {
            let r = client
                .free_instance(&name)
                .await
                .with_context(|| format!("could not free instance {name}"))?;
            if ctx.json() {
                print_json(&json!({ "meta": meta(r.meta.as_ref()) }));
            } else {
                println!("{name}\tfreed");
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub fn spawn_response(r: &SpawnResponse) -> Value {
    json!({ "name": r.name, "address": r.address, "proc": proc(r.proc.as_ref()) })
}

pub fn instance(i: &Instance) -> Value {
    json!({
        "meta": meta(i.meta.as_ref()),
        "is_root": i.is_root,
        "nested_instances": i.nested_instances.iter().map(instance).collect::<Vec<_>>(),
    })
}

/// The graph as an indented tree, one instance a line (with why, when it
/// did not answer).
fn tree(root: &Instance) -> String {
    let mut out = String::new();
    line(root, "", "", &mut out);
    out
}

fn line(i: &Instance, lead: &str, child_lead: &str, out: &mut String) {
    let (name, message) = i
        .meta
        .as_ref()
        .map(|m| (m.name.as_str(), m.message.as_str()))
        .unwrap_or_default();
    out.push_str(lead);
    out.push_str(name);
    if !message.is_empty() {
        out.push_str(&format!("  ({message})"));
    }
    out.push('\n');
    let n = i.nested_instances.len();
    for (k, c) in i.nested_instances.iter().enumerate() {
        let last = k + 1 == n;
        let (l, cl) = if last {
            ("└── ", "    ")
        } else {
            ("├── ", "│   ")
        };
        line(
            c,
            &format!("{child_lead}{l}"),
            &format!("{child_lead}{cl}"),
            out,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aurae_proto::meta::AuraeMeta;

    fn node(name: &str, message: &str, nested: Vec<Instance>) -> Instance {
        Instance {
            meta: Some(AuraeMeta {
                name: name.into(),
                message: message.into(),
            }),
            is_root: false,
            nested_instances: nested,
        }
    }

    #[test]
    fn the_graph_prints_as_a_tree() {
        let g = node(
            "host",
            "",
            vec![
                node("a", "", vec![node("a1", "", vec![])]),
                node("b", "unreachable", vec![]),
            ],
        );
        assert_eq!(tree(&g), "host\n├── a\n│   └── a1\n└── b  (unreachable)\n");
    }
}

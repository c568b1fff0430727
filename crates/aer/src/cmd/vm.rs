//! `aer vm run|list|stop|start|rm|console`: long-lived virtual machines.
use std::future::Future;
use std::io::IsTerminal;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use aurae_client::Client;
use aurae_proto::meta::AuraeMeta;
use aurae_proto::observe::LogChannelType;
use aurae_proto::runtime::{VirtualMachine, VirtualMachineStatus};
use aurae_proto::vms::{ListVmsRequest, VmInfo, VmProgress, VmRef};
use clap::Subcommand;
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::json;

use super::Ctx;
use crate::output::{human_bytes, meta_text, print_json, status_name, vm_info, vm_status};

/// How often `aer vm run` asks how far the disk image has come.
const PROGRESS_EVERY: Duration = Duration::from_millis(250);

#[derive(Debug, Subcommand)]
pub enum VmCommand {
    /// Create a VM and boot it; returns once it runs (it keeps running)
    Run {
        /// VM name
        name: String,
        /// An http(s) URL of a qcow2 or raw disk (optionally ending in
        /// #sha256=HEX), or a containerDisk image reference
        image: String,
        /// Memory in MiB [default: 512]
        #[arg(long)]
        memory: Option<u32>,
        /// Virtual CPUs [default: 1]
        #[arg(long)]
        vcpus: Option<u32>,
        /// user (QEMU user-mode NAT), none (no NIC), or bridge:NAME (a TAP
        /// on the existing Linux bridge NAME) [default: user]
        #[arg(long, default_value = "user")]
        network: String,
    },
    /// List VMs with their status, pid, image and digest
    List,
    /// Stop a VM (ACPI power button, then forced); its disk is kept
    Stop { name: String },
    /// Boot a stopped VM again on the same disk
    Start { name: String },
    /// Stop a VM and remove its disk overlay and record
    Rm { name: String },
    /// Follow a VM's serial console from boot (Ctrl-C to leave)
    Console { name: String },
}

pub async fn run(ctx: &Ctx, cmd: VmCommand) -> Result<ExitCode> {
    let client = ctx.client().await?;
    match cmd {
        VmCommand::Run {
            name,
            image,
            memory,
            vcpus,
            network,
        } => {
            let vm = VirtualMachine {
                meta: Some(AuraeMeta {
                    name: name.clone(),
                    message: String::new(),
                }),
                image,
                memory_mib: memory.unwrap_or(0),
                vcpus: vcpus.unwrap_or(0),
                network,
                ..Default::default()
            };
            if !ctx.json() {
                eprintln!("aer: fetching the disk image and booting {name}...");
            }
            let mut core = client.core();
            let call = core.run_virtual_machine(vm);
            // A bar only for a person watching: not in JSON, not when piped.
            let answer = if !ctx.json()
                && std::io::stdout().is_terminal()
                && std::io::stderr().is_terminal()
            {
                with_progress(&client, &name, call).await
            } else {
                call.await
            };
            let s = answer
                .with_context(|| format!("could not run vm {name}"))?
                .into_inner();
            print_status(ctx, &s);
        }
        VmCommand::List => {
            let list = list_vms(&client).await?;
            if ctx.json() {
                print_json(&json!({ "vms": list.iter().map(vm_info).collect::<Vec<_>>() }));
            } else {
                print_list(&list);
            }
        }
        VmCommand::Stop { name } => act(ctx, &client, Act::Stop, name).await?,
        VmCommand::Start { name } => act(ctx, &client, Act::Start, name).await?,
        VmCommand::Rm { name } => act(ctx, &client, Act::Remove, name).await?,
        VmCommand::Console { name } => console(ctx, &client, &name).await?,
    }
    Ok(ExitCode::SUCCESS)
}

/// Awaits `call` (a RunVirtualMachine) while drawing on stderr the
/// progress List reports for the VM being created.
async fn with_progress<T>(client: &Client, name: &str, call: impl Future<Output = T>) -> T {
    let bar = ProgressBar::new(0);
    let style = ProgressStyle::with_template("{prefix} {msg:11} [{bar:30}] {bytes}/{total_bytes}")
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ");
    bar.set_style(style);
    bar.set_prefix(name.to_string());
    tokio::pin!(call);
    let mut tick = tokio::time::interval(PROGRESS_EVERY);
    let out = loop {
        tokio::select! {
            out = &mut call => break out,
            _ = tick.tick() => {
                let asked = tokio::time::timeout(PROGRESS_EVERY * 4, list_vms(client)).await;
                if let Some(p) = asked.ok().and_then(Result::ok).and_then(|l| progress_of(l, name)) {
                    bar.set_message(p.phase);
                    bar.set_length(p.bytes_total.max(p.bytes_done));
                    bar.set_position(p.bytes_done);
                }
            }
        }
    };
    bar.finish_and_clear();
    out
}

/// The creation progress of `name` in a List answer.
fn progress_of(list: Vec<VmInfo>, name: &str) -> Option<VmProgress> {
    list.into_iter()
        .find(|v| v.meta.as_ref().is_some_and(|m| m.name == name))
        .and_then(|v| v.progress)
}

/// `downloading 1.5 MiB of 3.0 MiB`, `checking`.
fn progress_text(p: &VmProgress) -> String {
    match (p.bytes_done, p.bytes_total) {
        (0, 0) => p.phase.clone(),
        (done, 0) => format!("{} {}", p.phase, human_bytes(done)),
        (done, total) => format!(
            "{} {} of {}",
            p.phase,
            human_bytes(done),
            human_bytes(total)
        ),
    }
}

async fn list_vms(client: &Client) -> Result<Vec<VmInfo>> {
    Ok(client
        .vms()
        .list(ListVmsRequest {})
        .await
        .context("could not list vms")?
        .into_inner()
        .vms)
}

enum Act {
    Stop,
    Start,
    Remove,
}

/// Stop, Start or Delete of one VM, its answer printed.
async fn act(ctx: &Ctx, client: &Client, act: Act, name: String) -> Result<()> {
    let r = VmRef { name: name.clone() };
    let mut vms = client.vms();
    let (verb, answer) = match act {
        Act::Stop => ("stop", vms.stop(r).await),
        Act::Start => ("start", vms.start(r).await),
        Act::Remove => ("remove", vms.delete(r).await),
    };
    let s = answer
        .with_context(|| format!("could not {verb} vm {name}"))?
        .into_inner();
    print_status(ctx, &s);
    Ok(())
}

async fn console(ctx: &Ctx, client: &Client, name: &str) -> Result<()> {
    let list = list_vms(client).await?;
    let Some(vm) = list
        .iter()
        .find(|v| v.meta.as_ref().is_some_and(|m| m.name == name))
    else {
        bail!("no vm named {name}");
    };
    if let Some(p) = &vm.progress {
        bail!(
            "vm {name} is being created ({}): its console opens once it boots",
            progress_text(p)
        );
    }
    let Some(pid) = vm.proc.as_ref().map(|p| p.pid) else {
        bail!(
            "vm {name} is not running ({}): start it with aer vm start {name}",
            status_name(vm.status)
        );
    };
    let stream = client
        .sub_process_output(i64::from(pid), LogChannelType::ChannelStdout, false)
        .await
        .with_context(|| format!("could not open the console of vm {name}"))?;
    super::logs::follow_stream(ctx, stream).await
}

fn print_status(ctx: &Ctx, s: &VirtualMachineStatus) {
    if ctx.json() {
        print_json(&vm_status(s));
        return;
    }
    let pid = s
        .proc
        .as_ref()
        .map(|p| format!(" pid {}", p.pid))
        .unwrap_or_default();
    println!(
        "vm {}: {}{pid}",
        meta_text(s.meta.as_ref()),
        status_name(s.status)
    );
}

fn print_list(list: &[VmInfo]) {
    println!(
        "{:<20} {:<16} {:>8}  {:<20} IMAGE",
        "NAME", "STATUS", "PID", "DIGEST"
    );
    for v in list {
        let name = v.meta.as_ref().map(|m| m.name.as_str()).unwrap_or_default();
        let pid = v
            .proc
            .as_ref()
            .map(|p| p.pid.to_string())
            .unwrap_or_else(|| "-".into());
        let digest: String = v.digest.chars().take(19).collect();
        println!(
            "{name:<20} {:<16} {pid:>8}  {digest:<20} {}",
            status_name(v.status),
            v.image
        );
        if let Some(p) = &v.progress {
            println!("{:<20} being created: {}", "", progress_text(p));
        } else if let Some(m) = v.meta.as_ref().filter(|m| !m.message.is_empty()) {
            println!("{:<20} {}", "", m.message);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(phase: &str, done: u64, total: u64) -> VmProgress {
        VmProgress {
            phase: phase.into(),
            bytes_done: done,
            bytes_total: total,
        }
    }

    #[test]
    fn progress_reads_as_a_phase_and_sizes() {
        assert_eq!(progress_text(&p("resolving", 0, 0)), "resolving");
        assert_eq!(
            progress_text(&p("downloading", 1536, 0)),
            "downloading 1.5 KiB"
        );
        assert_eq!(
            progress_text(&p("downloading", 1536, 3 << 20)),
            "downloading 1.5 KiB of 3.0 MiB"
        );
    }
}

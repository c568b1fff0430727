//! `aer cell run|start|list|ps|logs|exec|stop|rm`: cells of containers.
use std::process::ExitCode;

use anyhow::{Context, Result};
use aurae_proto::cells::RunningCell;
use aurae_proto::meta::AuraeMeta;
use aurae_proto::runtime::{Cell, CellStatus, Container, ContainerStatus, Limits, PortMapping};
use clap::{Args, Subcommand};
use serde_json::json;

use super::cell_output::Followers;
use super::cell_run::run_cell;
use super::workload::{limits_text, LimitArgs};
use super::Ctx;
use crate::output::{meta, meta_text, print_json, running_cell, status_name};

/// What `run` and `start` take: the cell's name, images and network.
#[derive(Debug, Args)]
pub struct CellArgs {
    /// Cell name
    name: String,
    /// Images, one container each; NAME=IMAGE names the container,
    /// otherwise it is named after the image
    #[arg(required = true, value_name = "IMAGE")]
    images: Vec<String>,
    /// CNI network: "none" for loopback only, or a configured network's
    /// name; without it, the node's default network
    #[arg(long, value_name = "none|NAME")]
    network: Option<String>,
    /// Forward a host port to a port of the cell (repeatable), as
    /// `docker run -p`: HOST:CONTAINER, HOST:CONTAINER/udp
    #[arg(short = 'p', long = "publish", value_name = "HOST:CONTAINER[/udp]", value_parser = parse_publish)]
    publish: Vec<PortMapping>,
    /// Limits of the whole cell (all of its containers together)
    #[command(flatten)]
    limits: LimitArgs,
    #[command(flatten)]
    process: ProcessArgs,
}

/// What the containers run instead of what their images say.
#[derive(Debug, Args)]
pub struct ProcessArgs {
    /// Run PROGRAM instead of the image's entrypoint, with the arguments
    /// after `--` and without the image's command (as `docker run
    /// --entrypoint`); one image only
    #[arg(long, value_name = "PROGRAM")]
    entrypoint: Option<String>,
    /// Set an environment variable in every container (repeatable), over
    /// the image's; a KEY alone takes aer's own value, and is left out
    /// when aer has none (as `docker run -e`)
    #[arg(short = 'e', long = "env", value_name = "KEY=VALUE")]
    env: Vec<String>,
    /// Working directory of every container (absolute), instead of the image's
    #[arg(short = 'w', long = "workdir", value_name = "DIR")]
    workdir: Option<String>,
    /// The command to run instead of the image's, after `--` (one image
    /// only): aer cell run NAME IMAGE -- CMD [ARGS...]
    #[arg(last = true, value_name = "CMD")]
    command: Vec<String>,
}

impl ProcessArgs {
    /// Containers for `images` (see [`containers`]), running what was asked.
    pub(crate) fn containers(&self, images: &[String]) -> Result<Vec<Container>> {
        if images.len() != 1 && (self.entrypoint.is_some() || !self.command.is_empty()) {
            anyhow::bail!(
                "a command after -- or --entrypoint needs exactly one image, and {} were given: \
                 start the containers that need their own command in cells of their own",
                images.len()
            );
        }
        let env = with_own_values(&self.env, |key| std::env::var(key).ok());
        let mut containers = containers(images);
        for c in &mut containers {
            c.env = env.clone();
            c.working_dir = self.workdir.clone().unwrap_or_default();
            // As docker: the words after the image replace its command, and
            // --entrypoint its entrypoint (and with it the command).
            c.command = self.entrypoint.iter().cloned().collect();
            c.args = self.command.clone();
        }
        Ok(containers)
    }
}

/// `entries` with each bare `KEY` given `lookup(KEY)`'s value, or left out without one.
fn with_own_values(entries: &[String], lookup: impl Fn(&str) -> Option<String>) -> Vec<String> {
    entries
        .iter()
        .filter_map(|e| {
            if e.contains('=') {
                Some(e.clone())
            } else {
                lookup(e).map(|v| format!("{e}={v}"))
            }
        })
        .collect()
}

impl CellArgs {
    fn cell(self) -> Result<Cell> {
        Ok(Cell {
            meta: Some(am(&self.name)),
            containers: self.process.containers(&self.images)?,
            network: self.network.unwrap_or_default(),
            ports: self.publish,
            limits: self.limits.to_wire(),
        })
    }
}

#[derive(Debug, Subcommand)]
pub enum CellCommand {
    /// Run a cell and wait until it stops (Ctrl-C stops it)
    Run(CellArgs),
    /// Start a cell in the background: it runs on after this command and a
    /// restart of auraed, until `aer cell rm` (as `docker run -d`)
    Start(CellArgs),
    /// Remove a cell started with `aer cell start` (a running one only
    /// with --force, which stops it first)
    Rm {
        name: String,
        /// Stop the cell first if it is running
        #[arg(short, long)]
        force: bool,
    },
    /// List cells (running, and stopped ones of `aer cell start`) with
    /// their containers' pids and status
    #[command(visible_alias = "ps")]
    List,
    /// Show a cell's container output, also of a stopped one (stdout to stdout, stderr to
    /// stderr; prefixed with the container's name when there are several)
    Logs {
        /// Cell name
        cell: String,
        /// Only this container
        container: Option<String>,
        /// Keep printing new output until the containers end or Ctrl-C
        #[arg(short, long)]
        follow: bool,
    },
    /// Run a command in a running container and exit with its code:
    /// aer cell exec CELL CONTAINER -- CMD [ARGS...]
    Exec(super::cell_exec::ExecArgs),
    /// Stop a running cell (one of `aer cell start` stays until `aer cell rm`)
    Stop { name: String },
}

pub async fn run(ctx: &Ctx, cmd: CellCommand) -> Result<ExitCode> {
    let client = ctx.client().await?;
    match cmd {
        CellCommand::Run(args) => run_cell(ctx, &client, args.cell()?).await,
        CellCommand::Start(args) => {
            let name = args.name.clone();
            let status = client
                .start_cell(args.cell()?)
                .await
                .with_context(|| format!("could not start cell {name}"))?;
            if ctx.json() {
                print_json(&crate::output::cell_status(&status));
            } else {
                println!("{}{}", name, ip_suffix(&status.ip));
                for line in container_lines(&status.container_statuses, "  ") {
                    println!("{line}");
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        CellCommand::Rm { name, force } => {
            let r = client
                .remove_cell(name.clone(), force)
                .await
                .with_context(|| format!("could not remove cell {name}"))?;
            if ctx.json() {
                print_json(&json!({ "meta": meta(r.meta.as_ref()) }));
            } else {
                println!("removed {name}");
            }
            Ok(ExitCode::SUCCESS)
        }
        CellCommand::List => {
            let cells = client
                .list_cells()
                .await
                .context("could not list cells")?
                .cells;
            if ctx.json() {
                print_json(&json!({ "cells": cells.iter().map(running_cell).collect::<Vec<_>>() }));
            } else {
                print_cells(&cells);
            }
            Ok(ExitCode::SUCCESS)
        }
        CellCommand::Logs {
            cell,
            container,
            follow,
        } => logs(&client, &cell, container.as_deref(), follow).await,
        CellCommand::Exec(args) => super::cell_exec::exec(ctx, &client, args).await,
        CellCommand::Stop { name } => {
            let r = client
                .stop_cell(name.clone())
                .await
                .with_context(|| format!("could not stop cell {name}"))?;
            if ctx.json() {
                print_json(&json!({ "meta": meta(r.meta.as_ref()) }));
            } else {
                let text = meta_text(r.meta.as_ref());
                println!(
                    "{}",
                    if text.is_empty() {
                        format!("stopped {name}")
                    } else {
                        text
                    }
                );
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// `8080:80`, `5353:53/udp` (also `/tcp`).
fn parse_publish(s: &str) -> Result<PortMapping, String> {
    let (ports, protocol) = match s.split_once('/') {
        Some((ports, proto @ ("tcp" | "udp"))) => (ports, proto),
        Some((_, other)) => return Err(format!("protocol {other:?} is not tcp or udp")),
        None => (s, "tcp"),
    };
    let (host, container) = ports
        .split_once(':')
        .ok_or_else(|| format!("{s:?} is not HOST:CONTAINER[/udp], e.g. 8080:80"))?;
    let port = |p: &str| {
        p.parse::<u16>()
            .ok()
            .filter(|p| *p > 0)
            .map(u32::from)
            .ok_or_else(|| format!("{p:?} is not a port from 1 to 65535"))
    };
    Ok(PortMapping {
        host_port: port(host)?,
        container_port: port(container)?,
        protocol: protocol.to_string(),
    })
}

/// `aer cell logs`: the containers' output from the log store, by their pids.
async fn logs(
    client: &aurae_client::Client,
    cell: &str,
    container: Option<&str>,
    follow: bool,
) -> Result<ExitCode> {
    let running = running_cell_named(client, cell).await?;
    let containers: Vec<(String, Option<i32>)> = running
        .containers
        .iter()
        .map(|c| {
            (
                c.meta.as_ref().map(|m| m.name.clone()).unwrap_or_default(),
                c.proc.map(|p| p.pid),
            )
        })
        .filter(|(name, _)| container.is_none_or(|wanted| wanted == name))
        .collect();
    if let Some(wanted) = container.filter(|_| containers.is_empty()) {
        anyhow::bail!("cell {cell} has no container {wanted}; see its containers with aer cell ps");
    }
    let names: Vec<String> = containers.iter().map(|(n, _)| n.clone()).collect();
    let mut followers = Followers::new(client.clone(), &names, follow);
    for (name, pid) in &containers {
        match pid {
            Some(pid) => followers.attach(name, *pid),
            None => eprintln!("aer: container {name} has not started yet: no output"),
        }
    }
    tokio::select! {
        _ = followers.wait() => {}
        // Ctrl-C is how one stops following: not an error.
        _ = tokio::signal::ctrl_c() => {}
    }
    Ok(ExitCode::SUCCESS)
}

/// The cell `name` as List shows it, or an error that says how to see the others.
pub(super) async fn running_cell_named(
    client: &aurae_client::Client,
    name: &str,
) -> Result<RunningCell> {
    let cells = client
        .list_cells()
        .await
        .context("could not list cells")?
        .cells;
    cells
        .into_iter()
        .find(|c| c.meta.as_ref().is_some_and(|m| m.name == name))
        .with_context(|| format!("there is no cell {name}; see the cells with aer cell list"))
}

pub(super) fn am(name: &str) -> AuraeMeta {
    AuraeMeta {
        name: name.to_string(),
        message: String::new(),
    }
}

/// Containers for `images` (`IMAGE` or `NAME=IMAGE`; `=` cannot occur in an
/// image reference). A name taken from an image is made unique with `-2`,
/// `-3`, ...; a name the user gave is kept as given, so that a duplicate is
/// refused by the daemon (INVALID_ARGUMENT) rather than silently renamed.
pub(super) fn containers(images: &[String]) -> Vec<Container> {
    let mut taken: Vec<String> = Vec::new();
    images
        .iter()
        .map(|arg| {
            let (base, image, given) = match arg.split_once('=') {
                Some((name, image)) => (name.to_string(), image.to_string(), true),
                None => (name_from_image(arg), arg.clone(), false),
            };
            let mut name = base.clone();
            let mut n = 1;
            while !given && taken.contains(&name) {
                n += 1;
                name = format!("{base}-{n}");
            }
            taken.push(name.clone());
            Container {
                meta: Some(am(&name)),
                image,
                ..Default::default()
            }
        })
        .collect()
}

/// `registry:5000/library/busybox:1.36@sha256:...` -> `busybox`, reduced to
/// the characters the daemon accepts in names.
fn name_from_image(image: &str) -> String {
    let without_digest = image.split('@').next().unwrap_or_default();
    let last = without_digest.rsplit('/').next().unwrap_or_default();
    let repo = last.split(':').next().unwrap_or_default();
    let name: String = repo
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                c
            } else {
                '-'
            }
        })
        .collect();
    let name = name.trim_start_matches('.');
    if name.is_empty() {
        "container".to_string()
    } else {
        name.to_string()
    }
}

/// `  ip 10.91.0.5` after a cell's line, when it has an address.
fn ip_suffix(ip: &str) -> String {
    if ip.is_empty() {
        String::new()
    } else {
        format!("  ip {ip}")
    }
}

/// `  limits pids=4096 memory=64M` after a line, when any limit is in force.
fn limits_suffix(limits: Option<&Limits>) -> String {
    match limits.map(limits_text).filter(|t| !t.is_empty()) {
        Some(text) => format!("  limits {text}"),
        None => String::new(),
    }
}

/// On stderr: stdout carries the containers' own output, as `docker run`'s does.
pub(super) fn print_cell_status(status: &CellStatus) {
    eprintln!(
        "cell {}: {}{}",
        meta_text(status.meta.as_ref()),
        status_name(status.status),
        ip_suffix(&status.ip)
    );
    for line in container_lines(&status.container_statuses, "  ") {
        eprintln!("{line}");
    }
}

fn print_cells(cells: &[RunningCell]) {
    if cells.is_empty() {
        println!("no cells running");
    }
    for cell in cells {
        let detached = if cell.detached { "  (detached)" } else { "" };
        println!(
            "{}{}{}{detached}",
            meta_text(cell.meta.as_ref()),
            ip_suffix(&cell.ip),
            limits_suffix(cell.limits.as_ref())
        );
        for line in container_lines(&cell.containers, "  ") {
            println!("{line}");
        }
    }
}

/// `  web  pid 812  STATUS_ACTIVE  running  limits memory=64M`, one per
/// container (an OOM kill reads `STATUS_ERROR  OOM killed`).
fn container_lines(containers: &[ContainerStatus], indent: &str) -> Vec<String> {
    containers
        .iter()
        .map(|c| {
            let m = c.meta.clone().unwrap_or_default();
            let pid = c
                .proc
                .map(|p| p.pid.to_string())
                .unwrap_or_else(|| "-".into());
            format!(
                "{indent}{}  pid {pid}  {}  {}{}",
                m.name,
                status_name(c.status),
                m.message,
                limits_suffix(c.limits.as_ref())
            )
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn container_names_come_from_images() {
        assert_eq!(name_from_image("busybox"), "busybox");
        assert_eq!(name_from_image("docker.io/library/busybox:1.36"), "busybox");
        assert_eq!(name_from_image("localhost:5000/app@sha256:abc"), "app");
        assert_eq!(name_from_image("localhost:5000/my+app:v1"), "my-app");
        assert_eq!(name_from_image(".hidden"), "hidden");
        assert_eq!(name_from_image(""), "container");
    }

    #[test]
    fn publish_reads_like_docker_run_p() {
        let p = parse_publish("8080:80").expect("tcp");
        assert_eq!(
            (p.host_port, p.container_port, p.protocol.as_str()),
            (8080, 80, "tcp")
        );
        let p = parse_publish("5353:53/udp").expect("udp");
        assert_eq!(
            (p.host_port, p.container_port, p.protocol.as_str()),
            (5353, 53, "udp")
        );
        for bad in ["80", "0:80", "80:70000", "a:b", "80:80/sctp", ""] {
            assert!(parse_publish(bad).is_err(), "{bad}");
        }
        assert_eq!(ip_suffix(""), "");
        assert_eq!(ip_suffix("10.91.0.2"), "  ip 10.91.0.2");
        assert_eq!(limits_suffix(None), "");
        let limits = Limits {
            pids: 4096,
            memory_bytes: 64 << 20,
            cpu_millis: 0,
        };
        assert_eq!(
            limits_suffix(Some(&limits)),
            "  limits pids=4096 memory=64M"
        );
    }

    #[test]
    fn explicit_names_and_duplicates() {
        let args: Vec<String> = ["web=nginx:1", "busybox", "busybox:2", "x/busybox"]
            .map(String::from)
            .to_vec();
        let names: Vec<String> = containers(&args)
            .iter()
            .map(|c| c.meta.clone().unwrap_or_default().name)
            .collect();
        assert_eq!(names, ["web", "busybox", "busybox-2", "busybox-3"]);
        assert_eq!(containers(&args)[0].image, "nginx:1");

        // Given names are the user's: a duplicate goes to the daemon as is.
        let args: Vec<String> = ["a=x", "a=y", "x"].map(String::from).to_vec();
        let names: Vec<String> = containers(&args)
            .iter()
            .map(|c| c.meta.clone().unwrap_or_default().name)
            .collect();
        assert_eq!(names, ["a", "a", "x"]);
    }

    fn parsed_cell(argv: &[&str]) -> Result<Cell> {
        use clap::Parser;
        let cli = crate::cli::Cli::try_parse_from(argv).expect("parses");
        match cli.command {
            crate::cli::Command::Cell(CellCommand::Run(args) | CellCommand::Start(args)) => {
                args.cell()
            }
            other => panic!("not cell run or start: {other:?}"),
        }
    }

    #[test]
    fn the_words_after_the_double_dash_replace_the_images_command() {
        let cell = parsed_cell(&[
            "aer", "cell", "run", "web", "busybox", "-e", "A=1", "--env", "B=2", "-w", "/tmp",
            "-p", "8080:80", "--", "sh", "-c", "echo $A",
        ])
        .expect("one image");
        let c = &cell.containers[0];
        assert!(c.command.is_empty(), "the image's entrypoint stays");
        assert_eq!(c.args, ["sh", "-c", "echo $A"]);
        assert_eq!(c.env, ["A=1", "B=2"]);
        assert_eq!(c.working_dir, "/tmp");
        assert_eq!(cell.ports.len(), 1);

        let cell = parsed_cell(&[
            "aer",
            "cell",
            "start",
            "web",
            "app",
            "--entrypoint",
            "/bin/sh",
            "--",
            "-c",
            "ls",
        ])
        .expect("one image");
        assert_eq!(cell.containers[0].command, ["/bin/sh"]);
        assert_eq!(cell.containers[0].args, ["-c", "ls"]);

        let plain =
            parsed_cell(&["aer", "cell", "run", "web", "a", "b", "-e", "X=1"]).expect("no command");
        assert!(plain
            .containers
            .iter()
            .all(|c| c.args.is_empty() && c.env == ["X=1"]));
    }

    #[test]
    fn a_command_for_several_images_is_refused() {
        let err = parsed_cell(&["aer", "cell", "run", "web", "a", "b", "--", "true"])
            .expect_err("which container's?");
        assert!(err.to_string().contains("exactly one image"), "{err}");
    }

    #[test]
    fn a_bare_env_key_takes_aers_own_value_or_is_left_out() {
        let entries = ["A=1", "HOME", "UNSET", "B="].map(String::from);
        let lookup = |k: &str| (k == "HOME").then(|| "/root".to_string());
        assert_eq!(
            with_own_values(&entries, lookup),
            ["A=1", "HOME=/root", "B="]
        );
    }
}

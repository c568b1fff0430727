//! `aer cell run|list|stop`: cells of containers.
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use aurae_client::Client;
use aurae_proto::cells::RunningCell;
use aurae_proto::meta::{AuraeMeta, Status};
use aurae_proto::runtime::{Cell, CellStatus, Container, ContainerStatus, PortMapping};
use clap::Subcommand;
use serde_json::json;

use super::Ctx;
use crate::output::{cell_status, meta, meta_text, print_json, running_cell, status_name};

#[derive(Debug, Subcommand)]
pub enum CellCommand {
    /// Run a cell and wait until it stops (Ctrl-C stops it)
    Run {
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
    },
    /// List running cells and their containers
    List,
    /// Stop a running cell
    Stop { name: String },
}

pub async fn run(ctx: &Ctx, cmd: CellCommand) -> Result<ExitCode> {
    let client = ctx.client().await?;
    match cmd {
        CellCommand::Run {
            name,
            images,
            network,
            publish,
        } => {
            let cell = Cell {
                meta: Some(am(&name)),
                containers: containers(&images),
                network: network.unwrap_or_default(),
                ports: publish,
            };
            run_cell(ctx, &client, cell).await
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

async fn run_cell(ctx: &Ctx, client: &Client, cell: Cell) -> Result<ExitCode> {
    let name = cell.meta.clone().unwrap_or_default().name;
    let run = client.run_cell(cell);
    tokio::pin!(run);
    let status = tokio::select! {
        status = &mut run => status,
        _ = tokio::signal::ctrl_c() => {
            // Dropping the call would leave the cell running on the node:
            // stop it and wait for RunCell to report how it ended.
            eprintln!("aer: stopping cell {name} (Ctrl-C again to leave it running)");
            client.stop_cell(name.clone()).await.with_context(|| format!("could not stop cell {name}"))?;
            tokio::select! {
                status = &mut run => status,
                _ = tokio::signal::ctrl_c() => bail!("interrupted while cell {name} was stopping"),
            }
        }
    }
    .with_context(|| format!("could not run cell {name}"))?;

    if ctx.json() {
        print_json(&cell_status(&status));
    } else {
        print_cell_status(&status);
    }
    if status.status == Status::Error as i32 {
        let message = status
            .meta
            .as_ref()
            .map(|m| m.message.as_str())
            .unwrap_or_default();
        eprintln!("aer: cell {name} failed: {message}");
        return Ok(ExitCode::FAILURE);
    }
    Ok(ExitCode::SUCCESS)
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

fn am(name: &str) -> AuraeMeta {
    AuraeMeta {
        name: name.to_string(),
        message: String::new(),
    }
}

/// Containers for `images` (`IMAGE` or `NAME=IMAGE`; `=` cannot occur in an
/// image reference). A name taken from an image is made unique with `-2`,
/// `-3`, ...; a name the user gave is kept as given, so that a duplicate is
/// refused by the daemon (INVALID_ARGUMENT) rather than silently renamed.
fn containers(images: &[String]) -> Vec<Container> {
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

fn print_cell_status(status: &CellStatus) {
    println!(
        "cell {}: {}{}",
        meta_text(status.meta.as_ref()),
        status_name(status.status),
        ip_suffix(&status.ip)
    );
    print_containers(&status.container_statuses, "  ");
}

fn print_cells(cells: &[RunningCell]) {
    if cells.is_empty() {
        println!("no cells running");
    }
    for cell in cells {
        println!("{}{}", meta_text(cell.meta.as_ref()), ip_suffix(&cell.ip));
        print_containers(&cell.containers, "  ");
    }
}

fn print_containers(containers: &[ContainerStatus], indent: &str) {
    for c in containers {
        let name = c.meta.as_ref().map(|m| m.name.as_str()).unwrap_or_default();
        let pid = c
            .proc
            .map(|p| p.pid.to_string())
            .unwrap_or_else(|| "-".into());
        println!("{indent}{name}  pid {pid}  {}", status_name(c.status));
    }
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
}

//! `aer pod run`: RunPod, one cell with one container per image run in a
//! fresh nested instance that is freed afterwards; the failing container's
//! exit code is ours, as for `aer cell run`.
use std::process::ExitCode;

use anyhow::{Context, Result};
use aurae_proto::runtime::{Cell, Pod, PodStatus};
use clap::Subcommand;
use serde_json::{json, Value};

use super::cell::{am, print_cell_status, ProcessArgs};
use super::cell_run::exit_code;
use super::instance::{instance, spawn_response};
use super::Ctx;
use crate::output::{cell_status, meta, print_json, status_name};

#[derive(Debug, Subcommand)]
pub enum PodCommand {
    /// Run a pod in a fresh instance and wait for it; the instance is freed
    Run {
        /// Pod name (also its cell's)
        name: String,
        /// Images, one container each; NAME=IMAGE names the container
        #[arg(required = true, value_name = "IMAGE")]
        images: Vec<String>,
        #[command(flatten)]
        process: ProcessArgs,
    },
}

pub async fn run(ctx: &Ctx, cmd: PodCommand) -> Result<ExitCode> {
    let client = ctx.client().await?;
    let PodCommand::Run {
        name,
        images,
        process,
    } = cmd;
    let pod = Pod {
        meta: Some(am(&name)),
        cells: vec![Cell {
            meta: Some(am(&name)),
            containers: process.containers(&images)?,
            network: String::new(),
            ports: Vec::new(),
            limits: None,
        }],
    };
    if !ctx.json() {
        eprintln!("aer: spawning an instance for pod {name}...");
    }
    let s = client
        .run_pod(pod)
        .await
        .with_context(|| format!("could not run pod {name}"))?;
    if ctx.json() {
        print_json(&pod_status(&s));
    } else if let Some(c) = &s.cell_status {
        print_cell_status(c);
    }
    let (code, note) = match &s.cell_status {
        Some(c) => exit_code(c),
        None => (1, Some("ran no cell".to_string())),
    };
    if let Some(note) = note {
        eprintln!("aer: pod {name} {note}");
    }
    Ok(ExitCode::from(code))
}

fn pod_status(s: &PodStatus) -> Value {
    json!({
        "meta": meta(s.meta.as_ref()),
        "status": status_name(s.status),
        "spawn_response": s.spawn_response.as_ref().map(spawn_response),
        "instance": s.instance.as_ref().map(instance),
        "cell_status": s.cell_status.as_ref().map(cell_status),
    })
}

//! `aer image pull IMAGE` (a progress bar per layer on a terminal, none when
//! piped), `aer image ls`, `aer image rm IMAGE...` and `aer image prune [--all]`.
use std::collections::HashMap;
use std::io::IsTerminal;
use std::process::ExitCode;

use anyhow::{Context, Result};
use aurae_proto::images::pull_event::Event;
use aurae_proto::images::{PruneImagesResponse, Pulled};
use clap::Subcommand;
use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use serde_json::json;
use tokio_stream::StreamExt;

use super::Ctx;
use crate::output::{human_bytes, print_json};

#[derive(Debug, Subcommand)]
pub enum ImageCommand {
    /// Resolve IMAGE at its registry and store what is missing, e.g. 127.0.0.1:5000/aurae/busybox:latest
    Pull { image: String },
    /// List the images the node's store keeps
    #[command(alias = "list")]
    Ls,
    /// Forget images and free the blobs and layers nothing else uses
    #[command(alias = "remove")]
    Rm {
        #[arg(required = true)]
        images: Vec<String>,
    },
    /// Free every blob and layer no kept image and no running container uses
    Prune {
        /// Also forget every image no running container uses
        #[arg(long, short)]
        all: bool,
    },
}

pub async fn run(ctx: &Ctx, cmd: ImageCommand) -> Result<ExitCode> {
    match cmd {
        ImageCommand::Pull { image } => pull(ctx, image).await,
        ImageCommand::Ls => list(ctx).await,
        ImageCommand::Rm { images } => remove(ctx, images).await,
        ImageCommand::Prune { all } => prune(ctx, all).await,
    }
}

async fn list(ctx: &Ctx) -> Result<ExitCode> {
    let images = ctx
        .client()
        .await?
        .list_images()
        .await
        .context("could not list images")?;
    if ctx.json() {
        let list: Vec<_> = images
            .iter()
            .map(|i| {
                json!({
                    "reference": i.reference,
                    "manifest_digest": i.manifest_digest,
                    "layers": i.layers,
                    "size": i.size,
                    "pulled_at": i.pulled_at,
                    "containers": i.containers,
                })
            })
            .collect();
        print_json(&json!(list));
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "{:<50} {:<12} {:>6} {:>10} {:>10}",
        "REFERENCE", "DIGEST", "LAYERS", "SIZE", "CONTAINERS"
    );
    for i in &images {
        println!(
            "{:<50} {:<12} {:>6} {:>10} {:>10}",
            i.reference,
            short(&i.manifest_digest),
            i.layers.len(),
            human_bytes(i.size),
            i.containers.len()
        );
    }
    Ok(ExitCode::SUCCESS)
}

async fn remove(ctx: &Ctx, images: Vec<String>) -> Result<ExitCode> {
    let client = ctx.client().await?;
    let mut reports = Vec::new();
    let mut failed = false;
    for image in images {
        match client.remove_image(image.clone()).await {
            Ok(r) => reports.push(r),
            Err(e) => {
                // Like `docker rmi`: every image is tried, failures are named.
                let err = anyhow::Error::from(e).context(format!("could not remove {image}"));
                eprintln!("aer: {}", crate::errors::render(&err));
                failed = true;
            }
        }
    }
    for r in &reports {
        print_prune(ctx, r);
    }
    Ok(if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

async fn prune(ctx: &Ctx, all: bool) -> Result<ExitCode> {
    let r = ctx
        .client()
        .await?
        .prune_images(all)
        .await
        .context("could not prune the image store")?;
    print_prune(ctx, &r);
    Ok(ExitCode::SUCCESS)
}

fn print_prune(ctx: &Ctx, r: &PruneImagesResponse) {
    if ctx.json() {
        print_json(&json!({
            "images_removed": r.images_removed,
            "blobs_removed": r.blobs_removed,
            "layers_removed": r.layers_removed,
            "bytes_freed": r.bytes_freed,
        }));
        return;
    }
    for image in &r.images_removed {
        println!("removed {image}");
    }
    println!(
        "freed {} ({} blobs, {} layers)",
        human_bytes(r.bytes_freed),
        r.blobs_removed,
        r.layers_removed
    );
}

async fn pull(ctx: &Ctx, image: String) -> Result<ExitCode> {
    let client = ctx.client().await?;
    let mut events = client
        .pull_image(image.clone())
        .await
        .with_context(|| format!("could not pull {image}"))?;
    let mut bars = Bars::new(!ctx.json() && std::io::stderr().is_terminal());
    let mut pulled: Option<Pulled> = None;
    while let Some(event) = events.next().await {
        match event
            .with_context(|| format!("could not pull {image}"))?
            .event
        {
            Some(Event::Layer(l)) => bars.update(&l.digest, l.total, l.done),
            Some(Event::Pulled(p)) => pulled = Some(p),
            None => {}
        }
    }
    bars.finish();
    let p = pulled.with_context(|| format!("the pull of {image} ended without a result"))?;
    if ctx.json() {
        print_json(
            &json!({ "reference": p.reference, "manifest_digest": p.manifest_digest, "layers": p.layers }),
        );
    } else {
        println!(
            "{} {} ({})",
            p.reference,
            p.manifest_digest,
            count(u64::from(p.layers), "layer")
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// `1 layer`, `3 layers`.
fn count(n: u64, noun: &str) -> String {
    if n == 1 {
        format!("1 {noun}")
    } else {
        format!("{n} {noun}s")
    }
}

/// One bar per layer digest, drawn on stderr only when it is a terminal.
struct Bars {
    multi: Option<MultiProgress>,
    bars: HashMap<String, ProgressBar>,
}

impl Bars {
    fn new(enabled: bool) -> Self {
        Self {
            multi: enabled.then(MultiProgress::new),
            bars: HashMap::new(),
        }
    }

    fn update(&mut self, digest: &str, total: u64, done: u64) {
        let Some(multi) = &self.multi else { return };
        let bar = self.bars.entry(digest.to_string()).or_insert_with(|| {
            let bar = multi.add(ProgressBar::new(total));
            let style = ProgressStyle::with_template("{prefix} [{bar:30}] {bytes}/{total_bytes}")
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> ");
            bar.set_style(style);
            bar.set_prefix(short(digest).to_string());
            bar
        });
        bar.set_length(total);
        bar.set_position(done);
    }

    fn finish(&mut self) {
        for bar in self.bars.values() {
            bar.finish();
        }
    }
}

/// `sha256:0123456789ab...` -> `0123456789ab`, as docker shows layers.
fn short(digest: &str) -> &str {
    let hex = digest.split_once(':').map_or(digest, |(_, h)| h);
    &hex[..hex.len().min(12)]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_are_pluralised() {
        assert_eq!(count(1, "layer"), "1 layer");
        assert_eq!(count(0, "layer"), "0 layers");
        assert_eq!(count(3, "layer"), "3 layers");
    }

    #[test]
    fn digests_are_shortened_like_docker() {
        assert_eq!(short("sha256:0123456789abcdef0123"), "0123456789ab");
        assert_eq!(short("abc"), "abc");
    }

    #[test]
    fn sizes_are_shown_in_binary_units() {
        assert_eq!(human_bytes(0), "0 B");
        assert_eq!(human_bytes(1536), "1.5 KiB");
        assert_eq!(human_bytes(3 << 20), "3.0 MiB");
    }

    #[test]
    fn bars_are_off_when_not_a_terminal() {
        let mut b = Bars::new(false);
        b.update("sha256:00", 10, 5);
        assert!(b.bars.is_empty());
    }
}

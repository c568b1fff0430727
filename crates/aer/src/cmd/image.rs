//! `aer image pull IMAGE`: a progress bar per layer on a terminal, none when piped.
use std::collections::HashMap;
use std::io::IsTerminal;
use std::process::ExitCode;

use anyhow::{Context, Result};
use aurae_proto::images::pull_event::Event;
use aurae_proto::images::Pulled;
use clap::Subcommand;
use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use serde_json::json;
use tokio_stream::StreamExt;

use super::Ctx;
use crate::output::print_json;

#[derive(Debug, Subcommand)]
pub enum ImageCommand {
    /// Resolve IMAGE at its registry and store what is missing, e.g. 127.0.0.1:5000/aurae/busybox:latest
    Pull { image: String },
}

pub async fn run(ctx: &Ctx, cmd: ImageCommand) -> Result<ExitCode> {
    let ImageCommand::Pull { image } = cmd;
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
    fn bars_are_off_when_not_a_terminal() {
        let mut b = Bars::new(false);
        b.update("sha256:00", 10, 5);
        assert!(b.bars.is_empty());
    }
}

//! `aer status`
use std::process::ExitCode;

use anyhow::{Context, Result};
use serde_json::json;

use super::Ctx;
use crate::output::{meta, meta_text, print_json};

pub async fn run(ctx: &Ctx) -> Result<ExitCode> {
    let response = ctx
        .client()
        .await?
        .status()
        .await
        .context("could not get the daemon's status")?;
    if ctx.json() {
        print_json(&json!({ "meta": meta(response.meta.as_ref()) }));
    } else {
        let text = meta_text(response.meta.as_ref());
        println!("{}", if text.is_empty() { "ok" } else { &text });
    }
    Ok(ExitCode::SUCCESS)
}

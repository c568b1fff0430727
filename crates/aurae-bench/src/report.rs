//! Rows of figures, each with its baseline when it has one.

use std::time::Duration;

pub struct Row {
    pub what: String,
    pub value: String,
    pub baseline: Option<String>,
    pub ratio: Option<f64>,
}

impl Row {
    pub fn rss(what: &str, (rss, anon): (u64, u64)) -> Self {
        let mib = |k: u64| k as f64 / 1024.0;
        Row {
            what: what.into(),
            value: format!("{:.1} MiB ({:.1} MiB anonymous)", mib(rss), mib(anon)),
            baseline: None,
            ratio: None,
        }
    }

    pub fn latency(what: &str, ours: Duration, base: Duration) -> Self {
        Row {
            what: what.into(),
            value: format!("{:.0} us", ours.as_secs_f64() * 1e6),
            baseline: Some(format!("{:.0} us", base.as_secs_f64() * 1e6)),
            ratio: Some(ours.as_secs_f64() / base.as_secs_f64()),
        }
    }

    /// Rates: the ratio is baseline over ours, so that > 1 means slower, as for latencies.
    pub fn rate(what: &str, unit: &str, ours: f64, base: f64) -> Self {
        Row {
            what: what.into(),
            value: format!("{ours:.0} {unit}"),
            baseline: Some(format!("{base:.0} {unit}")),
            ratio: Some(base / ours),
        }
    }
}

pub fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx.min(sorted.len() - 1)]
}

pub fn print(rows: &[Row]) {
    println!("| figure | auraed | baseline | ratio (auraed/baseline time) |");
    println!("| --- | --- | --- | --- |");
    for r in rows {
        println!(
            "| {} | {} | {} | {} |",
            r.what,
            r.value,
            r.baseline.as_deref().unwrap_or("-"),
            r.ratio
                .map(|x| format!("{x:.2}"))
                .unwrap_or_else(|| "-".into())
        );
    }
}

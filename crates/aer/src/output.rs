//! `-o text|json`, and the JSON of each response, built field by field from
//! the protobuf messages (enums as their proto names, e.g. "STATUS_COMPLETE").

use aurae_proto::cells::RunningCell;
use aurae_proto::meta::{AuraeMeta, ProcessMeta, Status};
use aurae_proto::observe::LogItem;
use aurae_proto::runtime::{
    CellStatus, ContainerStatus, Executable, ExecutableStatus, Limits, VirtualMachineStatus,
};
use aurae_proto::vms::VmInfo;
use serde_json::{json, Value};

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum OutputFormat {
    Text,
    Json,
}

/// Prints one JSON document on stdout.
pub fn print_json(value: &Value) {
    println!("{value:#}");
}

/// `1536` -> `1.5 KiB`.
pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut unit = 0;
    while v >= 1024.0 && unit < UNITS.len() - 1 {
        v /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[unit])
    }
}

/// The proto name of a `meta.Status`; a number this build does not know
/// (from a newer daemon) is shown as such rather than hidden.
pub fn status_name(status: i32) -> String {
    match Status::try_from(status) {
        Ok(s) => s.as_str_name().to_string(),
        Err(_) => format!("UNRECOGNIZED({status})"),
    }
}

pub fn meta(meta: Option<&AuraeMeta>) -> Value {
    let m = meta.cloned().unwrap_or_default();
    json!({ "name": m.name, "message": m.message })
}

pub fn proc(proc: Option<&ProcessMeta>) -> Value {
    match proc {
        Some(p) => json!({ "pid": p.pid }),
        None => Value::Null,
    }
}

pub fn executable_status(s: &ExecutableStatus) -> Value {
    json!({
        "meta": meta(s.meta.as_ref()),
        "proc": proc(s.proc.as_ref()),
        "status": status_name(s.status),
        "stdout": s.stdout,
        "stderr": s.stderr,
        "exit_code": s.exit_code,
    })
}

/// Limits as JSON (null when none are set).
fn limits(l: Option<&Limits>) -> Value {
    l.map_or(
        Value::Null,
        |l| json!({ "pids": l.pids, "memory_bytes": l.memory_bytes, "cpu_millis": l.cpu_millis }),
    )
}

pub fn executable(e: &Executable) -> Value {
    let limits = limits(e.limits.as_ref());
    json!({
        "meta": meta(e.meta.as_ref()),
        "command": e.command,
        "comment": e.comment,
        "user": e.user,
        "group": e.group,
        "limits": limits,
    })
}

pub fn container_status(c: &ContainerStatus) -> Value {
    json!({
        "meta": meta(c.meta.as_ref()),
        "proc": proc(c.proc.as_ref()),
        "status": status_name(c.status),
        "exit_code": c.exit_code,
        "limits": limits(c.limits.as_ref()),
        "oom_killed": c.oom_killed,
    })
}

pub fn cell_status(c: &CellStatus) -> Value {
    json!({
        "meta": meta(c.meta.as_ref()),
        "status": status_name(c.status),
        "container_statuses": c.container_statuses.iter().map(container_status).collect::<Vec<_>>(),
        "ip": c.ip,
    })
}

pub fn running_cell(c: &RunningCell) -> Value {
    json!({
        "meta": meta(c.meta.as_ref()),
        "containers": c.containers.iter().map(container_status).collect::<Vec<_>>(),
        "ip": c.ip,
        "status": status_name(c.status),
        "detached": c.detached,
        "limits": limits(c.limits.as_ref()),
    })
}

pub fn vm_status(v: &VirtualMachineStatus) -> Value {
    json!({ "meta": meta(v.meta.as_ref()), "status": status_name(v.status), "proc": proc(v.proc.as_ref()) })
}

pub fn vm_info(v: &VmInfo) -> Value {
    json!({
        "meta": meta(v.meta.as_ref()),
        "image": v.image,
        "digest": v.digest,
        "status": status_name(v.status),
        "proc": proc(v.proc.as_ref()),
        "progress": v.progress.as_ref().map(|p| json!({
            "phase": p.phase,
            "bytes_done": p.bytes_done,
            "bytes_total": p.bytes_total,
        })),
    })
}

pub fn log_item(item: &LogItem) -> Value {
    json!({ "channel": item.channel, "line": item.line, "timestamp": item.timestamp })
}

/// `name: message`, or whichever of the two is set.
pub fn meta_text(meta: Option<&AuraeMeta>) -> String {
    let m = meta.cloned().unwrap_or_default();
    match (m.name.is_empty(), m.message.is_empty()) {
        (false, false) => format!("{}: {}", m.name, m.message),
        (false, true) => m.name,
        (true, _) => m.message,
    }
}

/// A command's captured output, as the command would have written it.
pub fn print_captured(stdout: &str, stderr: &str) -> anyhow::Result<()> {
    use anyhow::Context;
    use std::io::Write;
    print!("{stdout}");
    eprint!("{stderr}");
    std::io::stdout()
        .flush()
        .context("could not write to stdout")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn am(name: &str, message: &str) -> Option<AuraeMeta> {
        Some(AuraeMeta {
            name: name.into(),
            message: message.into(),
        })
    }

    #[test]
    fn executable_status_json_mirrors_the_message() {
        let s = ExecutableStatus {
            meta: am("hello", "exited with code 0"),
            proc: Some(ProcessMeta { pid: 42 }),
            status: Status::Complete as i32,
            stdout: "hi\n".into(),
            stderr: String::new(),
            exit_code: "0".into(),
        };
        assert_eq!(
            executable_status(&s),
            json!({
                "meta": {"name": "hello", "message": "exited with code 0"},
                "proc": {"pid": 42},
                "status": "STATUS_COMPLETE",
                "stdout": "hi\n",
                "stderr": "",
                "exit_code": "0",
            })
        );
    }

    #[test]
    fn missing_parts_render_as_empty_or_null() {
        let v = executable_status(&ExecutableStatus {
            status: Status::Error as i32,
            ..Default::default()
        });
        assert_eq!(v["meta"], json!({"name": "", "message": ""}));
        assert_eq!(v["proc"], Value::Null);
        assert_eq!(v["status"], "STATUS_ERROR");
    }

    #[test]
    fn status_names() {
        assert_eq!(status_name(0), "STATUS_UNKNOWN");
        assert_eq!(status_name(6), "STATUS_COMPLETE");
        assert_eq!(status_name(2), "UNRECOGNIZED(2)");
    }

    #[test]
    fn cells_and_logs() {
        let c = CellStatus {
            ip: String::new(),
            meta: am("web", ""),
            status: Status::Complete as i32,
            container_statuses: vec![ContainerStatus {
                meta: am("nginx", ""),
                proc: Some(ProcessMeta { pid: 7 }),
                status: Status::Active as i32,
                exit_code: None,
                limits: None,
                oom_killed: true,
            }],
        };
        let v = cell_status(&c);
        assert_eq!(v["container_statuses"][0]["proc"]["pid"], 7);
        assert_eq!(v["container_statuses"][0]["status"], "STATUS_ACTIVE");
        let r = running_cell(&RunningCell {
            ip: String::new(),
            meta: am("web", ""),
            containers: c.container_statuses.clone(),
            status: Status::Passive as i32,
            detached: true,
            limits: Some(Limits {
                pids: 4096,
                ..Default::default()
            }),
        });
        assert_eq!(r["containers"][0]["meta"]["name"], "nginx");
        assert_eq!(
            (r["status"].as_str(), r["detached"].as_bool()),
            (Some("STATUS_PASSIVE"), Some(true))
        );
        assert_eq!(r["containers"][0]["oom_killed"], true);
        assert_eq!(r["limits"]["pids"], 4096);
        let l = log_item(&LogItem {
            channel: "stdout".into(),
            line: "x".into(),
            timestamp: 5,
        });
        assert_eq!(l, json!({"channel": "stdout", "line": "x", "timestamp": 5}));
        let e = executable(&Executable {
            meta: am("job", ""),
            command: "sleep 1".into(),
            comment: "c".into(),
            ..Default::default()
        });
        assert_eq!(
            e,
            json!({"meta": {"name": "job", "message": ""}, "command": "sleep 1", "comment": "c", "user": "", "group": "", "limits": null})
        );
    }

    #[test]
    fn meta_text_uses_what_is_set() {
        assert_eq!(meta_text(am("a", "b").as_ref()), "a: b");
        assert_eq!(meta_text(am("a", "").as_ref()), "a");
        assert_eq!(meta_text(am("", "b").as_ref()), "b");
        assert_eq!(meta_text(None), "");
    }
}

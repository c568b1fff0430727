//! Every workload cgroup is contained by default (a fork loop stops at
//! `--default-pids-max` while the daemon keeps serving), per-request limits
//! land in the cgroup files, and workloads run as the user asked for.

mod common;
mod schedule_support;

use std::time::Duration;

use aurae_proto::meta::{AuraeMeta, Status};
use aurae_proto::runtime::{Executable, ExecutableStatus, Limits};
use common::{exec_cgroups, exec_pids, require_root, TestDaemon};
use schedule_support::{exe as unit, named, parse};
use tonic::Code;

fn exe(command: &str) -> Executable {
    Executable {
        meta: Some(AuraeMeta {
            name: "contained".into(),
            message: String::new(),
        }),
        command: command.into(),
        ..Default::default()
    }
}

async fn run(d: &TestDaemon, e: Executable) -> ExecutableStatus {
    let r = d
        .client()
        .await
        .run_executable(e)
        .await
        .expect("RunExecutable");
    assert_eq!(r.status, Status::Complete as i32, "{r:?}");
    r
}

/// A shell line printing `<controller file>` of the cgroup it runs in, on v1
/// (`/sys/fs/cgroup/<controller>/<path>`) and v2 (`/sys/fs/cgroup/<path>`).
fn print_cgroup_files(controller: &str, files: &[&str]) -> String {
    let cats: Vec<String> = files.iter().map(|f| format!("cat $d/{f}")).collect();
    format!(
        "sh -c 'if [ -e /sys/fs/cgroup/cgroup.controllers ]; then \
         d=/sys/fs/cgroup$(grep ^0:: /proc/self/cgroup | cut -d: -f3); \
         else d=/sys/fs/cgroup/{controller}$(grep -E \":([a-z_]+,)*{controller}(,[a-z_]+)*:\" /proc/self/cgroup | cut -d: -f3); fi; \
         {}'",
        cats.join("; ")
    )
}

fn v2_host() -> bool {
    std::path::Path::new("/sys/fs/cgroup/cgroup.controllers").exists()
}

#[tokio::test]
async fn containment_must_apply_default_and_requested_limits_and_users() {
    if !require_root("containment_must_apply_default_and_requested_limits_and_users") {
        return;
    }
    let d = TestDaemon::start().await;

    // The defaults, exactly as a daemon started without flags sets them.
    let r = run(&d, exe(&print_cgroup_files("pids", &["pids.max"]))).await;
    assert_eq!(r.stdout, "4096\n", "default pids.max: {r:?}");
    let mem_file = if v2_host() {
        "memory.max"
    } else {
        "memory.limit_in_bytes"
    };
    let r = run(&d, exe(&print_cgroup_files("memory", &[mem_file]))).await;
    let unlimited =
        r.stdout.trim() == "max" || r.stdout.trim().parse::<u64>().unwrap_or(0) > 1 << 50;
    assert!(unlimited, "no default memory limit: {r:?}");
    let r = run(&d, exe("id -u")).await;
    assert_eq!(r.stdout, "0\n", "root by default, as systemd services");

    // Per-request limits, in the files the kernel enforces.
    let mut limited = exe(&format!(
        "sh -c '{}; {}; {}'",
        inner(&print_cgroup_files("pids", &["pids.max"])),
        inner(&print_cgroup_files("memory", &[mem_file])),
        inner(&if v2_host() {
            print_cgroup_files("cpu", &["cpu.max"])
        } else {
            print_cgroup_files("cpu", &["cpu.cfs_quota_us", "cpu.cfs_period_us"])
        }),
    ));
    limited.limits = Some(Limits {
        cpu_millis: 250,
        memory_bytes: 64 << 20,
        pids: 33,
    });
    let r = run(&d, limited).await;
    let want = if v2_host() {
        "33\n67108864\n25000 100000\n"
    } else {
        "33\n67108864\n25000\n100000\n"
    };
    assert_eq!(r.stdout, want, "{r:?}");

    // Another user: its uid, its group, its environment.
    let mut as_nobody = exe("sh -c 'id -u; id -g; echo $USER $HOME'");
    as_nobody.user = "nobody".into();
    let r = run(&d, as_nobody).await;
    let nobody = nix::unistd::User::from_name("nobody")
        .expect("passwd")
        .expect("nobody exists");
    assert_eq!(
        r.stdout,
        format!(
            "{}\n{}\nnobody {}\n",
            nobody.uid,
            nobody.gid,
            nobody.dir.display()
        ),
        "{r:?}"
    );
    let mut numeric = exe("sh -c 'id -u; id -g; id -G'");
    numeric.user = "4242".into();
    numeric.group = "4343".into();
    assert_eq!(run(&d, numeric).await.stdout, "4242\n4343\n4343\n");

    // Bad requests are refused before anything starts.
    let client = d.client().await;
    let mut bad_user = exe("true");
    bad_user.user = "no-such-user-aurae".into();
    let mut bad_group = exe("true");
    bad_group.group = "no-such-group-aurae".into();
    let mut bad_limit = exe("true");
    bad_limit.limits = Some(Limits {
        memory_bytes: 100,
        ..Default::default()
    });
    for (e, needle) in [
        (bad_user, "no-such-user-aurae"),
        (bad_group, "no-such-group-aurae"),
        (bad_limit, "limits.memory_bytes"),
    ] {
        let err = client.run_executable(e).await.expect_err("refused");
        let err = err.status().expect("a status").clone();
        assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
        assert!(err.message().contains(needle), "{err:?}");
    }
    // The runs above remove their cgroups just after replying.
    assert!(
        common::eventually(10, || exec_cgroups(&d).is_empty()).await,
        "{:?}",
        exec_cgroups(&d)
    );

    // Enable refuses them too, before anything is registered or started.
    let mut bad_unit = unit("ghost", "sleep 8200002");
    bad_unit.user = "no-such-user-aurae".into();
    let err = client.enable(bad_unit).await.expect_err("refused");
    let err = err.status().expect("a status").clone();
    assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
    assert!(schedule_support::enabled(&d).await.is_empty());

    // Scheduled executables: the same fields, persisted and shown.
    let mut web = unit("web", "sleep 8200001");
    web.user = "nobody".into();
    web.limits = Some(Limits {
        pids: 12,
        ..Default::default()
    });
    let line = parse(
        &client
            .enable(web.clone())
            .await
            .expect("Enable")
            .meta
            .expect("meta")
            .message,
    );
    assert_eq!(line.status, "STATUS_ACTIVE", "{line:?}");
    let status = std::fs::read_to_string(format!("/proc/{}/status", line.pid)).expect("status");
    let uid_line = status.lines().find(|l| l.starts_with("Uid:")).expect("Uid");
    assert!(
        uid_line
            .split_whitespace()
            .skip(1)
            .all(|u| u == nobody.uid.to_string()),
        "{uid_line}"
    );
    let pids_max = schedule_support::cgroup_dirs(&d, "web")
        .iter()
        .map(|dir| dir.join("pids.max"))
        .find(|f| f.exists())
        .map(|f| std::fs::read_to_string(f).expect("read"));
    assert_eq!(pids_max.as_deref(), Some("12\n"));
    let listed = client.show_enabled().await.expect("list").executables;
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].user, "nobody");
    assert_eq!(listed[0].limits.as_ref().map(|l| l.pids), Some(12));
    // The same name with other settings is not silently changed.
    let mut other = web.clone();
    other.user = "root".into();
    let err = client.enable(other).await.expect_err("differs");
    let err = err.status().expect("a status").clone();
    assert_eq!(err.code(), Code::AlreadyExists, "{err:?}");
    assert!(err.message().contains("destroy it first"), "{err:?}");
    client.destroy(named("web")).await.expect("Destroy");
}

/// The inner command of a `sh -c '...'` line.
fn inner(line: &str) -> String {
    line.trim_start_matches("sh -c '")
        .trim_end_matches('\'')
        .to_string()
}

#[tokio::test]
async fn containment_must_stop_a_fork_loop_at_the_default_pids_max() {
    if !require_root("containment_must_stop_a_fork_loop_at_the_default_pids_max") {
        return;
    }
    let d = TestDaemon::builder()
        .arg("--default-pids-max")
        .arg("50")
        .arg("--default-user")
        .arg("nobody")
        .start()
        .await;
    // Forks until the kernel refuses, reports how many it got, and keeps
    // the children alive a while so the daemon is probed meanwhile.
    let fork_loop =
        "perl -e '$|=1; my $n=0; for (1..2000) { my $p=fork(); last unless defined $p; \
                     if ($p==0) { sleep 30; exit 0 } $n++ } print \"$n\\n\"; sleep 2'";
    let client = d.client().await;
    let mut core = client.core();
    let bomb = tokio::spawn(async move { core.run_executable(exe(fork_loop)).await });
    assert!(
        common::eventually(20, || exec_pids(&d).len() >= 50).await,
        "the loop filled its cgroup: {:?}",
        exec_pids(&d).len()
    );
    assert_eq!(exec_pids(&d).len(), 50, "capped at pids.max");
    // The daemon answers and starts other workloads meanwhile.
    let status = tokio::time::timeout(Duration::from_secs(10), client.status())
        .await
        .expect("Status answers during the fork loop")
        .expect("Status");
    drop(status);
    let r = tokio::time::timeout(Duration::from_secs(10), client.run_executable(exe("id -u")))
        .await
        .expect("RunExecutable answers during the fork loop")
        .expect("RunExecutable");
    let nobody = nix::unistd::User::from_name("nobody")
        .expect("passwd")
        .expect("nobody exists");
    assert_eq!(r.stdout, format!("{}\n", nobody.uid), "--default-user");
    let mut as_root = exe("id -u");
    as_root.user = "root".into();
    assert_eq!(
        client.run_executable(as_root).await.expect("run").stdout,
        "0\n",
        "a request's user wins over the default"
    );

    let r = bomb
        .await
        .expect("task")
        .expect("RunExecutable")
        .into_inner();
    assert_eq!(r.stdout, "49\n", "the loop itself is one of the 50: {r:?}");
    assert_eq!(r.exit_code, "0");
    assert!(
        common::eventually(10, || exec_pids(&d).is_empty()
            && exec_cgroups(&d).is_empty())
        .await,
        "the forked children went with the loop: {:?} {:?}",
        exec_pids(&d),
        exec_cgroups(&d)
    );
}

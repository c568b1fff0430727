//! A network configuration list run as the specification's procedure:
//! ADD runs the plugins in order, each given the previous one's result as
//! `prevResult`; DEL runs them in reverse with the ADD's result; CHECK in
//! order with it. Each plugin gets the list's `name` and `cniVersion`, and
//! in `runtimeConfig` the runtime values of the capabilities it declares
//! (`portMappings` for portmap), as libcni builds them.

use std::path::PathBuf;

use serde_json::{Map, Value};

use super::config::{declares, NetworkConfigList};
use super::error::CniError;
use super::exec::{environment, CniCommand, PluginExec, RuntimeArgs};
use super::result::{CniResult, PluginError};

/// Runtime values by capability name (`portMappings` -> a list).
pub type Capabilities = Map<String, Value>;

/// One plugin's stdin for one call.
pub fn plugin_config(
    list: &NetworkConfigList,
    plugin: &Map<String, Value>,
    prev_result: Option<&Value>,
    caps: &Capabilities,
) -> Value {
    let mut conf = plugin.clone();
    conf.insert("name".into(), Value::String(list.name.clone()));
    conf.insert("cniVersion".into(), Value::String(list.cni_version.clone()));
    match prev_result {
        Some(prev) => conf.insert("prevResult".into(), prev.clone()),
        None => conf.remove("prevResult"),
    };
    let runtime: Map<String, Value> = caps
        .iter()
        .filter(|(cap, _)| declares(plugin, cap))
        .map(|(cap, v)| (cap.clone(), v.clone()))
        .collect();
    if !runtime.is_empty() {
        conf.insert("runtimeConfig".into(), Value::Object(runtime));
    }
    Value::Object(conf)
}

/// The plugins of one network, run through one [`PluginExec`].
pub struct Chain<'a> {
    pub exec: &'a dyn PluginExec,
    pub bin_dirs: &'a [PathBuf],
}

impl Chain<'_> {
    /// ADD: the final result, typed, and as the plugin wrote it (kept for DEL).
    pub fn add(
        &self,
        list: &NetworkConfigList,
        rt: &RuntimeArgs,
        caps: &Capabilities,
    ) -> Result<(CniResult, Value), CniError> {
        let mut prev: Option<Value> = None;
        let mut last = "";
        for plugin in &list.plugins {
            last = NetworkConfigList::plugin_type(plugin);
            let out = self.call(CniCommand::Add, list, plugin, prev.as_ref(), rt, caps)?;
            let value: Value = serde_json::from_slice(&out)
                .map_err(|e| bad_result(CniCommand::Add, list, plugin, format!("not JSON: {e}")))?;
            prev = Some(value);
        }
        let Some(raw) = prev else {
            return Err(CniError::BadConfig {
                path: list.source.clone(),
                reason: "plugins is empty".into(),
            });
        };
        let typed = serde_json::from_value(raw.clone()).map_err(|e| CniError::BadResult {
            command: "ADD",
            network: list.name.clone(),
            plugin: last.to_string(),
            reason: e.to_string(),
        })?;
        Ok((typed, raw))
    }

    /// DEL: every plugin in reverse order, even after one failed (so that
    /// as much as possible is released); the first failure is returned. A
    /// plugin that is not installed is passed over: it set nothing up (ADD
    /// stopped there), or it cannot remove anything anyway, and the DEL
    /// would otherwise be retried forever.
    pub fn del(
        &self,
        list: &NetworkConfigList,
        rt: &RuntimeArgs,
        caps: &Capabilities,
        prev_result: Option<&Value>,
    ) -> Result<(), CniError> {
        let mut first = None;
        for plugin in list.plugins.iter().rev() {
            match self.call(CniCommand::Del, list, plugin, prev_result, rt, caps) {
                Ok(_) => {}
                Err(e @ CniError::PluginNotFound { .. }) => {
                    tracing::warn!(network = %list.name, container_id = %rt.container_id, error = %e, "CNI DEL: passing over a plugin that is not installed");
                }
                Err(e) => {
                    tracing::warn!(network = %list.name, container_id = %rt.container_id, error = %crate::error_chain::chain(&e), "CNI DEL failed");
                    first.get_or_insert(e);
                }
            }
        }
        first.map_or(Ok(()), Err)
    }

    /// CHECK: in order, with the ADD's result. Networks that disable it,
    /// and versions before 0.4.0 (which have no CHECK), pass.
    pub fn check(
        &self,
        list: &NetworkConfigList,
        rt: &RuntimeArgs,
        caps: &Capabilities,
        prev_result: &Value,
    ) -> Result<(), CniError> {
        if list.disable_check || list.cni_version.starts_with("0.3.") {
            return Ok(());
        }
        for plugin in &list.plugins {
            self.call(CniCommand::Check, list, plugin, Some(prev_result), rt, caps)?;
        }
        Ok(())
    }

    fn call(
        &self,
        command: CniCommand,
        list: &NetworkConfigList,
        plugin: &Map<String, Value>,
        prev_result: Option<&Value>,
        rt: &RuntimeArgs,
        caps: &Capabilities,
    ) -> Result<Vec<u8>, CniError> {
        let kind = NetworkConfigList::plugin_type(plugin);
        let path = self.exec.find(kind, self.bin_dirs)?;
        let stdin = plugin_config(list, plugin, prev_result, caps).to_string();
        let env = environment(command, rt, self.bin_dirs);
        let out = self.exec.run(&path, &env, stdin.as_bytes())?;
        match out.failure {
            None => Ok(out.stdout),
            Some(status) => Err(CniError::Plugin {
                command: command.as_str(),
                network: list.name.clone(),
                plugin: kind.to_string(),
                error: Box::new(PluginError::from_failure(&out.stdout, &out.stderr, &status)),
            }),
        }
    }
}

fn bad_result(
    command: CniCommand,
    list: &NetworkConfigList,
    plugin: &Map<String, Value>,
    reason: String,
) -> CniError {
    CniError::BadResult {
        command: command.as_str(),
        network: list.name.clone(),
        plugin: NetworkConfigList::plugin_type(plugin).to_string(),
        reason,
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::cni::exec::PluginOutput;
    use std::path::Path;
    use std::sync::Mutex;

    fn ip(s: &str) -> std::net::IpAddr {
        s.parse().expect("an IP address")
    }

    /// A plugin runner that records every call and answers from a script:
    /// `bridge` returns a result, `portmap` passes its prevResult on, a
    /// plugin named in `fail` fails with code 11.
    /// A recorded call: the plugin, its environment, its stdin.
    type Call = (String, Vec<(String, String)>, Value);

    #[derive(Default)]
    pub struct FakeExec {
        pub calls: Mutex<Vec<Call>>,
        pub fail: Vec<(&'static str, &'static str)>,
    }

    impl FakeExec {
        pub fn calls(&self) -> Vec<(String, String, Value)> {
            self.calls
                .lock()
                .expect("lock")
                .iter()
                .map(|(p, env, conf)| {
                    let cmd = env
                        .iter()
                        .find(|(k, _)| k == "CNI_COMMAND")
                        .map(|(_, v)| v.clone())
                        .unwrap_or_default();
                    (p.clone(), cmd, conf.clone())
                })
                .collect()
        }
    }

    impl PluginExec for FakeExec {
        fn find(&self, kind: &str, bin_dirs: &[PathBuf]) -> Result<PathBuf, CniError> {
            if kind == "missing" {
                return Err(CniError::PluginNotFound {
                    plugin: kind.into(),
                    dirs: bin_dirs.to_vec(),
                });
            }
            Ok(Path::new("/fake").join(kind))
        }

        fn run(
            &self,
            plugin: &Path,
            env: &[(String, String)],
            stdin: &[u8],
        ) -> Result<PluginOutput, CniError> {
            let kind = plugin
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            let conf: Value = serde_json::from_slice(stdin).expect("stdin is JSON");
            let cmd = env
                .iter()
                .find(|(k, _)| k == "CNI_COMMAND")
                .map(|(_, v)| v.clone())
                .unwrap_or_default();
            self.calls
                .lock()
                .expect("lock")
                .push((kind.clone(), env.to_vec(), conf.clone()));
            if self.fail.contains(&(kind.as_str(), cmd.as_str())) {
                return Ok(PluginOutput {
                    failure: Some("exit status: 1".into()),
                    stdout: br#"{"cniVersion":"1.0.0","code":11,"msg":"busy"}"#.to_vec(),
                    stderr: Vec::new(),
                });
            }
            let stdout = match (kind.as_str(), cmd.as_str()) {
                ("bridge", "ADD") => serde_json::json!({
                    "cniVersion": "1.0.0",
                    "interfaces": [{"name": "eth0", "sandbox": "/ns"}],
                    "ips": [{"address": "10.9.0.2/24", "gateway": "10.9.0.1", "interface": 0}]
                })
                .to_string()
                .into_bytes(),
                ("garbage", "ADD") => b"<html>".to_vec(),
                (_, "ADD") => conf["prevResult"].to_string().into_bytes(),
                _ => Vec::new(),
            };
            Ok(PluginOutput {
                failure: None,
                stdout,
                stderr: Vec::new(),
            })
        }
    }

    pub fn list(plugins: &[&str]) -> NetworkConfigList {
        let plugins: Vec<Value> = plugins
            .iter()
            .map(|p| match *p {
                "portmap" => {
                    serde_json::json!({"type": "portmap", "capabilities": {"portMappings": true}})
                }
                other => serde_json::json!({"type": other}),
            })
            .collect();
        let text =
            serde_json::json!({"cniVersion": "1.0.0", "name": "testnet", "plugins": plugins})
                .to_string();
        NetworkConfigList::parse(Path::new("/t.conflist"), text.as_bytes()).expect("list")
    }

    pub fn rt() -> RuntimeArgs {
        RuntimeArgs {
            container_id: "c1".into(),
            netns: "/ns".into(),
            ifname: "eth0".into(),
            args: vec![],
        }
    }

    fn ports() -> Capabilities {
        let mut caps = Capabilities::new();
        caps.insert(
            "portMappings".into(),
            serde_json::json!([{"hostPort": 8080, "containerPort": 80, "protocol": "tcp"}]),
        );
        caps
    }

    #[test]
    fn add_chains_prev_result_and_gives_capabilities_to_those_that_declare_them() {
        let exec = FakeExec::default();
        let chain = Chain {
            exec: &exec,
            bin_dirs: &[],
        };
        let (result, raw) = chain
            .add(&list(&["bridge", "portmap"]), &rt(), &ports())
            .expect("add");
        assert_eq!(result.container_ip(), Some(ip("10.9.0.2")));
        assert_eq!(raw["ips"][0]["address"], "10.9.0.2/24");
        let calls = exec.calls();
        assert_eq!(calls.len(), 2);
        let (bridge, portmap) = (&calls[0].2, &calls[1].2);
        assert_eq!(calls[0].0, "bridge");
        assert_eq!(bridge["name"], "testnet");
        assert_eq!(bridge["cniVersion"], "1.0.0");
        assert!(bridge.get("prevResult").is_none(), "{bridge}");
        assert!(bridge.get("runtimeConfig").is_none(), "{bridge}");
        assert_eq!(portmap["prevResult"], raw);
        assert_eq!(
            portmap["runtimeConfig"]["portMappings"][0]["hostPort"],
            8080
        );
    }

    #[test]
    fn del_runs_in_reverse_with_the_add_result_and_goes_on_after_a_failure() {
        let exec = FakeExec {
            fail: vec![("portmap", "DEL")],
            ..Default::default()
        };
        let chain = Chain {
            exec: &exec,
            bin_dirs: &[],
        };
        let prev = serde_json::json!({"cniVersion": "1.0.0", "ips": []});
        let err = chain
            .del(&list(&["bridge", "portmap"]), &rt(), &ports(), Some(&prev))
            .expect_err("portmap failed");
        assert!(
            err.to_string()
                .contains("CNI DEL of network \"testnet\", plugin \"portmap\""),
            "{err}"
        );
        let calls = exec.calls();
        let order: Vec<&str> = calls.iter().map(|c| c.0.as_str()).collect();
        assert_eq!(
            order,
            ["portmap", "bridge"],
            "reverse order, bridge still ran"
        );
        assert!(calls
            .iter()
            .all(|c| c.1 == "DEL" && c.2["prevResult"] == prev));
    }

    #[test]
    fn check_runs_in_order_unless_disabled() {
        let exec = FakeExec::default();
        let chain = Chain {
            exec: &exec,
            bin_dirs: &[],
        };
        let prev = serde_json::json!({"cniVersion": "1.0.0"});
        let mut l = list(&["bridge", "portmap"]);
        chain.check(&l, &rt(), &ports(), &prev).expect("check");
        let order: Vec<(String, String)> = exec.calls().into_iter().map(|c| (c.0, c.1)).collect();
        assert_eq!(
            order,
            [
                ("bridge".to_string(), "CHECK".to_string()),
                ("portmap".to_string(), "CHECK".to_string())
            ]
        );
        l.disable_check = true;
        chain.check(&l, &rt(), &ports(), &prev).expect("check");
        assert_eq!(exec.calls().len(), 2, "disabled: no call");
    }

    #[test]
    fn add_failures_name_the_plugin_and_the_cni_error() {
        let exec = FakeExec {
            fail: vec![("portmap", "ADD")],
            ..Default::default()
        };
        let chain = Chain {
            exec: &exec,
            bin_dirs: &[],
        };
        let err = chain
            .add(&list(&["bridge", "portmap"]), &rt(), &ports())
            .expect_err("fails");
        assert_eq!(
            err.to_string(),
            "CNI ADD of network \"testnet\", plugin \"portmap\": try again later (code 11): busy"
        );
        let err = chain
            .add(&list(&["garbage"]), &rt(), &ports())
            .expect_err("garbage");
        assert!(matches!(err, CniError::BadResult { .. }), "{err}");
        let err = chain
            .add(&list(&["bridge", "missing"]), &rt(), &ports())
            .expect_err("missing");
        assert!(matches!(err, CniError::PluginNotFound { .. }), "{err}");
        chain
            .del(&list(&["bridge", "missing"]), &rt(), &ports(), None)
            .expect("a plugin that is not installed has nothing to delete");
    }
}

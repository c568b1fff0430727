//! Loading the kernel modules the image ships, dependencies first, as
//! modprobe does from `modules.dep` (a module's line lists what it needs,
//! the last entry to be loaded first).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use super::InitError;

/// The modules every instance needs: virtio transports (microvm's MMIO, a
/// PCI machine's PCI), its network and disks, overlay for container roots.
pub const BOOT_MODULES: &[&str] = &[
    "virtio_mmio",
    "virtio_pci",
    "virtio_net",
    "virtio_blk",
    "overlay",
];

/// The modules of the read-only image share (`aurae.preload`).
pub const PRELOAD_MODULES: &[&str] = &["9pnet_virtio", "9p"];

/// Loads one module file into the kernel.
pub trait ModuleLoader {
    /// Loads with `params` (`name=value ...`). Loading a module that is
    /// already loaded is not an error.
    fn load(&mut self, path: &Path, params: &str) -> std::io::Result<()>;
}

/// The kernel keeps `module.param=value` on its command line for built-in
/// code only; for a loadable module the loader passes them, as modprobe
/// does. QEMU's microvm describes its virtio-mmio devices this way
/// (`virtio_mmio.device=512@0xfeb00e00:12`).
pub fn params_for(cmdline: &str, module: &str) -> String {
    cmdline
        .split_ascii_whitespace()
        .filter_map(|w| w.split_once('.'))
        .filter(|(m, p)| module_name(m) == module && p.contains('='))
        .map(|(_, p)| p)
        .collect::<Vec<_>>()
        .join(" ")
}

/// `modules.dep` of one kernel: module name -> (its file, its dependencies'
/// files in modules.dep order), paths relative to the modules directory.
pub struct ModuleDeps {
    dir: PathBuf,
    lines: BTreeMap<String, (String, Vec<String>)>,
}

/// `virtio-net`, `virtio_net` and `kernel/.../virtio_net.ko` name one module.
fn module_name(s: &str) -> String {
    let file = s.rsplit('/').next().unwrap_or(s);
    let base = file.split(".ko").next().unwrap_or(file);
    base.replace('-', "_")
}

impl ModuleDeps {
    pub fn parse(dir: &Path, text: &str) -> Self {
        let lines = text
            .lines()
            .filter_map(|l| l.split_once(':'))
            .map(|(file, deps)| {
                let deps = deps.split_ascii_whitespace().map(str::to_string).collect();
                (module_name(file), (file.trim().to_string(), deps))
            })
            .collect();
        ModuleDeps {
            dir: dir.to_path_buf(),
            lines,
        }
    }

    pub fn read(dir: &Path) -> Result<Self, InitError> {
        let file = dir.join("modules.dep");
        let text = std::fs::read_to_string(&file).map_err(|source| InitError::Io {
            what: format!("reading {}", file.display()),
            source,
        })?;
        Ok(Self::parse(dir, &text))
    }

    /// The files to load for `names`, each once, every dependency before
    /// the modules that need it. A module the image lacks is an error.
    pub fn load_order(&self, names: &[&str]) -> Result<Vec<PathBuf>, InitError> {
        let mut seen = BTreeSet::new();
        let mut order = Vec::new();
        for name in names {
            let (file, deps) = self
                .lines
                .get(&module_name(name))
                .ok_or_else(|| InitError::MissingModule(name.to_string()))?;
            for f in deps.iter().rev().chain(std::iter::once(file)) {
                if seen.insert(f.clone()) {
                    order.push(self.dir.join(f));
                }
            }
        }
        Ok(order)
    }

    /// Loads `names` and what they depend on, each with its parameters
    /// from the kernel command line `cmdline`.
    pub fn load(
        &self,
        names: &[&str],
        cmdline: &str,
        loader: &mut dyn ModuleLoader,
    ) -> Result<(), InitError> {
        for path in self.load_order(names)? {
            let params = params_for(cmdline, &module_name(&path.to_string_lossy()));
            loader
                .load(&path, &params)
                .map_err(|source| InitError::Io {
                    what: format!("loading {}", path.display()),
                    source,
                })?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DEP: &str = "kernel/drivers/net/virtio_net.ko: kernel/drivers/net/net_failover.ko kernel/net/core/failover.ko
kernel/drivers/net/net_failover.ko: kernel/net/core/failover.ko
kernel/net/core/failover.ko:
kernel/net/9p/9pnet_virtio.ko: kernel/net/9p/9pnet.ko kernel/drivers/virtio/virtio_ring.ko
kernel/fs/9p/9p.ko: kernel/net/9p/9pnet.ko kernel/fs/netfs/netfs.ko
kernel/net/9p/9pnet.ko:
kernel/fs/netfs/netfs.ko:
kernel/drivers/virtio/virtio_ring.ko:
";

    struct Recorder(Vec<String>);
    impl ModuleLoader for Recorder {
        fn load(&mut self, path: &Path, params: &str) -> std::io::Result<()> {
            let name = module_name(&path.to_string_lossy());
            self.0.push(if params.is_empty() {
                name
            } else {
                format!("{name} {params}")
            });
            Ok(())
        }
    }

    #[test]
    fn dependencies_load_first_and_once() {
        let deps = ModuleDeps::parse(Path::new("/lib/modules/6.1"), DEP);
        let mut r = Recorder(Vec::new());
        let cmdline = "quiet virtio-net.napi_tx=1 virtio_net.x=2 failover virtio_ring.y";
        deps.load(&["virtio-net", "9pnet_virtio", "9p"], cmdline, &mut r)
            .expect("loads");
        assert_eq!(
            r.0,
            [
                "failover",
                "net_failover",
                "virtio_net napi_tx=1 x=2",
                "virtio_ring",
                "9pnet",
                "9pnet_virtio",
                "netfs",
                "9p"
            ]
        );
        let order = deps.load_order(&["failover"]).expect("order");
        assert_eq!(
            order,
            [PathBuf::from(
                "/lib/modules/6.1/kernel/net/core/failover.ko"
            )]
        );
    }

    #[test]
    fn a_module_the_image_lacks_is_named() {
        let deps = ModuleDeps::parse(Path::new("/m"), DEP);
        let e = deps
            .load_order(&["overlay"])
            .expect_err("missing")
            .to_string();
        assert!(e.contains("overlay"), "{e}");
    }
}

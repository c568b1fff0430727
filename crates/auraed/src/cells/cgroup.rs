//! The cell's cgroups: `<parent>/<cell>.scope` for the cell and
//! `<parent>/<cell>.scope/<container>.scope` per container (named by
//! `CgroupPath::workload`, so no name collides with a kernel file), made
//! through the daemon's
//! [`CgroupDriver`] (which enables the v2 controllers on the way down) and
//! handed to libcontainer as `linux.cgroupsPath`.
//!
//! Under cgroup v1, libcontainer creates each container's cgroup in every
//! mounted hierarchy (cpuset, devices, blkio, ...), not only in those the
//! driver uses, so removal also sweeps the cell's directory out of every
//! hierarchy under the mount root.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use super::error::CellError;
use crate::cgroups::{
    child_names, remove_tree, workload_name, CgroupDriver, CgroupError, CgroupPath, CgroupVersion,
    Limits,
};

/// How long removal retries `rmdir` while exiting processes leave a cgroup.
const REMOVE_TIMEOUT: Duration = Duration::from_secs(2);

#[derive(Debug, Clone)]
pub(crate) struct CellCgroups {
    driver: Arc<dyn CgroupDriver>,
    /// Where the cgroup filesystems are mounted (normally /sys/fs/cgroup).
    mount_root: PathBuf,
    /// Parent of every cell cgroup, e.g. `aurae/cells`.
    parent: CgroupPath,
}

fn cgroup_error(path: &CgroupPath) -> impl FnOnce(CgroupError) -> CellError + '_ {
    move |source| CellError::Cgroup {
        path: path.to_string(),
        source,
    }
}

impl CellCgroups {
    pub fn new(driver: Arc<dyn CgroupDriver>, mount_root: &Path, parent: CgroupPath) -> Self {
        Self {
            driver,
            mount_root: mount_root.to_path_buf(),
            parent,
        }
    }

    pub fn version(&self) -> CgroupVersion {
        self.driver.version()
    }

    pub fn cell(&self, cell: &str) -> Result<CgroupPath, CellError> {
        self.parent
            .workload(cell)
            .map_err(cgroup_error(&self.parent))
    }

    pub fn container(&self, cell: &str, container: &str) -> Result<CgroupPath, CellError> {
        let cell = self.cell(cell)?;
        cell.workload(container).map_err(cgroup_error(&cell))
    }

    /// The `cgroup.procs` files of container `container`: under cgroup v1
    /// in every hierarchy libcontainer put it in, not only the driver's.
    pub fn procs_files(&self, cell: &str, container: &str) -> Result<Vec<PathBuf>, CellError> {
        let path = self.container(cell, container)?;
        let mut files = self.driver.procs_files(&path);
        if self.version() == CgroupVersion::V1 {
            for hierarchy in self.v1_hierarchies() {
                let procs = hierarchy.join(path.as_str()).join("cgroup.procs");
                if procs.exists() && !files.contains(&procs) {
                    files.push(procs);
                }
            }
        }
        Ok(files)
    }

    /// `linux.cgroupsPath` of a cgroup: absolute from the mount root.
    pub fn spec_path(path: &CgroupPath) -> String {
        format!("/{path}")
    }

    /// Creates the cell's cgroup with `limits` and one child per container
    /// with its own limits (the driver's mapping to v1 or v2 files, as for
    /// executables; libcontainer then finds them set and leaves them).
    pub fn create(
        &self,
        cell: &str,
        limits: &Limits,
        containers: &[(String, Limits)],
    ) -> Result<(), CellError> {
        let top = self.cell(cell)?;
        self.driver
            .create(&top)
            .and_then(|()| self.driver.set_limits(&top, limits))
            .map_err(cgroup_error(&top))?;
        for (c, limits) in containers {
            let path = self.container(cell, c)?;
            self.driver
                .create(&path)
                .and_then(|()| self.driver.set_limits(&path, limits))
                .map_err(cgroup_error(&path))?;
        }
        Ok(())
    }

    /// Every pid in the cell's cgroups.
    #[cfg(test)]
    pub fn pids(&self, cell: &str) -> Result<Vec<i32>, CellError> {
        let top = self.cell(cell)?;
        self.driver.pids(&top).map_err(cgroup_error(&top))
    }

    /// SIGKILL to every process of the cell until none is left.
    pub fn kill(&self, cell: &str) -> Result<(), CellError> {
        let top = self.cell(cell)?;
        self.driver.kill_all(&top).map_err(cgroup_error(&top))
    }

    /// Removes the cell's cgroups from every hierarchy; missing ones are fine.
    pub fn remove(&self, cell: &str) -> Result<(), CellError> {
        let top = self.cell(cell)?;
        let driven = self.driver.remove(&top).map_err(cgroup_error(&top));
        if self.version() == CgroupVersion::V1 {
            for hierarchy in self.v1_hierarchies() {
                let dir = hierarchy.join(top.as_str());
                remove_tree(&dir, REMOVE_TIMEOUT).map_err(cgroup_error(&top))?;
            }
        }
        driven
    }

    /// At daemon exit: removes the (empty) parent of the cells from every
    /// v1 hierarchy, then the parent's own parent (the daemon's root
    /// cgroup) where nothing else uses it. libcontainer made them in
    /// hierarchies the driver never uses (blkio, devices, cpuset, ...).
    pub fn remove_parent(&self) -> Result<(), CellError> {
        if self.version() != CgroupVersion::V1 {
            return Ok(());
        }
        let above = Path::new(self.parent.as_str()).parent();
        for hierarchy in self.v1_hierarchies() {
            let dir = hierarchy.join(self.parent.as_str());
            remove_tree(&dir, REMOVE_TIMEOUT).map_err(cgroup_error(&self.parent))?;
            if let Some(above) = above.filter(|a| !a.as_os_str().is_empty()) {
                // Still in use (scheduled executables left running): kept.
                let _ = fs::remove_dir(hierarchy.join(above));
            }
        }
        Ok(())
    }

    /// Names of the cells that have a cgroup (in any hierarchy).
    pub fn cells(&self) -> Vec<String> {
        let mut names = self.driver.children(&self.parent).unwrap_or_default();
        if self.version() == CgroupVersion::V1 {
            for hierarchy in self.v1_hierarchies() {
                names
                    .extend(child_names(&hierarchy.join(self.parent.as_str())).unwrap_or_default());
            }
        }
        let mut names: Vec<String> = names
            .iter()
            .filter_map(|n| workload_name(n))
            .map(str::to_string)
            .collect();
        names.sort();
        names.dedup();
        names
    }

    /// Every v1 hierarchy mounted under the mount root (real directories:
    /// co-mount symlinks such as `cpu -> cpu,cpuacct` would repeat one).
    fn v1_hierarchies(&self) -> Vec<PathBuf> {
        let Ok(entries) = fs::read_dir(&self.mount_root) else {
            return Vec::new();
        };
        let mut dirs: Vec<PathBuf> = entries
            .flatten()
            .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
            .map(|e| e.path())
            .collect();
        dirs.sort();
        dirs
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cgroups::signal::NixSignaller;
    use crate::cgroups::v1::V1Driver;
    use crate::cgroups::v2::V2Driver;
    use tempfile::TempDir;

    fn parent() -> CgroupPath {
        CgroupPath::new("aurae/cells").expect("valid")
    }

    fn write(root: &Path, rel: &str, content: &str) {
        let file = root.join(rel);
        fs::create_dir_all(file.parent().expect("parent")).expect("mkdir");
        fs::write(file, content).expect("write");
    }

    fn read(root: &Path, rel: &str) -> String {
        fs::read_to_string(root.join(rel)).expect("read")
    }

    /// A v2 root as the kernel shows it: controllers offered, none enabled.
    fn v2_fixture() -> (TempDir, CellCgroups) {
        let root = TempDir::new().expect("tempdir");
        let r = root.path();
        write(r, "cgroup.controllers", "cpuset cpu io memory pids\n");
        write(r, "cgroup.subtree_control", "");
        write(r, "aurae/cgroup.controllers", "cpu io memory pids\n");
        write(r, "aurae/cgroup.subtree_control", "");
        write(r, "aurae/cells/cgroup.controllers", "cpu memory pids\n");
        write(r, "aurae/cells/cgroup.subtree_control", "");
        let driver: Arc<dyn CgroupDriver> = Arc::new(V2Driver::new(r, Arc::new(NixSignaller)));
        let cells = CellCgroups::new(driver, r, parent());
        (root, cells)
    }

    #[test]
    fn paths_nest_containers_under_their_cell() {
        let (_root, cg) = v2_fixture();
        assert_eq!(
            cg.cell("web").expect("cell").as_str(),
            "aurae/cells/web.scope"
        );
        let c = cg.container("web", "server").expect("container");
        assert_eq!(c.as_str(), "aurae/cells/web.scope/server.scope");
        assert_eq!(
            CellCgroups::spec_path(&c),
            "/aurae/cells/web.scope/server.scope"
        );
        assert!(cg.container("web", "a/b").is_err());
    }

    #[test]
    fn v2_create_enables_controllers_down_to_each_container() {
        let (root, cg) = v2_fixture();
        let r = root.path();
        // The kernel would create these files on mkdir; the fixture has to.
        write(
            r,
            "aurae/cells/web.scope/cgroup.controllers",
            "cpu memory pids\n",
        );
        write(r, "aurae/cells/web.scope/cgroup.subtree_control", "");
        for f in ["pids.max", "memory.max", "cpu.max"] {
            write(r, &format!("aurae/cells/web.scope/{f}"), "max\n");
            write(
                r,
                &format!("aurae/cells/web.scope/server.scope/{f}"),
                "max\n",
            );
        }
        cg.create(
            "web",
            &Limits::from_wire(4096, 256 << 20, 0),
            &[
                ("server".into(), Limits::from_wire(0, 64 << 20, 500)),
                ("client".into(), Limits::default()),
            ],
        )
        .expect("create");
        assert_eq!(read(r, "aurae/cells/web.scope/pids.max"), "4096");
        assert_eq!(read(r, "aurae/cells/web.scope/memory.max"), "268435456");
        assert_eq!(read(r, "aurae/cells/web.scope/cpu.max"), "max\n");
        assert_eq!(
            read(r, "aurae/cells/web.scope/server.scope/memory.max"),
            "67108864"
        );
        assert_eq!(
            read(r, "aurae/cells/web.scope/server.scope/cpu.max"),
            "50000 100000"
        );
        assert_eq!(
            read(r, "aurae/cells/web.scope/server.scope/pids.max"),
            "max\n",
            "only the cell's pids limit applies"
        );

        assert!(r.join("aurae/cells/web.scope/server.scope").is_dir());
        assert!(r.join("aurae/cells/web.scope/client.scope").is_dir());
        assert_eq!(read(r, "cgroup.subtree_control"), "+cpu +memory +pids +io");
        assert_eq!(
            read(r, "aurae/cells/cgroup.subtree_control"),
            "+cpu +memory +pids"
        );
        assert_eq!(
            read(r, "aurae/cells/web.scope/cgroup.subtree_control"),
            "+cpu +memory +pids",
            "the cell offers its controllers to its containers"
        );
        assert!(
            !r.join("aurae/cells/web.scope/server.scope/cgroup.subtree_control")
                .exists(),
            "containers are leaves"
        );
    }

    #[test]
    fn v2_pids_cover_every_container_and_remove_takes_the_whole_cell() {
        let (root, cg) = v2_fixture();
        let r = root.path();
        write(r, "aurae/cells/web.scope/server.scope/cgroup.procs", "12\n");
        write(
            r,
            "aurae/cells/web.scope/client.scope/cgroup.procs",
            "7\n13\n",
        );
        write(r, "aurae/cells/other.scope/x/cgroup.procs", "99\n");
        assert_eq!(cg.pids("web").expect("pids"), [7, 12, 13]);
        assert_eq!(cg.cells(), ["other", "web"]);
        // Bare directories, as rmdir sees real cgroups.
        for f in ["server.scope", "client.scope"] {
            fs::remove_file(r.join(format!("aurae/cells/web.scope/{f}/cgroup.procs"))).expect("rm");
        }
        cg.remove("web").expect("remove");
        assert!(!r.join("aurae/cells/web.scope").exists());
        assert!(
            r.join("aurae/cells/other.scope").exists(),
            "other cells untouched"
        );
        cg.remove("web").expect("removing a missing cell is fine");
        assert_eq!(cg.cells(), ["other"]);
    }

    #[test]
    fn v1_remove_sweeps_hierarchies_the_driver_does_not_use() {
        let root = TempDir::new().expect("tempdir");
        let r = root.path();
        // The driver uses pids and memory; libcontainer also wrote cpuset and devices.
        for h in ["pids", "memory", "cpuset", "devices"] {
            fs::create_dir_all(r.join(h).join("aurae/cells/web.scope/server.scope"))
                .expect("mkdir");
        }
        fs::create_dir_all(r.join("devices/aurae/cells/stale.scope/x")).expect("mkdir");
        std::os::unix::fs::symlink(r.join("cpuset"), r.join("cpuset-alias")).expect("symlink");
        let driver: Arc<dyn CgroupDriver> =
            Arc::new(V1Driver::detect(r, Arc::new(NixSignaller)).expect("v1"));
        let cg = CellCgroups::new(driver, r, parent());
        assert_eq!(cg.version(), CgroupVersion::V1);
        assert_eq!(
            cg.cells(),
            ["stale", "web"],
            "leftovers seen in any hierarchy"
        );
        cg.remove("web").expect("remove");
        for h in ["pids", "memory", "cpuset", "devices"] {
            assert!(!r.join(h).join("aurae/cells/web.scope").exists(), "{h}");
            assert!(r.join(h).join("aurae/cells").exists(), "{h}: parent kept");
        }
        assert!(r.join("devices/aurae/cells/stale.scope/x").exists());
        cg.remove("stale").expect("remove");
        fs::create_dir_all(r.join("pids/aurae/schedule/unit.scope")).expect("mkdir");
        cg.remove_parent().expect("remove parent");
        for h in ["memory", "cpuset", "devices"] {
            assert!(!r.join(h).join("aurae").exists(), "{h}: root removed");
        }
        assert!(!r.join("pids/aurae/cells").exists());
        assert!(
            r.join("pids/aurae/schedule/unit.scope").exists(),
            "a root still in use is kept"
        );
    }
}

//! The kernel calls of PID 1's setup, behind a trait so that the order
//! and contents of what it mounts and writes are tested without root.

use std::io;
use std::path::Path;

use nix::mount::MsFlags;

use super::modules::ModuleLoader;

/// One filesystem PID 1 mounts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mount {
    pub source: String,
    pub target: String,
    pub fstype: &'static str,
    pub flags: MsFlags,
    pub data: Option<String>,
}

pub trait Kernel {
    /// Creates the mount point if needed, then mounts.
    fn mount(&mut self, m: &Mount) -> io::Result<()>;
    fn read(&mut self, path: &Path) -> io::Result<String>;
    fn write(&mut self, path: &Path, data: &str) -> io::Result<()>;
    fn set_hostname(&mut self, name: &str) -> io::Result<()>;
}

/// The running kernel.
pub struct Linux;

impl Kernel for Linux {
    fn mount(&mut self, m: &Mount) -> io::Result<()> {
        std::fs::create_dir_all(&m.target)?;
        nix::mount::mount(
            Some(m.source.as_str()),
            m.target.as_str(),
            Some(m.fstype),
            m.flags,
            m.data.as_deref(),
        )
        .map_err(io::Error::from)
    }

    fn read(&mut self, path: &Path) -> io::Result<String> {
        std::fs::read_to_string(path)
    }

    fn write(&mut self, path: &Path, data: &str) -> io::Result<()> {
        std::fs::write(path, data)
    }

    fn set_hostname(&mut self, name: &str) -> io::Result<()> {
        nix::unistd::sethostname(name).map_err(io::Error::from)
    }
}

impl ModuleLoader for Linux {
    fn load(&mut self, path: &Path, params: &str) -> io::Result<()> {
        let file = std::fs::File::open(path)?;
        let params = std::ffi::CString::new(params).map_err(io::Error::other)?;
        match nix::kmod::finit_module(&file, &params, nix::kmod::ModuleInitFlags::empty()) {
            Ok(()) | Err(nix::errno::Errno::EEXIST) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }
}

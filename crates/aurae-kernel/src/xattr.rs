//! The few extended-attribute calls the image layer and the log store need
//! (nix has none).

use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

/// Sets `name` to `value` on the file behind `fd`.
pub fn fset(fd: BorrowedFd<'_>, name: &str, value: &[u8]) -> io::Result<()> {
    let name = CString::new(name)?;
    // SAFETY: `fd` is a live descriptor borrowed for the duration of the call,
    // `name` is NUL-terminated and `value` points to `value.len()` readable
    // bytes; the kernel reads both only during the call.
    let rc = unsafe {
        libc::fsetxattr(
            fd.as_raw_fd(),
            name.as_ptr(),
            value.as_ptr().cast(),
            value.len(),
            0,
        )
    };
    status(rc)
}

/// Reads `name` of `path` without following a final symlink; `None` when the
/// attribute is absent or the file system has no extended attributes.
pub fn lget(path: &Path, name: &str) -> io::Result<Option<Vec<u8>>> {
    let path = CString::new(path.as_os_str().as_bytes())?;
    let name = CString::new(name)?;
    let mut buf = vec![0u8; 256];
    loop {
        // SAFETY: `path` and `name` are NUL-terminated and `buf` is a writable
        // buffer of `buf.len()` bytes, all alive for the duration of the call.
        let rc = unsafe {
            libc::lgetxattr(
                path.as_ptr(),
                name.as_ptr(),
                buf.as_mut_ptr().cast(),
                buf.len(),
            )
        };
        if rc >= 0 {
            buf.truncate(rc as usize);
            return Ok(Some(buf));
        }
        let err = io::Error::last_os_error();
        match err.raw_os_error() {
            Some(libc::ENODATA) | Some(libc::ENOTSUP) => return Ok(None),
            Some(libc::ERANGE) if buf.len() < 64 * 1024 => buf.resize(buf.len() * 4, 0),
            _ => return Err(err),
        }
    }
}

/// Sets `name` on `path` without following a final symlink.
pub fn lset(path: &Path, name: &str, value: &[u8]) -> io::Result<()> {
    let path = CString::new(path.as_os_str().as_bytes())?;
    let name = CString::new(name)?;
    // SAFETY: `path` and `name` are NUL-terminated and `value` points to
    // `value.len()` readable bytes, all alive for the duration of the call.
    let rc = unsafe {
        libc::lsetxattr(
            path.as_ptr(),
            name.as_ptr(),
            value.as_ptr().cast(),
            value.len(),
            0,
        )
    };
    status(rc)
}

/// The result of a `*setxattr` call: 0, or -1 with the reason in errno.
fn status(rc: libc::c_int) -> io::Result<()> {
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

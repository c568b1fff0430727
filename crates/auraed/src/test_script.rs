//! Test-only: shell scripts that tests write and then execute.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// Writes `#!/bin/sh` + `body` to `dir/name`, mode 0755.
///
/// The file is written by a `cat` child, never through a descriptor of the
/// test process: another test thread forking meanwhile would carry that
/// write descriptor into its child until the child's exec, and an exec of
/// the script in that window fails with ETXTBSY.
pub(crate) fn write_script(dir: &Path, name: &str, body: &str) -> PathBuf {
    let path = dir.join(name);
    let mut cat = Command::new("/bin/sh")
        .args(["-c", "cat > \"$1\" && chmod 0755 \"$1\"", "sh"])
        .arg(&path)
        .stdin(Stdio::piped())
        .spawn()
        .expect("spawn sh to write the script");
    let mut stdin = cat.stdin.take().expect("piped stdin");
    stdin
        .write_all(format!("#!/bin/sh\n{body}\n").as_bytes())
        .expect("write the script");
    drop(stdin);
    assert!(
        cat.wait().expect("wait for sh").success(),
        "writing {}",
        path.display()
    );
    path
}

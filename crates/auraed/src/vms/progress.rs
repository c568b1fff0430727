//! What a VM being created is doing, for `vms.Vms/List` (and so `aer vm
//! run`'s progress bar): its phase and the bytes of its disk image
//! received so far. One small record per VM in creation, dropped with it.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};

use crate::images::PullProgress;

/// Layers of one containerDisk tracked for the byte count; a pull of more
/// layers counts only the first ones (the count is advisory).
const MAX_LAYERS: usize = 256;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Phase {
    /// Asking the server or registry what the image is.
    #[default]
    Resolving,
    Downloading,
    /// Unpacking, verifying the disk, making the overlay.
    Checking,
    /// Waiting for the hypervisor to report the guest running.
    Booting,
}

impl Phase {
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Resolving => "resolving",
            Phase::Downloading => "downloading",
            Phase::Checking => "checking",
            Phase::Booting => "booting",
        }
    }
}

/// A snapshot of a [`Progress`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ProgressView {
    pub phase: Phase,
    pub bytes_done: u64,
    /// 0: not known.
    pub bytes_total: u64,
}

#[derive(Default)]
struct Inner {
    view: ProgressView,
    /// Bytes done per layer digest, for a containerDisk.
    layers: BTreeMap<String, u64>,
}

/// Updated by the fetch, read by List.
#[derive(Default)]
pub struct Progress(Mutex<Inner>);

impl Progress {
    pub fn view(&self) -> ProgressView {
        self.inner().view
    }

    pub fn phase(&self, phase: Phase) {
        self.inner().view.phase = phase;
    }

    /// A download of `total` bytes (`None`: unknown) starts.
    pub fn start_download(&self, total: Option<u64>) {
        let mut i = self.inner();
        i.view.phase = Phase::Downloading;
        i.view.bytes_total = total.unwrap_or(0);
    }

    /// `n` more bytes arrived.
    pub fn add(&self, n: u64) {
        let mut i = self.inner();
        i.view.bytes_done = i.view.bytes_done.saturating_add(n);
    }

    fn inner(&self) -> MutexGuard<'_, Inner> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl PullProgress for Progress {
    fn layers(&self, total: u64) {
        self.start_download(Some(total));
    }

    fn layer(&self, digest: &str, _total: u64, done: u64) {
        let mut i = self.inner();
        if i.layers.len() >= MAX_LAYERS && !i.layers.contains_key(digest) {
            return;
        }
        i.layers.insert(digest.to_string(), done);
        i.view.bytes_done = i.layers.values().fold(0u64, |a, b| a.saturating_add(*b));
    }
}

/// One VM being created.
pub struct Creation {
    pub image: String,
    pub progress: Progress,
}

/// The VMs being created, by name: one entry per RunVirtualMachine in
/// flight, removed when its [`CreationGuard`] drops, whatever the outcome.
#[derive(Default)]
pub struct Creating(Mutex<BTreeMap<String, Arc<Creation>>>);

impl Creating {
    /// Holds `name` while its VM is created; `None` when it already is.
    pub fn begin(&self, name: &str, image: &str) -> Option<CreationGuard<'_>> {
        let mut map = self.map();
        if map.contains_key(name) {
            return None;
        }
        let creation = Arc::new(Creation {
            image: image.to_string(),
            progress: Progress::default(),
        });
        map.insert(name.to_string(), creation.clone());
        Some(CreationGuard {
            set: self,
            name: name.to_string(),
            creation,
        })
    }

    /// `(name, image, progress)` of each, sorted by name.
    pub fn list(&self) -> Vec<(String, String, ProgressView)> {
        self.map()
            .iter()
            .map(|(n, c)| (n.clone(), c.image.clone(), c.progress.view()))
            .collect()
    }

    fn map(&self) -> MutexGuard<'_, BTreeMap<String, Arc<Creation>>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// A name held while its VM is being created.
pub struct CreationGuard<'a> {
    set: &'a Creating,
    name: String,
    creation: Arc<Creation>,
}

impl CreationGuard<'_> {
    pub fn progress(&self) -> &Progress {
        &self.creation.progress
    }
}

impl Drop for CreationGuard<'_> {
    fn drop(&mut self) {
        self.set.map().remove(&self.name);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_creation_is_listed_with_its_progress_until_it_ends() {
        let creating = Creating::default();
        let guard = creating.begin("web", "http://h/d.qcow2").expect("free");
        assert!(
            creating.begin("web", "x").is_none(),
            "one creation per name"
        );
        guard.progress().start_download(Some(1000));
        guard.progress().add(300);
        guard.progress().add(200);
        let listed = creating.list();
        assert_eq!(listed.len(), 1);
        let (name, image, view) = &listed[0];
        assert_eq!((name.as_str(), image.as_str()), ("web", "http://h/d.qcow2"));
        assert_eq!(
            *view,
            ProgressView {
                phase: Phase::Downloading,
                bytes_done: 500,
                bytes_total: 1000
            }
        );
        guard.progress().phase(Phase::Booting);
        assert_eq!(creating.list()[0].2.phase, Phase::Booting);
        drop(guard);
        assert!(creating.list().is_empty(), "cleared at the end");
        assert!(
            creating.begin("web", "x").is_some(),
            "the name is free again"
        );
    }

    #[test]
    fn layers_are_summed_by_digest_and_bounded() {
        let p = Progress::default();
        p.layers(300);
        p.layer("sha256:a", 100, 40);
        p.layer("sha256:b", 200, 50);
        p.layer("sha256:a", 100, 100);
        let v = p.view();
        assert_eq!(
            (v.phase, v.bytes_done, v.bytes_total),
            (Phase::Downloading, 150, 300)
        );
        for n in 0..2 * MAX_LAYERS {
            p.layer(&format!("sha256:{n}"), 1, 1);
        }
        assert_eq!(p.inner().layers.len(), MAX_LAYERS);
    }
}

//! Output of every process the daemon started, by pid: a bounded ring of
//! recent lines per channel for late subscribers, then live lines.
//!
//! The ring and the live fan-out sit behind one lock so a subscriber gets
//! the backlog and its live receiver at the same instant: no line is lost or
//! repeated between the two. The live channel is created on the first
//! subscription, since most processes are never watched.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::broadcast;

use super::daemon_log::unix_nanos_now;

/// Lines kept per channel for late subscribers.
pub const RING_LINES: usize = 4096;
/// Bytes kept per channel for late subscribers.
pub const RING_BYTES: usize = 1 << 20;
/// Live lines buffered per subscriber before the slowest starts losing lines.
pub const LIVE_CAPACITY: usize = 16 * 1024;
/// Outputs of exited processes kept for late subscribers, oldest dropped first.
pub const FINISHED_KEPT: usize = 512;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Channel {
    Stdout,
    Stderr,
}

impl Channel {
    pub fn as_str(self) -> &'static str {
        match self {
            Channel::Stdout => "stdout",
            Channel::Stderr => "stderr",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutputLine {
    pub line: String,
    /// Unix time in nanoseconds when the daemon read the line.
    pub timestamp: i64,
}

/// What a live receiver gets: a line, or the end of the output.
#[derive(Debug, Clone)]
pub enum LiveItem {
    Line(Arc<OutputLine>),
    End,
}

/// A subscription: the backlog, then (unless the output already ended) live items.
pub struct Subscription {
    pub backlog: Vec<OutputLine>,
    pub live: Option<broadcast::Receiver<LiveItem>>,
}

#[derive(Default)]
struct ChannelState {
    ring: VecDeque<Arc<OutputLine>>,
    ring_bytes: usize,
    ended: bool,
    live: Option<broadcast::Sender<LiveItem>>,
}

/// One channel (stdout or stderr) of one process.
#[derive(Default)]
pub struct ChannelBuffer {
    state: Mutex<ChannelState>,
}

impl ChannelBuffer {
    fn lock(&self) -> MutexGuard<'_, ChannelState> {
        // A panic while holding this lock cannot leave the ring inconsistent
        // in a way that matters more than losing the output: keep going.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn push(&self, line: String) {
        let item = Arc::new(OutputLine {
            line,
            timestamp: unix_nanos_now(),
        });
        let mut st = self.lock();
        st.ring_bytes += item.line.len();
        st.ring.push_back(item.clone());
        while st.ring.len() > RING_LINES || (st.ring_bytes > RING_BYTES && st.ring.len() > 1) {
            if let Some(old) = st.ring.pop_front() {
                st.ring_bytes -= old.line.len();
            }
        }
        if let Some(tx) = &st.live {
            let _ = tx.send(LiveItem::Line(item));
        }
    }

    /// Marks the end of this channel's output; subscribers' streams then end.
    pub fn end(&self) {
        let mut st = self.lock();
        st.ended = true;
        if let Some(tx) = st.live.take() {
            let _ = tx.send(LiveItem::End);
        }
    }

    pub fn subscribe(&self) -> Subscription {
        let mut st = self.lock();
        let backlog = st.ring.iter().map(|l| (**l).clone()).collect();
        if st.ended {
            return Subscription {
                backlog,
                live: None,
            };
        }
        let tx = st
            .live
            .get_or_insert_with(|| broadcast::channel(LIVE_CAPACITY).0);
        Subscription {
            backlog,
            live: Some(tx.subscribe()),
        }
    }
}

/// Both channels of one process.
#[derive(Default)]
pub struct ProcessOutput {
    pub stdout: ChannelBuffer,
    pub stderr: ChannelBuffer,
}

impl ProcessOutput {
    pub fn channel(&self, c: Channel) -> &ChannelBuffer {
        match c {
            Channel::Stdout => &self.stdout,
            Channel::Stderr => &self.stderr,
        }
    }
}

#[derive(Default)]
struct Registry {
    by_pid: HashMap<i32, Arc<ProcessOutput>>,
    unfinished: usize,
    finished: VecDeque<(i32, std::sync::Weak<ProcessOutput>)>,
}

/// All process outputs, by pid.
#[derive(Default)]
pub struct ProcessOutputs {
    inner: Mutex<Registry>,
}

impl ProcessOutputs {
    fn lock(&self) -> MutexGuard<'_, Registry> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A fresh output for a just-started process; a reused pid replaces the old entry.
    pub fn register(&self, pid: i32) -> Arc<ProcessOutput> {
        let out = Arc::new(ProcessOutput::default());
        let mut reg = self.lock();
        reg.by_pid.insert(pid, out.clone());
        reg.unfinished += 1;
        out
    }

    pub fn get(&self, pid: i32) -> Option<Arc<ProcessOutput>> {
        self.lock().by_pid.get(&pid).cloned()
    }

    /// The process has exited and its output is drained: keep it a while for late subscribers.
    pub fn finished(&self, pid: i32, output: &Arc<ProcessOutput>) {
        output.stdout.end();
        output.stderr.end();
        let mut reg = self.lock();
        reg.unfinished = reg.unfinished.saturating_sub(1);
        reg.finished.push_back((pid, Arc::downgrade(output)));
        while reg.finished.len() > FINISHED_KEPT {
            let Some((old_pid, old)) = reg.finished.pop_front() else {
                break;
            };
            // Only drop the entry if the pid was not reused by a newer process.
            if let Some(current) = reg.by_pid.get(&old_pid) {
                if old.upgrade().is_some_and(|o| Arc::ptr_eq(&o, current)) {
                    reg.by_pid.remove(&old_pid);
                }
            }
        }
    }

    /// Number of processes whose output has not ended yet.
    pub fn running(&self) -> usize {
        self.lock().unfinished
    }
}

/// Splits a byte stream into lines for a channel, keeping the partial tail
/// until its newline arrives. Over-long lines are cut so one line cannot
/// hold unbounded memory.
pub struct LineSplitter {
    pending: Vec<u8>,
}

/// Longest line kept whole; longer ones are delivered in pieces of this size.
pub const MAX_LINE: usize = 64 * 1024;

impl Default for LineSplitter {
    fn default() -> Self {
        Self::new()
    }
}

impl LineSplitter {
    pub fn new() -> Self {
        Self {
            pending: Vec::new(),
        }
    }

    pub fn feed(&mut self, mut data: &[u8], out: &ChannelBuffer) {
        while let Some(i) = data.iter().position(|b| *b == b'\n') {
            self.pending.extend_from_slice(&data[..i]);
            self.emit(out);
            data = &data[i + 1..];
        }
        self.pending.extend_from_slice(data);
        while self.pending.len() >= MAX_LINE {
            let rest = self.pending.split_off(MAX_LINE);
            self.emit(out);
            self.pending = rest;
        }
    }

    pub fn finish(&mut self, out: &ChannelBuffer) {
        if !self.pending.is_empty() {
            self.emit(out);
        }
    }

    fn emit(&mut self, out: &ChannelBuffer) {
        let line = String::from_utf8_lossy(&self.pending).into_owned();
        self.pending.clear();
        out.push(line);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(s: &Subscription) -> Vec<&str> {
        s.backlog.iter().map(|l| l.line.as_str()).collect()
    }

    #[test]
    fn late_subscriber_gets_backlog_then_end() {
        let reg = ProcessOutputs::default();
        let out = reg.register(42);
        let mut split = LineSplitter::new();
        split.feed(b"one\ntw", &out.stdout);
        split.feed(b"o\nthree", &out.stdout);
        split.finish(&out.stdout);
        reg.finished(42, &out);
        let sub = reg.get(42).expect("kept after exit").stdout.subscribe();
        assert_eq!(lines(&sub), ["one", "two", "three"]);
        assert!(sub.live.is_none(), "ended output has no live part");
    }

    #[test]
    fn live_subscriber_sees_lines_then_end() {
        let buf = ChannelBuffer::default();
        buf.push("early".into());
        let mut sub = buf.subscribe();
        assert_eq!(lines(&sub), ["early"]);
        buf.push("late".into());
        buf.end();
        let rx = sub.live.as_mut().expect("live");
        match rx.try_recv() {
            Ok(LiveItem::Line(l)) => assert_eq!(l.line, "late"),
            other => panic!("unexpected {other:?}"),
        }
        assert!(matches!(rx.try_recv(), Ok(LiveItem::End)));
    }

    #[test]
    fn ring_is_bounded() {
        let buf = ChannelBuffer::default();
        for i in 0..(RING_LINES + 10) {
            buf.push(i.to_string());
        }
        let sub = buf.subscribe();
        assert_eq!(sub.backlog.len(), RING_LINES);
        assert_eq!(sub.backlog[0].line, "10");
    }

    #[test]
    fn long_lines_are_cut() {
        let buf = ChannelBuffer::default();
        let mut split = LineSplitter::new();
        split.feed(&vec![b'x'; MAX_LINE * 2 + 5], &buf);
        split.finish(&buf);
        let sub = buf.subscribe();
        let lens: Vec<usize> = sub.backlog.iter().map(|l| l.line.len()).collect();
        assert_eq!(lens, [MAX_LINE, MAX_LINE, 5]);
    }

    #[test]
    fn old_finished_outputs_are_evicted() {
        let reg = ProcessOutputs::default();
        for pid in 0..(FINISHED_KEPT as i32 + 3) {
            let out = reg.register(pid);
            reg.finished(pid, &out);
        }
        assert!(reg.get(0).is_none());
        assert!(reg.get(3).is_some());
        assert_eq!(reg.running(), 0);
    }
}

//! The audit trail: one JSON line per admission decision, break-glass
//! included, in a hash chain that shows an edit, a deletion, an insertion or
//! a reordering of its records.
//!
//! # Line format
//!
//! The writer first builds a record's *body*, compact JSON in exactly this
//! layout:
//!
//! ```text
//! {"seq":N,"prev":"sha256:<64 hex>","audit":<record>}
//! ```
//!
//! `N` is the record's sequence number (decimal, no leading zero), `prev` the
//! hash of the record before it, and `<record>` the decision as serde_json
//! writes it. The line is the body without its final `}`, then
//! `,"hash":"sha256:<64 hex>"}` and a newline, where the hash is SHA-256 of
//! the body's bytes:
//!
//! ```text
//! {"seq":N,"prev":"sha256:…","audit":{…},"hash":"sha256:…"}
//! ```
//!
//! A line is plain JSON (consumers read `line["audit"]`), and checking it
//! never re-serialises anything: [`verify`] cuts off the fixed-length (82
//! bytes) hash suffix, puts the `}` back and hashes those exact bytes. It
//! accepts only this exact layout.
//!
//! The first record (genesis) has seq 0 and prev [`GENESIS`] (`sha256:` and 64
//! zeros); every next one has the next seq and, as prev, the hash of the one
//! before.
//!
//! # Files, restarts and rotation
//!
//! The trail goes to standard output (`-`) or to a file, appended to. On
//! opening a file, the chain continues from its last intact record (seq + 1,
//! prev = its hash); when the file is empty or absent, from the last intact
//! record of the newest rotated file. A file that ends in a torn line (the
//! process died in the middle of a write) gets a newline, and the chain
//! continues from the last intact record: [`verify`] then reports the torn
//! line as broken, which it is. A file that holds no chained record at all
//! (written before the chain existed, or only a torn line) is renamed aside
//! as a rotated file, and the chain goes on from the newest rotated file that
//! has one, or starts at genesis. On standard output (or a device, or a pipe)
//! nothing can be read back, so the chain starts at genesis at every start of
//! the process. One process writes one file: replicas need files of their own.
//!
//! When the file would grow past `max_bytes` (0: never), it is renamed
//! `PATH.NNNNNN` (the next free number, six digits, increasing) and a new
//! `PATH` is started; the chain runs on across files, so `verify` over
//! `PATH.000001 PATH.000002 … PATH`, oldest first, checks the whole trail.
//! Rotated files are never deleted here: shipping them off the node is a
//! collector's job.
//!
//! # Writing
//!
//! [`AuditLog::write`] hands the record itself to a dedicated writer thread:
//! serialising, hashing and writing all happen there, off the request path.
//! The writer takes everything queued, chains it and writes it with one write
//! and one flush, then lets records gather for [`BATCH_WINDOW`] before the
//! next batch (under load, one wake-up and one write per window rather than
//! per record; when idle, a record is written at once). The queue is bounded
//! in records, and a writer waits for room rather than dropping a record.
//! [`AuditLog::close`] returns once everything queued is written. A record that cannot be written
//! (an I/O error) is logged and counted ([`AuditLog::write_errors`]); after
//! such an error the chain continues from what is on disk, as after a
//! restart. Records queued but not yet written when the process is killed are
//! lost: only a graceful shutdown drains the queue.
//!
//! # What the chain proves, and what it does not
//!
//! Any change to a record, a deleted, inserted or reordered record, shows as
//! a broken link. Deleting the last records, or recomputing the chain from
//! any record on, leaves a consistent chain: only a head kept elsewhere
//! ([`Expect::head`]) or a keyed trail ([`AuditKeys`]: each record carries an
//! HMAC of its hash) shows that. The writer logs the head (`audit head`, with
//! its seq and hash) every anchor interval and when it closes, so that it can
//! be anchored outside the node.

use std::fs::{File, OpenOptions};
use std::io::{self, BufRead, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use serde::Serialize;
use sha2::{Digest as _, Sha256};
use tokio::sync::{oneshot, OwnedSemaphorePermit, Semaphore};

use crate::policy::{BreakGlass, Verdict};

/// One decision, with everything needed to understand and replay it.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Record {
    pub time: String,
    pub uid: String,
    pub operation: String,
    pub kind: String,
    pub namespace: String,
    pub name: String,
    /// The controller that owns the object (`ReplicaSet/shop-5d9c`), if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
    pub user: String,
    pub groups: Vec<String>,
    pub tier: Option<String>,
    pub allowed: bool,
    /// `allowed`, `warned`, `denied`, `break_glass` or `error`.
    pub result: crate::policy::Outcome,
    /// One word for why it is not a clean admission (`none` when it is).
    pub reason: String,
    pub dry_run: bool,
    pub policy_digest: String,
    /// The time the policy was evaluated at (replay with the same `now`).
    pub evaluated_at: String,
    /// Each image judged: its digest, the attestations used (digests,
    /// signers, identities), its problems and the exceptions applied.
    pub images: Vec<Verdict>,
    /// The exceptions applied, over all images.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub exceptions: Vec<String>,
    pub break_glass: BreakGlass,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    pub warnings: Vec<String>,
    pub latency_ms: f64,
}

/// An AdmissionReview that could not be decoded: never judged, and on the
/// record all the same (`result: invalid`). Its bytes are not kept (they may
/// be anything); their digest matches a body recorded elsewhere
/// (`--record-dir`).
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Invalid {
    pub time: String,
    /// The request's uid, when one could be read from it; empty otherwise.
    pub uid: String,
    /// `/validate` or `/mutate`.
    pub endpoint: &'static str,
    pub allowed: bool,
    /// Always `invalid`.
    pub result: &'static str,
    /// Always `invalid_review`.
    pub reason: &'static str,
    pub message: String,
    pub body_bytes: usize,
    pub body_sha256: String,
    pub policy_digest: String,
}

impl Invalid {
    pub fn of(
        endpoint: &'static str,
        uid: Option<String>,
        body: &[u8],
        why: &str,
        policy_digest: &crate::image::Digest,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Invalid {
        Invalid {
            time: now.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            uid: uid.unwrap_or_default(),
            endpoint,
            allowed: false,
            result: "invalid",
            reason: "invalid_review",
            message: format!("portcullis: invalid AdmissionReview: {}", crate::policy::decide::truncate(why, 1024)),
            body_bytes: body.len(),
            body_sha256: format!("sha256:{}", hex::encode(Sha256::digest(body))),
            policy_digest: policy_digest.to_string(),
        }
    }
}

/// The prev of the genesis record: `sha256:` and 64 zeros.
pub const GENESIS: &str = "sha256:0000000000000000000000000000000000000000000000000000000000000000";
/// Default size past which the audit file is rotated (64 MiB).
pub const DEFAULT_MAX_BYTES: u64 = 64 << 20;
/// Default interval between two `audit head` log lines.
pub const DEFAULT_ANCHOR_INTERVAL: Duration = Duration::from_secs(300);
/// Default bound of the queue between the callers and the writer, in records.
pub const DEFAULT_QUEUE_RECORDS: usize = 8192;

/// How long the writer lets records gather after writing a batch.
pub const BATCH_WINDOW: Duration = Duration::from_millis(2);

/// What ends every line: `,"hash":"sha256:` (then 64 hex digits and `"}`).
const HASH_KEY: &[u8] = b",\"hash\":\"sha256:";
/// Length of `,"hash":"sha256:<64 hex>"}`.
const SUFFIX_LEN: usize = HASH_KEY.len() + 64 + 2;
/// Where the quoted hash starts in the suffix (after `,"hash":"`).
const HASH_AT: usize = 9;
/// What a keyed trail adds after the hash: `,"mac":"hmac-sha256:` (then 64
/// hex digits and `"`), before the closing `}`.
const MAC_KEY: &[u8] = b",\"mac\":\"hmac-sha256:";
/// Length of `,"mac":"hmac-sha256:<64 hex>"`.
const MAC_LEN: usize = MAC_KEY.len() + 64 + 1;
/// How much of a file's end is read at a time when looking for its last record.
const TAIL_CHUNK: u64 = 64 << 10;

/// The last record of a chain: its seq and hash.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Head {
    pub seq: u64,
    /// `sha256:<hex>`.
    pub hash: String,
}

/// The keys of a keyed trail (`--audit-key`): each record then carries an
/// HMAC-SHA256 of its hash (`"mac":"hmac-sha256:<hex>"`), so that a chain
/// recomputed from any record on does not verify without the key. The first
/// key signs; any verifies (rotation).
#[derive(Clone)]
pub struct AuditKeys {
    keys: Vec<aws_lc_rs::hmac::Key>,
}

impl std::fmt::Debug for AuditKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "AuditKeys({} keys)", self.keys.len())
    }
}

/// Why an audit key file is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuditKeyError {
    #[error("audit key file holds no key (one key per line; the first signs)")]
    Empty,
    #[error("audit key on line {line} is {len} bytes; use at least 32 (e.g. `openssl rand -hex 32`)")]
    TooShort { line: usize, len: usize },
}

impl AuditKeys {
    /// Keys from a key file: one per line (surrounding whitespace and empty
    /// lines ignored), each at least 32 bytes; the first signs.
    pub fn from_text(text: &str) -> Result<Self, AuditKeyError> {
        let mut keys = Vec::new();
        for (i, line) in text.lines().enumerate() {
            let k = line.trim();
            if k.is_empty() {
                continue;
            }
            if k.len() < 32 {
                return Err(AuditKeyError::TooShort { line: i + 1, len: k.len() });
            }
            keys.push(aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, k.as_bytes()));
        }
        if keys.is_empty() {
            return Err(AuditKeyError::Empty);
        }
        Ok(AuditKeys { keys })
    }

    /// The mac of a record's hash (`sha256:<hex>`), in hex.
    fn mac(&self, hash: &str) -> String {
        hex::encode(aws_lc_rs::hmac::sign(&self.keys[0], hash.as_bytes()))
    }

    /// Whether `mac` (hex) is the mac of `hash` under any of the keys.
    fn verifies(&self, hash: &str, mac: &str) -> bool {
        let Ok(tag) = hex::decode(mac) else { return false };
        self.keys.iter().any(|k| aws_lc_rs::hmac::verify(k, hash.as_bytes(), &tag).is_ok())
    }
}

/// When a decision's record counts as kept (`--audit-sync`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Sync {
    /// Once queued: the writer writes it within a batch window, and a
    /// graceful shutdown drains the queue. A hard kill loses what was queued
    /// and not yet written (at most the queue's size).
    #[default]
    Batch,
    /// Once written and `fdatasync`ed: [`AuditLog::write`] returns only then,
    /// so a decision is answered only when its record would survive a hard
    /// kill or a power loss. Records waiting together share one sync.
    Always,
}

/// How an [`AuditLog`] writes.
#[derive(Clone, Debug)]
pub struct AuditOptions {
    /// Rotate the file when it would grow past this many bytes; 0: never.
    pub max_bytes: u64,
    /// How often the chain head is logged (`audit head`); zero: only at close.
    pub anchor_interval: Duration,
    /// Most records queued for the writer; past it, writers wait.
    pub queue_records: usize,
    /// Keys that mac each record (`--audit-key`); none: an unkeyed chain.
    pub keys: Option<AuditKeys>,
    /// When a record counts as kept (`--audit-sync`).
    pub sync: Sync,
}

impl Default for AuditOptions {
    fn default() -> Self {
        AuditOptions {
            max_bytes: DEFAULT_MAX_BYTES,
            anchor_interval: DEFAULT_ANCHOR_INTERVAL,
            queue_records: DEFAULT_QUEUE_RECORDS,
            keys: None,
            sync: Sync::Batch,
        }
    }
}

/// Where audit records go: stdout (`-`) or an append-only, rotated file, as a
/// hash chain written by a thread of its own. See the module documentation.
pub struct AuditLog {
    tx: mpsc::Sender<Msg>,
    permits: Arc<Semaphore>,
    shared: Arc<Shared>,
    sync: Sync,
}

/// What the writer shares with the handle.
#[derive(Default)]
struct Shared {
    head: Mutex<Option<Head>>,
    write_errors: AtomicU64,
}

impl Shared {
    fn lost(&self, records: usize, why: &dyn std::fmt::Display) {
        self.write_errors.fetch_add(records as u64, Ordering::Relaxed);
        tracing::error!(records, error = %why, "audit records not written");
    }

    fn set_head(&self, head: Option<Head>) {
        *self.head.lock().unwrap_or_else(|e| e.into_inner()) = head;
    }
}

/// A record waiting to be serialised (on the writer thread).
type Serialise = Box<dyn FnOnce() -> serde_json::Result<Vec<u8>> + Send>;

enum Msg {
    /// A record, serialised by the writer, holding its room in the queue
    /// until written; with [`Sync::Always`], answered once written and synced.
    Record(Serialise, OwnedSemaphorePermit, Option<oneshot::Sender<()>>),
    /// Answered once everything queued before it is written.
    Flush(Ack),
    /// Like `Flush`, then the writer stops.
    Close(Ack),
}

enum Ack {
    Async(oneshot::Sender<()>),
    Blocking(mpsc::SyncSender<()>),
}

impl Ack {
    fn send(self) {
        match self {
            Ack::Async(t) => {
                let _ = t.send(());
            }
            Ack::Blocking(t) => {
                let _ = t.send(());
            }
        }
    }
}

impl AuditLog {
    /// Opens `path` (`-`: standard output) with the default options.
    pub fn open(path: &str) -> io::Result<Self> {
        Self::open_with(path, AuditOptions::default())
    }

    /// Opens `path` (`-`: standard output), continuing the chain found there,
    /// and starts the writer thread.
    pub fn open_with(path: &str, opts: AuditOptions) -> io::Result<Self> {
        let (sink, head) = if path == "-" {
            (Sink::Stdout, None)
        } else {
            let (file, head) = open_current(Path::new(path))?;
            (Sink::File(FileSink { path: PathBuf::from(path), file: Some(file), max_bytes: opts.max_bytes }), head)
        };
        if let Some(h) = &head {
            tracing::info!(path, seq = h.seq, hash = %h.hash, "audit trail continues");
        }
        let shared = Arc::new(Shared { head: Mutex::new(head.clone()), write_errors: AtomicU64::new(0) });
        let writer = Writer {
            sink,
            chain: Chain { keys: opts.keys.clone().map(Arc::new), ..Chain::after(head.as_ref()) },
            shared: shared.clone(),
            anchor: Some(opts.anchor_interval).filter(|d| !d.is_zero()),
            sync: opts.sync,
        };
        let (tx, rx) = mpsc::channel();
        std::thread::Builder::new().name("audit-writer".into()).spawn(move || writer.run(rx))?;
        // A permit per record queued.
        let queue = opts.queue_records.clamp(1, Semaphore::MAX_PERMITS);
        Ok(AuditLog { tx, permits: Arc::new(Semaphore::new(queue)), shared, sync: opts.sync })
    }

    /// Queues one record, waiting for room in the queue when it is full. The
    /// record is serialised and written shortly after by the writer thread,
    /// off the caller's path; [`flush`](Self::flush) waits for that. With
    /// [`Sync::Always`] it returns only once the record is written and synced
    /// (or could not be: then it is counted in [`write_errors`](Self::write_errors)).
    pub async fn write<T: Serialize + Send + 'static>(&self, record: T) {
        match self.permits.clone().acquire_owned().await {
            Ok(permit) => {
                let job: Serialise = Box::new(move || serde_json::to_vec(&record));
                let (kept, synced) = match self.sync {
                    Sync::Always => {
                        let (t, r) = oneshot::channel();
                        (Some(t), Some(r))
                    }
                    Sync::Batch => (None, None),
                };
                if self.tx.send(Msg::Record(job, permit, kept)).is_err() {
                    return self.shared.lost(1, &"the audit writer has stopped");
                }
                if let Some(r) = synced {
                    let _ = r.await;
                }
            }
            Err(_) => self.shared.lost(1, &"the audit log is closed"),
        }
    }

    /// Waits until every record queued before the call is written.
    pub async fn flush(&self) {
        let (t, r) = oneshot::channel();
        if self.tx.send(Msg::Flush(Ack::Async(t))).is_ok() {
            let _ = r.await;
        }
    }

    /// [`flush`](Self::flush) for code that is not async: blocks the thread.
    pub fn flush_blocking(&self) {
        let (t, r) = mpsc::sync_channel(1);
        if self.tx.send(Msg::Flush(Ack::Blocking(t))).is_ok() {
            let _ = r.recv();
        }
    }

    /// Writes everything queued, syncs the file, logs the head and stops the
    /// writer. Records written afterwards are refused (and counted as write
    /// errors). Calling it again does nothing.
    pub async fn close(&self) {
        self.permits.close();
        let (t, r) = oneshot::channel();
        if self.tx.send(Msg::Close(Ack::Async(t))).is_ok() {
            let _ = r.await;
        }
    }

    /// The last record written: what to anchor outside the node. None before
    /// the first record of a new chain.
    pub fn head(&self) -> Option<Head> {
        self.shared.head.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// How many records could not be written, since the log was opened.
    pub fn write_errors(&self) -> u64 {
        self.shared.write_errors.load(Ordering::Relaxed)
    }
}

/// The chain's next link: the seq and prev of the next record.
#[derive(Clone, Debug)]
struct Chain {
    next: u64,
    prev: String,
    /// For a keyed trail: the keys that mac each record.
    keys: Option<Arc<AuditKeys>>,
}

impl Chain {
    fn after(head: Option<&Head>) -> Chain {
        match head {
            Some(h) => Chain { next: h.seq.saturating_add(1), prev: h.hash.clone(), keys: None },
            None => Chain { next: 0, prev: GENESIS.to_string(), keys: None },
        }
    }

    fn head(&self) -> Option<Head> {
        self.next.checked_sub(1).map(|seq| Head { seq, hash: self.prev.clone() })
    }

    /// Appends `record` (JSON as serde_json writes it: compact, on one line)
    /// to `out` as the next line of the chain.
    fn append(&mut self, record: &[u8], out: &mut Vec<u8>) {
        let start = out.len();
        out.extend_from_slice(b"{\"seq\":");
        out.extend_from_slice(self.next.to_string().as_bytes());
        out.extend_from_slice(b",\"prev\":\"");
        out.extend_from_slice(self.prev.as_bytes());
        out.extend_from_slice(b"\",\"audit\":");
        out.extend_from_slice(record);
        out.push(b'}');
        let hash = format!("sha256:{}", hex::encode(Sha256::digest(&out[start..])));
        out.pop();
        out.extend_from_slice(b",\"hash\":\"");
        out.extend_from_slice(hash.as_bytes());
        if let Some(keys) = &self.keys {
            out.extend_from_slice(b"\",\"mac\":\"hmac-sha256:");
            out.extend_from_slice(keys.mac(&hash).as_bytes());
        }
        out.extend_from_slice(b"\"}\n");
        self.next = self.next.saturating_add(1);
        self.prev = hash;
    }
}

/// The writer thread's state.
struct Writer {
    sink: Sink,
    chain: Chain,
    shared: Arc<Shared>,
    anchor: Option<Duration>,
    sync: Sync,
}

enum Sink {
    Stdout,
    File(FileSink),
}

impl Writer {
    fn run(mut self, rx: mpsc::Receiver<Msg>) {
        let mut next_anchor = self.anchor.and_then(|d| Instant::now().checked_add(d));
        loop {
            let first = match next_anchor {
                Some(at) => match rx.recv_timeout(at.saturating_duration_since(Instant::now())) {
                    Ok(m) => m,
                    Err(mpsc::RecvTimeoutError::Timeout) => {
                        self.log_head();
                        next_anchor = self.anchor.and_then(|d| Instant::now().checked_add(d));
                        continue;
                    }
                    Err(mpsc::RecvTimeoutError::Disconnected) => break,
                },
                None => match rx.recv() {
                    Ok(m) => m,
                    Err(_) => break,
                },
            };
            // Everything queued (bounded by the queue's size) goes in one batch.
            let batch: Vec<Msg> = std::iter::once(first).chain(rx.try_iter()).collect();
            let closing = self.process(batch);
            if !closing.is_empty() {
                // Records that made it into the queue after the close are written too.
                let late = self.process(rx.try_iter().collect());
                self.finish();
                closing.into_iter().chain(late).for_each(Ack::send);
                return;
            }
            // Let the next batch gather: senders wake nobody meanwhile.
            std::thread::sleep(BATCH_WINDOW);
            if next_anchor.is_some_and(|at| Instant::now() >= at) {
                self.log_head();
                next_anchor = self.anchor.and_then(|d| Instant::now().checked_add(d));
            }
        }
        // Every handle is gone: what was queued has been written.
        self.finish();
    }

    /// Writes a batch in order, answering flushes as it goes; returns the
    /// acknowledgements of the closes in it, to send once finished.
    fn process(&mut self, batch: Vec<Msg>) -> Vec<Ack> {
        let mut records = Vec::new();
        let mut permits = Vec::new();
        let mut kept = Vec::new();
        let mut closes = Vec::new();
        for m in batch {
            match m {
                Msg::Record(job, permit, ack) => {
                    match job() {
                        Ok(json) => records.push(json),
                        Err(e) => self.shared.lost(1, &format_args!("serialising the record: {e}")),
                    }
                    permits.push(permit);
                    kept.extend(ack);
                }
                Msg::Flush(ack) => {
                    self.write(&records);
                    self.keep(std::mem::take(&mut kept));
                    records.clear();
                    permits.clear();
                    ack.send();
                }
                Msg::Close(ack) => closes.push(ack),
            }
        }
        self.write(&records);
        self.keep(kept);
        closes
    }

    /// With [`Sync::Always`]: syncs what was written, then answers the
    /// records waiting for it (one sync for all of them).
    fn keep(&mut self, waiting: Vec<oneshot::Sender<()>>) {
        if waiting.is_empty() || self.sync != Sync::Always {
            return;
        }
        if let Sink::File(FileSink { file: Some(f), path, .. }) = &self.sink {
            if let Err(e) = f.sync_data() {
                tracing::error!(path = %path.display(), error = %e, "syncing the audit log failed");
                self.shared.write_errors.fetch_add(waiting.len() as u64, Ordering::Relaxed);
            }
        }
        for w in waiting {
            let _ = w.send(());
        }
    }

    fn write(&mut self, records: &[Vec<u8>]) {
        if records.is_empty() {
            return;
        }
        match &mut self.sink {
            Sink::Stdout => {
                let before = self.chain.clone();
                let mut buf = Vec::new();
                for r in records {
                    self.chain.append(r, &mut buf);
                }
                let mut out = io::stdout().lock();
                if let Err(e) = out.write_all(&buf).and_then(|()| out.flush()) {
                    self.chain = before;
                    self.shared.lost(records.len(), &e);
                }
            }
            Sink::File(f) => f.write(&mut self.chain, records, &self.shared),
        }
        self.shared.set_head(self.chain.head());
    }

    fn finish(&mut self) {
        match &mut self.sink {
            Sink::Stdout => {
                let _ = io::stdout().flush();
            }
            Sink::File(f) => {
                if let Some(Err(e)) = f.file.as_ref().map(File::sync_all) {
                    tracing::error!(path = %f.path.display(), error = %e, "syncing the audit log failed");
                }
            }
        }
        self.log_head();
    }

    fn log_head(&self) {
        if let Some(h) = self.chain.head() {
            tracing::info!(seq = h.seq, hash = %h.hash, "audit head");
        }
    }
}

/// The current file of a file trail.
struct FileSink {
    path: PathBuf,
    /// None after a failure: reopened (and the chain re-read) before the next write.
    file: Option<File>,
    max_bytes: u64,
}

impl FileSink {
    /// Chains and writes `records`, rotating as needed: one write and one
    /// flush per file written to.
    fn write(&mut self, chain: &mut Chain, records: &[Vec<u8>], shared: &Shared) {
        if self.file.is_none() {
            if let Err(e) = self.recover(chain) {
                return shared.lost(records.len(), &format_args!("reopening {}: {e}", self.path.display()));
            }
        }
        let meta = self.file.as_ref().and_then(|f| f.metadata().ok());
        let mut size = meta.as_ref().map_or(0, |m| m.len());
        // A device or a pipe (`/dev/stdout`) is never renamed.
        let max_bytes = if meta.is_some_and(|m| m.is_file()) { self.max_bytes } else { 0 };
        let mut buf = Vec::new();
        // The chain before the first line in `buf`, and how many records are written.
        let mut at_buf = chain.clone();
        let mut written = 0;
        let mut in_buf = 0;
        for r in records {
            let mark = buf.len();
            let before = chain.clone();
            chain.append(r, &mut buf);
            if max_bytes > 0 && size + buf.len() as u64 > max_bytes && size + mark as u64 > 0 {
                if let Err(e) = self.put(&buf[..mark]) {
                    return self.failed(chain, at_buf, records.len() - written, e, shared);
                }
                written += in_buf;
                in_buf = 0;
                buf.drain(..mark);
                at_buf = before;
                match self.rotate() {
                    Ok(to) => {
                        tracing::info!(path = %self.path.display(), to = %to.display(), "audit log rotated");
                        size = 0;
                    }
                    Err(e) => {
                        tracing::error!(path = %self.path.display(), error = %e, "rotating the audit log failed; writing on");
                        size += mark as u64;
                        if self.file.is_none() {
                            return self.failed(chain, at_buf, records.len() - written, e, shared);
                        }
                    }
                }
            }
            in_buf += 1;
        }
        if let Err(e) = self.put(&buf) {
            self.failed(chain, at_buf, records.len() - written, e, shared);
        }
    }

    fn put(&mut self, bytes: &[u8]) -> io::Result<()> {
        if bytes.is_empty() {
            return Ok(());
        }
        match &mut self.file {
            Some(f) => f.write_all(bytes).and_then(|()| f.flush()),
            None => Err(io::Error::other("the audit log is not open")),
        }
    }

    /// After a failed write: the records are counted as lost, and the chain
    /// continues from what is on disk.
    fn failed(&mut self, chain: &mut Chain, before: Chain, lost: usize, e: io::Error, shared: &Shared) {
        shared.lost(lost, &format_args!("writing {}: {e}", self.path.display()));
        *chain = before;
        self.file = None;
        if let Err(e) = self.recover(chain) {
            tracing::error!(path = %self.path.display(), error = %e, "reopening the audit log failed; retrying at the next record");
        }
    }

    fn recover(&mut self, chain: &mut Chain) -> io::Result<()> {
        let (file, head) = open_current(&self.path)?;
        *chain = Chain { keys: chain.keys.take(), ..Chain::after(head.as_ref()) };
        self.file = Some(file);
        Ok(())
    }

    /// Renames the current file to the next rotated name and starts a new one.
    fn rotate(&mut self) -> io::Result<PathBuf> {
        // What is in the file now is kept before it is renamed: a record
        // waiting for its sync may be in it.
        if let Some(f) = &self.file {
            f.sync_data()?;
        }
        let to = next_rotated(&self.path)?;
        std::fs::rename(&self.path, &to)?;
        self.file = None;
        self.file = Some(open_append(&self.path)?);
        Ok(to)
    }
}

fn open_append(path: &Path) -> io::Result<File> {
    OpenOptions::new().read(true).append(true).create(true).open(path)
}

/// Opens the current file for appending, finding where the chain goes on:
/// its last intact record, or the newest rotated file's. What is not a
/// regular file (a device, a pipe) is neither read back nor renamed: the
/// chain starts at genesis there, as on standard output.
fn open_current(path: &Path) -> io::Result<(File, Option<Head>)> {
    let mut file = open_append(path)?;
    let meta = file.metadata()?;
    if !meta.is_file() {
        return Ok((file, None));
    }
    let len = meta.len();
    if len > 0 {
        let (head, torn) = last_intact(&mut file, len)?;
        if torn {
            file.write_all(b"\n")?;
            file.flush()?;
            tracing::warn!(path = %path.display(), "the audit log ended in a torn line (a write cut short): terminated; `portcullis audit verify` reports it");
        }
        if head.is_some() {
            return Ok((file, head));
        }
        drop(file);
        let to = next_rotated(path)?;
        std::fs::rename(path, &to)?;
        tracing::warn!(path = %path.display(), to = %to.display(), "the audit log holds no chained record: renamed aside, the chain starts in a new file");
        file = open_append(path)?;
    }
    for (_, rotated) in rotated_files(path)?.iter().rev() {
        let mut f = File::open(rotated)?;
        let len = f.metadata()?.len();
        if let (Some(head), _) = last_intact(&mut f, len)? {
            return Ok((file, Some(head)));
        }
    }
    Ok((file, None))
}

/// The last intact record of a file of `len` bytes, read from its end, and
/// whether the file ends in a torn line (no final newline).
fn last_intact(file: &mut File, len: u64) -> io::Result<(Option<Head>, bool)> {
    let mut start = len;
    let mut tail: Vec<u8> = Vec::new();
    while start > 0 {
        let step = start.min(TAIL_CHUNK.max(tail.len() as u64));
        start -= step;
        let mut chunk = vec![0; step as usize];
        file.seek(SeekFrom::Start(start))?;
        file.read_exact(&mut chunk)?;
        chunk.extend_from_slice(&tail);
        tail = chunk;
        // The first piece may be the end of a line that starts further back.
        let mut lines = tail.split(|b| *b == b'\n').rev().collect::<Vec<_>>();
        if start > 0 {
            lines.pop();
        }
        if let Some(l) = lines.into_iter().find_map(|l| parse_line(l).ok()) {
            return Ok((Some(Head { seq: l.seq, hash: l.hash.to_string() }), tail.last() != Some(&b'\n')));
        }
    }
    Ok((None, tail.last().is_some_and(|b| *b != b'\n')))
}

/// The rotated files of `path` (`PATH.NNNNNN`), oldest first.
fn rotated_files(path: &Path) -> io::Result<Vec<(u64, PathBuf)>> {
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let Some(base) = path.file_name().map(|n| format!("{}.", n.to_string_lossy())) else {
        return Ok(Vec::new());
    };
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let name = entry?.file_name();
        let name = name.to_string_lossy();
        if let Some(n) = name.strip_prefix(&base).filter(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit())) {
            if let Ok(n) = n.parse::<u64>() {
                found.push((n, dir.join(&*name)));
            }
        }
    }
    found.sort();
    Ok(found)
}

/// The next rotated name of `path`: one past the highest, and free.
fn next_rotated(path: &Path) -> io::Result<PathBuf> {
    let mut n = rotated_files(path)?.last().map_or(1, |(n, _)| n.saturating_add(1));
    loop {
        let mut name = path.as_os_str().to_owned();
        name.push(format!(".{n:06}"));
        let to = PathBuf::from(name);
        if !to.exists() {
            return Ok(to);
        }
        n = n.checked_add(1).ok_or_else(|| io::Error::other("no free rotated file name"))?;
    }
}

/// A line that is an intact chained record.
struct Line<'a> {
    seq: u64,
    prev: &'a str,
    hash: &'a str,
    /// A keyed trail's mac (hex), not checked here.
    mac: Option<&'a str>,
}

/// Parses and checks one line (without its newline): the exact layout, the
/// hash over the body's bytes, a JSON record. On failure, the seq the line
/// names, when it names one.
fn parse_line(line: &[u8]) -> Result<Line<'_>, (Option<u64>, Problem)> {
    let not_chained = |why: &'static str| (None, Problem::Unparseable(why));
    // A keyed record ends `"hash":"sha256:<hex>","mac":"hmac-sha256:<hex>"}`:
    // take the mac off, and read the rest as an unkeyed line.
    let (line, mac) = match line.strip_suffix(b"}") {
        Some(open) if open.len() >= MAC_LEN && open[open.len() - MAC_LEN..].starts_with(MAC_KEY) => {
            let (rest, field) = open.split_at(open.len() - MAC_LEN);
            let hex = &field[MAC_KEY.len()..MAC_LEN - 1];
            if !field.ends_with(b"\"") || !is_lower_hex(hex) {
                return Err(not_chained("a malformed mac at its end"));
            }
            (rest, std::str::from_utf8(hex).ok())
        }
        Some(open) => (open, None),
        None => return Err(not_chained("no hash at its end (a torn write, or a foreign line)")),
    };
    // `line` is now the record without its final `}`.
    const OPEN_SUFFIX: usize = SUFFIX_LEN - 1;
    if line.len() < OPEN_SUFFIX {
        return Err(not_chained("too short (a torn write, or a foreign line)"));
    }
    let (head, suffix) = line.split_at(line.len() - OPEN_SUFFIX);
    let hex = &suffix[HASH_KEY.len()..OPEN_SUFFIX - 1];
    if !suffix.starts_with(HASH_KEY) || !suffix.ends_with(b"\"") || !is_lower_hex(hex) {
        return Err(not_chained("no hash at its end (a torn write, or a foreign line)"));
    }
    let stored = std::str::from_utf8(&suffix[HASH_AT..OPEN_SUFFIX - 1]).map_err(|_| not_chained("not UTF-8"))?;
    let bad_head = || not_chained("it does not start {\"seq\":N,\"prev\":\"sha256:…\",\"audit\":");
    let rest = head.strip_prefix(b"{\"seq\":").ok_or_else(bad_head)?;
    let digits = rest.iter().take_while(|b| b.is_ascii_digit()).count();
    if digits == 0 || (digits > 1 && rest[0] == b'0') {
        return Err(bad_head());
    }
    let seq = std::str::from_utf8(&rest[..digits]).ok().and_then(|s| s.parse::<u64>().ok()).ok_or_else(bad_head)?;
    let rest = rest[digits..].strip_prefix(b",\"prev\":\"").ok_or_else(bad_head)?;
    if rest.len() < 71 || !rest.starts_with(b"sha256:") || !is_lower_hex(&rest[7..71]) {
        return Err(bad_head());
    }
    let prev = std::str::from_utf8(&rest[..71]).map_err(|_| bad_head())?;
    let record = rest[71..].strip_prefix(b"\",\"audit\":").ok_or_else(bad_head)?;
    let computed = format!("sha256:{}", hex::encode(Sha256::new().chain_update(head).chain_update(b"}").finalize()));
    if computed != stored {
        return Err((Some(seq), Problem::HashMismatch { stored: stored.to_string(), computed }));
    }
    if serde_json::from_slice::<serde::de::IgnoredAny>(record).is_err() {
        return Err((Some(seq), Problem::Unparseable("the record is not JSON")));
    }
    Ok(Line { seq, prev, hash: stored, mac })
}

fn is_lower_hex(b: &[u8]) -> bool {
    b.iter().all(|c| matches!(c, b'0'..=b'9' | b'a'..=b'f'))
}

/// What is wrong with the first broken record of a trail.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Problem {
    #[error("not a chained audit record: {0}")]
    Unparseable(&'static str),
    #[error("hash mismatch: the record was edited (its line says {stored}, its bytes hash to {computed})")]
    HashMismatch { stored: String, computed: String },
    #[error("seq gap: expected {expected}, found {found}: records were deleted")]
    SeqGap { expected: u64, found: u64 },
    #[error("out of order: expected seq {expected}, found {found}; seq {expected} comes later, at {at}: records were reordered")]
    Reordered { expected: u64, found: u64, at: String },
    #[error("seq goes back: expected {expected}, found {found}: a record was inserted, repeated or moved")]
    SeqBack { expected: u64, found: u64 },
    #[error(
        "prev mismatch: the record before hashes to {expected}, this one names {found} (a record replaced, or forged)"
    )]
    PrevMismatch { expected: String, found: String },
    #[error(
        "no mac: the trail is keyed, and this record was written without the key (or rewritten by someone without it)"
    )]
    MacMissing,
    #[error(
        "mac mismatch: the record's mac does not verify with the audit key: the chain was recomputed without the key"
    )]
    MacMismatch,
    #[error("hash {found}, not the anchored head's {anchored}: the trail was rewritten from this record or before")]
    HeadMismatch { anchored: String, found: String },
}

/// Why a trail does not verify.
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    /// A file could not be read.
    #[error("{file}: {source}")]
    Io {
        file: String,
        #[source]
        source: io::Error,
    },
    /// The first broken record: the file, its 1-based line, the seq it names.
    #[error("{file}:{line}: {}{problem}", seq.map(|s| format!("seq {s}: ")).unwrap_or_default())]
    Broken { file: String, line: u64, seq: Option<u64>, problem: Problem },
    /// The records before the first one given are missing, and nothing said
    /// where the files given start ([`Expect::after`]).
    #[error(
        "the trail starts at seq {first_seq} (prev {anchor}): the records before it are not in the files given (the \
         oldest file is missing); give every file from the first, or --after SEQ:HASH with the head they continue from"
    )]
    Incomplete { first_seq: u64, anchor: String },
    /// The files given do not continue from the head they should.
    #[error(
        "the files given do not continue from seq {} ({}): they start at seq {first_seq} with prev {anchor}",
        after.seq, after.hash
    )]
    NotAfter { after: Head, first_seq: u64, anchor: String },
    /// An anchored head is not in the trail: records were cut off its end.
    #[error(
        "the anchored head seq {} is not in the trail, which {}: records were cut off its end",
        head.seq, last.map(|l| format!("ends at seq {l}")).unwrap_or_else(|| "is empty".into())
    )]
    HeadMissing { head: Head, last: Option<u64> },
    /// An anchored head is older than the files given.
    #[error("the anchored head seq {} is before the files given, which start at seq {first_seq}: give the older files", head.seq)]
    HeadBefore { head: Head, first_seq: u64 },
}

impl VerifyError {
    /// The trail was read, and is not what it should be (rather than a file
    /// that could not be read).
    pub fn is_broken(&self) -> bool {
        !matches!(self, VerifyError::Io { .. })
    }
}

/// What a trail is checked against besides its own links.
#[derive(Clone, Debug, Default)]
pub struct Expect<'k> {
    /// The trail is keyed: every record must carry a mac that verifies with
    /// one of these keys.
    pub keys: Option<&'k AuditKeys>,
    /// A head anchored outside the node (the `audit head` the writer logs):
    /// the trail must hold that record, with that hash.
    pub head: Option<Head>,
    /// The head the files given continue from, when their older files were
    /// shipped away. Without it a trail must start at genesis.
    pub after: Option<Head>,
}

/// An intact trail.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Trail {
    pub records: u64,
    /// The seq of the first record: 0 for a trail from genesis, more for one
    /// whose older files are not given.
    pub first_seq: u64,
    /// The prev of the first record: [`GENESIS`], or the hash of the last
    /// record before the files given.
    pub anchor: String,
    /// The last record; None for an empty trail.
    pub head: Option<Head>,
    /// Records that carry a mac (checked only against keys).
    pub keyed: u64,
}

/// Checks a trail given as its files, oldest first (`name`, contents): every
/// line a chained record in the exact layout, its hash over its bytes, seq up
/// by one and prev the hash of the record before, across files. A trail may
/// start after genesis (its older files shipped away): it is then checked from
/// its first record on, and [`Trail::first_seq`] says where it starts. Stops
/// at the first broken record. [`verify_with`] also checks what is expected
/// of the trail.
pub fn verify<R: BufRead>(files: impl IntoIterator<Item = (String, R)>) -> Result<Trail, VerifyError> {
    verify_links(files, &Expect::default())
}

/// [`verify`], and what `expect` says: the keys' macs, an anchored head it
/// must hold, the head it continues from (without one, a trail that does not
/// start at genesis is [`VerifyError::Incomplete`]).
pub fn verify_with<R: BufRead>(
    files: impl IntoIterator<Item = (String, R)>,
    expect: &Expect<'_>,
) -> Result<Trail, VerifyError> {
    let trail = verify_links(files, expect)?;
    let starts_at_genesis = trail.first_seq == 0 && trail.anchor == GENESIS;
    match &expect.after {
        Some(after)
            if trail.head.is_some()
                && (trail.first_seq != after.seq.saturating_add(1) || trail.anchor != after.hash) =>
        {
            let (first_seq, anchor) = (trail.first_seq, trail.anchor.clone());
            return Err(VerifyError::NotAfter { after: after.clone(), first_seq, anchor });
        }
        None if trail.head.is_some() && !starts_at_genesis => {
            return Err(VerifyError::Incomplete { first_seq: trail.first_seq, anchor: trail.anchor.clone() });
        }
        _ => {}
    }
    if let Some(head) = &expect.head {
        let last = trail.head.as_ref().map(|h| h.seq);
        if last.is_none_or(|l| l < head.seq) {
            return Err(VerifyError::HeadMissing { head: head.clone(), last });
        }
        if head.seq < trail.first_seq {
            return Err(VerifyError::HeadBefore { head: head.clone(), first_seq: trail.first_seq });
        }
    }
    Ok(trail)
}

fn verify_links<R: BufRead>(
    files: impl IntoIterator<Item = (String, R)>,
    expect: &Expect<'_>,
) -> Result<Trail, VerifyError> {
    let mut files = files.into_iter();
    let mut trail = Trail { records: 0, first_seq: 0, anchor: GENESIS.to_string(), head: None, keyed: 0 };
    let mut buf = Vec::new();
    while let Some((file, mut reader)) = files.next() {
        let mut n = 0u64;
        loop {
            buf.clear();
            match reader.read_until(b'\n', &mut buf) {
                Ok(0) => break,
                Ok(_) => n += 1,
                Err(source) => return Err(VerifyError::Io { file, source }),
            }
            let line = buf.strip_suffix(b"\n").unwrap_or(&buf);
            let broken = |seq, problem| VerifyError::Broken { file: file.clone(), line: n, seq, problem };
            let l = parse_line(line).map_err(|(seq, p)| broken(seq, p))?;
            let seq = Some(l.seq);
            match &trail.head {
                None => {
                    if l.seq == 0 && l.prev != GENESIS {
                        let problem =
                            Problem::PrevMismatch { expected: GENESIS.to_string(), found: l.prev.to_string() };
                        return Err(broken(seq, problem));
                    }
                    trail.first_seq = l.seq;
                    trail.anchor = l.prev.to_string();
                }
                Some(h) => {
                    let expected = h.seq.saturating_add(1);
                    if l.seq > expected {
                        let (found, f, at) = (l.seq, file.clone(), n);
                        let problem = match find_seq(expected, (f, at, &mut reader), &mut files) {
                            Some(at) => Problem::Reordered { expected, found, at },
                            None => Problem::SeqGap { expected, found },
                        };
                        return Err(VerifyError::Broken { file, line: n, seq, problem });
                    }
                    if l.seq < expected {
                        return Err(broken(seq, Problem::SeqBack { expected, found: l.seq }));
                    }
                    if l.prev != h.hash {
                        let problem = Problem::PrevMismatch { expected: h.hash.clone(), found: l.prev.to_string() };
                        return Err(broken(seq, problem));
                    }
                }
            }
            if let Some(keys) = expect.keys {
                match l.mac {
                    None => return Err(broken(seq, Problem::MacMissing)),
                    Some(mac) if !keys.verifies(l.hash, mac) => return Err(broken(seq, Problem::MacMismatch)),
                    Some(_) => {}
                }
            }
            if let Some(anchored) = expect.head.as_ref().filter(|h| h.seq == l.seq && h.hash != l.hash) {
                let problem = Problem::HeadMismatch { anchored: anchored.hash.clone(), found: l.hash.to_string() };
                return Err(broken(seq, problem));
            }
            trail.records += 1;
            trail.keyed += u64::from(l.mac.is_some());
            trail.head = Some(Head { seq: l.seq, hash: l.hash.to_string() });
        }
    }
    Ok(trail)
}

/// Where (`file:line`) the record `seq` comes later in the trail: the rest
/// of the current file, then the files after it. Reading errors end the
/// search.
fn find_seq<R: BufRead>(
    seq: u64,
    current: (String, u64, &mut R),
    rest: &mut impl Iterator<Item = (String, R)>,
) -> Option<String> {
    let scan = |file: &str, mut n: u64, reader: &mut R| -> Option<String> {
        let mut buf = Vec::new();
        loop {
            buf.clear();
            match reader.read_until(b'\n', &mut buf) {
                Ok(0) | Err(_) => return None,
                Ok(_) => n += 1,
            }
            let line = buf.strip_suffix(b"\n").unwrap_or(&buf);
            if parse_line(line).is_ok_and(|l| l.seq == seq) {
                return Some(format!("{file}:{n}"));
            }
        }
    };
    let (file, n, reader) = current;
    scan(&file, n, reader).or_else(|| rest.find_map(|(file, mut reader)| scan(&file, 0, &mut reader)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// A trail of `n` records built by the chain alone.
    fn trail(n: u64) -> Vec<Vec<u8>> {
        let mut chain = Chain::after(None);
        (0..n)
            .map(|i| {
                let mut line = Vec::new();
                let record =
                    serde_json::to_vec(&json!({"uid": format!("uid-{i}"), "name": format!("pod-{i}")})).unwrap();
                chain.append(&record, &mut line);
                line
            })
            .collect()
    }

    fn check(lines: &[Vec<u8>]) -> Result<Trail, VerifyError> {
        verify([("audit.log".to_string(), &lines.concat()[..])])
    }

    /// The problem at the first broken record, and its line.
    fn broken(r: Result<Trail, VerifyError>) -> (String, u64, Option<u64>, Problem) {
        match r {
            Err(VerifyError::Broken { file, line, seq, problem }) => (file, line, seq, problem),
            other => panic!("expected a broken trail, got {other:?}"),
        }
    }

    fn files(path: &Path) -> Vec<PathBuf> {
        let mut all: Vec<PathBuf> = rotated_files(path).unwrap().into_iter().map(|(_, p)| p).collect();
        if path.exists() {
            all.push(path.to_path_buf());
        }
        all
    }

    fn verify_files<P: AsRef<Path>>(paths: &[P]) -> Result<Trail, VerifyError> {
        verify(paths.iter().map(|p| {
            let p = p.as_ref();
            (p.file_name().unwrap().to_string_lossy().into_owned(), io::BufReader::new(File::open(p).unwrap()))
        }))
    }

    fn small(max_bytes: u64) -> AuditOptions {
        AuditOptions { max_bytes, anchor_interval: Duration::ZERO, queue_records: 64, keys: None, sync: Sync::Batch }
    }

    /// A trail of `n` records, macked with `keys` when given, from `chain`.
    fn keyed_trail(n: u64, keys: Option<&AuditKeys>) -> Vec<Vec<u8>> {
        let mut chain = Chain { keys: keys.cloned().map(Arc::new), ..Chain::after(None) };
        (0..n)
            .map(|i| {
                let mut line = Vec::new();
                chain.append(format!(r#"{{"i":{i}}}"#).as_bytes(), &mut line);
                line
            })
            .collect()
    }

    fn head_of(line: &[u8]) -> Head {
        let v: serde_json::Value = serde_json::from_slice(line).unwrap();
        Head { seq: v["seq"].as_u64().unwrap(), hash: v["hash"].as_str().unwrap().to_string() }
    }

    /// The same records from `from` on, chained again by someone without the
    /// key (the attack a keyless chain cannot show): a consistent chain.
    fn rewritten(lines: &[Vec<u8>], from: usize) -> Vec<Vec<u8>> {
        let mut chain = Chain::after(from.checked_sub(1).map(|i| head_of(&lines[i])).as_ref());
        let mut out = lines[..from].to_vec();
        for (i, _) in lines.iter().enumerate().skip(from) {
            let mut line = Vec::new();
            chain.append(format!(r#"{{"i":{i},"forged":true}}"#).as_bytes(), &mut line);
            out.push(line);
        }
        out
    }

    #[test]
    fn what_an_anchor_or_a_key_adds() {
        let key = AuditKeys::from_text(&"k".repeat(32)).unwrap();
        let other = AuditKeys::from_text(&"o".repeat(32)).unwrap();
        // A rotated key verifies the records its predecessor macked.
        let rotated = AuditKeys::from_text(&format!("{}\n{}", "n".repeat(32), "k".repeat(32))).unwrap();
        let plain = keyed_trail(10, None);
        let keyed = keyed_trail(10, Some(&key));
        let head = head_of(&plain[9]);
        let after = |i: usize, lines: &[Vec<u8>]| Some(head_of(&lines[i]));
        type Want = Result<(u64, u64, u64), &'static str>;
        type Row<'a> = (&'a str, Vec<Vec<u8>>, Option<&'a AuditKeys>, Option<Head>, Option<Head>, Want);
        // (case, lines, keys, anchored head, continues after, want: Ok((records, first seq, keyed)) or what is wrong)
        let rows: Vec<Row<'_>> = vec![
            ("intact, unkeyed", plain.clone(), None, None, None, Ok((10, 0, 0))),
            ("intact, keyed, checked", keyed.clone(), Some(&key), None, None, Ok((10, 0, 10))),
            ("keyed, a rotated key file", keyed.clone(), Some(&rotated), None, None, Ok((10, 0, 10))),
            ("keyed, not checked without the key", keyed.clone(), None, None, None, Ok((10, 0, 10))),
            ("keyed, another key", keyed.clone(), Some(&other), None, None, Err("mac mismatch")),
            ("unkeyed where a key is expected", plain.clone(), Some(&key), None, None, Err("no mac")),
            (
                "keyed, rechained from seq 6 without the key",
                rewritten(&keyed, 6),
                Some(&key),
                None,
                None,
                Err("no mac"),
            ),
            ("rechained from seq 6: no anchor, no key, intact", rewritten(&plain, 6), None, None, None, Ok((10, 0, 0))),
            (
                "rechained from seq 6, anchored head",
                rewritten(&plain, 6),
                None,
                Some(head.clone()),
                None,
                Err("not the anchored head's"),
            ),
            ("the anchored head holds", plain.clone(), None, Some(head.clone()), None, Ok((10, 0, 0))),
            ("an older anchored head holds", plain.clone(), None, after(4, &plain), None, Ok((10, 0, 0))),
            (
                "cut off its end",
                plain[..7].to_vec(),
                None,
                Some(head.clone()),
                None,
                Err("records were cut off its end"),
            ),
            (
                "the oldest file missing",
                plain[3..].to_vec(),
                None,
                None,
                None,
                Err("the records before it are not in the files given"),
            ),
            ("the oldest file shipped away, said so", plain[3..].to_vec(), None, None, after(2, &plain), Ok((7, 3, 0))),
            (
                "continuing from another head",
                plain[3..].to_vec(),
                None,
                None,
                after(1, &plain),
                Err("do not continue from seq 1"),
            ),
            (
                "an anchored head before the files",
                plain[3..].to_vec(),
                None,
                after(1, &plain),
                after(2, &plain),
                Err("is before the files given"),
            ),
        ];
        for (case, lines, keys, head, after, want) in rows {
            let expect = Expect { keys, head, after };
            let got = verify_with([("audit.log".to_string(), &lines.concat()[..])], &expect);
            match (got, want) {
                (Ok(t), Ok(w)) => assert_eq!((t.records, t.first_seq, t.keyed), w, "{case}"),
                (Err(e), Err(w)) => {
                    assert!(e.is_broken(), "{case}");
                    assert!(e.to_string().contains(w), "{case}: {e}");
                }
                (got, want) => panic!("{case}: got {got:?}, want {want:?}"),
            }
        }
    }

    #[test]
    fn audit_keys_are_refused_when_short_or_absent() {
        assert_eq!(AuditKeys::from_text("\n  \n").unwrap_err(), AuditKeyError::Empty);
        assert_eq!(AuditKeys::from_text("short").unwrap_err(), AuditKeyError::TooShort { line: 1, len: 5 });
    }

    #[test]
    fn intact() {
        let lines = trail(10);
        let t = check(&lines).unwrap();
        assert_eq!((t.records, t.first_seq, t.anchor.as_str()), (10, 0, GENESIS));
        assert_eq!(t.head.as_ref().unwrap().seq, 9);
        // Every line is plain JSON with the record under "audit".
        let v: serde_json::Value = serde_json::from_slice(&lines[3]).unwrap();
        assert_eq!(v["audit"]["name"], "pod-3");
        assert_eq!(v["seq"], 3);
        let v4: serde_json::Value = serde_json::from_slice(&lines[4]).unwrap();
        assert_eq!(v4["prev"], v["hash"]);
        let v9: serde_json::Value = serde_json::from_slice(&lines[9]).unwrap();
        assert_eq!(v9["hash"], t.head.unwrap().hash);
        assert_eq!(
            check(&[]).unwrap(),
            Trail { records: 0, first_seq: 0, anchor: GENESIS.into(), head: None, keyed: 0 }
        );
    }

    #[test]
    fn edited() {
        let mut lines = trail(10);
        let text = String::from_utf8(lines[4].clone()).unwrap().replace("pod-4", "pod-X");
        lines[4] = text.into_bytes();
        let (file, line, seq, p) = broken(check(&lines));
        assert_eq!((file.as_str(), line, seq), ("audit.log", 5, Some(4)));
        assert!(matches!(p, Problem::HashMismatch { .. }), "{p}");
        // Edited, and its hash made to match: the next record's prev no longer does.
        let body = String::from_utf8(lines[4][..lines[4].len() - 1 - SUFFIX_LEN].to_vec()).unwrap();
        let hash = format!("sha256:{}", hex::encode(Sha256::digest(format!("{body}}}").as_bytes())));
        lines[4] = format!("{body},\"hash\":\"{hash}\"}}\n").into_bytes();
        let (_, line, seq, p) = broken(check(&lines));
        assert_eq!((line, seq), (6, Some(5)));
        assert!(matches!(p, Problem::PrevMismatch { .. }), "{p}");
        // Its seq edited.
        let mut lines = trail(10);
        lines[4] = String::from_utf8(lines[4].clone()).unwrap().replacen("\"seq\":4", "\"seq\":5", 1).into_bytes();
        assert!(matches!(broken(check(&lines)), (_, 5, Some(5), Problem::HashMismatch { .. })));
    }

    #[test]
    fn deleted() {
        let mut lines = trail(10);
        lines.remove(4);
        let (_, line, seq, p) = broken(check(&lines));
        assert_eq!((line, seq, p), (5, Some(5), Problem::SeqGap { expected: 4, found: 5 }));
        // The first records deleted: a trail from seq 3 on, anchored at the hash of seq 2.
        let lines = trail(10);
        let t = check(&lines[3..]).unwrap();
        let v: serde_json::Value = serde_json::from_slice(&lines[2]).unwrap();
        assert_eq!((t.records, t.first_seq, t.anchor.as_str()), (7, 3, v["hash"].as_str().unwrap()));
    }

    #[test]
    fn reordered() {
        let mut lines = trail(10);
        lines.swap(2, 6);
        let (_, line, seq, p) = broken(check(&lines));
        assert_eq!((line, seq), (3, Some(6)));
        assert_eq!(p, Problem::Reordered { expected: 2, found: 6, at: "audit.log:7".into() });
        let mut lines = trail(10);
        lines.swap(4, 5);
        assert_eq!(broken(check(&lines)).3, Problem::Reordered { expected: 4, found: 5, at: "audit.log:6".into() });
    }

    #[test]
    fn inserted() {
        // A copy of a record.
        let mut lines = trail(10);
        lines.insert(6, lines[2].clone());
        let (_, line, seq, p) = broken(check(&lines));
        assert_eq!((line, seq, p), (7, Some(2), Problem::SeqBack { expected: 6, found: 2 }));
        // A forged record, chained to the one before it.
        let mut lines = trail(10);
        let v: serde_json::Value = serde_json::from_slice(&lines[5]).unwrap();
        let mut chain = Chain::after(Some(&Head { seq: 5, hash: v["hash"].as_str().unwrap().into() }));
        let mut forged = Vec::new();
        chain.append(br#"{"name":"forged"}"#, &mut forged);
        lines.insert(6, forged);
        let (_, line, seq, p) = broken(check(&lines));
        assert_eq!((line, seq, p), (8, Some(6), Problem::SeqBack { expected: 7, found: 6 }));
        // A line that is not a record.
        let mut lines = trail(10);
        lines.insert(3, b"{\"audit\":{\"name\":\"pod\"}}\n".to_vec());
        assert!(matches!(broken(check(&lines)), (_, 4, None, Problem::Unparseable(_))));
        let mut lines = trail(3);
        lines.insert(1, b"\n".to_vec());
        assert!(matches!(broken(check(&lines)), (_, 2, None, Problem::Unparseable(_))));
    }

    #[test]
    fn genesis_must_name_the_genesis_prev() {
        let mut chain = Chain { next: 0, prev: format!("sha256:{}", "1".repeat(64)), keys: None };
        let mut line = Vec::new();
        chain.append(b"{}", &mut line);
        assert!(matches!(broken(check(&[line])), (_, 1, Some(0), Problem::PrevMismatch { .. })));
    }

    #[tokio::test]
    async fn written_trail_is_intact_and_continues_across_restarts() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.log");
        let p = path.to_str().unwrap();
        let log = AuditLog::open_with(p, small(0)).unwrap();
        for i in 0..10 {
            log.write(json!({"i": i})).await;
        }
        log.close().await;
        let head = log.head().unwrap();
        assert_eq!(head.seq, 9);
        let log = AuditLog::open_with(p, small(0)).unwrap();
        assert_eq!(log.head(), Some(head));
        for i in 10..20 {
            log.write(json!({"i": i})).await;
        }
        log.close().await;
        let t = verify_files(&[&path]).unwrap();
        assert_eq!((t.records, t.first_seq, t.head.as_ref().map(|h| h.seq)), (20, 0, Some(19)));
        assert_eq!(t.head, log.head());
        let text = std::fs::read_to_string(&path).unwrap();
        let is: Vec<u64> = text
            .lines()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["audit"]["i"].as_u64().unwrap())
            .collect();
        assert_eq!(is, (0..20).collect::<Vec<_>>());
        assert_eq!(log.write_errors(), 0);
        // Refused after close, and counted.
        log.write(json!({"i": 20})).await;
        assert_eq!(log.write_errors(), 1);
        assert_eq!(std::fs::read_to_string(&path).unwrap(), text);
    }

    #[tokio::test]
    async fn rotation_keeps_every_record_and_the_chain() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.log");
        let log = AuditLog::open_with(path.to_str().unwrap(), small(2000)).unwrap();
        for i in 0..200 {
            log.write(json!({"i": i, "pad": "x".repeat(40)})).await;
        }
        log.close().await;
        let all = files(&path);
        assert!(all.len() > 5, "{all:?}");
        assert_eq!(all[0], dir.path().join("audit.log.000001"));
        assert_eq!(all[1], dir.path().join("audit.log.000002"));
        for f in &all {
            assert!(std::fs::metadata(f).unwrap().len() <= 2000, "{}", f.display());
        }
        let t = verify_files(&all).unwrap();
        assert_eq!((t.records, t.first_seq), (200, 0));
        // Out of order, the files break the chain.
        let mut swapped = all.clone();
        swapped.swap(0, 1);
        assert!(matches!(verify_files(&swapped), Err(VerifyError::Broken { .. })));
        // Older files shipped away: the rest verifies from where it starts.
        let t = verify_files(&all[2..]).unwrap();
        assert!(t.first_seq > 0 && t.anchor != GENESIS);
        // A restart with the current file gone (renamed, the new one not yet
        // made) goes on from the newest rotated file.
        let head = log.head().unwrap();
        let next = next_rotated(&path).unwrap();
        std::fs::rename(&path, &next).unwrap();
        let log = AuditLog::open_with(path.to_str().unwrap(), small(2000)).unwrap();
        assert_eq!(log.head(), Some(head));
        log.write(json!({"i": 200})).await;
        log.close().await;
        let t = verify_files(&files(&path)).unwrap();
        assert_eq!((t.records, t.head.unwrap().seq), (201, 200));
    }

    #[tokio::test]
    async fn a_record_larger_than_the_limit_gets_a_file_of_its_own() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.log");
        let log = AuditLog::open_with(path.to_str().unwrap(), AuditOptions { queue_records: 1, ..small(300) }).unwrap();
        log.write(json!({"i": 0})).await;
        log.write(json!({"i": 1, "pad": "x".repeat(1000)})).await;
        log.write(json!({"i": 2})).await;
        log.close().await;
        let all = files(&path);
        assert_eq!(all.len(), 3, "{all:?}");
        assert_eq!(verify_files(&all).unwrap().records, 3);
    }

    #[tokio::test]
    async fn torn_last_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.log");
        let p = path.to_str().unwrap();
        let log = AuditLog::open_with(p, small(0)).unwrap();
        for i in 0..5 {
            log.write(json!({"i": i})).await;
        }
        log.close().await;
        // A write cut short.
        let mut torn = Vec::new();
        Chain::after(log.head().as_ref()).append(br#"{"i":5}"#, &mut torn);
        let mut f = OpenOptions::new().append(true).open(&path).unwrap();
        f.write_all(&torn[..40]).unwrap();
        drop(f);
        let log = AuditLog::open_with(p, small(0)).unwrap();
        assert_eq!(log.head().unwrap().seq, 4, "the chain goes on from the last intact record");
        for i in 5..8 {
            log.write(json!({"i": i})).await;
        }
        log.close().await;
        let (file, line, seq, p) = broken(verify_files(&[&path]));
        assert_eq!((file.as_str(), line, seq), ("audit.log", 6, None));
        assert!(matches!(p, Problem::Unparseable(_)));
        // Without the torn line, the chain is whole.
        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<Vec<u8>> =
            text.lines().enumerate().filter(|(i, _)| *i != 5).map(|(_, l)| format!("{l}\n").into_bytes()).collect();
        assert_eq!(check(&lines).unwrap().records, 8);
    }

    #[tokio::test]
    async fn a_file_without_chain_is_renamed_aside() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.log");
        let old = "{\"audit\":{\"name\":\"old\"}}\n";
        std::fs::write(&path, old).unwrap();
        let log = AuditLog::open_with(path.to_str().unwrap(), small(0)).unwrap();
        assert_eq!(log.head(), None);
        log.write(json!({"i": 0})).await;
        log.close().await;
        assert_eq!(std::fs::read_to_string(dir.path().join("audit.log.000001")).unwrap(), old);
        let t = verify_files(&[&path]).unwrap();
        assert_eq!((t.records, t.first_seq), (1, 0));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn concurrent_writers_lose_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.log");
        // A small queue: writers wait for the writer often.
        let log = Arc::new(AuditLog::open_with(path.to_str().unwrap(), small(0)).unwrap());
        let tasks: Vec<_> = (0..64)
            .map(|t| {
                let log = log.clone();
                tokio::spawn(async move {
                    for i in 0..4000 / 64 + usize::from(t < 4000 % 64) {
                        log.write(json!({"task": t, "i": i})).await;
                    }
                })
            })
            .collect();
        for t in tasks {
            t.await.unwrap();
        }
        log.close().await;
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text.lines().count(), 4000);
        let t = verify_files(&[&path]).unwrap();
        assert_eq!((t.records, t.head.map(|h| h.seq)), (4000, Some(3999)));
        assert_eq!(log.write_errors(), 0);
    }

    #[cfg(target_os = "linux")]
    #[tokio::test]
    async fn write_errors_are_counted_and_the_writer_goes_on() {
        // Every write to /dev/full fails (no space left).
        let log = AuditLog::open_with("/dev/full", small(0)).unwrap();
        for i in 0..3 {
            log.write(json!({"i": i})).await;
            log.flush().await;
        }
        log.close().await;
        assert_eq!(log.write_errors(), 3);
        assert_eq!(log.head(), None);
    }

    #[tokio::test]
    async fn flush_waits_for_the_records_before_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.log");
        let log = AuditLog::open_with(path.to_str().unwrap(), small(0)).unwrap();
        log.write(json!({"i": 0})).await;
        log.flush().await;
        assert_eq!(std::fs::read_to_string(&path).unwrap().lines().count(), 1);
        log.write(json!({"i": 1})).await;
        log.flush_blocking();
        assert_eq!(verify_files(&[&path]).unwrap().records, 2);
    }
}

//! The audit trail: one JSON line per admission decision, break-glass included.

use std::io::Write;
use std::sync::Mutex;

use serde::Serialize;

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

/// Where audit records go: stdout (`-`) or an append-only file.
pub struct AuditLog {
    out: Mutex<Box<dyn Write + Send>>,
}

impl AuditLog {
    pub fn open(path: &str) -> std::io::Result<Self> {
        let out: Box<dyn Write + Send> = if path == "-" {
            Box::new(std::io::stdout())
        } else {
            Box::new(std::fs::OpenOptions::new().create(true).append(true).open(path)?)
        };
        Ok(AuditLog { out: Mutex::new(out) })
    }

    pub fn write(&self, r: &Record) {
        let Ok(mut line) = serde_json::to_vec(&serde_json::json!({ "audit": r })) else {
            return;
        };
        line.push(b'\n');
        match self.out.lock() {
            Ok(mut out) => {
                if let Err(e) = out.write_all(&line).and_then(|_| out.flush()) {
                    tracing::error!(%e, "writing the audit record failed");
                }
            }
            Err(_) => tracing::error!("audit log lock poisoned"),
        }
    }
}

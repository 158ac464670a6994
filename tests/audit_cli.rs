//! `portcullis audit verify`, the real binary: exit 0 on an intact trail, 1
//! on a tampered one (naming the first broken record), 2 on a missing file.

use std::path::Path;
use std::process::Output;

use portcullis::audit::{AuditLog, AuditOptions};
use serde_json::json;

fn verify(files: &[&Path]) -> Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_portcullis")).args(["audit", "verify"]).args(files).output().unwrap()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// A trail of `n` records at `path`, rotated past `max_bytes`.
async fn write_trail(path: &Path, n: u64, max_bytes: u64) {
    let log =
        AuditLog::open_with(path.to_str().unwrap(), AuditOptions { max_bytes, ..AuditOptions::default() }).unwrap();
    for i in 0..n {
        log.write(json!({"uid": format!("uid-{i}"), "namespace": "prod", "allowed": i % 3 != 0})).await;
    }
    log.close().await;
    assert_eq!(log.write_errors(), 0);
}

#[tokio::test]
async fn intact_trail_exits_0() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.jsonl");
    write_trail(&path, 12, 0).await;
    let out = verify(&[&path]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let head = std::fs::read_to_string(&path)
        .unwrap()
        .lines()
        .last()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["hash"].as_str().unwrap().to_string());
    assert!(stdout(&out).starts_with(&format!("intact: 12 records, seq 0..11, head {}", head.unwrap())), "{out:?}");
}

#[tokio::test]
async fn rotated_trail_verifies_oldest_first() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.jsonl");
    write_trail(&path, 40, 1000).await;
    let (r1, r2) = (dir.path().join("audit.jsonl.000001"), dir.path().join("audit.jsonl.000002"));
    assert!(r1.exists() && r2.exists());
    let mut all: Vec<_> = std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().path()).collect();
    all.sort_by_key(|p| (p == &path, p.clone()));
    let all: Vec<&Path> = all.iter().map(|p| p.as_path()).collect();
    let out = verify(&all);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert!(stdout(&out).starts_with("intact: 40 records, seq 0..39"), "{out:?}");
    // Without the oldest file: intact from where it starts, and said so.
    let out = verify(&all[1..]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert!(stdout(&out).contains("the trail starts at seq "), "{out:?}");
    // Out of order: broken.
    let out = verify(&[&r2, &r1]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
}

#[tokio::test]
async fn tampered_trail_exits_1_naming_the_line() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.jsonl");
    write_trail(&path, 12, 0).await;
    let text = std::fs::read_to_string(&path).unwrap();
    let tampered: Vec<String> = text
        .lines()
        .enumerate()
        .map(|(i, l)| if i == 6 { l.replace("\"allowed\":false", "\"allowed\":true") } else { l.to_string() })
        .collect();
    assert_ne!(tampered.join("\n") + "\n", text, "the test edits a record");
    std::fs::write(&path, tampered.join("\n") + "\n").unwrap();
    let out = verify(&[&path]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let s = stdout(&out);
    assert!(s.contains("audit.jsonl:7: seq 6: hash mismatch"), "{s}");
}

#[test]
fn missing_file_exits_2() {
    let dir = tempfile::tempdir().unwrap();
    let out = verify(&[&dir.path().join("absent.jsonl")]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("absent.jsonl"), "{out:?}");
}

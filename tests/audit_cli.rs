//! `portcullis audit verify`, the real binary: exit 0 on an intact trail, 1
//! on a tampered one (naming the first broken record), 2 on a missing file.

use std::path::Path;
use std::process::Output;

use portcullis::audit::{AuditLog, AuditOptions};
use serde_json::json;

fn verify(files: &[&Path]) -> Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_portcullis")).args(["audit", "verify"]).args(files).output().unwrap()
}

fn verify_with(flags: &[&str], files: &[&Path]) -> Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_portcullis"))
        .args(["audit", "verify"])
        .args(flags)
        .args(files)
        .output()
        .unwrap()
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
    // Without the oldest file: incomplete, and said so.
    let out = verify(&all[1..]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(stdout(&out).starts_with("incomplete: the trail starts at seq "), "{out:?}");
    // Unless the head it continues from is named (the oldest file shipped away).
    let last_of_oldest = std::fs::read_to_string(all[0]).unwrap().lines().last().map(|l| {
        let v: serde_json::Value = serde_json::from_str(l).unwrap();
        format!("{}:{}", v["seq"], v["hash"].as_str().unwrap())
    });
    let out = verify_with(&["--after", &last_of_oldest.unwrap()], &all[1..]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert!(stdout(&out).contains("continuing from prev "), "{out:?}");
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

/// A keyed trail, written by the real writer across a restart, checked with
/// its key; the same records chained again without the key, or cut off
/// their end, are caught by the key and by an anchored head.
#[tokio::test]
async fn a_keyed_or_anchored_trail_shows_a_rewrite_and_a_cut() {
    use portcullis::audit::AuditKeys;
    let dir = tempfile::tempdir().unwrap();
    let (path, key) = (dir.path().join("audit.jsonl"), dir.path().join("audit.key"));
    std::fs::write(&key, format!("{}\n", "k".repeat(40))).unwrap();
    let keys = AuditKeys::from_text(&std::fs::read_to_string(&key).unwrap()).unwrap();
    let mut head = None;
    for _restart in 0..2 {
        let opts = AuditOptions { keys: Some(keys.clone()), ..AuditOptions::default() };
        let log = AuditLog::open_with(path.to_str().unwrap(), opts).unwrap();
        for i in 0..5 {
            log.write(json!({"uid": format!("uid-{i}"), "allowed": false})).await;
        }
        log.close().await;
        head = log.head();
    }
    let head = head.unwrap();
    let anchored = format!("{}:{}", head.seq, head.hash);
    let key_flag = key.to_str().unwrap();
    let out = verify_with(&["--key", key_flag, "--head", &anchored], &[&path]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert!(stdout(&out).contains("keyed: the mac of each of the 10 records verifies"), "{out:?}");
    assert!(stdout(&out).contains(&format!("holds the anchored head seq {}", head.seq)), "{out:?}");

    // Someone without the key flips seq 6 and chains everything after it
    // again: the plain chain verifies, the key and the anchored head do not.
    let text = std::fs::read_to_string(&path).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    let mut prev = serde_json::from_str::<serde_json::Value>(lines[5]).unwrap()["hash"].as_str().unwrap().to_string();
    let mut forged: Vec<String> = lines[..6].iter().map(|l| l.to_string()).collect();
    for (seq, l) in lines.iter().enumerate().skip(6) {
        let v: serde_json::Value = serde_json::from_str(l).unwrap();
        let mut record = v["audit"].clone();
        record["allowed"] = json!(true);
        let body = format!(r#"{{"seq":{seq},"prev":"{prev}","audit":{}}}"#, serde_json::to_string(&record).unwrap());
        use sha2::Digest as _;
        let hash = format!("sha256:{}", hex::encode(sha2::Sha256::digest(body.as_bytes())));
        forged.push(format!(r#"{},"hash":"{hash}"}}"#, &body[..body.len() - 1]));
        prev = hash;
    }
    let rewritten = dir.path().join("rewritten.jsonl");
    std::fs::write(&rewritten, forged.join("\n") + "\n").unwrap();
    let plain = verify(&[&rewritten]);
    assert_eq!(plain.status.code(), Some(0), "the forgery is a consistent chain: {plain:?}");
    let out = verify_with(&["--key", key_flag], &[&rewritten]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(stdout(&out).contains("seq 6: no mac"), "{out:?}");
    let out = verify_with(&["--head", &anchored], &[&rewritten]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(stdout(&out).contains(&format!("seq {}: hash ", head.seq)), "{out:?}");

    // The last records cut off: the chain verifies, the anchored head does not.
    let cut = dir.path().join("cut.jsonl");
    std::fs::write(&cut, lines[..7].join("\n") + "\n").unwrap();
    assert_eq!(verify(&[&cut]).status.code(), Some(0));
    let out = verify_with(&["--head", &anchored], &[&cut]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(stdout(&out).contains("records were cut off its end"), "{out:?}");

    // A head that is not SEQ:HASH is refused as a usage error.
    let out = verify_with(&["--head", "6:md5:abc"], &[&path]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
}

//! `make image`: the Portcullis container image as an OCI image layout,
//! built without a container daemon.
//!
//! One layer: the release binary, the shared libraries it links (found with
//! `ldd`: the C library, libm, libgcc_s and the dynamic loader, as
//! distroless/cc ships them), the CA certificates for HTTPS registries, and
//! `/etc/passwd` naming the non-root user 65532. The config runs the binary
//! as that user. Entries are sorted, owned by root (but `/tmp` and the
//! user's home), and timestamped `SOURCE_DATE_EPOCH`, so the same inputs give
//! the same digest. Written here rather than with a layout tool because the
//! format is four small JSON documents and a tarball, and the `tar` and
//! `flate2` crates do the rest.
//!
//! Usage: oci-image --binary target/release/portcullis --out target/image
//!                  [--revision REV] [--source URL] [--version V] [--created EPOCH]

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde_json::json;
use sha2::Digest as _;

const USER: u64 = 65532;
const CA_BUNDLE: &str = "/etc/ssl/certs/ca-certificates.crt";

fn main() {
    if let Err(e) = run() {
        eprintln!("oci-image: {e}");
        std::process::exit(1);
    }
}

struct Args {
    binary: PathBuf,
    out: PathBuf,
    revision: String,
    source: String,
    version: String,
    created: u64,
}

fn args() -> Result<Args, String> {
    let mut a = Args {
        binary: PathBuf::new(),
        out: PathBuf::new(),
        revision: "unknown".into(),
        source: "https://github.com/portcullis-dev/portcullis".into(),
        version: env!("CARGO_PKG_VERSION").into(),
        created: 0,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it.next().ok_or(format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--binary" => a.binary = value.into(),
            "--out" => a.out = value.into(),
            "--revision" => a.revision = value,
            "--source" => a.source = value,
            "--version" => a.version = value,
            "--created" => a.created = value.parse().map_err(|e| format!("--created {value}: {e}"))?,
            other => return Err(format!("unknown flag {other}")),
        }
    }
    if a.binary.as_os_str().is_empty() || a.out.as_os_str().is_empty() {
        return Err(
            "usage: oci-image --binary FILE --out DIR [--revision REV] [--source URL] [--version V] [--created EPOCH]"
                .into(),
        );
    }
    Ok(a)
}

/// What goes into the layer, by path in the image.
enum Entry {
    Dir { mode: u32, owner: u64 },
    File { mode: u32, data: Vec<u8> },
}

fn run() -> Result<(), String> {
    let a = args()?;
    let read = |p: &Path| std::fs::read(p).map_err(|e| format!("reading {}: {e}", p.display()));
    let mut files: BTreeMap<String, Entry> = BTreeMap::new();
    files.insert("usr/local/bin/portcullis".into(), Entry::File { mode: 0o755, data: read(&a.binary)? });
    for (inside, host) in shared_libraries(&a.binary)? {
        files.insert(inside.trim_start_matches('/').to_string(), Entry::File { mode: 0o755, data: read(&host)? });
    }
    // Debian keeps the libraries under /lib -> usr/lib; the loader's path is fixed.
    if files.keys().any(|k| k.starts_with("lib64/")) {
        files.entry("lib64".into()).or_insert(Entry::Dir { mode: 0o755, owner: 0 });
    }
    files.insert(
        CA_BUNDLE.trim_start_matches('/').into(),
        Entry::File { mode: 0o644, data: read(Path::new(CA_BUNDLE))? },
    );
    files.insert(
        "etc/passwd".into(),
        Entry::File {
            mode: 0o644,
            data: format!(
                "root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:{USER}:{USER}:nonroot:/home/nonroot:/sbin/nologin\n"
            )
            .into_bytes(),
        },
    );
    files.insert(
        "etc/group".into(),
        Entry::File { mode: 0o644, data: format!("root:x:0:\nnonroot:x:{USER}:\n").into_bytes() },
    );
    files.insert("tmp".into(), Entry::Dir { mode: 0o1777, owner: 0 });
    files.insert("home/nonroot".into(), Entry::Dir { mode: 0o700, owner: USER });
    // Every parent directory, root-owned.
    let parents: Vec<String> = files
        .keys()
        .flat_map(|k| {
            let parts: Vec<&str> = k.split('/').collect();
            (1..parts.len()).map(move |i| parts[..i].join("/")).collect::<Vec<_>>()
        })
        .collect();
    for p in parents {
        files.entry(p).or_insert(Entry::Dir { mode: 0o755, owner: 0 });
    }

    let tar = layer(&files, a.created)?;
    let diff_id = sha256(&tar);
    let mut gz = flate2::GzBuilder::new().mtime(0).write(Vec::new(), flate2::Compression::best());
    gz.write_all(&tar).map_err(|e| e.to_string())?;
    let layer_gz = gz.finish().map_err(|e| e.to_string())?;

    let created = chrono::DateTime::from_timestamp(a.created as i64, 0)
        .unwrap_or_default()
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let labels = json!({
        "org.opencontainers.image.title": "portcullis",
        "org.opencontainers.image.description": env!("CARGO_PKG_DESCRIPTION"),
        "org.opencontainers.image.source": a.source,
        "org.opencontainers.image.revision": a.revision,
        "org.opencontainers.image.version": a.version,
        "org.opencontainers.image.licenses": env!("CARGO_PKG_LICENSE"),
        "org.opencontainers.image.created": created,
    });
    let config = json!({
        "architecture": "amd64",
        "os": "linux",
        "created": created,
        "config": {
            "User": format!("{USER}:{USER}"),
            "Entrypoint": ["/usr/local/bin/portcullis"],
            "Cmd": ["serve", "--listen", "0.0.0.0:8443"],
            "Env": ["PATH=/usr/local/bin", format!("SSL_CERT_FILE={CA_BUNDLE}")],
            "WorkingDir": "/home/nonroot",
            "ExposedPorts": {"8443/tcp": {}},
            "Labels": labels,
        },
        "rootfs": {"type": "layers", "diff_ids": [diff_id]},
        "history": [{"created": created, "created_by": "make image (examples/oci-image.rs)"}],
    });
    let config = serde_json::to_vec(&config).map_err(|e| e.to_string())?;
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": sha256(&config), "size": config.len()},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": sha256(&layer_gz), "size": layer_gz.len()}],
        "annotations": labels,
    });
    let manifest = serde_json::to_vec(&manifest).map_err(|e| e.to_string())?;

    let blobs = a.out.join("blobs/sha256");
    if a.out.exists() {
        std::fs::remove_dir_all(&a.out).map_err(|e| format!("clearing {}: {e}", a.out.display()))?;
    }
    std::fs::create_dir_all(&blobs).map_err(|e| format!("creating {}: {e}", blobs.display()))?;
    for blob in [&layer_gz, &config, &manifest] {
        let d = sha256(blob);
        let path = blobs.join(d.trim_start_matches("sha256:"));
        std::fs::write(&path, blob).map_err(|e| format!("writing {}: {e}", path.display()))?;
    }
    let index = json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [{
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": sha256(&manifest),
            "size": manifest.len(),
            "platform": {"architecture": "amd64", "os": "linux"},
            "annotations": {"org.opencontainers.image.ref.name": a.version},
        }],
    });
    let write = |name: &str, v: &serde_json::Value| {
        std::fs::write(a.out.join(name), serde_json::to_vec(v).unwrap_or_default()).map_err(|e| e.to_string())
    };
    write("index.json", &index)?;
    write("oci-layout", &json!({"imageLayoutVersion": "1.0.0"}))?;
    println!(
        "{}: portcullis {} ({}), manifest {}, {:.1} MB compressed, {:.1} MB uncompressed",
        a.out.display(),
        a.version,
        a.revision,
        sha256(&manifest),
        layer_gz.len() as f64 / 1e6,
        tar.len() as f64 / 1e6
    );
    Ok(())
}

/// The libraries `binary` loads, as (path in the image, file on this machine):
/// what `ldd` resolves, at the path the loader will look for them.
fn shared_libraries(binary: &Path) -> Result<Vec<(String, PathBuf)>, String> {
    let out = std::process::Command::new("ldd").arg(binary).output().map_err(|e| format!("running ldd: {e}"))?;
    let text = String::from_utf8_lossy(&out.stdout);
    if text.contains("not a dynamic executable") || text.contains("statically linked") {
        return Ok(vec![]);
    }
    let mut libs = Vec::new();
    for line in text.lines() {
        // `libc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x…)` or `/lib64/ld-linux-x86-64.so.2 (0x…)`
        let path = match line.split_once("=>") {
            Some((_, right)) => right.split_whitespace().next(),
            None => line.split_whitespace().next().filter(|p| p.starts_with('/')),
        };
        let Some(path) = path.filter(|p| p.starts_with('/')) else { continue };
        // Resolve symlinks for the content, keep the name the loader asks for.
        let real = std::fs::canonicalize(path).map_err(|e| format!("{path}: {e}"))?;
        libs.push((path.to_string(), real));
    }
    if libs.is_empty() {
        return Err(format!("ldd found no libraries for {}: {text}", binary.display()));
    }
    Ok(libs)
}

fn layer(files: &BTreeMap<String, Entry>, mtime: u64) -> Result<Vec<u8>, String> {
    let mut b = tar::Builder::new(Vec::new());
    for (path, entry) in files {
        let mut h = tar::Header::new_gnu();
        h.set_mtime(mtime);
        h.set_uid(0);
        h.set_gid(0);
        match entry {
            Entry::Dir { mode, owner } => {
                h.set_entry_type(tar::EntryType::Directory);
                h.set_mode(*mode);
                h.set_uid(*owner);
                h.set_gid(*owner);
                h.set_size(0);
                b.append_data(&mut h, format!("{path}/"), std::io::empty()).map_err(|e| e.to_string())?;
            }
            Entry::File { mode, data } => {
                h.set_entry_type(tar::EntryType::Regular);
                h.set_mode(*mode);
                h.set_size(data.len() as u64);
                b.append_data(&mut h, path, data.as_slice()).map_err(|e| e.to_string())?;
            }
        }
    }
    b.into_inner().map_err(|e| e.to_string())
}

fn sha256(b: &[u8]) -> String {
    format!("sha256:{}", hex::encode(sha2::Sha256::digest(b)))
}

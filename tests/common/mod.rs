//! Test harness: a real OCI registry (distribution) and the real cosign,
//! both built by `make tools`, started on loopback by the tests themselves.
#![allow(dead_code)]

pub mod keyless;
pub mod token;

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine as _;
use serde_json::{json, Value};

pub fn tool(env: &str, name: &str) -> PathBuf {
    tool_in(env, name, name)
}

/// `name` from `$env`, or from the tools cache entry whose directory starts
/// with `entry` (`cosign-v3`).
pub fn tool_in(env: &str, name: &str, entry: &str) -> PathBuf {
    if let Ok(p) = std::env::var(env) {
        return PathBuf::from(p);
    }
    let home = std::env::var("HOME").unwrap_or_default();
    let dir = PathBuf::from(home).join(".cache/portcullis/tools");
    let found = std::fs::read_dir(&dir).ok().into_iter().flatten().flatten().map(|e| e.path().join(name)).find(|p| {
        p.exists() && p.parent().is_some_and(|d| d.file_name().is_some_and(|n| n.to_string_lossy().starts_with(entry)))
    });
    found.unwrap_or_else(|| {
        panic!("{name} not found: set {env} or run `make tools` (it builds {name} into {})", dir.display())
    })
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A real `registry` (CNCF distribution) process on a free loopback port.
pub struct Registry {
    child: Child,
    pub host: String,
    _dir: tempfile::TempDir,
    http: reqwest::Client,
    scheme: &'static str,
    auth: RegistryAuth,
}

/// How a test registry is reached: plain HTTP, or TLS with a test CA; and
/// who may use it.
#[derive(Default)]
pub struct RegistryOptions {
    pub tls: Option<TestTls>,
    pub auth: RegistryAuth,
    /// Where the registry writes its access log (one line per request).
    pub access_log: Option<PathBuf>,
}

#[derive(Clone, Default)]
pub enum RegistryAuth {
    #[default]
    Anonymous,
    /// htpasswd (bcrypt) Basic auth for one user.
    Basic { user: String, password: String },
    /// Bearer tokens from this issuer's service at `realm`.
    Token { issuer: Arc<token::TokenIssuer>, realm: String },
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Registry {
    pub async fn start() -> Registry {
        Registry::start_with(RegistryOptions::default()).await
    }

    pub async fn start_with(o: RegistryOptions) -> Registry {
        let bin = tool("PORTCULLIS_REGISTRY", "registry");
        let dir = tempfile::tempdir().unwrap();
        let mut extra = String::new();
        if let Some(tls) = &o.tls {
            std::fs::write(dir.path().join("tls.crt"), &tls.cert_pem).unwrap();
            std::fs::write(dir.path().join("tls.key"), &tls.key_pem).unwrap();
            extra.push_str(&format!(
                "  tls:\n    certificate: {}\n    key: {}\n",
                dir.path().join("tls.crt").display(),
                dir.path().join("tls.key").display()
            ));
        }
        match &o.auth {
            RegistryAuth::Anonymous => {}
            RegistryAuth::Basic { user, password } => {
                let hash = bcrypt::hash(password, 4).unwrap();
                std::fs::write(dir.path().join("htpasswd"), format!("{user}:{hash}\n")).unwrap();
                extra.push_str(&format!(
                    "auth:\n  htpasswd:\n    realm: portcullis-test\n    path: {}\n",
                    dir.path().join("htpasswd").display()
                ));
            }
            RegistryAuth::Token { issuer, realm } => {
                std::fs::write(dir.path().join("token-ca.pem"), &issuer.cert_pem).unwrap();
                extra.push_str(&format!(
                    "auth:\n  token:\n    realm: {realm}\n    service: {}\n    issuer: {}\n    rootcertbundle: {}\n",
                    token::SERVICE,
                    token::ISSUER,
                    dir.path().join("token-ca.pem").display()
                ));
            }
        }
        let scheme = if o.tls.is_some() { "https" } else { "http" };
        let mut http = reqwest::Client::builder();
        if let Some(tls) = &o.tls {
            http = http.tls_certs_only([reqwest::Certificate::from_pem(tls.ca_pem.as_bytes()).unwrap()]);
        }
        let http = http.build().unwrap();
        // Port 0 is not reported back by the registry: pick a free port; retry on a lost race.
        for _ in 0..5 {
            let port = free_port();
            let cfg = dir.path().join("config.yml");
            // `auth:` is top-level; the TLS lines belong under `http:`, last.
            let (tls_lines, auth_lines) = match extra.find("auth:") {
                Some(i) => (&extra[..i], &extra[i..]),
                None => (extra.as_str(), ""),
            };
            std::fs::write(
                &cfg,
                format!(
                    "version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\n{auth_lines}http:\n  addr: 127.0.0.1:{port}\n{tls_lines}",
                    dir.path().join("data").display()
                ),
            )
            .unwrap();
            let mut child = Command::new(&bin)
                .arg("serve")
                .arg(&cfg)
                .stdout(match &o.access_log {
                    Some(p) => Stdio::from(std::fs::File::create(p).unwrap()),
                    None => Stdio::null(),
                })
                .stderr(Stdio::null())
                .spawn()
                .unwrap_or_else(|e| panic!("starting {}: {e}", bin.display()));
            let host = format!("127.0.0.1:{port}");
            let until = Instant::now() + Duration::from_secs(20);
            while Instant::now() < until {
                if let Ok(Some(_)) = child.try_wait() {
                    break; // exited: port taken, try another
                }
                if let Ok(r) = http.get(format!("{scheme}://{host}/v2/")).send().await {
                    // Up: open, or asking for credentials.
                    if r.status().is_success() || r.status() == 401 {
                        return Registry { child, host, _dir: dir, http, scheme, auth: o.auth };
                    }
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        panic!("registry did not start");
    }

    /// Stops the registry: from here on it is unreachable.
    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    pub async fn put_blob_public(&self, repo: &str, data: &[u8]) -> String {
        self.put_blob(repo, data).await
    }

    /// A request to the registry, with the credentials its auth wants
    /// (the test itself pushes and pulls with full rights).
    fn req(&self, method: reqwest::Method, url: String, repo: &str) -> reqwest::RequestBuilder {
        let url = if url.starts_with("http") { url } else { format!("{}://{}{url}", self.scheme, self.host) };
        let r = self.http.request(method, url);
        match &self.auth {
            RegistryAuth::Anonymous => r,
            RegistryAuth::Basic { user, password } => r.basic_auth(user, Some(password)),
            RegistryAuth::Token { issuer, .. } => r.bearer_auth(issuer.mint("test", repo, &["pull", "push"])),
        }
    }

    async fn put_blob(&self, repo: &str, data: &[u8]) -> String {
        let digest = format!("sha256:{}", hex::encode(<sha2::Sha256 as sha2::Digest>::digest(data)));
        let r = self.req(reqwest::Method::POST, format!("/v2/{repo}/blobs/uploads/"), repo).send().await.unwrap();
        assert_eq!(r.status(), 202, "starting a blob upload");
        let loc = r.headers()["location"].to_str().unwrap().to_string();
        let sep = if loc.contains('?') { '&' } else { '?' };
        let r = self
            .req(reqwest::Method::PUT, format!("{loc}{sep}digest={digest}"), repo)
            .header("content-type", "application/octet-stream")
            .body(data.to_vec())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201, "uploading a blob");
        digest
    }

    pub async fn put_manifest(&self, repo: &str, reference: &str, manifest: &Value) -> String {
        let body = serde_json::to_vec(manifest).unwrap();
        let r = self
            .req(reqwest::Method::PUT, format!("/v2/{repo}/manifests/{reference}"), repo)
            .header(
                "content-type",
                manifest["mediaType"].as_str().unwrap_or("application/vnd.oci.image.manifest.v1+json"),
            )
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201, "pushing manifest {repo}:{reference}: {:?}", r.text().await);
        format!("sha256:{}", hex::encode(<sha2::Sha256 as sha2::Digest>::digest(serde_json::to_vec(manifest).unwrap())))
    }

    pub async fn get_manifest(&self, repo: &str, reference: &str) -> Value {
        let m = self.try_get_manifest(repo, reference).await;
        m.unwrap_or_else(|| panic!("manifest {repo}:{reference}: not found"))
    }

    /// A manifest or index, or None when the reference does not exist.
    pub async fn try_get_manifest(&self, repo: &str, reference: &str) -> Option<Value> {
        let r = self
            .req(reqwest::Method::GET, format!("/v2/{repo}/manifests/{reference}"), repo)
            .header("accept", "application/vnd.oci.image.manifest.v1+json, application/vnd.oci.image.index.v1+json")
            .send()
            .await
            .unwrap();
        if r.status() == 404 {
            return None;
        }
        assert!(r.status().is_success(), "manifest {repo}:{reference}: {}", r.status());
        Some(r.json().await.unwrap())
    }

    pub async fn get_blob(&self, repo: &str, digest: &str) -> Vec<u8> {
        let r = self.req(reqwest::Method::GET, format!("/v2/{repo}/blobs/{digest}"), repo).send().await.unwrap();
        assert!(r.status().is_success());
        r.bytes().await.unwrap().to_vec()
    }

    /// Pushes a tiny, unique image (`seed` makes it distinct) and tags it.
    /// Returns `host/repo@sha256:…`.
    pub async fn push_image(&self, repo: &str, tag: &str, seed: &str) -> String {
        let config = serde_json::to_vec(&json!({"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]},"config":{"Labels":{"seed":seed}}})).unwrap();
        let layer = format!("layer of {seed}").into_bytes();
        let cd = self.put_blob(repo, &config).await;
        let ld = self.put_blob(repo, &layer).await;
        let manifest = json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cd, "size": config.len()},
            "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": ld, "size": layer.len()}]
        });
        let d = self.put_manifest(repo, tag, &manifest).await;
        format!("{}/{repo}@{d}", self.host)
    }

    /// Pushes a multi-arch image: one small image per `os/arch[/variant]`, and
    /// an OCI index listing them (with `attestation_manifests`, also buildx's
    /// `unknown/unknown` attestation manifest for each), tagged `tag`.
    /// Returns the index as `host/repo@sha256:…` and each platform's image.
    pub async fn push_index(
        &self,
        repo: &str,
        tag: &str,
        platforms: &[&str],
        attestation_manifests: bool,
    ) -> (String, Vec<String>) {
        let mut entries = Vec::new();
        let mut images = Vec::new();
        for p in platforms {
            let image = self.push_image(repo, &format!("{tag}-{}", p.replace('/', "-")), &format!("{tag} {p}")).await;
            let digest = image.rsplit('@').next().unwrap().to_string();
            let size = serde_json::to_vec(&self.get_manifest(repo, &digest).await).unwrap().len();
            let mut parts = p.split('/');
            let mut platform = json!({"os": parts.next().unwrap(), "architecture": parts.next().unwrap()});
            if let Some(v) = parts.next() {
                platform["variant"] = json!(v);
            }
            entries.push(json!({"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": digest, "size": size, "platform": platform}));
            if attestation_manifests {
                // What buildx writes for its provenance/SBOM: not a platform.
                let att_tag = format!("{tag}-{}-att", p.replace('/', "-"));
                let att_digest = self.push_attestation_manifest(repo, &att_tag, &digest).await;
                let mut entry = self.descriptor(repo, &att_digest).await;
                entry["platform"] = json!({"os": "unknown", "architecture": "unknown"});
                entry["annotations"] =
                    json!({"vnd.docker.reference.type": "attestation-manifest", "vnd.docker.reference.digest": digest});
                entries.push(entry);
            }
            images.push(image);
        }
        let index =
            json!({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": entries});
        let d = self.put_manifest(repo, tag, &index).await;
        (format!("{}/{repo}@{d}", self.host), images)
    }

    /// The descriptor an index lists for `repo@digest` (a manifest or an
    /// index): its media type, digest and size.
    pub async fn descriptor(&self, repo: &str, digest: &str) -> Value {
        let m = self.get_manifest(repo, digest).await;
        let media_type = m["mediaType"].as_str().unwrap_or("application/vnd.oci.image.manifest.v1+json").to_string();
        json!({"mediaType": media_type, "digest": digest, "size": serde_json::to_vec(&m).unwrap().len()})
    }

    /// Pushes what buildx attaches to an index for one platform's provenance
    /// and SBOM (moby/buildkit `docs/attestations/attestation-storage.md`): an
    /// image manifest whose layers are in-toto statements about `subject`
    /// (`application/vnd.in-toto+json`), its config `unknown/unknown`.
    /// Returns its digest.
    pub async fn push_attestation_manifest(&self, repo: &str, tag: &str, subject: &str) -> String {
        let mut layers = Vec::new();
        for predicate_type in ["https://slsa.dev/provenance/v0.2", "https://spdx.dev/Document"] {
            let statement = serde_json::to_vec(&json!({
                "_type": "https://in-toto.io/Statement/v0.1",
                "predicateType": predicate_type,
                "subject": [{"name": format!("{repo}:{tag}"), "digest": {"sha256": subject.trim_start_matches("sha256:")}}],
                "predicate": {}
            }))
            .unwrap();
            let d = self.put_blob(repo, &statement).await;
            layers.push(json!({
                "mediaType": "application/vnd.in-toto+json", "digest": d, "size": statement.len(),
                "annotations": {"in-toto.io/predicate-type": predicate_type}
            }));
        }
        let diff_ids: Vec<&Value> = layers.iter().map(|l| &l["digest"]).collect();
        let config = serde_json::to_vec(&json!({
            "architecture": "unknown", "os": "unknown", "config": {},
            "rootfs": {"type": "layers", "diff_ids": diff_ids}
        }))
        .unwrap();
        let cd = self.put_blob(repo, &config).await;
        let manifest = json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cd, "size": config.len()},
            "layers": layers
        });
        self.put_manifest(repo, tag, &manifest).await
    }

    /// Pushes an OCI index listing exactly `entries` (descriptors, as an
    /// index writes them), tagged `tag`; returns `host/repo@sha256:…`.
    pub async fn push_raw_index(&self, repo: &str, tag: &str, entries: Vec<Value>) -> String {
        let index =
            json!({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": entries});
        let d = self.put_manifest(repo, tag, &index).await;
        format!("{}/{repo}@{d}", self.host)
    }

    /// Pushes `body` byte for byte as the manifest `repo:reference` of
    /// `media_type` (JSON that `serde_json::Value` cannot hold, such as an
    /// object whose keys differ only in case, in an order of its own);
    /// returns `host/repo@sha256:…`.
    pub async fn push_manifest_bytes(&self, repo: &str, reference: &str, media_type: &str, body: &str) -> String {
        let r = self
            .req(reqwest::Method::PUT, format!("/v2/{repo}/manifests/{reference}"), repo)
            .header("content-type", media_type)
            .body(body.to_string())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201, "pushing manifest {repo}:{reference}: {:?}", r.text().await);
        let d = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(body.as_bytes()));
        format!("{}/{repo}@sha256:{d}", self.host)
    }

    /// Pushes the image of an OCI image layout (`make image`'s `target/image`)
    /// as `repo:tag`, byte for byte; returns `host/repo@sha256:…`.
    pub async fn push_layout(&self, layout: &Path, repo: &str, tag: &str) -> String {
        let blob = |d: &str| std::fs::read(layout.join("blobs/sha256").join(d.trim_start_matches("sha256:"))).unwrap();
        let index: Value = serde_json::from_slice(&std::fs::read(layout.join("index.json")).unwrap()).unwrap();
        let digest = index["manifests"][0]["digest"].as_str().unwrap().to_string();
        let manifest_bytes = blob(&digest);
        let manifest: Value = serde_json::from_slice(&manifest_bytes).unwrap();
        for b in manifest["layers"].as_array().unwrap().iter().chain([&manifest["config"]]) {
            self.put_blob(repo, &blob(b["digest"].as_str().unwrap())).await;
        }
        let r = self
            .req(reqwest::Method::PUT, format!("/v2/{repo}/manifests/{tag}"), repo)
            .header("content-type", "application/vnd.oci.image.manifest.v1+json")
            .body(manifest_bytes)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201, "pushing the image: {:?}", r.text().await);
        format!("{}/{repo}@{digest}", self.host)
    }

    /// Pulls `repo@digest` and unpacks its layers (gzip tarballs, in order)
    /// into `root`, as a container runtime would; returns the image's config.
    pub async fn unpack_image(&self, repo: &str, digest: &str, root: &Path) -> Value {
        let manifest = self.get_manifest(repo, digest).await;
        let config: Value =
            serde_json::from_slice(&self.get_blob(repo, manifest["config"]["digest"].as_str().unwrap()).await).unwrap();
        for layer in manifest["layers"].as_array().unwrap() {
            let gz = self.get_blob(repo, layer["digest"].as_str().unwrap()).await;
            let mut tar = tar::Archive::new(flate2::read::GzDecoder::new(gz.as_slice()));
            tar.set_preserve_permissions(true);
            tar.unpack(root).unwrap();
        }
        config
    }

    /// Copies `repo@digest` (its manifest and blobs) and its cosign `.att`
    /// attestations into `to`, tagging the image `tag` there: the same
    /// digests, so the signatures still hold.
    pub async fn copy_image(&self, to: &Registry, repo: &str, tag: &str, digest: &str) {
        let copy_manifest = |reference: String, new_ref: String| async move {
            let m = self.get_manifest(repo, &reference).await;
            let blobs = m["layers"].as_array().cloned().unwrap_or_default().into_iter().chain([m["config"].clone()]);
            for b in blobs.filter(|b| b.is_object()) {
                let d = b["digest"].as_str().unwrap();
                to.put_blob(repo, &self.get_blob(repo, d).await).await;
            }
            to.put_manifest(repo, &new_ref, &m).await
        };
        let copied = copy_manifest(digest.to_string(), tag.to_string()).await;
        assert_eq!(copied, digest, "the copy keeps the digest");
        let att = att_tag(digest);
        copy_manifest(att.clone(), att).await;
    }

    /// Makes `to`'s attestation tag hold exactly `from`'s attestations, as
    /// an attacker copying evidence between images would.
    pub async fn copy_attestations(&self, repo: &str, from: &str, to: &str) {
        let m = self.get_manifest(repo, &att_tag(from)).await;
        self.put_manifest(repo, &att_tag(to), &m).await;
    }

    /// Rewrites the payload of `image`'s first attestation with `edit`,
    /// keeping the original signature.
    pub async fn tamper_attestation(&self, repo: &str, image: &str, edit: impl Fn(&str) -> String) {
        let tag = att_tag(image);
        let mut m = self.get_manifest(repo, &tag).await;
        let layer_digest = m["layers"][0]["digest"].as_str().unwrap().to_string();
        let mut env: Value = serde_json::from_slice(&self.get_blob(repo, &layer_digest).await).unwrap();
        let b64 = base64::engine::general_purpose::STANDARD;
        let payload = String::from_utf8(b64.decode(env["payload"].as_str().unwrap()).unwrap()).unwrap();
        let edited = edit(&payload);
        assert_ne!(edited, payload, "the edit must change the payload");
        env["payload"] = Value::String(b64.encode(edited));
        let bytes = serde_json::to_vec(&env).unwrap();
        let d = self.put_blob(repo, &bytes).await;
        m["layers"][0]["digest"] = Value::String(d);
        m["layers"][0]["size"] = json!(bytes.len());
        self.put_manifest(repo, &tag, &m).await;
    }
}

/// `sha256-<hex>.att` for `host/repo@sha256:<hex>`.
pub fn att_tag(image: &str) -> String {
    let hex = image.rsplit("sha256:").next().unwrap();
    format!("sha256-{hex}.att")
}

/// The real cosign, with key pairs generated for this test run.
pub struct Cosign {
    bin: PathBuf,
    pub dir: tempfile::TempDir,
}

impl Cosign {
    pub fn new() -> Cosign {
        Cosign { bin: tool_in("PORTCULLIS_COSIGN", "cosign", "cosign-v2"), dir: tempfile::tempdir().unwrap() }
    }

    fn cmd(&self) -> Command {
        self.cmd_of(&self.bin)
    }

    fn cmd_of(&self, bin: &Path) -> Command {
        let mut c = Command::new(bin);
        c.current_dir(self.dir.path())
            .env("COSIGN_PASSWORD", "")
            .env("COSIGN_YES", "true")
            .env("HOME", self.dir.path())
            .env("TUF_ROOT", self.dir.path().join("tuf"))
            .env("SIGSTORE_NO_CACHE", "true");
        c
    }

    /// Generates a key pair named `name`; returns the public key PEM.
    pub fn keygen(&self, name: &str) -> String {
        let out = self.cmd().args(["generate-key-pair", "--output-key-prefix", name]).output().unwrap();
        assert!(out.status.success(), "cosign generate-key-pair: {}", String::from_utf8_lossy(&out.stderr));
        std::fs::read_to_string(self.dir.path().join(format!("{name}.pub"))).unwrap()
    }

    /// `cosign attest --key <key>.key --tlog-upload=false --type <type> --predicate <file> <image>`.
    pub fn attest(&self, key: &str, image: &str, predicate_type: &str, predicate: &Value) {
        self.attest_with(key, image, predicate_type, predicate, &[]);
    }

    /// `attest` as a sigstore bundle attached as an OCI referrer (cosign v3's default).
    pub fn attest_bundle(&self, key: &str, image: &str, predicate_type: &str, predicate: &Value) {
        self.attest_with(key, image, predicate_type, predicate, &["--new-bundle-format"]);
    }

    /// `attest` with the real cosign v3 (a sigstore bundle as an OCI
    /// referrer, its default), with the same keys; no signing config and no
    /// log, as nothing outside this machine is reachable.
    pub fn attest_v3(&self, key: &str, image: &str, predicate_type: &str, predicate: &Value) {
        let v3 = tool_in("PORTCULLIS_COSIGN3", "cosign", "cosign-v3");
        self.attest_by(&v3, key, image, predicate_type, predicate, &["--use-signing-config=false"]);
    }

    /// `attest` with the predicate's JSON text as it is (large predicates,
    /// written compactly).
    pub fn attest_text(&self, key: &str, image: &str, predicate_type: &str, predicate: &str) {
        let file = self.dir.path().join(format!("pred-{}.json", rand_suffix()));
        std::fs::write(&file, predicate).unwrap();
        let out = self
            .cmd()
            .args(["attest", "--key", &format!("{key}.key"), "--tlog-upload=false", "--type", predicate_type])
            .arg("--predicate")
            .arg(&file)
            .arg(image)
            .output()
            .unwrap();
        assert!(out.status.success(), "cosign attest {image}: {}", String::from_utf8_lossy(&out.stderr));
    }

    fn attest_with(&self, key: &str, image: &str, predicate_type: &str, predicate: &Value, extra: &[&str]) {
        self.attest_by(&self.bin, key, image, predicate_type, predicate, extra);
    }

    fn attest_by(&self, bin: &Path, key: &str, image: &str, predicate_type: &str, predicate: &Value, extra: &[&str]) {
        let file = self.dir.path().join(format!("pred-{}.json", rand_suffix()));
        std::fs::write(&file, serde_json::to_vec_pretty(predicate).unwrap()).unwrap();
        let key = format!("{key}.key");
        let out = self
            .cmd_of(bin)
            .args(["attest", "--key", &key, "--tlog-upload=false", "--type", predicate_type])
            .args(extra)
            .arg("--predicate")
            .arg(&file)
            .arg(image)
            .output()
            .unwrap();
        assert!(out.status.success(), "cosign attest {image}: {}", String::from_utf8_lossy(&out.stderr));
    }

    /// `cosign verify-attestation --key <key>.pub --type <type>
    /// --insecure-ignore-tlog=true <image>`: the in-toto Statements of the
    /// envelopes that verify, or what cosign said.
    pub fn verify_attestation(&self, key: &str, image: &str, predicate_type: &str) -> Result<Vec<Value>, String> {
        let key = format!("{key}.pub");
        let out = self
            .cmd()
            .args(["verify-attestation", "--key", &key, "--type", predicate_type, "--insecure-ignore-tlog=true"])
            .arg(image)
            .output()
            .unwrap();
        if !out.status.success() {
            return Err(String::from_utf8_lossy(&out.stderr).into_owned());
        }
        let b64 = base64::engine::general_purpose::STANDARD;
        Ok(String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| {
                let envelope: Value = serde_json::from_str(l).unwrap();
                serde_json::from_slice(&b64.decode(envelope["payload"].as_str().unwrap()).unwrap()).unwrap()
            })
            .collect())
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }
}

fn rand_suffix() -> String {
    use std::sync::atomic::{AtomicUsize, Ordering};
    static N: AtomicUsize = AtomicUsize::new(0);
    format!("{}-{}", std::process::id(), N.fetch_add(1, Ordering::Relaxed))
}

pub const TEST_RESULT: &str = "https://in-toto.io/attestation/test-result/v0.1";

/// A cosign vuln predicate wrapping a Trivy report with `vulns`
/// (id, package, installed, fixed, severity), finished at `finished`.
pub fn vuln_predicate(vulns: &[(&str, &str, &str, &str, &str)], finished: chrono::DateTime<chrono::Utc>) -> Value {
    let vulnerabilities: Vec<Value> = vulns
        .iter()
        .map(|(id, pkg, inst, fixed, sev)| {
            json!({"VulnerabilityID": id, "PkgName": pkg, "InstalledVersion": inst, "FixedVersion": fixed, "Severity": sev,
                   "Status": if fixed.is_empty() { "affected" } else { "fixed" }, "PrimaryURL": format!("https://avd.aquasec.com/nvd/{}", id.to_lowercase())})
        })
        .collect();
    json!({
        "invocation": {"parameters": null, "uri": "", "event_id": "", "builder.id": ""},
        "scanner": {
            "uri": "pkg:github/aquasecurity/trivy@v0.58.1",
            "version": "0.58.1",
            "db": {"uri": "", "version": ""},
            "result": {
                "SchemaVersion": 2,
                "ArtifactName": "image",
                "ArtifactType": "container_image",
                "Results": [{"Target": "image (debian 12.8)", "Class": "os-pkgs", "Type": "debian", "Vulnerabilities": vulnerabilities}]
            }
        },
        "metadata": {
            "scanStartedOn": (finished - chrono::Duration::minutes(1)).to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            "scanFinishedOn": finished.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
        }
    })
}

pub fn test_predicate(result: &str, failed: &[&str]) -> Value {
    json!({
        "result": result,
        "configuration": [{"name": "integration-suite", "uri": "https://ci.example.com/suites/integration"}],
        "url": "https://ci.example.com/runs/4242",
        "passedTests": ["checkout", "payments"],
        "warnedTests": [],
        "failedTests": failed
    })
}

/// A policy trusting `scanner` and `ci`, with production and development tiers.
pub fn policy_yaml(scanner_pem: &str, ci_pem: &str) -> String {
    let indent = |p: &str| p.trim().lines().map(|l| format!("        {l}")).collect::<Vec<_>>().join("\n");
    format!(
        r#"apiVersion: portcullis.dev/v1alpha1
kind: PromotionPolicy
metadata:
  name: test
spec:
  signers:
    scanner:
      publicKey: |
{}
    ci:
      publicKey: |
{}
  namespaceTiers:
    prod: production
    dev: development
  tiers:
    development:
      mode: warn
      onError: allow
      vulnerabilities: {{ signedBy: [scanner], maxAge: 168h, max: {{ critical: 0 }} }}
    production:
      mode: enforce
      onError: deny
      vulnerabilities: {{ signedBy: [scanner], maxAge: 24h, max: {{ critical: 0, high: 0, medium: 10 }} }}
      tests: {{ signedBy: [ci], require: PASSED }}
      breakGlass: {{ allowed: true, groups: [sre-oncall], requireTicket: true }}
"#,
        indent(scanner_pem),
        indent(ci_pem)
    )
}

/// A throwaway CA and serving certificate for 127.0.0.1, made in-process.
#[derive(Clone)]
pub struct TestTls {
    pub ca_pem: String,
    pub cert_pem: String,
    pub key_pem: String,
}

/// A throwaway CA: its PEM certificate and the issuer that signs with it.
pub fn test_ca(name: &str) -> (String, rcgen::Issuer<'static, rcgen::KeyPair>) {
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca.distinguished_name.push(rcgen::DnType::CommonName, name);
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    (ca_cert.pem(), rcgen::Issuer::new(ca, ca_key))
}

/// A client certificate (for `clientAuth`) and its key, PEM.
#[derive(Clone)]
pub struct ClientCert {
    pub cert_pem: String,
    pub key_pem: String,
}

/// A client certificate from `issuer` with subject CN `cn` and DNS names `dns`.
pub fn client_cert(issuer: &rcgen::Issuer<'static, rcgen::KeyPair>, cn: &str, dns: &[&str]) -> ClientCert {
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::new(dns.iter().map(|d| d.to_string()).collect::<Vec<_>>()).unwrap();
    params.distinguished_name = rcgen::DistinguishedName::new();
    params.distinguished_name.push(rcgen::DnType::CommonName, cn);
    params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
    let cert = params.signed_by(&key, issuer).unwrap();
    ClientCert { cert_pem: cert.pem(), key_pem: key.serialize_pem() }
}

pub fn test_tls() -> TestTls {
    let (ca_pem, issuer) = test_ca("portcullis test CA");
    let key = rcgen::KeyPair::generate().unwrap();
    let params = rcgen::CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()]).unwrap();
    let cert = params.signed_by(&key, &issuer).unwrap();
    TestTls { ca_pem, cert_pem: cert.pem(), key_pem: key.serialize_pem() }
}

/// An in-process `portcullis serve` over real TLS.
pub struct Webhook {
    pub url: String,
    pub client: reqwest::Client,
    pub state: Arc<portcullis::webhook::AppState>,
    server: portcullis::webhook::Server,
    audit_dir: tempfile::TempDir,
    tls: portcullis::webhook::ServingTls,
    pub ca_pem: String,
}

/// How a test webhook is set up; the defaults are `portcullis serve`'s.
pub struct HookOptions {
    pub cfg: portcullis::engine::EngineConfig,
    pub deadline: Duration,
    pub limits: portcullis::registry::Limits,
    pub server: portcullis::webhook::ServerLimits,
    pub max_images: usize,
    pub pin: portcullis::webhook::PinImages,
    pub grant_key: String,
    /// Bytes of request bodies read at once past each one's free share (`--review-bytes-in-flight`).
    pub reading: usize,
    /// `--client-ca`: only clients with a certificate from this CA (PEM) may ask for reviews.
    pub client_ca: Option<String>,
    /// `--client-name`: names such a certificate must carry one of.
    pub client_names: Vec<String>,
    /// `--audit-sync`.
    pub audit_sync: portcullis::audit::Sync,
}

impl Default for HookOptions {
    fn default() -> Self {
        HookOptions {
            cfg: Default::default(),
            deadline: Duration::from_secs(8),
            limits: Default::default(),
            server: Default::default(),
            max_images: 64,
            pin: Default::default(),
            grant_key: GRANT_KEY.to_string(),
            reading: portcullis::webhook::READING_BYTES,
            client_ca: None,
            client_names: vec![],
            audit_sync: Default::default(),
        }
    }
}

/// The grant key test webhooks share (as replicas share a Secret).
pub const GRANT_KEY: &str = "test-grant-key-0123456789abcdef0123456789";

impl Drop for Webhook {
    fn drop(&mut self) {
        self.server.handle.shutdown();
    }
}

impl Webhook {
    pub async fn start(policy: &str, cfg: portcullis::engine::EngineConfig) -> Webhook {
        Self::start_with_deadline(policy, cfg, Duration::from_secs(8)).await
    }

    pub async fn start_with_deadline(
        policy: &str,
        cfg: portcullis::engine::EngineConfig,
        deadline: Duration,
    ) -> Webhook {
        Self::start_with_limits(policy, cfg, deadline, Default::default()).await
    }

    pub async fn start_with_limits(
        policy: &str,
        cfg: portcullis::engine::EngineConfig,
        deadline: Duration,
        limits: portcullis::registry::Limits,
    ) -> Webhook {
        Self::start_with(policy, HookOptions { cfg, deadline, limits, ..HookOptions::default() }).await
    }

    pub async fn start_with(policy: &str, o: HookOptions) -> Webhook {
        let policy = portcullis::policy::Policy::from_yaml(policy, "test policy").unwrap();
        Self::start_loaded(policy, o).await
    }

    /// A webhook on a policy already loaded (e.g. from a file naming trusted root files).
    pub async fn start_loaded(policy: portcullis::policy::Policy, o: HookOptions) -> Webhook {
        portcullis::install_crypto_provider();
        let metrics = Arc::new(portcullis::metrics::Metrics::new());
        metrics.policy_info(policy.digest.as_str(), "test policy");
        let audit_dir = tempfile::tempdir().unwrap();
        let registry = portcullis::registry::Registry::new(o.limits, vec![], Default::default(), &[])
            .unwrap()
            .with_metrics(metrics.clone());
        let state = Arc::new(portcullis::webhook::AppState {
            gate: Arc::new(portcullis::gate::Gate::new(
                portcullis::engine::Engine::new(registry, &o.cfg, metrics.clone()),
                policy,
                portcullis::cluster::TierSource::Static,
                portcullis::policy::GrantKeys::from_text(&o.grant_key).unwrap(),
            )),
            metrics,
            audit: portcullis::audit::AuditLog::open_with(
                audit_dir.path().join("audit.jsonl").to_str().unwrap(),
                portcullis::audit::AuditOptions { sync: o.audit_sync, ..Default::default() },
            )
            .unwrap(),
            deadline: o.deadline,
            record_dir: None,
            max_images: o.max_images,
            pin: o.pin,
            body_timeout: o.server.body_timeout,
            pull_secrets: None,
            events: None,
            timelines: Default::default(),
            controller_users: vec![],
            reading: Arc::new(tokio::sync::Semaphore::new(o.reading)),
        });
        let tls = test_tls();
        let (cert, key) = (audit_dir.path().join("tls.crt"), audit_dir.path().join("tls.key"));
        std::fs::write(&cert, &tls.cert_pem).unwrap();
        std::fs::write(&key, &tls.key_pem).unwrap();
        let client_auth = o.client_ca.map(|pem| {
            let ca = audit_dir.path().join("client-ca.crt");
            std::fs::write(&ca, pem).unwrap();
            portcullis::webhook::ClientAuth { ca, names: o.client_names }
        });
        let serving = portcullis::webhook::ServingTls::load(&cert, &key, client_auth).await.unwrap();
        let server = portcullis::webhook::serve(state.clone(), "127.0.0.1:0".parse().unwrap(), &serving, o.server)
            .await
            .unwrap();
        let client = reqwest::Client::builder()
            .tls_certs_only([reqwest::Certificate::from_pem(tls.ca_pem.as_bytes()).unwrap()])
            .build()
            .unwrap();
        Webhook {
            url: format!("https://127.0.0.1:{}", server.addr.port()),
            client,
            state,
            server,
            audit_dir,
            tls: serving,
            ca_pem: tls.ca_pem,
        }
    }

    /// Watches `policy` (and the serving certificate and client CA) as `portcullis serve` does.
    pub fn watch_policy(&self, policy: &Path, every: Duration) {
        portcullis::webhook::spawn_reloader(self.state.clone(), Some(policy.to_path_buf()), self.tls.clone(), every);
    }

    /// Watches the serving certificate and the client CA as `portcullis serve` does.
    pub fn watch_tls(&self, every: Duration) {
        portcullis::webhook::spawn_reloader(self.state.clone(), None, self.tls.clone(), every);
    }

    /// `--metrics-listen`: health and metrics on a port of their own; its base URL.
    pub async fn serve_metrics(&self) -> (String, portcullis::webhook::Server) {
        let server = portcullis::webhook::serve_metrics(
            self.state.clone(),
            "127.0.0.1:0".parse().unwrap(),
            &self.tls,
            Default::default(),
        )
        .await
        .unwrap();
        (format!("https://127.0.0.1:{}", server.addr.port()), server)
    }

    /// The `--client-ca` file this webhook reads.
    pub fn client_ca_file(&self) -> PathBuf {
        self.audit_dir.path().join("client-ca.crt")
    }

    /// An HTTPS client trusting this webhook, presenting `identity` (a
    /// client certificate and its key, PEM) when given, connecting from the
    /// loopback address `from` when given.
    pub fn client_as(&self, identity: Option<&ClientCert>, from: Option<std::net::IpAddr>) -> reqwest::Client {
        let mut b = reqwest::Client::builder()
            .tls_certs_only([reqwest::Certificate::from_pem(self.ca_pem.as_bytes()).unwrap()])
            .local_address(from)
            .timeout(Duration::from_secs(30));
        if let Some(c) = identity {
            b = b.identity(reqwest::Identity::from_pem(format!("{}{}", c.cert_pem, c.key_pem).as_bytes()).unwrap());
        }
        b.build().unwrap()
    }

    /// A TLS connection to this webhook offering `alpn`, from the loopback
    /// address `from` when given; nothing is sent on it.
    pub async fn tls_connect(
        &self,
        alpn: &[u8],
        from: Option<std::net::IpAddr>,
    ) -> std::io::Result<tokio_rustls::client::TlsStream<tokio::net::TcpStream>> {
        use rustls::pki_types::pem::PemObject as _;
        let mut roots = rustls::RootCertStore::empty();
        roots.add(rustls::pki_types::CertificateDer::from_pem_slice(self.ca_pem.as_bytes()).unwrap()).unwrap();
        let mut cfg = rustls::ClientConfig::builder().with_root_certificates(roots).with_no_client_auth();
        cfg.alpn_protocols = vec![alpn.to_vec()];
        let connector = tokio_rustls::TlsConnector::from(Arc::new(cfg));
        let socket = tokio::net::TcpSocket::new_v4()?;
        if let Some(ip) = from {
            socket.bind(std::net::SocketAddr::new(ip, 0))?;
        }
        let tcp = socket.connect(self.server.addr).await?;
        let name = rustls::pki_types::ServerName::try_from("127.0.0.1").unwrap();
        connector.connect(name, tcp).await
    }

    /// The audit records written so far (the trail's chain checked).
    pub fn audit(&self) -> Vec<Value> {
        self.state.audit.flush_blocking();
        let text = std::fs::read_to_string(self.audit_dir.path().join("audit.jsonl")).unwrap_or_default();
        portcullis::audit::verify([("audit.jsonl".to_string(), text.as_bytes())]).unwrap();
        text.lines().map(|l| serde_json::from_str::<Value>(l).unwrap()["audit"].clone()).collect()
    }

    /// Sends a Pod CREATE review for `images` in `namespace`; returns the response object.
    pub async fn admit_pod(&self, namespace: &str, images: &[&str], annotations: Value, groups: &[&str]) -> Value {
        let review = pod_review(namespace, images, annotations, groups);
        let r = self.client.post(format!("{}/validate?timeout=10s", self.url)).json(&review).send().await.unwrap();
        assert_eq!(r.status(), 200);
        let v: Value = r.json().await.unwrap();
        assert_eq!(v["response"]["uid"], review["request"]["uid"], "the response must carry the request uid");
        v["response"].clone()
    }

    pub async fn metrics(&self) -> String {
        self.client.get(format!("{}/metrics", self.url)).send().await.unwrap().text().await.unwrap()
    }
}

pub fn pod_review(namespace: &str, images: &[&str], annotations: Value, groups: &[&str]) -> Value {
    let containers: Vec<Value> =
        images.iter().enumerate().map(|(i, im)| json!({"name": format!("c{i}"), "image": im})).collect();
    json!({
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": format!("uid-{}", rand_suffix()),
            "kind": {"group": "", "version": "v1", "kind": "Pod"},
            "resource": {"group": "", "version": "v1", "resource": "pods"},
            "requestKind": {"group": "", "version": "v1", "kind": "Pod"},
            "requestResource": {"group": "", "version": "v1", "resource": "pods"},
            "name": "web",
            "namespace": namespace,
            "operation": "CREATE",
            "userInfo": {"username": "alice@example.com", "groups": groups},
            "object": {
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {"name": "web", "namespace": namespace, "annotations": annotations},
                "spec": {"containers": containers}
            },
            "oldObject": null,
            "dryRun": false,
            "options": {"apiVersion": "meta.k8s.io/v1", "kind": "CreateOptions"}
        }
    })
}

/// Every metric line `name{labels} value` whose text starts with `prefix`, summed.
pub fn metric(text: &str, prefix: &str) -> f64 {
    text.lines().filter(|l| l.starts_with(prefix)).filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok()).sum()
}

pub const VULN: &str = "vuln";

pub struct World {
    pub reg: Registry,
    pub cosign: Cosign,
    pub policy: String,
}

pub async fn world() -> World {
    let reg = Registry::start().await;
    let cosign = Cosign::new();
    let scanner = cosign.keygen("scanner");
    let ci = cosign.keygen("ci");
    cosign.keygen("rogue");
    World { reg, cosign, policy: policy_yaml(&scanner, &ci) }
}

impl World {
    /// Pushes `repo:tag` and attests it: `scan` by `scan_key`, `tests` by `ci`.
    pub async fn image(
        &self,
        repo: &str,
        tag: &str,
        scan: Option<(&str, Value)>,
        tests: Option<(&str, Value)>,
    ) -> String {
        static PUSHES: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = PUSHES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let image = self.reg.push_image(repo, tag, &format!("{repo}:{tag}#{n}")).await;
        if let Some((key, pred)) = scan {
            self.cosign.attest(key, &image, VULN, &pred);
        }
        if let Some((key, pred)) = tests {
            self.cosign.attest(key, &image, TEST_RESULT, &pred);
        }
        image
    }
}

pub fn clean() -> Value {
    vuln_predicate(&[], chrono::Utc::now() - chrono::Duration::hours(1))
}

pub fn criticals() -> Value {
    vuln_predicate(
        &[
            ("CVE-2024-1111", "openssl", "3.0.1", "3.0.13", "CRITICAL"),
            ("CVE-2024-2222", "zlib", "1.2.11", "1.2.13", "CRITICAL"),
            ("CVE-2024-3333", "bash", "5.2", "", "LOW"),
        ],
        chrono::Utc::now() - chrono::Duration::hours(1),
    )
}

pub fn passed() -> Value {
    test_predicate("PASSED", &[])
}

/// Connections a [`silent_registry`] has accepted and holds open.
pub struct Held(Arc<tokio::sync::Mutex<Vec<tokio::net::TcpStream>>>);

impl Held {
    pub async fn connections(&self) -> usize {
        self.0.lock().await.len()
    }
}

/// A "registry" on loopback that accepts connections and never answers:
/// no real registry can be made to hang, so this stands in for one that does.
pub async fn silent_registry() -> (String, Held) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let host = listener.local_addr().unwrap().to_string();
    let held = Arc::new(tokio::sync::Mutex::new(Vec::new()));
    let keep = held.clone();
    tokio::spawn(async move {
        while let Ok((sock, _)) = listener.accept().await {
            keep.lock().await.push(sock);
        }
    });
    (host, Held(held))
}

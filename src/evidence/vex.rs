//! VEX: statements that a vulnerability does or does not affect a product,
//! read from OpenVEX (`@context` `https://openvex.dev/ns/v0.2.0`, and the
//! older `https://openvex.dev/ns`, whose vulnerabilities and products may be
//! plain strings), CycloneDX 1.4–1.6 VEX (`vulnerabilities[].analysis`) and
//! CSAF 2.0 VEX (`product_status`) into one model, and the pure rules that say which statement, if any,
//! decides a finding of an image.
//!
//! The matching follows Trivy's `pkg/vex` and go-vex's `Matches`: a
//! statement covers a finding when its vulnerability (name, `@id` or an
//! alias) is the finding's id or one of its aliases, and one of its
//! products names the judged image (`pkg:oci/NAME@sha256%3A<hex>` with that
//! digest, or `pkg:oci/NAME?repository_url=REGISTRY/REPO` for every digest of
//! that repository; `repository_url`, when given, must be the image's
//! repository when that is known; judged by digest alone, the digest decides), with
//! either no subcomponents (every package of the image) or one that matches
//! the finding's package purl on type, namespace and name, and on version,
//! qualifiers and subpath when it gives them. Of the statements that cover a
//! finding, the newest (its timestamp, else its document's; the later one
//! listed on a tie) decides: `not_affected` and `fixed` suppress it,
//! `affected` and `under_investigation` do not.
//!
//! A product that is not an image (`pkg:maven/…`) names no image and covers
//! nothing here. A CycloneDX VEX names its product in `metadata.component`
//! (a `pkg:oci` purl); without one, its statements are about the subject of
//! the attestation that carried it, and count only when that is the judged
//! image (or when it is given for the image on the command line).

use chrono::{DateTime, Utc};
use serde::de::{IgnoredAny, MapAccess, Visitor};
use serde::{Deserialize, Serialize};

use super::bounded::{capped_opt, MAX_FINDINGS, MAX_PER_FINDING};
use super::cyclonedx::{bom_ref_of, is_cyclonedx};
use super::{parse_time, Finding};

/// The OpenVEX predicate type cosign writes for `attest --type openvex`.
pub const OPENVEX: &str = "https://openvex.dev/ns";
/// The OpenVEX v0.2.0 context, also used as a predicate type.
pub const OPENVEX_V020: &str = "https://openvex.dev/ns/v0.2.0";
/// Predicate types whose attestations are VEX documents.
pub const VEX_TYPES: &[&str] = &[OPENVEX, OPENVEX_V020];
/// The largest VEX document read (a distribution's VEX for an image is tens
/// of kilobytes).
pub const MAX_VEX_BYTES: usize = 4 << 20;

/// What a statement says of a vulnerability in a product.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    NotAffected,
    Affected,
    Fixed,
    UnderInvestigation,
}

impl Status {
    /// OpenVEX status names.
    pub fn parse_openvex(s: &str) -> Option<Status> {
        match s {
            "not_affected" => Some(Status::NotAffected),
            "affected" => Some(Status::Affected),
            "fixed" => Some(Status::Fixed),
            "under_investigation" => Some(Status::UnderInvestigation),
            _ => None,
        }
    }

    /// CycloneDX `analysis.state`, as Trivy maps it.
    pub fn parse_cyclonedx(s: &str) -> Option<Status> {
        match s {
            "not_affected" | "false_positive" => Some(Status::NotAffected),
            "resolved" | "resolved_with_pedigree" => Some(Status::Fixed),
            "exploitable" => Some(Status::Affected),
            "in_triage" => Some(Status::UnderInvestigation),
            _ => None,
        }
    }

    /// Whether it takes a finding out of the count.
    pub fn suppresses(self) -> bool {
        matches!(self, Status::NotAffected | Status::Fixed)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Status::NotAffected => "not_affected",
            Status::Affected => "affected",
            Status::Fixed => "fixed",
            Status::UnderInvestigation => "under_investigation",
        }
    }
}

/// A product a statement is about, and the packages in it it names.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Product {
    /// A purl (`pkg:oci/…`) or another IRI; empty: the subject of the
    /// attestation that carried the document.
    pub id: String,
    pub subcomponents: Vec<String>,
}

/// One statement, its time resolved (its own, else its document's).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Statement {
    /// The vulnerability's name, `@id` and aliases, as given.
    pub vulnerability: Vec<String>,
    pub products: Vec<Product>,
    pub status: Status,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub justification: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub impact_statement: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timestamp: Option<DateTime<Utc>>,
}

/// The format a VEX document was written in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum Format {
    #[serde(rename = "OpenVEX")]
    OpenVex,
    #[serde(rename = "CycloneDX")]
    CycloneDx,
    #[serde(rename = "CSAF")]
    Csaf,
}

/// A VEX document, read.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Document {
    pub format: Format,
    /// Its `@id` (OpenVEX) or `serialNumber` (CycloneDX), when given.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub id: String,
    pub author: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timestamp: Option<DateTime<Utc>>,
    pub statements: Vec<Statement>,
    /// Statements left out, and why (a `not_affected` without a
    /// justification or an impact statement, an unknown status).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub ignored: Vec<String>,
}

/// Why a VEX document cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VexError {
    #[error("larger than {MAX_VEX_BYTES} bytes, the most read")]
    TooLarge,
    #[error("not JSON: {0}")]
    NotJson(String),
    #[error("neither OpenVEX (an @context of https://openvex.dev/ns), CycloneDX VEX (bomFormat CycloneDX with vulnerabilities) nor CSAF 2.0 VEX (document.csaf_version 2.0)")]
    Unknown,
    #[error("{0}")]
    Invalid(String),
}

/// A vulnerability, a product or a subcomponent: a string (older OpenVEX)
/// or an object (`@id`, `name`, `aliases`, `identifiers.purl`,
/// `subcomponents`).
#[derive(Default)]
struct Node {
    id: String,
    name: String,
    aliases: Vec<String>,
    purl: String,
    subcomponents: Vec<Node>,
}

impl<'de> Deserialize<'de> for Node {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Node;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a string or an object")
            }
            fn visit_str<E>(self, v: &str) -> Result<Node, E> {
                Ok(Node { id: v.to_string(), ..Node::default() })
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Node, A::Error> {
                #[derive(Deserialize)]
                struct Identifiers {
                    #[serde(default)]
                    purl: Option<String>,
                }
                #[derive(Deserialize)]
                struct List(#[serde(deserialize_with = "capped_opt::<_, _, MAX_PER_FINDING>")] Option<Vec<Node>>);
                #[derive(Deserialize)]
                struct Names(#[serde(deserialize_with = "capped_opt::<_, _, MAX_PER_FINDING>")] Option<Vec<String>>);
                let mut n = Node::default();
                while let Some(key) = map.next_key::<std::borrow::Cow<'de, str>>()? {
                    match key.as_ref() {
                        "@id" => n.id = map.next_value::<Option<String>>()?.unwrap_or_default(),
                        "name" => n.name = map.next_value::<Option<String>>()?.unwrap_or_default(),
                        "aliases" => n.aliases = map.next_value::<Names>()?.0.unwrap_or_default(),
                        "identifiers" => {
                            n.purl = map.next_value::<Option<Identifiers>>()?.and_then(|i| i.purl).unwrap_or_default()
                        }
                        "subcomponents" => n.subcomponents = map.next_value::<List>()?.0.unwrap_or_default(),
                        _ => {
                            map.next_value::<IgnoredAny>()?;
                        }
                    }
                }
                Ok(n)
            }
        }
        d.deserialize_any(V)
    }
}

impl Node {
    /// A product's or subcomponent's purl: `@id` when it is one, else
    /// `identifiers.purl`, else `@id`.
    fn product_id(&self) -> String {
        if self.id.starts_with("pkg:") || self.purl.is_empty() {
            self.id.clone()
        } else {
            self.purl.clone()
        }
    }
}

#[derive(Deserialize)]
struct OpenVexDocument {
    #[serde(default, rename = "@id")]
    id: Option<String>,
    #[serde(default)]
    author: Option<String>,
    #[serde(default)]
    timestamp: Option<String>,
    #[serde(default)]
    statements: Option<Statements>,
}

#[derive(Deserialize)]
struct OpenVexStatement {
    vulnerability: Node,
    #[serde(default, deserialize_with = "capped_opt::<_, _, MAX_PER_FINDING>")]
    products: Option<Vec<Node>>,
    /// OpenVEX before v0.2.0: subcomponents of every product.
    #[serde(default, deserialize_with = "capped_opt::<_, _, MAX_PER_FINDING>")]
    subcomponents: Option<Vec<Node>>,
    status: String,
    #[serde(default)]
    justification: Option<String>,
    #[serde(default)]
    impact_statement: Option<String>,
    #[serde(default)]
    timestamp: Option<String>,
}

/// The statements, at most [`MAX_FINDINGS`].
struct Statements(Vec<OpenVexStatement>);

impl<'de> Deserialize<'de> for Statements {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        struct L(#[serde(deserialize_with = "super::bounded::capped::<_, _, MAX_FINDINGS>")] Vec<OpenVexStatement>);
        L::deserialize(d).map(|l| Statements(l.0))
    }
}

/// The keys that tell the two formats apart.
#[derive(Deserialize)]
struct Sniff {
    #[serde(default, rename = "@context")]
    context: Option<super::bounded::Kind>,
    #[serde(default, rename = "bomFormat")]
    bom_format: Option<super::bounded::Kind>,
    #[serde(default)]
    document: Option<CsafSniff>,
}

#[derive(Deserialize)]
struct CsafSniff {
    #[serde(default)]
    csaf_version: Option<super::bounded::Kind>,
}

/// Reads a VEX document, OpenVEX or CycloneDX, from its bytes.
pub fn parse(bytes: &[u8]) -> Result<Document, VexError> {
    if bytes.len() > MAX_VEX_BYTES {
        return Err(VexError::TooLarge);
    }
    let text = std::str::from_utf8(bytes).map_err(|e| VexError::NotJson(e.to_string()))?;
    if !text.trim_start().starts_with('{') {
        return Err(VexError::NotJson("a VEX document is a JSON object".to_string()));
    }
    let sniff: Sniff = serde_json::from_str(text).map_err(|e| VexError::NotJson(e.to_string()))?;
    let context = super::bounded::Kind::str(&sniff.context);
    if context == OPENVEX || context.starts_with("https://openvex.dev/ns/") {
        return openvex(text);
    }
    if is_cyclonedx(super::bounded::Kind::str(&sniff.bom_format)) {
        return cyclonedx_vex(text);
    }
    if sniff.document.is_some_and(|d| super::bounded::Kind::str(&d.csaf_version).starts_with("2.")) {
        return csaf::read(text);
    }
    Err(VexError::Unknown)
}

/// Whether a statement may suppress: `not_affected` needs a justification
/// or an impact statement (OpenVEX requires one).
fn admissible(st: &Statement, ignored: &mut Vec<String>) -> bool {
    let blank = |s: &Option<String>| s.as_deref().is_none_or(|s| s.trim().is_empty());
    if st.status == Status::NotAffected && blank(&st.justification) && blank(&st.impact_statement) {
        ignored.push(format!(
            "{}: not_affected without a justification or an impact statement",
            st.vulnerability.first().map(String::as_str).unwrap_or("a statement")
        ));
        return false;
    }
    true
}

fn openvex(text: &str) -> Result<Document, VexError> {
    let doc: OpenVexDocument =
        serde_json::from_str(text).map_err(|e| VexError::Invalid(format!("OpenVEX document: {e}")))?;
    let timestamp =
        parse_time(doc.timestamp.as_deref()).map_err(|e| VexError::Invalid(format!("OpenVEX timestamp: {e}")))?;
    let mut ignored = Vec::new();
    let mut statements = Vec::new();
    for s in doc.statements.map(|s| s.0).unwrap_or_default() {
        let Some(status) = Status::parse_openvex(&s.status) else {
            ignored.push(format!("{}: unknown status {:?}", s.vulnerability.name_or_id(), s.status));
            continue;
        };
        let t = parse_time(s.timestamp.as_deref())
            .map_err(|e| VexError::Invalid(format!("OpenVEX statement timestamp: {e}")))?;
        let v = s.vulnerability;
        let vulnerability: Vec<String> =
            [v.name, v.id].into_iter().chain(v.aliases).filter(|s| !s.is_empty()).collect();
        let shared: Vec<String> = s.subcomponents.unwrap_or_default().iter().map(Node::product_id).collect();
        let products = s
            .products
            .unwrap_or_default()
            .into_iter()
            .map(|p| Product {
                id: p.product_id(),
                subcomponents: p
                    .subcomponents
                    .iter()
                    .map(Node::product_id)
                    .chain(shared.iter().cloned())
                    .filter(|s| !s.is_empty())
                    .collect(),
            })
            .collect();
        let st = Statement {
            vulnerability,
            products,
            status,
            justification: s.justification.filter(|j| !j.is_empty()),
            impact_statement: s.impact_statement.filter(|j| !j.is_empty()),
            timestamp: t.or(timestamp),
        };
        if st.vulnerability.is_empty() {
            ignored.push("a statement names no vulnerability".to_string());
        } else if admissible(&st, &mut ignored) {
            statements.push(st);
        }
    }
    Ok(Document {
        format: Format::OpenVex,
        id: doc.id.unwrap_or_default(),
        author: doc.author.unwrap_or_default(),
        timestamp,
        statements,
        ignored,
    })
}

impl Node {
    fn name_or_id(&self) -> &str {
        if self.name.is_empty() {
            &self.id
        } else {
            &self.name
        }
    }
}

fn cyclonedx_vex(text: &str) -> Result<Document, VexError> {
    #[derive(Deserialize)]
    struct Doc {
        #[serde(default, rename = "serialNumber")]
        serial_number: Option<String>,
        #[serde(default)]
        metadata: Option<Meta>,
        #[serde(default)]
        components: Option<super::cyclonedx::Components>,
        #[serde(default)]
        vulnerabilities: Option<super::cyclonedx::Vulnerabilities>,
    }
    #[derive(Deserialize)]
    struct Meta {
        #[serde(default)]
        timestamp: Option<String>,
        #[serde(default)]
        component: Option<super::cyclonedx::Component>,
        #[serde(default, deserialize_with = "capped_opt::<_, _, MAX_PER_FINDING>")]
        authors: Option<Vec<Author>>,
    }
    #[derive(Deserialize)]
    struct Author {
        #[serde(default)]
        name: Option<String>,
        #[serde(default)]
        email: Option<String>,
    }
    let doc: Doc = serde_json::from_str(text).map_err(|e| VexError::Invalid(format!("CycloneDX VEX: {e}")))?;
    let Some(vulns) = doc.vulnerabilities else {
        return Err(VexError::Invalid("CycloneDX VEX: it has no vulnerabilities list".to_string()));
    };
    let (timestamp, product, author) = match doc.metadata {
        Some(m) => {
            let t = parse_time(m.timestamp.as_deref())
                .map_err(|e| VexError::Invalid(format!("CycloneDX VEX metadata.timestamp: {e}")))?;
            let author = m
                .authors
                .unwrap_or_default()
                .into_iter()
                .find_map(|a| a.name.or(a.email).filter(|s| !s.is_empty()))
                .unwrap_or_default();
            (t, m.component.map(|c| c.purl).filter(|p| p.starts_with("pkg:oci/")), author)
        }
        None => (None, None, String::new()),
    };
    let purls = super::cyclonedx::purls(doc.components.map(|c| c.0).unwrap_or_default());
    let mut ignored = Vec::new();
    let statements =
        cyclonedx_statements(&vulns.0, &purls, product.as_deref().unwrap_or_default(), timestamp, &mut ignored);
    Ok(Document {
        format: Format::CycloneDx,
        id: doc.serial_number.unwrap_or_default(),
        author,
        timestamp,
        statements,
        ignored,
    })
}

/// The statements of CycloneDX vulnerabilities' `analysis` (a VEX, or a
/// scan's own analysis), about `product` (empty: the subject of the
/// attestation that carried it). Each `affects` ref is resolved to a purl:
/// itself or a BOM-Link's fragment when it is one, else the purl of the
/// component with that `bom-ref` (`purls`); a statement whose refs name no
/// package by purl is left out, never widened to every package.
pub(crate) fn cyclonedx_statements(
    vulns: &[super::cyclonedx::Vulnerability],
    purls: &std::collections::HashMap<String, String>,
    product: &str,
    doc_time: Option<DateTime<Utc>>,
    ignored: &mut Vec<String>,
) -> Vec<Statement> {
    let mut statements = Vec::new();
    for v in vulns {
        let Some(analysis) = &v.analysis else { continue };
        let Some(state) = analysis.state.as_deref() else { continue };
        let Some(status) = Status::parse_cyclonedx(state) else {
            ignored.push(format!("{}: unknown analysis state {state:?}", v.id));
            continue;
        };
        let vulnerability: Vec<String> = std::iter::once(v.id.clone())
            .chain(v.references.as_deref().unwrap_or_default().iter().filter_map(|r| r.id.clone()))
            .filter(|s| !s.is_empty())
            .collect();
        let affects = v.affects.as_deref().unwrap_or_default();
        let subcomponents: Vec<String> = affects
            .iter()
            .filter_map(|a| {
                let r = bom_ref_of(&a.reference);
                if r.starts_with("pkg:") {
                    Some(r.into_owned())
                } else {
                    purls.get(r.as_ref()).cloned()
                }
            })
            .collect();
        if subcomponents.is_empty() && !affects.is_empty() {
            ignored.push(format!("{}: its affects name no package by purl", v.id));
            continue;
        }
        let t = parse_time(analysis.last_updated.as_deref().or(v.updated.as_deref())).unwrap_or(None);
        let st = Statement {
            vulnerability,
            products: vec![Product { id: product.to_string(), subcomponents }],
            status,
            justification: analysis.justification.clone().filter(|j| !j.is_empty()),
            impact_statement: analysis.detail.clone().filter(|d| !d.is_empty()),
            timestamp: t.or(doc_time),
        };
        if admissible(&st, ignored) {
            statements.push(st);
        }
    }
    statements
}

/// Serialises a shared document (serde's `rc` feature is not enabled).
pub(crate) fn serialize_shared<S: serde::Serializer>(d: &std::sync::Arc<Document>, s: S) -> Result<S::Ok, S::Error> {
    d.as_ref().serialize(s)
}

/// The image being judged, as VEX products name it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Image {
    /// `sha256:<hex>`.
    pub digest: String,
    /// `registry/repository` (`registry.example.com/shop/api`), when known.
    pub repository: Option<String>,
}

/// `docker.io`, `index.docker.io` and `registry-1.docker.io` are one
/// registry; anything else is compared as written, without a scheme or a
/// trailing slash, in lower case.
fn normal_repository(r: &str) -> String {
    let r = r.trim().trim_end_matches('/');
    let r = r.strip_prefix("https://").or_else(|| r.strip_prefix("http://")).unwrap_or(r).to_ascii_lowercase();
    for alias in ["index.docker.io/", "registry-1.docker.io/"] {
        if let Some(rest) = r.strip_prefix(alias) {
            return format!("docker.io/{rest}");
        }
    }
    r
}

/// Whether a product names the judged image. `bound`: the document is about
/// this image (an attestation whose subject it is, or one given for it).
pub fn product_names(product: &str, image: &Image, bound: bool) -> bool {
    if product.is_empty() {
        return bound;
    }
    let Ok(p) = product.parse::<packageurl::PackageUrl<'_>>() else { return false };
    if p.ty() != "oci" {
        return false;
    }
    let mut repository_url = None;
    for (k, v) in p.qualifiers() {
        match k.as_ref() {
            "repository_url" => repository_url = Some(v.as_ref()),
            // Informational; not a constraint on which image.
            "tag" => {}
            // Any other constraint (an arch, an os) this gate cannot check.
            _ => return false,
        }
    }
    let repository = image.repository.as_deref().map(normal_repository);
    // NAME is the repository's last segment.
    if let Some(repo) = &repository {
        if repo.rsplit('/').next() != Some(p.name().to_ascii_lowercase().as_str()) {
            return false;
        }
    }
    // When the image's repository is not known (judged by digest alone),
    // the digest decides.
    if let (Some(url), Some(repo)) = (repository_url, &repository) {
        if *repo != normal_repository(url) {
            return false;
        }
    }
    match p.version() {
        Some(digest) => digest.eq_ignore_ascii_case(&image.digest),
        // Every digest of a repository the product names; by name alone,
        // only for the document's own subject.
        None => repository.is_some() && (repository_url.is_some() || bound),
    }
}

/// Whether a subcomponent purl matches a package purl: type, namespace and
/// name; version, qualifiers and subpath when the subcomponent gives them.
pub fn subcomponent_matches(subcomponent: &str, package: &str) -> bool {
    let (Ok(s), Ok(p)) =
        (subcomponent.parse::<packageurl::PackageUrl<'_>>(), package.parse::<packageurl::PackageUrl<'_>>())
    else {
        return false;
    };
    s.ty() == p.ty()
        && s.namespace() == p.namespace()
        && s.name() == p.name()
        && s.version().is_none_or(|v| Some(v) == p.version())
        && s.subpath().is_none_or(|v| Some(v) == p.subpath())
        && s.qualifiers().iter().all(|(k, v)| p.qualifiers().get(k) == Some(v))
}

/// Whether a statement names a finding's vulnerability.
pub fn names_vulnerability(st: &Statement, f: &Finding) -> bool {
    st.vulnerability.iter().any(|v| *v == f.id || f.aliases.contains(v))
}

/// Whether a statement covers a finding of the image.
pub fn covers(st: &Statement, image: &Image, bound: bool, f: &Finding) -> bool {
    names_vulnerability(st, f)
        && st.products.iter().any(|p| {
            product_names(&p.id, image, bound)
                && (p.subcomponents.is_empty()
                    || f.purl
                        .as_deref()
                        .is_some_and(|purl| p.subcomponents.iter().any(|s| subcomponent_matches(s, purl))))
        })
}

/// A VEX document as a decision sees it: read, and where it came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Source {
    pub document: std::sync::Arc<Document>,
    /// sha256 of the document (or of the envelope that carried it).
    pub digest: String,
    /// The trusted signer it was verified as; none for a file given on the
    /// command line.
    pub signer: Option<String>,
    /// It is about the judged image (see [`product_names`]).
    pub bound: bool,
}

/// The statement that decides a finding: the newest of those that cover
/// it, the later one listed on a tie; none when none covers it.
pub fn decide<'a>(sources: &'a [Source], image: &Image, f: &Finding) -> Option<(&'a Source, &'a Statement)> {
    let mut best: Option<(&Source, &Statement)> = None;
    for src in sources {
        for st in &src.document.statements {
            if covers(st, image, src.bound, f) && best.is_none_or(|(_, b)| st.timestamp >= b.timestamp) {
                best = Some((src, st));
            }
        }
    }
    best
}

/// A finding a VEX statement took out of the count, and why.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Suppressed {
    pub finding: Finding,
    pub status: Status,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub justification: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub impact_statement: Option<String>,
    pub author: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub signer: Option<String>,
    /// The digest of the document that said so.
    pub document: String,
}

impl Suppressed {
    /// `CVE-… in pkg 1.0: not_affected (vulnerable_code_not_present), by Acme, signed by security`
    /// (`, unsigned` for a file given on the command line).
    pub fn describe(&self) -> String {
        let why = self.justification.as_deref().or(self.impact_statement.as_deref());
        let mut s = format!("{} in {}", self.finding.id, self.finding.package);
        if !self.finding.installed_version.is_empty() {
            s.push(' ');
            s.push_str(&self.finding.installed_version);
        }
        s.push_str(": ");
        s.push_str(self.status.as_str());
        if let Some(why) = why {
            s.push_str(&format!(" ({why})"));
        }
        if !self.author.is_empty() {
            s.push_str(&format!(", by {}", self.author));
        }
        match &self.signer {
            Some(signer) => s.push_str(&format!(", signed by {signer}")),
            None => s.push_str(", unsigned"),
        }
        s
    }
}

/// Splits findings into those that still count and those VEX suppresses.
pub fn apply(findings: Vec<Finding>, image: &Image, sources: &[Source]) -> (Vec<Finding>, Vec<Suppressed>) {
    let mut kept = Vec::new();
    let mut suppressed = Vec::new();
    for f in findings {
        match decide(sources, image, &f) {
            Some((src, st)) if st.status.suppresses() => suppressed.push(Suppressed {
                status: st.status,
                justification: st.justification.clone(),
                impact_statement: st.impact_statement.clone(),
                author: src.document.author.clone(),
                signer: src.signer.clone(),
                document: src.digest.clone(),
                finding: f,
            }),
            _ => kept.push(f),
        }
    }
    (kept, suppressed)
}

/// CSAF 2.0 VEX (`document.csaf_version` 2.0, profile `csaf_vex`): each
/// vulnerability's `product_status` (`known_not_affected`, `fixed`,
/// `known_affected`, `under_investigation`) names product ids, resolved
/// through the `product_tree` (branches and full product names to their
/// `product_identification_helper.purl`; a `default_component_of`
/// relationship to a product with that component as its subcomponent). A
/// flag's `label` is the justification for its products, an `impact`
/// threat's `details` the impact statement.
mod csaf {
    use std::collections::HashMap;

    use serde::Deserialize;

    use super::super::bounded::{capped_opt, MAX_FINDINGS, MAX_PER_FINDING};
    use super::{admissible, parse_time, Document, Format, Product, Statement, Status, VexError};

    /// Most product ids one list names.
    const MAX_PRODUCTS: usize = 10_000;

    #[derive(Deserialize)]
    pub(super) struct Csaf {
        document: Meta,
        #[serde(default)]
        product_tree: Option<Tree>,
        #[serde(default, deserialize_with = "capped_opt::<_, _, MAX_FINDINGS>")]
        vulnerabilities: Option<Vec<Vulnerability>>,
    }

    #[derive(Deserialize)]
    struct Meta {
        #[serde(default)]
        publisher: Option<Publisher>,
        #[serde(default)]
        tracking: Option<Tracking>,
    }

    #[derive(Deserialize)]
    struct Publisher {
        #[serde(default)]
        name: Option<String>,
    }

    #[derive(Deserialize)]
    struct Tracking {
        #[serde(default)]
        id: Option<String>,
        #[serde(default)]
        current_release_date: Option<String>,
    }

    #[derive(Deserialize, Default)]
    struct Tree {
        #[serde(default, deserialize_with = "capped_opt::<_, _, MAX_PRODUCTS>")]
        branches: Option<Vec<Branch>>,
        #[serde(default, deserialize_with = "capped_opt::<_, _, MAX_PRODUCTS>")]
        full_product_names: Option<Vec<Named>>,
        #[serde(default, deserialize_with = "capped_opt::<_, _, MAX_PRODUCTS>")]
        relationships: Option<Vec<Relationship>>,
    }

    #[derive(Deserialize)]
    struct Branch {
        #[serde(default, deserialize_with = "capped_opt::<_, _, MAX_PRODUCTS>")]
        branches: Option<Vec<Branch>>,
        #[serde(default)]
        product: Option<Named>,
    }

    #[derive(Deserialize)]
    struct Named {
        product_id: String,
        #[serde(default)]
        product_identification_helper: Option<Helper>,
    }

    #[derive(Deserialize)]
    struct Helper {
        #[serde(default)]
        purl: Option<String>,
    }

    #[derive(Deserialize)]
    struct Relationship {
        category: String,
        product_reference: String,
        relates_to_product_reference: String,
        full_product_name: Named,
    }

    #[derive(Deserialize)]
    struct Vulnerability {
        #[serde(default)]
        cve: Option<String>,
        #[serde(default, deserialize_with = "capped_opt::<_, _, MAX_PER_FINDING>")]
        ids: Option<Vec<Id>>,
        #[serde(default)]
        product_status: Option<ProductStatus>,
        #[serde(default, deserialize_with = "capped_opt::<_, _, MAX_PER_FINDING>")]
        flags: Option<Vec<Flag>>,
        #[serde(default, deserialize_with = "capped_opt::<_, _, MAX_PER_FINDING>")]
        threats: Option<Vec<Threat>>,
    }

    #[derive(Deserialize)]
    struct Id {
        #[serde(default)]
        text: Option<String>,
    }

    #[derive(Deserialize, Default)]
    struct ProductStatus {
        #[serde(default, deserialize_with = "capped_opt::<_, _, MAX_PRODUCTS>")]
        known_not_affected: Option<Vec<String>>,
        #[serde(default, deserialize_with = "capped_opt::<_, _, MAX_PRODUCTS>")]
        fixed: Option<Vec<String>>,
        #[serde(default, deserialize_with = "capped_opt::<_, _, MAX_PRODUCTS>")]
        known_affected: Option<Vec<String>>,
        #[serde(default, deserialize_with = "capped_opt::<_, _, MAX_PRODUCTS>")]
        under_investigation: Option<Vec<String>>,
    }

    #[derive(Deserialize)]
    struct Flag {
        #[serde(default)]
        label: Option<String>,
        #[serde(default, deserialize_with = "capped_opt::<_, _, MAX_PRODUCTS>")]
        product_ids: Option<Vec<String>>,
    }

    #[derive(Deserialize)]
    struct Threat {
        #[serde(default)]
        category: Option<String>,
        #[serde(default)]
        details: Option<String>,
        #[serde(default, deserialize_with = "capped_opt::<_, _, MAX_PRODUCTS>")]
        product_ids: Option<Vec<String>>,
    }

    fn walk(branches: &[Branch], purls: &mut HashMap<String, String>) {
        for b in branches {
            if let Some(p) = &b.product {
                add(p, purls);
            }
            walk(b.branches.as_deref().unwrap_or_default(), purls);
        }
    }

    fn add(p: &Named, purls: &mut HashMap<String, String>) {
        if let Some(purl) = p.product_identification_helper.as_ref().and_then(|h| h.purl.clone()) {
            purls.insert(p.product_id.clone(), purl);
        }
    }

    pub(super) fn read(text: &str) -> Result<Document, VexError> {
        let doc: Csaf = serde_json::from_str(text).map_err(|e| VexError::Invalid(format!("CSAF VEX: {e}")))?;
        let tree = doc.product_tree.unwrap_or_default();
        let mut purls = HashMap::new();
        walk(tree.branches.as_deref().unwrap_or_default(), &mut purls);
        for p in tree.full_product_names.as_deref().unwrap_or_default() {
            add(p, &mut purls);
        }
        // A component of a product: (product purl, component purl).
        let mut pairs: HashMap<String, (String, String)> = HashMap::new();
        for r in tree.relationships.as_deref().unwrap_or_default() {
            if r.category != "default_component_of" {
                continue;
            }
            if let (Some(product), Some(component)) =
                (purls.get(&r.relates_to_product_reference), purls.get(&r.product_reference))
            {
                pairs.insert(r.full_product_name.product_id.clone(), (product.clone(), component.clone()));
            }
        }
        let tracking = doc.document.tracking;
        let timestamp = parse_time(tracking.as_ref().and_then(|t| t.current_release_date.as_deref()))
            .map_err(|e| VexError::Invalid(format!("CSAF tracking.current_release_date: {e}")))?;
        let mut ignored = Vec::new();
        let mut statements = Vec::new();
        for v in doc.vulnerabilities.unwrap_or_default() {
            let names: Vec<String> = v
                .cve
                .iter()
                .cloned()
                .chain(v.ids.unwrap_or_default().into_iter().filter_map(|i| i.text))
                .filter(|s| !s.is_empty())
                .collect();
            if names.is_empty() {
                ignored.push("a vulnerability names no cve or id".to_string());
                continue;
            }
            let flags = v.flags.unwrap_or_default();
            let threats = v.threats.unwrap_or_default();
            let status = v.product_status.unwrap_or_default();
            let lists = [
                (Status::NotAffected, status.known_not_affected),
                (Status::Fixed, status.fixed),
                (Status::Affected, status.known_affected),
                (Status::UnderInvestigation, status.under_investigation),
            ];
            for (st, ids) in lists {
                for id in ids.unwrap_or_default() {
                    let product = match (pairs.get(&id), purls.get(&id)) {
                        (Some((product, component)), _) => {
                            Product { id: product.clone(), subcomponents: vec![component.clone()] }
                        }
                        (None, Some(purl)) => Product { id: purl.clone(), subcomponents: vec![] },
                        (None, None) => {
                            ignored.push(format!("{}: product {id:?} has no purl", names[0]));
                            continue;
                        }
                    };
                    let names_it = |ids: &Option<Vec<String>>| ids.as_ref().is_none_or(|l| l.contains(&id));
                    let justification = flags.iter().find(|f| names_it(&f.product_ids)).and_then(|f| f.label.clone());
                    let impact = threats
                        .iter()
                        .filter(|t| t.category.as_deref() == Some("impact"))
                        .find(|t| names_it(&t.product_ids))
                        .and_then(|t| t.details.clone());
                    let statement = Statement {
                        vulnerability: names.clone(),
                        products: vec![product],
                        status: st,
                        justification,
                        impact_statement: impact,
                        timestamp,
                    };
                    if admissible(&statement, &mut ignored) {
                        statements.push(statement);
                    }
                }
            }
        }
        Ok(Document {
            format: Format::Csaf,
            id: tracking.and_then(|t| t.id).unwrap_or_default(),
            author: doc.document.publisher.and_then(|p| p.name).unwrap_or_default(),
            timestamp,
            statements,
            ignored,
        })
    }
}

#[cfg(test)]
mod tests;

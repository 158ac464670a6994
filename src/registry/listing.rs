//! The few fields of manifests and indexes that attestation discovery
//! reads, parsed in one pass without building the documents: a list keeps
//! at most [`MAX_LISTED`] entries (the newest, the last listed), and every
//! other field is skipped as it is read. A manifest of 4 MiB of tiny
//! entries costs about its own size, not thirty times it.

use std::collections::VecDeque;

use serde::de::{SeqAccess, Visitor};

pub use crate::evidence::bounded::Kind;
use serde::Deserialize;

/// Most entries of one list kept; older ones are counted, not kept.
pub const MAX_LISTED: usize = 1024;

/// A layer of a manifest, or a manifest of an index.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    #[serde(default)]
    pub media_type: String,
    pub digest: String,
    #[serde(default)]
    pub size: i64,
    #[serde(default)]
    pub artifact_type: Option<String>,
    #[serde(default)]
    pub annotations: Annotations,
}

/// The annotations attestation discovery reads; others are skipped.
#[derive(Debug, Default, Deserialize)]
pub struct Annotations {
    /// cosign's claim on a `.att` layer (unsigned).
    #[serde(rename = "predicateType")]
    pub predicate_type: Option<String>,
    /// cosign's claim on a bundle referrer (unsigned).
    #[serde(rename = "dev.sigstore.bundle.predicateType")]
    pub bundle_predicate_type: Option<String>,
    #[serde(rename = "dev.sigstore.cosign/certificate")]
    pub certificate: Option<String>,
    #[serde(rename = "dev.sigstore.cosign/chain")]
    pub chain: Option<String>,
    #[serde(rename = "dev.sigstore.cosign/bundle")]
    pub rekor_bundle: Option<String>,
    #[serde(rename = "dev.sigstore.cosign/rfc3161timestamp")]
    pub rfc3161: Option<String>,
}

impl Annotations {
    /// The cosign keyless annotations, as a legacy layer reads them.
    pub fn cosign(&self) -> std::collections::BTreeMap<String, String> {
        use crate::attest::{BUNDLE_ANNOTATION, CERTIFICATE_ANNOTATION, CHAIN_ANNOTATION, RFC3161_ANNOTATION};
        [
            (CERTIFICATE_ANNOTATION, &self.certificate),
            (CHAIN_ANNOTATION, &self.chain),
            (BUNDLE_ANNOTATION, &self.rekor_bundle),
            (RFC3161_ANNOTATION, &self.rfc3161),
        ]
        .into_iter()
        .filter_map(|(k, v)| Some((k.to_string(), v.clone()?)))
        .collect()
    }
}

/// A list of descriptors: the newest [`MAX_LISTED`], and how many older
/// ones were dropped.
#[derive(Debug, Default)]
pub struct Listing {
    pub items: Vec<Descriptor>,
    pub dropped: usize,
}

impl<'de> Deserialize<'de> for Listing {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Newest;
        impl<'de> Visitor<'de> for Newest {
            type Value = Listing;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a list of descriptors")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Listing, A::Error> {
                let mut items = VecDeque::new();
                let mut dropped = 0;
                while let Some(d) = seq.next_element::<Descriptor>()? {
                    if items.len() == MAX_LISTED {
                        items.pop_front();
                        dropped += 1;
                    }
                    items.push_back(d);
                }
                Ok(Listing { items: items.into(), dropped })
            }
        }
        d.deserialize_seq(Newest)
    }
}

/// An image manifest's layers (an `.att` manifest, a referrer).
#[derive(Debug, Deserialize)]
pub struct Manifest {
    pub layers: Listing,
}

/// An index's manifests (the referrers of an image).
#[derive(Debug, Deserialize)]
pub struct Index {
    pub manifests: Listing,
}

/// What tells a manifest or an index apart from anything else.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Shape {
    pub schema_version: Option<Kind>,
    pub media_type: Option<Kind>,
    pub config: Option<Kind>,
    pub layers: Option<Kind>,
    pub manifests: Option<Kind>,
}

impl Shape {
    /// A JSON object's shape (an array is not a manifest, whatever it holds).
    pub fn of(body: &[u8]) -> Result<Shape, String> {
        if body.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
            return Err("not a manifest (not a JSON object)".into());
        }
        serde_json::from_slice(body).map_err(|e| format!("not a manifest (not JSON: {e})"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_long_listing_keeps_the_newest() {
        let layers: Vec<String> = (0..MAX_LISTED + 3)
            .map(|i| format!(r#"{{"mediaType":"m","digest":"d{i}","size":1,"annotations":{{"x":"y"}}}}"#))
            .collect();
        let m: Manifest = serde_json::from_str(&format!(r#"{{"layers":[{}]}}"#, layers.join(","))).unwrap();
        assert_eq!((m.layers.items.len(), m.layers.dropped), (MAX_LISTED, 3));
        assert_eq!(m.layers.items[0].digest, "d3");
        assert_eq!(m.layers.items.last().unwrap().digest, format!("d{}", MAX_LISTED + 2));
    }
}

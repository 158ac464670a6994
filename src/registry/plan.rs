//! Which of an image's attestations are read, in what order, and within
//! what budget: pure functions of what the registry lists.
//!
//! A registry lists attestations oldest first (cosign appends `.att` layers;
//! referrers are listed in the order they were pushed). Each may carry the
//! predicate type it claims (the `.att` layer annotation `predicateType`, a
//! referrer's `dev.sigstore.bundle.predicateType`): unsigned, so it only
//! chooses what is read first, and is never evidence. The newest of each
//! claimed type is read first, then the rest newest first, so that many
//! attestations of one type (32 fresh SBOMs) cannot push out the scan.
//!
//! What is read of one claimed type is always its newest ones: once one is
//! left unread (over the byte budget, or too large), no older one claiming
//! that type is read in its place, so a decision never rests on an older
//! attestation while a newer one of its kind went unread.

use std::collections::HashSet;

use crate::evidence::Unread;

/// Where a listed attestation comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Scheme {
    /// A layer of the legacy `sha256-<hex>.att` manifest.
    Legacy,
    /// A sigstore bundle among the OCI referrers.
    Referrer,
}

/// One listed attestation, before it is read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Listed {
    /// The predicate type it claims (unsigned).
    pub hint: Option<String>,
    /// Listed as something other than an attestation (a referrer whose
    /// artifact type is not a sigstore bundle): read last.
    pub unlikely: bool,
}

impl Listed {
    pub fn claiming(hint: Option<&str>) -> Listed {
        Listed { hint: hint.filter(|h| !h.is_empty()).map(str::to_string), unlikely: false }
    }
}

/// The order to read one scheme's listing (oldest first) in, as positions
/// in it: the newest of each claimed type (newest first), then the others
/// newest first, then those listed as something else; at most `max` (the
/// older rest is not read). Returns the positions to read and how many are
/// left.
pub fn order(listed: &[Listed], max: usize) -> (Vec<usize>, usize) {
    let mut seen: HashSet<Option<&str>> = HashSet::new();
    let (mut first, mut rest, mut last) = (Vec::new(), Vec::new(), Vec::new());
    for (i, l) in listed.iter().enumerate().rev() {
        if l.unlikely {
            last.push(i);
        } else if seen.insert(l.hint.as_deref()) {
            first.push(i);
        } else {
            rest.push(i);
        }
    }
    let mut all = first;
    all.extend(rest);
    all.extend(last);
    let left = all.len().saturating_sub(max);
    all.truncate(max);
    (all, left)
}

/// The reading order across both schemes: each scheme's [`order`],
/// interleaved (legacy first at each rank, as `.att` layers are cosign's
/// default), and how many were left past the count limit, in all.
pub fn plan(legacy: &[Listed], referrers: &[Listed], max_per_scheme: usize) -> (Vec<(Scheme, usize)>, usize) {
    let (l, left_l) = order(legacy, max_per_scheme);
    let (r, left_r) = order(referrers, max_per_scheme);
    let mut out = Vec::with_capacity(l.len() + r.len());
    for rank in 0..l.len().max(r.len()) {
        if let Some(i) = l.get(rank) {
            out.push((Scheme::Legacy, *i));
        }
        if let Some(i) = r.get(rank) {
            out.push((Scheme::Referrer, *i));
        }
    }
    (out, left_l + left_r)
}

/// Why a listed attestation is not read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Skip {
    /// Larger than the limit for one attestation.
    TooLarge,
    /// It does not fit in what is left of the lookup's byte budget, or a
    /// newer one claiming the same type did not.
    OverBudget,
}

/// The bytes one lookup may still read, and the claimed types of which a
/// newer attestation was left unread.
#[derive(Debug)]
pub struct Budget {
    left: u64,
    blocked: HashSet<Option<String>>,
    unread: Unread,
}

impl Budget {
    /// `bytes` for the whole lookup, `each` for one attestation.
    pub fn new(bytes: u64, each: u64, count: usize, past_count: usize) -> Budget {
        Budget {
            left: bytes,
            blocked: HashSet::new(),
            unread: Unread {
                past_count,
                count_limit: count,
                byte_budget: bytes,
                size_limit: each,
                ..Unread::default()
            },
        }
    }

    /// Whether an attestation of `size` bytes claiming `hint` is read; if
    /// so its size is taken from the budget, if not it is counted unread.
    pub fn admit(&mut self, hint: Option<&str>, size: u64) -> Result<(), Skip> {
        let key = hint.map(str::to_string);
        let skip = if size > self.unread.size_limit {
            Some(Skip::TooLarge)
        } else if size > self.left || self.blocked.contains(&key) {
            Some(Skip::OverBudget)
        } else {
            None
        };
        match skip {
            None => {
                self.left -= size;
                Ok(())
            }
            Some(s) => {
                match s {
                    Skip::TooLarge => self.unread.too_large += 1,
                    Skip::OverBudget => self.unread.over_budget += 1,
                }
                self.blocked.insert(key);
                Err(s)
            }
        }
    }

    /// What was not read, and why.
    pub fn unread(&self) -> Unread {
        self.unread.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn listing(hints: &[&str]) -> Vec<Listed> {
        hints
            .iter()
            .map(|h| match *h {
                "-" => Listed::claiming(None),
                h if h.starts_with('!') => Listed { hint: None, unlikely: true },
                h => Listed::claiming(Some(h)),
            })
            .collect()
    }

    #[test]
    fn the_newest_of_each_claimed_type_is_read_first() {
        // (listing oldest first, max, positions read in order, left)
        let rows: &[(&[&str], usize, &[usize], usize)] = &[
            (&[], 32, &[], 0),
            (&["vuln", "test"], 32, &[1, 0], 0),
            // 32 SBOMs pushed after the scan and the tests: both still read.
            (&["vuln", "test", "sbom", "sbom", "sbom", "sbom"], 3, &[5, 1, 0], 3),
            (&["vuln", "test", "sbom", "sbom", "sbom", "sbom"], 4, &[5, 1, 0, 4], 2),
            // No hints: newest first.
            (&["-", "-", "-"], 2, &[2, 1], 1),
            // A rescan: the newest scan first, the older one after the others.
            (&["vuln", "test", "vuln"], 32, &[2, 1, 0], 0),
            // Listed as something else: last.
            (&["!sig", "vuln", "!sig"], 32, &[1, 2, 0], 0),
            (&["!sig", "vuln", "!sig"], 1, &[1], 2),
        ];
        for (hints, max, want, left) in rows {
            let (got, l) = order(&listing(hints), *max);
            assert_eq!((got.as_slice(), l), (*want, *left), "{hints:?} max {max}");
        }
    }

    #[test]
    fn both_schemes_are_read_rank_by_rank() {
        let (p, left) = plan(&listing(&["vuln", "sbom", "sbom"]), &listing(&["test"]), 2);
        assert_eq!(p, vec![(Scheme::Legacy, 2), (Scheme::Referrer, 0), (Scheme::Legacy, 0)]);
        assert_eq!(left, 1);
    }

    #[test]
    fn a_claimed_type_left_unread_is_not_read_older() {
        const MIB: u64 = 1 << 20;
        // (claimed type, size, read?)
        let rows: &[(Option<&str>, u64, Result<(), Skip>)] = &[
            (Some("vuln"), 10 * MIB, Ok(())),
            (Some("sbom"), 20 * MIB, Err(Skip::TooLarge)),
            // An older SBOM that would fit: not read, its newer one was not.
            (Some("sbom"), MIB, Err(Skip::OverBudget)),
            (Some("test"), MIB, Ok(())),
            (None, 5 * MIB, Ok(())),
            (Some("vuln"), 16 * MIB, Err(Skip::OverBudget)),
            (Some("vuln"), MIB, Err(Skip::OverBudget)),
            (Some("prov"), 8 * MIB, Ok(())),
            (Some("prov"), 0, Ok(())),
        ];
        let mut b = Budget::new(24 * MIB, 16 * MIB, 32, 2);
        for (i, (hint, size, want)) in rows.iter().enumerate() {
            assert_eq!(b.admit(*hint, *size), *want, "row {i}: {hint:?} {size}");
        }
        let u = b.unread();
        assert_eq!((u.past_count, u.too_large, u.over_budget, u.total()), (2, 1, 3, 6));
    }
}

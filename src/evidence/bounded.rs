//! Reading signed JSON within a bound of memory.
//!
//! A `serde_json::Value` of a document made of tiny elements takes about
//! thirty times the document's size (a `[0,0,…]` element is 2 bytes of text
//! and 32 of `Value`; a `{"a":0}` one, a B-tree node of several hundred).
//! So predicates are read into typed structs that skip what they do not
//! name, with caps on every list they keep ([`capped`]; for SARIF, whose
//! producers vary, lenient ones: [`LooseObj`], [`LooseList`], …); what is
//! read dynamically (one in-toto vulns entry at a time, provenance) is built
//! by [`value`], which charges every element an upper estimate of its
//! memory and refuses a document past its budget.

use std::cell::Cell;

use serde::de::{DeserializeSeed, Error as _, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer};
use serde_json::{Map, Value};

/// Most findings one report may list (a large image has a few thousand).
pub const MAX_FINDINGS: usize = 50_000;
/// Most entries of a list inside one finding (aliases, fixed versions,
/// CVSS sources) or of a test result's lists of names.
pub const MAX_PER_FINDING: usize = 256;
/// Most test names a test result may list.
pub const MAX_TESTS: usize = 100_000;

/// The error for a report past [`MAX_FINDINGS`].
pub fn too_many_findings<E: serde::de::Error>() -> E {
    E::custom(format!("the report lists more than {MAX_FINDINGS} vulnerabilities, the most read"))
}

/// A list (or null) read one entry at a time, each handed to `f` as it is
/// read and not kept: for lists whose entries become findings.
pub fn each<T, F>(f: F) -> Each<T, F> {
    Each(f, std::marker::PhantomData)
}

/// See [`each`].
pub struct Each<T, F>(F, std::marker::PhantomData<fn(T)>);

impl<'de, T: Deserialize<'de>, F: FnMut(T) -> Result<(), String>> DeserializeSeed<'de> for Each<T, F> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_option(self)
    }
}

impl<'de, T: Deserialize<'de>, F: FnMut(T) -> Result<(), String>> Visitor<'de> for Each<T, F> {
    type Value = ();
    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a list or null")
    }
    fn visit_unit<E>(self) -> Result<(), E> {
        Ok(())
    }
    fn visit_none<E>(self) -> Result<(), E> {
        Ok(())
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_seq(self)
    }
    fn visit_seq<A: SeqAccess<'de>>(mut self, mut seq: A) -> Result<(), A::Error> {
        while let Some(x) = seq.next_element::<T>()? {
            (self.0)(x).map_err(A::Error::custom)?;
        }
        Ok(())
    }
}

/// A list read as a `Vec` of at most `N` entries; more is an error that
/// names the limit (for `#[serde(deserialize_with = "capped::<_, _, N>")]`).
pub fn capped<'de, D, T, const N: usize>(d: D) -> Result<Vec<T>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    struct List<T, const N: usize>(std::marker::PhantomData<T>);
    impl<'de, T: Deserialize<'de>, const N: usize> Visitor<'de> for List<T, N> {
        type Value = Vec<T>;
        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(f, "a list of at most {N} entries")
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<T>, A::Error> {
            let mut out = Vec::new();
            while let Some(x) = seq.next_element()? {
                if out.len() == N {
                    return Err(A::Error::custom(format!("a list has more than {N} entries, the most read")));
                }
                out.push(x);
            }
            Ok(out)
        }
    }
    d.deserialize_seq(List::<T, N>(std::marker::PhantomData))
}

/// [`capped`] for a list that may be absent or null.
pub fn capped_opt<'de, D, T, const N: usize>(d: D) -> Result<Option<Vec<T>>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    #[derive(Deserialize)]
    #[serde(bound = "T: Deserialize<'de>")]
    struct Wrap<T, const N: usize>(#[serde(deserialize_with = "capped::<_, _, N>")] Vec<T>);
    Ok(Option::<Wrap<T, N>>::deserialize(d)?.map(|w| w.0))
}

/// A map read with at most `N` entries; more is an error.
pub fn capped_map<'de, D, V, const N: usize>(d: D) -> Result<Option<std::collections::BTreeMap<String, V>>, D::Error>
where
    D: Deserializer<'de>,
    V: Deserialize<'de>,
{
    struct M<V, const N: usize>(std::marker::PhantomData<V>);
    impl<'de, V: Deserialize<'de>, const N: usize> Visitor<'de> for M<V, N> {
        type Value = Option<std::collections::BTreeMap<String, V>>;
        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(f, "a map of at most {N} entries")
        }
        fn visit_unit<E>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_none<E>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
            d.deserialize_map(self)
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
            let mut out = std::collections::BTreeMap::new();
            while let Some((k, v)) = map.next_entry::<String, V>()? {
                if out.len() == N {
                    return Err(A::Error::custom(format!("a map has more than {N} entries, the most read")));
                }
                out.insert(k, v);
            }
            Ok(Some(out))
        }
    }
    d.deserialize_option(M::<V, N>(std::marker::PhantomData))
}

/// Skips what a lenient reader does not take, whatever it is.
fn skip_seq<'de, A: SeqAccess<'de>>(mut seq: A) -> Result<(), A::Error> {
    while seq.next_element::<IgnoredAny>()?.is_some() {}
    Ok(())
}

fn skip_map<'de, A: MapAccess<'de>>(mut map: A) -> Result<(), A::Error> {
    while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
    Ok(())
}

/// For formats read leniently (SARIF): a value of another JSON type than
/// the one wanted is skipped, not an error, and nothing is built of it.
macro_rules! loose_scalar {
    ($name:ident, $t:ty, $what:literal, { $($visit:item)* }) => {
        #[doc = concat!("A ", $what, ", or nothing when the JSON holds something else.")]
        #[derive(Debug, Default)]
        pub struct $name(pub Option<$t>);

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                struct V;
                impl<'de> Visitor<'de> for V {
                    type Value = $name;
                    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                        f.write_str("JSON")
                    }
                    $($visit)*
                    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<$name, A::Error> {
                        skip_seq(seq).map(|_| $name(None))
                    }
                    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<$name, A::Error> {
                        skip_map(map).map(|_| $name(None))
                    }
                    fn visit_unit<E>(self) -> Result<$name, E> {
                        Ok($name(None))
                    }
                }
                d.deserialize_any(V)
            }
        }
    };
}

loose_scalar!(LooseStr, String, "string", {
    fn visit_str<E>(self, v: &str) -> Result<LooseStr, E> {
        Ok(LooseStr(Some(v.to_string())))
    }
    fn visit_bool<E>(self, _: bool) -> Result<LooseStr, E> {
        Ok(LooseStr(None))
    }
    fn visit_i64<E>(self, _: i64) -> Result<LooseStr, E> {
        Ok(LooseStr(None))
    }
    fn visit_u64<E>(self, _: u64) -> Result<LooseStr, E> {
        Ok(LooseStr(None))
    }
    fn visit_f64<E>(self, _: f64) -> Result<LooseStr, E> {
        Ok(LooseStr(None))
    }
});

loose_scalar!(LooseU64, u64, "non-negative integer", {
    fn visit_str<E>(self, _: &str) -> Result<LooseU64, E> {
        Ok(LooseU64(None))
    }
    fn visit_bool<E>(self, _: bool) -> Result<LooseU64, E> {
        Ok(LooseU64(None))
    }
    fn visit_i64<E>(self, v: i64) -> Result<LooseU64, E> {
        Ok(LooseU64(u64::try_from(v).ok()))
    }
    fn visit_u64<E>(self, v: u64) -> Result<LooseU64, E> {
        Ok(LooseU64(Some(v)))
    }
    fn visit_f64<E>(self, _: f64) -> Result<LooseU64, E> {
        Ok(LooseU64(None))
    }
});

loose_scalar!(LooseScore, f64, "number, or a string holding one", {
    fn visit_str<E>(self, v: &str) -> Result<LooseScore, E> {
        Ok(LooseScore(v.trim().parse().ok()))
    }
    fn visit_bool<E>(self, _: bool) -> Result<LooseScore, E> {
        Ok(LooseScore(None))
    }
    fn visit_i64<E>(self, v: i64) -> Result<LooseScore, E> {
        Ok(LooseScore(Some(v as f64)))
    }
    fn visit_u64<E>(self, v: u64) -> Result<LooseScore, E> {
        Ok(LooseScore(Some(v as f64)))
    }
    fn visit_f64<E>(self, v: f64) -> Result<LooseScore, E> {
        Ok(LooseScore(Some(v)))
    }
});

/// An object read as `T` (whose fields are lenient themselves), or nothing
/// when the JSON holds something else.
#[derive(Debug)]
pub struct LooseObj<T>(pub Option<T>);

impl<T> Default for LooseObj<T> {
    fn default() -> Self {
        LooseObj(None)
    }
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for LooseObj<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<T>(std::marker::PhantomData<T>);
        impl<'de, T: Deserialize<'de>> Visitor<'de> for V<T> {
            type Value = LooseObj<T>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("JSON")
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<LooseObj<T>, A::Error> {
                T::deserialize(serde::de::value::MapAccessDeserializer::new(map)).map(|t| LooseObj(Some(t)))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<LooseObj<T>, A::Error> {
                skip_seq(seq).map(|_| LooseObj(None))
            }
            fn visit_str<E>(self, _: &str) -> Result<LooseObj<T>, E> {
                Ok(LooseObj(None))
            }
            fn visit_bool<E>(self, _: bool) -> Result<LooseObj<T>, E> {
                Ok(LooseObj(None))
            }
            fn visit_i64<E>(self, _: i64) -> Result<LooseObj<T>, E> {
                Ok(LooseObj(None))
            }
            fn visit_u64<E>(self, _: u64) -> Result<LooseObj<T>, E> {
                Ok(LooseObj(None))
            }
            fn visit_f64<E>(self, _: f64) -> Result<LooseObj<T>, E> {
                Ok(LooseObj(None))
            }
            fn visit_unit<E>(self) -> Result<LooseObj<T>, E> {
                Ok(LooseObj(None))
            }
        }
        d.deserialize_any(V(std::marker::PhantomData))
    }
}

/// A list of at most `N` entries, each read as `T` (lenient itself), or
/// empty when the JSON holds something else; more than `N` is an error.
#[derive(Debug)]
pub struct LooseList<T, const N: usize>(pub Vec<T>);

impl<T, const N: usize> Default for LooseList<T, N> {
    fn default() -> Self {
        LooseList(Vec::new())
    }
}

impl<'de, T: Deserialize<'de>, const N: usize> Deserialize<'de> for LooseList<T, N> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<T, const N: usize>(std::marker::PhantomData<T>);
        impl<'de, T: Deserialize<'de>, const N: usize> Visitor<'de> for V<T, N> {
            type Value = LooseList<T, N>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("JSON")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<LooseList<T, N>, A::Error> {
                let mut seq = seq;
                let mut out = Vec::new();
                while let Some(x) = seq.next_element()? {
                    if out.len() == N {
                        return Err(A::Error::custom(format!("a list has more than {N} entries, the most read")));
                    }
                    out.push(x);
                }
                Ok(LooseList(out))
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<LooseList<T, N>, A::Error> {
                skip_map(map).map(|_| LooseList(Vec::new()))
            }
            fn visit_str<E>(self, _: &str) -> Result<LooseList<T, N>, E> {
                Ok(LooseList(Vec::new()))
            }
            fn visit_bool<E>(self, _: bool) -> Result<LooseList<T, N>, E> {
                Ok(LooseList(Vec::new()))
            }
            fn visit_i64<E>(self, _: i64) -> Result<LooseList<T, N>, E> {
                Ok(LooseList(Vec::new()))
            }
            fn visit_u64<E>(self, _: u64) -> Result<LooseList<T, N>, E> {
                Ok(LooseList(Vec::new()))
            }
            fn visit_f64<E>(self, _: f64) -> Result<LooseList<T, N>, E> {
                Ok(LooseList(Vec::new()))
            }
            fn visit_unit<E>(self) -> Result<LooseList<T, N>, E> {
                Ok(LooseList(Vec::new()))
            }
        }
        d.deserialize_any(V::<T, N>(std::marker::PhantomData))
    }
}

/// The JSON type of a value (and a number's value, a string's text), its
/// content skipped.
#[derive(Debug, PartialEq, Eq)]
pub enum Kind {
    Null,
    Bool,
    Unsigned(u64),
    Number,
    Str(String),
    Array,
    Object,
}

impl<'de> Deserialize<'de> for Kind {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct K;
        impl<'de> Visitor<'de> for K {
            type Value = Kind;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("JSON")
            }
            fn visit_unit<E>(self) -> Result<Kind, E> {
                Ok(Kind::Null)
            }
            fn visit_bool<E>(self, _: bool) -> Result<Kind, E> {
                Ok(Kind::Bool)
            }
            fn visit_u64<E>(self, v: u64) -> Result<Kind, E> {
                Ok(Kind::Unsigned(v))
            }
            fn visit_i64<E>(self, v: i64) -> Result<Kind, E> {
                Ok(u64::try_from(v).map_or(Kind::Number, Kind::Unsigned))
            }
            fn visit_f64<E>(self, _: f64) -> Result<Kind, E> {
                Ok(Kind::Number)
            }
            fn visit_str<E>(self, v: &str) -> Result<Kind, E> {
                Ok(Kind::Str(v.to_string()))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Kind, A::Error> {
                while seq.next_element::<IgnoredAny>()?.is_some() {}
                Ok(Kind::Array)
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Kind, A::Error> {
                while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
                Ok(Kind::Object)
            }
        }
        d.deserialize_any(K)
    }
}

impl Kind {
    pub fn str(k: &Option<Kind>) -> &str {
        match k {
            Some(Kind::Str(s)) => s,
            _ => "",
        }
    }
}

/// Estimated memory of a `Value` (on 64-bit): what a value takes in its
/// parent (a list slot, with room to grow, or a map entry in a B-tree
/// node), and what an object costs before its first entry (one leaf node).
const SLOT: usize = 32;
const LIST_SLOT: usize = 64;
const MAP_ENTRY: usize = 128;
const MAP_NODE: usize = 640;
const HEAP: usize = 16;

/// Most memory (estimated) a provenance predicate may take to read (some
/// ten thousand resolved dependencies).
pub const PROVENANCE_BUDGET: usize = 16 << 20;

/// `text` as a `serde_json::Value`, refused when it would take more than
/// `budget` bytes of memory (each element charged an upper estimate as it
/// is read, so the refusal comes before the memory is spent).
pub fn value(text: &str, budget: usize) -> Result<Value, String> {
    let left = Cell::new(budget);
    let mut de = serde_json::Deserializer::from_str(text);
    let v = Seed { left: &left }.deserialize(&mut de).map_err(|e| {
        if left.get() == 0 {
            format!("the document would take more than {} MiB of memory to read", budget >> 20)
        } else {
            e.to_string()
        }
    })?;
    de.end().map_err(|e| e.to_string())?;
    Ok(v)
}

#[derive(Clone, Copy)]
struct Seed<'b> {
    left: &'b Cell<usize>,
}

impl Seed<'_> {
    fn charge<E: serde::de::Error>(&self, n: usize) -> Result<(), E> {
        match self.left.get().checked_sub(n) {
            Some(l) => {
                self.left.set(l);
                Ok(())
            }
            None => {
                self.left.set(0);
                Err(E::custom("over the memory budget"))
            }
        }
    }
}

impl<'de> DeserializeSeed<'de> for Seed<'_> {
    type Value = Value;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Seed<'_> {
    type Value = Value;
    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("JSON")
    }
    fn visit_bool<E: serde::de::Error>(self, v: bool) -> Result<Value, E> {
        self.charge(SLOT)?;
        Ok(Value::Bool(v))
    }
    fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Value, E> {
        self.charge(SLOT)?;
        Ok(Value::from(v))
    }
    fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Value, E> {
        self.charge(SLOT)?;
        Ok(Value::from(v))
    }
    fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<Value, E> {
        self.charge(SLOT)?;
        Ok(serde_json::Number::from_f64(v).map_or(Value::Null, Value::Number))
    }
    fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Value, E> {
        self.charge(SLOT + HEAP + v.len())?;
        Ok(Value::String(v.to_string()))
    }
    fn visit_unit<E: serde::de::Error>(self) -> Result<Value, E> {
        self.charge(SLOT)?;
        Ok(Value::Null)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        self.charge(SLOT)?;
        let mut out = Vec::new();
        while let Some(v) = seq.next_element_seed(self)? {
            self.charge(LIST_SLOT)?;
            out.push(v);
        }
        Ok(Value::Array(out))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        self.charge(SLOT + MAP_NODE)?;
        let mut out = Map::new();
        while let Some(k) = map.next_key::<String>()? {
            self.charge(MAP_ENTRY + HEAP + k.len())?;
            let v = map.next_value_seed(self)?;
            out.insert(k, v);
        }
        Ok(Value::Object(out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_document_past_its_budget_is_refused() {
        // (document, budget, read?)
        let tiny = format!("[{}0]", "0,".repeat(100_000));
        let maps = format!("[{}{{}}]", "{\"a\":0},".repeat(10_000));
        let rows: &[(&str, usize, bool)] = &[
            (r#"{"a":[1,2,{"b":"c"}]}"#, 1 << 20, true),
            (&tiny, 1 << 20, false),
            (&tiny, 16 << 20, true),
            (&maps, 1 << 20, false),
            (&maps, 16 << 20, true),
            ("[1,2", 1 << 20, false),
            ("[1] x", 1 << 20, false),
        ];
        for (doc, budget, ok) in rows {
            let got = value(doc, *budget);
            assert_eq!(got.is_ok(), *ok, "{}…: {got:?}", &doc[..doc.len().min(20)]);
            if let Ok(v) = got {
                assert_eq!(v, serde_json::from_str::<Value>(doc).unwrap());
            }
        }
        assert!(value(&tiny, 1 << 20).unwrap_err().contains("more than 1 MiB of memory"));
    }

    #[test]
    fn lists_past_their_cap_are_refused() {
        #[derive(Deserialize, Debug)]
        #[allow(dead_code)]
        struct T {
            #[serde(deserialize_with = "capped::<_, _, 3>")]
            a: Vec<u8>,
            #[serde(default, deserialize_with = "capped_opt::<_, _, 2>")]
            b: Option<Vec<u8>>,
        }
        // (document, read?)
        let rows = [
            (r#"{"a":[1,2,3]}"#, true),
            (r#"{"a":[1,2,3,4]}"#, false),
            (r#"{"a":[],"b":null}"#, true),
            (r#"{"a":[],"b":[1,2]}"#, true),
            (r#"{"a":[],"b":[1,2,3]}"#, false),
        ];
        for (doc, ok) in rows {
            assert_eq!(serde_json::from_str::<T>(doc).is_ok(), ok, "{doc}");
        }
        assert!(serde_json::from_str::<T>(r#"{"a":[1,2,3,4]}"#).unwrap_err().to_string().contains("more than 3"));
    }
}

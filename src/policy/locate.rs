//! Where each field of a YAML document is: `spec.tiers.production.tests.signedBy[0]`
//! -> line and column, so that lint problems point at the text.

use std::collections::HashMap;

use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser};
use yaml_rust2::scanner::Marker;

enum Frame {
    Map { key: Option<String> },
    Seq { index: usize },
}

#[derive(Default)]
struct Recorder {
    stack: Vec<Frame>,
    at: HashMap<String, (usize, usize)>,
}

impl Recorder {
    fn path(&self) -> String {
        let mut out = String::new();
        for f in &self.stack {
            match f {
                Frame::Map { key: Some(k) } => {
                    if !out.is_empty() {
                        out.push('.');
                    }
                    out.push_str(k);
                }
                Frame::Seq { index } => out.push_str(&format!("[{index}]")),
                Frame::Map { key: None } => {}
            }
        }
        out
    }

    /// A value (scalar or collection) starts here.
    fn value_at(&mut self, mark: Marker) {
        if let Some(Frame::Seq { .. }) = self.stack.last() {
            self.at.entry(self.path()).or_insert((mark.line(), mark.col() + 1));
        }
    }

    /// A value ended: the parent moves on to its next key or item.
    fn value_done(&mut self) {
        match self.stack.last_mut() {
            Some(Frame::Map { key }) => *key = None,
            Some(Frame::Seq { index }) => *index += 1,
            None => {}
        }
    }
}

impl MarkedEventReceiver for Recorder {
    fn on_event(&mut self, ev: Event, mark: Marker) {
        match ev {
            Event::Scalar(text, ..) => {
                if let Some(Frame::Map { key: key @ None }) = self.stack.last_mut() {
                    *key = Some(text);
                    let path = self.path();
                    self.at.entry(path).or_insert((mark.line(), mark.col() + 1));
                } else {
                    self.value_at(mark);
                    self.value_done();
                }
            }
            Event::MappingStart(..) => {
                self.value_at(mark);
                self.stack.push(Frame::Map { key: None });
            }
            Event::SequenceStart(..) => {
                self.value_at(mark);
                self.stack.push(Frame::Seq { index: 0 });
            }
            Event::MappingEnd | Event::SequenceEnd => {
                self.stack.pop();
                self.value_done();
            }
            Event::Alias(_) => self.value_done(),
            _ => {}
        }
    }
}

/// Deepest nesting of maps and lists a policy may have (the deepest the
/// format needs is about 8).
pub const MAX_DEPTH: usize = 64;

/// Why a policy's YAML is refused before it is read into the model.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum StructureError {
    /// A key written twice in one map: YAML readers disagree on which wins
    /// (serde keeps the last), so a second `production:` could silently
    /// replace the first.
    #[error("{path}: duplicate key {key:?} (first at line {first_line}); a key may appear once in a map")]
    DuplicateKey { path: String, key: String, line: usize, column: usize, first_line: usize },
    #[error("nested deeper than {MAX_DEPTH} maps and lists")]
    TooDeep { line: usize, column: usize },
}

impl StructureError {
    /// (line, column), both 1-based.
    pub fn at(&self) -> (usize, usize) {
        match self {
            StructureError::DuplicateKey { line, column, .. } | StructureError::TooDeep { line, column } => {
                (*line, *column)
            }
        }
    }
}

/// Checks the shape of a YAML text before anything else reads it: no key
/// twice in one map, no nesting deeper than [`MAX_DEPTH`]. It stops at the
/// first problem, so a hostile text costs no more than its first
/// [`MAX_DEPTH`] levels. Text that does not parse is left to the reader
/// that follows (it says where and why).
pub fn check_structure(text: &str) -> Result<(), StructureError> {
    use std::collections::HashMap as Seen;
    enum Open {
        Map { seen: Seen<String, usize>, key: Option<String>, expect_key: bool },
        Seq,
    }
    let mut stack: Vec<Open> = Vec::new();
    let mut path: Vec<String> = Vec::new();
    let mut parser = Parser::new_from_str(text);
    // A value (scalar or collection) was read where the parent expects one.
    fn done(stack: &mut [Open], path: &mut Vec<String>) {
        if let Some(Open::Map { key, expect_key, .. }) = stack.last_mut() {
            if !*expect_key {
                *expect_key = true;
                if key.take().is_some() {
                    path.pop();
                }
            }
        }
    }
    loop {
        let (event, mark) = match parser.next_token() {
            Ok(e) => e,
            // The scanner's own bound on flow nesting (256) is reached while
            // it looks ahead for a key, before any event of that depth: the
            // same refusal, where the scanner stopped. (serde_yaml_ng's
            // reader takes tens of seconds to refuse 100,000 nested `[`.)
            Err(e) if e.info().contains("recursion limit") => {
                return Err(StructureError::TooDeep { line: e.marker().line(), column: e.marker().col() + 1 })
            }
            // Anything else the reader that follows reports, with its words.
            Err(_) => return Ok(()),
        };
        let at = (mark.line(), mark.col() + 1);
        // A key, when the innermost open collection is a map waiting for one.
        if let Some(Open::Map { seen, key, expect_key }) = stack.last_mut() {
            if *expect_key && !matches!(event, Event::MappingEnd) {
                *expect_key = false;
                if let Event::Scalar(text, ..) = &event {
                    if let Some(first_line) = seen.get(text) {
                        return Err(StructureError::DuplicateKey {
                            path: if path.is_empty() { "(top)".into() } else { path.join(".") },
                            key: text.clone(),
                            line: at.0,
                            column: at.1,
                            first_line: *first_line,
                        });
                    }
                    if seen.len() < 100_000 {
                        seen.insert(text.clone(), at.0);
                    }
                    *key = Some(text.clone());
                    path.push(text.clone());
                    continue;
                }
            }
        }
        match event {
            Event::MappingStart(..) | Event::SequenceStart(..) => {
                if stack.len() >= MAX_DEPTH {
                    return Err(StructureError::TooDeep { line: at.0, column: at.1 });
                }
                stack.push(match event {
                    Event::MappingStart(..) => Open::Map { seen: Seen::new(), key: None, expect_key: true },
                    _ => Open::Seq,
                });
            }
            Event::MappingEnd | Event::SequenceEnd => {
                stack.pop();
                done(&mut stack, &mut path);
            }
            Event::Scalar(..) | Event::Alias(_) => done(&mut stack, &mut path),
            Event::StreamEnd => return Ok(()),
            _ => {}
        }
    }
}

/// Maps every field path of the first document to its (line, column), both
/// 1-based. Text that does not parse gives an empty map.
pub fn locations(text: &str) -> HashMap<String, (usize, usize)> {
    let mut r = Recorder::default();
    let mut p = Parser::new_from_str(text);
    let _ = p.load(&mut r, false);
    r.at
}

/// The location of `path`, or of its nearest ancestor that has one.
pub fn locate(map: &HashMap<String, (usize, usize)>, path: &str) -> Option<(usize, usize)> {
    let mut p = path.to_string();
    loop {
        if let Some(at) = map.get(&p) {
            return Some(*at);
        }
        let cut = p.rfind(['.', '['])?;
        p.truncate(cut);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_map_to_lines_and_columns() {
        let text = "spec:\n  signers:\n    scanner: { publicKey: x }\n  tiers:\n    prod:\n      tests:\n        signedBy: [ci, qa]\n  list:\n    - a: 1\n    - b: 2\n";
        let m = locations(text);
        assert_eq!(m["spec.signers.scanner"], (3, 5));
        assert_eq!(m["spec.tiers.prod.tests.signedBy"], (7, 9));
        assert_eq!(m["spec.tiers.prod.tests.signedBy[1]"], (7, 24));
        assert_eq!(m["spec.list[1].b"], (10, 7));
        assert_eq!(locate(&m, "spec.tiers.prod.tests.require"), Some((6, 7)));
        // Broken text gives what was read before the break, never a panic.
        let _ = locations("{ not: [ closed");
    }

    #[test]
    fn duplicate_keys_and_deep_nesting_are_refused() {
        let dup = |path: &str, key: &str, line, column, first_line| {
            Err(StructureError::DuplicateKey { path: path.into(), key: key.into(), line, column, first_line })
        };
        let deep = format!("a: {}1{}", "[".repeat(100_000), "]".repeat(100_000));
        // (case, text, result)
        let rows: Vec<(&str, String, Result<(), StructureError>)> = vec![
            ("distinct keys", "spec:\n  tiers:\n    a: {}\n    b: {}\n".into(), Ok(())),
            (
                "a tier twice",
                "spec:\n  tiers:\n    production: { mode: enforce }\n    production: { mode: warn }\n".into(),
                dup("spec.tiers", "production", 4, 5, 3),
            ),
            ("a key twice in a flow map", "a: { x: 1, x: 2 }\n".into(), dup("a", "x", 1, 12, 1)),
            ("at the top", "a: 1\nb: 2\na: 3\n".into(), dup("(top)", "a", 3, 1, 1)),
            ("the same key in sibling maps", "a: { x: 1 }\nb: { x: 1 }\n".into(), Ok(())),
            ("the same key in list items", "l:\n  - x: 1\n  - x: 2\n".into(), Ok(())),
            ("a key equal to a value", "a: b\nb: a\n".into(), Ok(())),
            ("nested within the bound", format!("a: {}1{}", "[".repeat(60), "]".repeat(60)), Ok(())),
            ("100,000 nested lists", deep, Err(StructureError::TooDeep { line: 1, column: 259 })),
            (
                "100 nested maps",
                format!("{}1{}", "{a: ".repeat(100), "}".repeat(100)),
                Err(StructureError::TooDeep { line: 1, column: 257 }),
            ),
            ("broken text is left to the reader", "{ not: [ closed".into(), Ok(())),
        ];
        for (case, text, want) in rows {
            assert_eq!(check_structure(&text), want, "{case}");
        }
    }
}

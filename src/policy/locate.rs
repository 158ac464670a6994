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
}

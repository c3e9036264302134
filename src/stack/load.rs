//! The only module that knows the YAML crates: it turns a stack file's text into a
//! `serde_yaml::Value` tree plus a map from every YAML path to where its key and value are
//! written, and it renders a resolved stack back to YAML.
//!
//! Two parsers read the same text: `yaml-rust2`'s event parser gives positions (it reports
//! every node with a mark), `serde_yaml` gives the value tree serde understands (YAML 1.2
//! scalars, anchors, merge keys). Paths agree because both walk the same document.

use std::collections::HashMap;

use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser};
use yaml_rust2::scanner::Marker;

/// A YAML value tree (the interpolation and validation work on it before typed deserializing).
pub type Value = serde_yaml::Value;
pub type Mapping = serde_yaml::Mapping;

/// A 1-based line and column in the stack file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pos {
    pub line: usize,
    pub column: usize,
}

/// Where a node is written: its key (for map entries) and its value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Mark {
    pub key: Option<Pos>,
    pub value: Pos,
}

/// Positions of every node, by YAML path (map keys as text, list indexes as numbers).
#[derive(Debug, Clone, Default)]
pub struct Marks {
    map: HashMap<Vec<String>, Mark>,
}

impl Marks {
    /// The node at `path`, or its nearest ancestor that has a position (values copied by
    /// aliases or merge keys have none of their own).
    pub fn find<S: AsRef<str>>(&self, path: &[S]) -> Option<Mark> {
        let mut path: Vec<String> = path.iter().map(|s| s.as_ref().to_string()).collect();
        loop {
            if let Some(mark) = self.map.get(&path) {
                return Some(*mark);
            }
            path.pop()?;
        }
    }

    /// Whether `path` itself (not an ancestor) has a position.
    pub fn has<S: AsRef<str>>(&self, path: &[S]) -> bool {
        let path: Vec<String> = path.iter().map(|s| s.as_ref().to_string()).collect();
        self.map.contains_key(&path)
    }

    /// Where the key of `path` is written (the value's position for list items).
    pub fn key<S: AsRef<str>>(&self, path: &[S]) -> Option<Pos> {
        self.find(path).map(|m| m.key.unwrap_or(m.value))
    }

    /// Where the value of `path` starts.
    pub fn value<S: AsRef<str>>(&self, path: &[S]) -> Option<Pos> {
        self.find(path).map(|m| m.value)
    }
}

/// A YAML syntax error at a position.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyntaxError {
    pub pos: Option<Pos>,
    pub message: String,
}

/// Parse a stack file's text into a value tree (merge keys applied) and its marks.
pub fn parse(text: &str) -> Result<(Value, Marks), SyntaxError> {
    let mut recorder = Recorder::default();
    let mut parser = Parser::new_from_str(text);
    let marked = parser.load(&mut recorder, false);
    // libyaml (under serde_yaml) words syntax errors best ("did not find expected ']' …,
    // while parsing a flow sequence at …"): prefer its message when both parsers fail.
    let parsed: Result<Value, serde_yaml::Error> = serde_yaml::from_str(text);
    if let (Ok(()), Some((key, at))) = (&marked, recorder.duplicate.take()) {
        return Err(SyntaxError {
            pos: Some(at),
            message: format!("duplicate key `{key}` (the same key appears earlier in this map)"),
        });
    }
    let mut value = match (marked, parsed) {
        (_, Err(err)) => {
            let pos = err.location().map(|l| Pos {
                line: l.line(),
                column: l.column(),
            });
            return Err(SyntaxError {
                pos,
                message: yaml_message(&err.to_string()),
            });
        }
        (Err(err), Ok(_)) => {
            return Err(SyntaxError {
                pos: Some(pos(err.marker())),
                message: err.info().to_string(),
            });
        }
        (Ok(()), Ok(value)) => value,
    };
    if let Err(err) = value.apply_merge() {
        return Err(SyntaxError {
            pos: None,
            message: format!("cannot apply a `<<` merge key: {err}"),
        });
    }
    Ok((value, Marks { map: recorder.map }))
}

/// libyaml's message without its own position (printed in front), other positions as `L:C`.
fn yaml_message(message: &str) -> String {
    let Ok(at) = regex::Regex::new(r" at line (\d+) column (\d+)") else {
        return message.to_string();
    };
    let first_removed = at.replacen(message, 1, "");
    at.replace_all(&first_removed, " at $1:$2").into_owned()
}

/// Deserialize a typed value from a tree, reporting the path of the first problem.
pub fn from_value<T: serde::de::DeserializeOwned>(
    value: Value,
) -> Result<T, (Vec<String>, String)> {
    serde_path_to_error::deserialize(value).map_err(|err| {
        let path = err
            .path()
            .iter()
            .filter_map(|segment| match segment {
                serde_path_to_error::Segment::Map { key } => Some(key.clone()),
                serde_path_to_error::Segment::Seq { index } => Some(index.to_string()),
                _ => None,
            })
            .collect();
        (path, clean_message(&err.into_inner().to_string()))
    })
}

/// Render a value as YAML.
pub fn to_yaml<T: serde::Serialize>(value: &T) -> Result<String, String> {
    serde_yaml::to_string(value).map_err(|e| e.to_string())
}

/// serde's messages name Rust types (`expected u32`); say what a user writes instead, and
/// drop position suffixes that point into an intermediate value rather than the file.
fn clean_message(message: &str) -> String {
    let mut message = message.to_string();
    if let Some(cut) = message.find(" at line ") {
        message.truncate(cut);
    }
    // Nested deserializers prefix their messages (`` `db`: unknown variant … ``): rewrite the
    // serde part wherever it is.
    if let Ok(invalid) = regex::Regex::new(r"invalid (?:type|value): (.+), expected (.+)$") {
        if let Some(caps) = invalid.captures(&message) {
            let found = describe_found(&caps[1]);
            let expected = match &caps[2] {
                "u8" | "u16" | "u32" | "u64" | "usize" => "a whole number (0 or more)".to_string(),
                "i8" | "i16" | "i32" | "i64" | "isize" => "a whole number".to_string(),
                "f32" | "f64" => "a number".to_string(),
                "a sequence" => "a list".to_string(),
                other if other.starts_with("struct ") => "a map".to_string(),
                other => other.to_string(),
            };
            let start = caps.get(0).map(|m| m.start()).unwrap_or(0);
            return format!("{}expected {expected}, found {found}", &message[..start]);
        }
    }
    if let Ok(unknown) =
        regex::Regex::new(r"unknown (variant|field) `([^`]*)`, expected (?:one of )?(.+)$")
    {
        if let Some(caps) = unknown.captures(&message) {
            let start = caps.get(0).map(|m| m.start()).unwrap_or(0);
            let prefix = &message[..start];
            return if &caps[1] == "field" {
                format!("{prefix}unknown key `{}` (expected {})", &caps[2], &caps[3])
            } else {
                format!("{prefix}`{}` is not one of {}", &caps[2], &caps[3])
            };
        }
    }
    message
}

fn describe_found(found: &str) -> String {
    if let Some(text) = found.strip_prefix("string ") {
        return format!("the string `{}`", text.trim_matches('"'));
    }
    for (prefix, noun) in [
        ("integer ", "the number"),
        ("floating point ", "the number"),
        ("boolean ", "the boolean"),
    ] {
        if let Some(value) = found.strip_prefix(prefix) {
            return format!("{noun} {}", value.trim_matches('`'));
        }
    }
    match found {
        "sequence" => "a list".into(),
        "map" => "a map".into(),
        "unit value" | "unit" => "nothing (null)".into(),
        other => other.into(),
    }
}

fn pos(marker: &Marker) -> Pos {
    Pos {
        line: marker.line(),
        // yaml-rust2 counts columns from 0.
        column: marker.col() + 1,
    }
}

enum Frame {
    Map {
        path: Vec<String>,
        /// The key just read, with its position, waiting for its value.
        key: Option<(String, Pos)>,
    },
    Seq {
        path: Vec<String>,
        next: usize,
    },
}

#[derive(Default)]
struct Recorder {
    frames: Vec<Frame>,
    map: HashMap<Vec<String>, Mark>,
    /// The first key written twice in one map.
    duplicate: Option<(String, Pos)>,
}

impl Recorder {
    /// Called for every node: either records a map key, or places a value at its path.
    /// Returns the path of a value (None when the node was a key).
    fn node(&mut self, scalar_key: Option<&str>, at: Pos) -> Option<Vec<String>> {
        match self.frames.last_mut() {
            None => {
                self.map.insert(
                    Vec::new(),
                    Mark {
                        key: None,
                        value: at,
                    },
                );
                Some(Vec::new())
            }
            Some(Frame::Map { path, key }) => match key.take() {
                None => {
                    // A key. Complex keys (maps or lists as keys) get a placeholder.
                    *key = Some((scalar_key.unwrap_or("?").to_string(), at));
                    None
                }
                Some((name, key_pos)) => {
                    let mut child = path.clone();
                    child.push(name.clone());
                    if name != "?" && self.duplicate.is_none() && self.map.contains_key(&child) {
                        self.duplicate = Some((name, key_pos));
                    }
                    self.map.insert(
                        child.clone(),
                        Mark {
                            key: Some(key_pos),
                            value: at,
                        },
                    );
                    Some(child)
                }
            },
            Some(Frame::Seq { path, next }) => {
                let mut child = path.clone();
                child.push(next.to_string());
                *next += 1;
                self.map.insert(
                    child.clone(),
                    Mark {
                        key: None,
                        value: at,
                    },
                );
                Some(child)
            }
        }
    }
}

impl MarkedEventReceiver for Recorder {
    fn on_event(&mut self, event: Event, marker: Marker) {
        let at = pos(&marker);
        match event {
            Event::Scalar(text, ..) => {
                self.node(Some(&text), at);
            }
            Event::Alias(_) => {
                self.node(Some("*"), at);
            }
            Event::MappingStart(..) => {
                let path = self.node(None, at);
                // A map used as a key: its content is not addressable, record it under "?".
                let path = path.unwrap_or_else(|| vec!["?".to_string()]);
                self.frames.push(Frame::Map { path, key: None });
            }
            Event::SequenceStart(..) => {
                let path = self.node(None, at);
                let path = path.unwrap_or_else(|| vec!["?".to_string()]);
                self.frames.push(Frame::Seq { path, next: 0 });
            }
            Event::MappingEnd | Event::SequenceEnd => {
                self.frames.pop();
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(line: usize, column: usize) -> Pos {
        Pos { line, column }
    }

    #[test]
    fn marks_keys_and_values() {
        let text =
            "services:\n  api:\n    image: busybox\n    ports:\n      - \"80:80\"\n      - 81\n";
        let (value, marks) = parse(text).unwrap();
        assert!(value.get("services").is_some());
        assert_eq!(marks.key(&["services", "api"]), Some(at(2, 3)));
        assert_eq!(marks.key(&["services", "api", "image"]), Some(at(3, 5)));
        assert_eq!(marks.value(&["services", "api", "image"]), Some(at(3, 12)));
        assert_eq!(
            marks.value(&["services", "api", "ports", "1"]),
            Some(at(6, 9))
        );
        // Unknown paths fall back to the nearest ancestor.
        assert_eq!(
            marks.key(&["services", "api", "image", "x"]),
            Some(at(3, 5))
        );
    }

    #[test]
    fn flow_style_is_marked() {
        let (_, marks) = parse("a: { b: [x, y], c: 1 }\n").unwrap();
        assert_eq!(marks.key(&["a", "c"]), Some(at(1, 17)));
        assert_eq!(marks.value(&["a", "b", "1"]), Some(at(1, 13)));
    }

    #[test]
    fn syntax_error_has_position() {
        let err = parse("services:\n  api:\n    image: [busybox\n").unwrap_err();
        assert!(err.pos.is_some(), "{err:?}");
    }

    #[test]
    fn duplicate_keys_are_errors() {
        let err = parse("a: 1\na: 2\n").unwrap_err();
        assert!(err.message.contains("duplicate"), "{err:?}");
        assert_eq!(err.pos.map(|p| p.line), Some(2));
    }

    #[test]
    fn serde_messages_speak_yaml() {
        let cases = [
            (
                "invalid type: string \"many\", expected u32",
                "expected a whole number (0 or more), found the string `many`",
            ),
            (
                "invalid type: integer `3`, expected a boolean",
                "expected a boolean, found the number 3",
            ),
            (
                "invalid type: sequence, expected struct Healthcheck",
                "expected a map, found a list",
            ),
            (
                "unknown variant `x`, expected one of `no`, `always`",
                "`x` is not one of `no`, `always`",
            ),
            ("something else at line 3 column 4", "something else"),
        ];
        for (input, expected) in cases {
            assert_eq!(clean_message(input), expected, "{input}");
        }
    }

    #[test]
    fn merge_keys_apply() {
        let (value, _) = parse("x: &base {a: 1}\ny:\n  <<: *base\n  b: 2\n").unwrap();
        assert_eq!(value["y"]["a"].as_i64(), Some(1));
    }
}

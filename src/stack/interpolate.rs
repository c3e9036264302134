//! Compose-style variable interpolation on every string value of a stack file, after YAML
//! parsing and before typed deserializing.
//!
//! `${VAR}` and `$VAR` substitute; `${VAR:-default}` (unset or empty) and `${VAR-default}`
//! (unset) fall back; `${VAR:?message}` and `${VAR?message}` make a variable required;
//! `${VAR:+alt}` and `${VAR+alt}` substitute `alt` when the variable is set; `$$` is a literal
//! `$`. Defaults and alternatives may contain references themselves. A `$` followed by
//! anything else is an error, as in Compose (write `$$`).
//!
//! Variables come from, strongest first: the process environment, `.env.STAGE`, then the
//! built-ins `STAGE` and `PROJECT`. Every lookup is recorded with where its value came from,
//! so `stackctl config --sources` can show it.

use std::collections::HashMap;
use std::fmt;

use super::envfile;
use super::load::Value;

/// Where a variable's value came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// The environment stackctl runs in.
    Process,
    /// A line of the stage's env file (`.env.STAGE`).
    EnvFile { file: String, line: usize },
    /// `STAGE` or `PROJECT`.
    BuiltIn,
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::Process => f.write_str("process environment"),
            Source::EnvFile { file, line } => write!(f, "{file}:{line}"),
            Source::BuiltIn => f.write_str("built-in"),
        }
    }
}

/// The variables interpolation can see, merged by precedence.
#[derive(Debug, Clone, Default)]
pub struct Variables {
    map: HashMap<String, (String, Source)>,
    /// The stage's env file as shown to the user, for hints.
    env_file_name: String,
}

impl Variables {
    /// Merge the sources: `process` beats the env file, which beats the built-ins.
    pub fn new(
        process: impl IntoIterator<Item = (String, String)>,
        env_file: &[envfile::Entry],
        env_file_name: &str,
        builtins: &[(&str, &str)],
    ) -> Self {
        let mut map = HashMap::new();
        for (name, value) in builtins {
            map.insert(name.to_string(), (value.to_string(), Source::BuiltIn));
        }
        for entry in env_file {
            map.insert(
                entry.key.clone(),
                (
                    entry.value.clone(),
                    Source::EnvFile {
                        file: env_file_name.to_string(),
                        line: entry.line,
                    },
                ),
            );
        }
        for (name, value) in process {
            map.insert(name, (value, Source::Process));
        }
        Variables {
            map,
            env_file_name: env_file_name.to_string(),
        }
    }

    /// Add a variable read from an env file, unless the process environment has it.
    pub fn set_from_env_file(&mut self, name: &str, value: &str, file: &str, line: usize) {
        if matches!(self.map.get(name), Some((_, Source::Process))) {
            return;
        }
        self.map.insert(
            name.to_string(),
            (
                value.to_string(),
                Source::EnvFile {
                    file: file.to_string(),
                    line,
                },
            ),
        );
    }

    /// Add a default read from an env file: only when no source has the variable yet, or
    /// only a built-in does (an included project's `.env` under the including project's).
    pub fn set_default(&mut self, name: &str, value: &str, file: &str, line: usize) {
        if matches!(self.map.get(name), None | Some((_, Source::BuiltIn))) {
            self.map.insert(
                name.to_string(),
                (
                    value.to_string(),
                    Source::EnvFile {
                        file: file.to_string(),
                        line,
                    },
                ),
            );
        }
    }

    pub fn get(&self, name: &str) -> Option<&(String, Source)> {
        self.map.get(name)
    }

    /// Set a built-in after the fact (used for `PROJECT` once `name:` is known), unless a
    /// stronger source already has it.
    pub fn set_builtin(&mut self, name: &str, value: &str) {
        match self.map.get(name) {
            Some((_, Source::Process)) | Some((_, Source::EnvFile { .. })) => {}
            _ => {
                self.map
                    .insert(name.to_string(), (value.to_string(), Source::BuiltIn));
            }
        }
    }

    /// Every variable with its value and source (for masking secrets).
    pub fn iter(&self) -> impl Iterator<Item = (&String, &(String, Source))> {
        self.map.iter()
    }
}

/// How one reference was resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resolution {
    /// The variable had a value from this source.
    Set(Source),
    /// The variable was unset (or empty) and the reference's default was used.
    Default,
    /// The variable was unset and nothing replaced it: it became an empty string.
    Unset,
    /// An `environment`/`args` entry without a value whose variable is set nowhere: the
    /// entry is left out.
    LeftOut,
}

/// One variable reference found in the stack file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Use {
    pub name: String,
    pub resolution: Resolution,
    /// The text the reference produced.
    pub value: String,
    /// The YAML path of the value holding the reference.
    pub path: Vec<String>,
}

/// A reference that cannot be resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error {
    pub message: String,
    pub hint: Option<String>,
}

/// Interpolate one string, recording each lookup (with an empty path) in `uses`.
pub fn interpolate(text: &str, vars: &Variables, uses: &mut Vec<Use>) -> Result<String, Error> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        let after = &rest[at + 1..];
        match after.chars().next() {
            Some('$') => {
                out.push('$');
                rest = &after[1..];
            }
            Some('{') => {
                let end = matching_brace(&after[1..]).ok_or_else(|| Error {
                    message: format!("unterminated `${{` in `{text}`"),
                    hint: Some("close it with `}`, or write `$$` for a literal `$`".into()),
                })?;
                let inner = &after[1..1 + end];
                out.push_str(&braced(inner, vars, uses)?);
                rest = &after[1 + end + 1..];
            }
            Some(c) if c == '_' || c.is_ascii_alphabetic() => {
                let len = name_len(after);
                out.push_str(&lookup(&after[..len], vars, uses));
                rest = &after[len..];
            }
            _ => {
                return Err(Error {
                    message: format!("invalid `$` in `{text}`"),
                    hint: Some(
                        "a `$` starts a variable like `$NAME` or `${NAME}`; write `$$` for a literal `$`"
                            .into(),
                    ),
                })
            }
        }
    }
    out.push_str(rest);
    Ok(out)
}

/// Interpolate every string value (not keys) of a tree. Values that fail are replaced by an
/// empty string and their path reported, so validation can go on and skip them.
pub fn interpolate_tree(
    value: &mut Value,
    path: &mut Vec<String>,
    vars: &Variables,
    uses: &mut Vec<Use>,
    errors: &mut Vec<(Vec<String>, Error)>,
) {
    match value {
        Value::String(text) => {
            if !text.contains('$') {
                return;
            }
            let mut found = Vec::new();
            match interpolate(text, vars, &mut found) {
                Ok(result) => {
                    *value = retype(path.last().map(String::as_str), result);
                }
                Err(err) => {
                    errors.push((path.clone(), err));
                    *value = Value::String(String::new());
                }
            }
            for mut used in found {
                used.path = path.clone();
                uses.push(used);
            }
        }
        Value::Sequence(items) => {
            for (index, item) in items.iter_mut().enumerate() {
                path.push(index.to_string());
                interpolate_tree(item, path, vars, uses, errors);
                path.pop();
            }
        }
        Value::Mapping(map) => {
            for (key, item) in map.iter_mut() {
                path.push(key_text(key));
                interpolate_tree(item, path, vars, uses, errors);
                path.pop();
            }
        }
        _ => {}
    }
}

/// A map key as the text used in YAML paths.
pub fn key_text(key: &str) -> String {
    key.to_string()
}

/// Keys whose values are numbers or booleans in the model: an interpolated `"3"` or `"true"`
/// there means the number or the boolean, as Compose converts after interpolating.
const TYPED_KEYS: &[&str] = &[
    "retries",
    "init",
    "external",
    "read_only",
    "required",
    "disable",
    "target",
    "published",
];

fn retype(key: Option<&str>, text: String) -> Value {
    if key.is_some_and(|k| TYPED_KEYS.contains(&k)) {
        if let Ok(n) = text.parse::<i64>() {
            return Value::Number(n.into());
        }
        match text.as_str() {
            "true" => return Value::Bool(true),
            "false" => return Value::Bool(false),
            _ => {}
        }
    }
    Value::String(text)
}

/// Length of the variable name at the start of `text`.
fn name_len(text: &str) -> usize {
    text.char_indices()
        .find(|(i, c)| !(*c == '_' || c.is_ascii_alphabetic() || (*i > 0 && c.is_ascii_digit())))
        .map(|(i, _)| i)
        .unwrap_or(text.len())
}

/// Offset of the `}` closing a `${` whose body starts at `text`, nested `${…}` included.
fn matching_brace(text: &str) -> Option<usize> {
    let bytes = text.as_bytes();
    let mut depth = 1;
    let mut at = 0;
    while at < bytes.len() {
        match bytes[at] {
            b'$' if bytes.get(at + 1) == Some(&b'{') => {
                depth += 1;
                at += 2;
                continue;
            }
            b'$' if bytes.get(at + 1) == Some(&b'$') => {
                at += 2;
                continue;
            }
            b'}' => {
                depth -= 1;
                if depth == 0 {
                    return Some(at);
                }
            }
            _ => {}
        }
        at += 1;
    }
    None
}

fn lookup(name: &str, vars: &Variables, uses: &mut Vec<Use>) -> String {
    match vars.get(name) {
        Some((value, source)) => {
            uses.push(Use {
                name: name.to_string(),
                resolution: Resolution::Set(source.clone()),
                value: value.clone(),
                path: Vec::new(),
            });
            value.clone()
        }
        None => {
            uses.push(Use {
                name: name.to_string(),
                resolution: Resolution::Unset,
                value: String::new(),
                path: Vec::new(),
            });
            String::new()
        }
    }
}

/// The body of `${…}`: a name, then optionally an operator and its operand.
fn braced(inner: &str, vars: &Variables, uses: &mut Vec<Use>) -> Result<String, Error> {
    let len = name_len(inner);
    let name = &inner[..len];
    let invalid = || Error {
        message: format!("`${{{inner}}}` is not a valid variable reference"),
        hint: Some(
            "use `${NAME}`, `${NAME:-default}`, `${NAME:?message}` or `${NAME:+alternative}`"
                .into(),
        ),
    };
    if name.is_empty() || name.starts_with(|c: char| c.is_ascii_digit()) {
        return Err(invalid());
    }
    let rest = &inner[len..];
    let value = vars.get(name);
    let set = value.is_some();
    let non_empty = value.is_some_and(|(v, _)| !v.is_empty());
    let (operator, operand) = [":-", ":?", ":+", "-", "?", "+"]
        .iter()
        .find_map(|op| rest.strip_prefix(op).map(|operand| (*op, operand)))
        .unwrap_or(("", rest));
    if operator.is_empty() {
        if !rest.is_empty() {
            return Err(invalid());
        }
        return Ok(lookup(name, vars, uses));
    }
    match operator {
        ":-" | "-" => {
            let use_value = if operator == ":-" { non_empty } else { set };
            if use_value {
                Ok(lookup(name, vars, uses))
            } else {
                let default = interpolate(operand, vars, uses)?;
                uses.push(Use {
                    name: name.to_string(),
                    resolution: Resolution::Default,
                    value: default.clone(),
                    path: Vec::new(),
                });
                Ok(default)
            }
        }
        ":?" | "?" => {
            let ok = if operator == ":?" { non_empty } else { set };
            if ok {
                return Ok(lookup(name, vars, uses));
            }
            let state = if set { "is empty" } else { "is not set" };
            let detail = interpolate(operand, vars, uses)?;
            let message = if detail.is_empty() {
                format!("required variable `{name}` {state}")
            } else {
                format!("required variable `{name}` {state}: {detail}")
            };
            Err(Error {
                message,
                hint: Some(format!(
                    "set `{name}` in `{}` or in the environment",
                    vars.env_file_name
                )),
            })
        }
        _ => {
            // `:+` and `+`: the alternative when set, else nothing.
            let use_alt = if operator == ":+" { non_empty } else { set };
            if use_alt {
                if let Some((_, source)) = value {
                    uses.push(Use {
                        name: name.to_string(),
                        resolution: Resolution::Set(source.clone()),
                        value: String::new(),
                        path: Vec::new(),
                    });
                }
                interpolate(operand, vars, uses)
            } else {
                Ok(String::new())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars() -> Variables {
        let env_file = envfile::parse("FROM_FILE=file\nBOTH=file\nEMPTY=\n").unwrap();
        Variables::new(
            [
                ("FROM_ENV".to_string(), "env".to_string()),
                ("BOTH".to_string(), "env".to_string()),
                ("STAGE".to_string(), "from-env".to_string()),
            ],
            &env_file,
            ".env.dev",
            &[("STAGE", "dev"), ("PROJECT", "demo")],
        )
    }

    #[test]
    fn substitutes_like_compose() {
        let cases: &[(&str, &str)] = &[
            ("plain", "plain"),
            ("$FROM_ENV", "env"),
            ("${FROM_ENV}", "env"),
            ("a${FROM_FILE}b", "afileb"),
            ("$FROM_ENV-x", "env-x"),
            ("${BOTH}", "env"),
            ("${STAGE}", "from-env"),
            ("${PROJECT}", "demo"),
            ("${MISSING}", ""),
            ("$MISSING.x", ".x"),
            ("${MISSING:-dflt}", "dflt"),
            ("${MISSING-dflt}", "dflt"),
            ("${EMPTY:-dflt}", "dflt"),
            ("${EMPTY-dflt}", ""),
            ("${FROM_ENV:-dflt}", "env"),
            ("${MISSING:-${FROM_FILE}}", "file"),
            ("${MISSING:-a:b}", "a:b"),
            ("${MISSING:-}", ""),
            ("${FROM_ENV:+alt}", "alt"),
            ("${EMPTY:+alt}", ""),
            ("${EMPTY+alt}", "alt"),
            ("${MISSING+alt}", ""),
            ("${FROM_ENV:?needed}", "env"),
            ("${EMPTY?needed}", ""),
            ("$$", "$"),
            ("$$FROM_ENV", "$FROM_ENV"),
            ("cost: $$5", "cost: $5"),
            ("${FROM_ENV}${FROM_FILE}", "envfile"),
            ("${MISSING:-$$}", "$"),
        ];
        for (input, expected) in cases {
            let mut uses = Vec::new();
            let got = interpolate(input, &vars(), &mut uses)
                .unwrap_or_else(|e| panic!("{input:?}: {}", e.message));
            assert_eq!(&got, expected, "input {input:?}");
        }
    }

    #[test]
    fn reports_bad_references() {
        let cases: &[(&str, &str)] = &[
            (
                "${MISSING:?set it please}",
                "required variable `MISSING` is not set: set it please",
            ),
            ("${MISSING?}", "required variable `MISSING` is not set"),
            (
                "${EMPTY:?needed}",
                "required variable `EMPTY` is empty: needed",
            ),
            ("${OPEN", "unterminated `${`"),
            ("${}", "not a valid variable reference"),
            ("${1X}", "not a valid variable reference"),
            ("${A B}", "not a valid variable reference"),
            ("${A:x}", "not a valid variable reference"),
            ("price $5", "invalid `$`"),
            ("end $", "invalid `$`"),
        ];
        for (input, fragment) in cases {
            let mut uses = Vec::new();
            let err = interpolate(input, &vars(), &mut uses).expect_err(input);
            assert!(
                err.message.contains(fragment),
                "input {input:?}: got {:?}",
                err.message
            );
        }
    }

    #[test]
    fn records_where_values_came_from() {
        let cases: &[(&str, &str, Resolution)] = &[
            ("${FROM_ENV}", "FROM_ENV", Resolution::Set(Source::Process)),
            (
                "${FROM_FILE}",
                "FROM_FILE",
                Resolution::Set(Source::EnvFile {
                    file: ".env.dev".into(),
                    line: 1,
                }),
            ),
            ("${PROJECT}", "PROJECT", Resolution::Set(Source::BuiltIn)),
            ("${MISSING:-x}", "MISSING", Resolution::Default),
            ("${MISSING}", "MISSING", Resolution::Unset),
        ];
        for (input, name, resolution) in cases {
            let mut uses = Vec::new();
            interpolate(input, &vars(), &mut uses).unwrap();
            assert_eq!(uses.len(), 1, "{input}");
            assert_eq!(&uses[0].name, name, "{input}");
            assert_eq!(&uses[0].resolution, resolution, "{input}");
        }
    }

    #[test]
    fn tree_interpolates_values_not_keys() {
        let (mut value, _) = crate::stack::load::parse(
            "$KEY: ${FROM_ENV}\nlist: [a, '${MISSING:?no}']\nretries: '${N:-3}'\n",
        )
        .unwrap();
        let mut uses = Vec::new();
        let mut errors = Vec::new();
        interpolate_tree(&mut value, &mut Vec::new(), &vars(), &mut uses, &mut errors);
        assert_eq!(value["$KEY"].as_str(), Some("env"));
        assert_eq!(value["retries"].as_i64(), Some(3));
        assert_eq!(errors.len(), 1);
        assert_eq!(errors[0].0, vec!["list".to_string(), "1".to_string()]);
        assert_eq!(uses[0].path, vec!["$KEY".to_string()]);
    }
}

//! `.env` files (`.env.STAGE` and a service's `env_file:`), read the way Docker and Compose
//! write them: `KEY=VALUE` lines, `#` comments and blank lines, an optional `export ` prefix,
//! single quotes (literal), double quotes (with `\n`, `\t`, `\"`, `\\`, `\$` escapes; may span
//! lines), and ` #` starting a comment after an unquoted value.
//!
//! As in Compose, an unquoted or double-quoted value may use variables set before it (in
//! the process environment, an earlier line, or an earlier env file): `URL=${SCHEME}://${HOST}`.
//! `parse` keeps such values as templates (`\$` in double quotes becomes `$$`); `expand`
//! resolves them in order. Single-quoted values stay literal.

use std::fmt;

/// One `KEY=VALUE` entry and the line it starts on (1-based).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub key: String,
    pub value: String,
    pub line: usize,
    /// Single-quoted: never interpolated.
    pub literal: bool,
}

/// A malformed line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnvFileError {
    pub line: usize,
    pub message: String,
}

impl fmt::Display for EnvFileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}: {}", self.line, self.message)
    }
}

/// Parse the text of an env file. Later entries for the same key win (callers insert in order).
pub fn parse(text: &str) -> Result<Vec<Entry>, EnvFileError> {
    let lines: Vec<&str> = text.lines().collect();
    let mut entries = Vec::new();
    let mut index = 0;
    while index < lines.len() {
        let number = index + 1;
        let line = lines[index].trim_start();
        index += 1;
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let line = line.strip_prefix("export ").unwrap_or(line).trim_start();
        let Some((key, rest)) = line.split_once('=') else {
            // The line may be a secret with its `=` forgotten: do not echo it then.
            let found = if super::is_secret_key(line) {
                "a line without `=` (not shown: it looks like it holds a secret)".to_string()
            } else {
                format!("`{}`", line.trim_end())
            };
            return Err(EnvFileError {
                line: number,
                message: format!("expected `KEY=VALUE`, found {found}"),
            });
        };
        let key = key.trim_end();
        if key.is_empty()
            || key
                .chars()
                .any(|c| c.is_whitespace() || c == '\'' || c == '"')
        {
            return Err(EnvFileError {
                line: number,
                message: format!("`{key}` is not a variable name"),
            });
        }
        let rest = rest.trim_start();
        let literal = rest.starts_with('\'');
        let value = match rest.chars().next() {
            Some(quote @ ('\'' | '"')) => {
                // Collect text until the closing quote, across lines if needed.
                let mut text = rest[1..].to_string();
                let (value, after) = loop {
                    if let Some((value, after)) = closing(&text, quote) {
                        break (value, after);
                    }
                    if index >= lines.len() {
                        return Err(EnvFileError {
                            line: number,
                            message: format!("the value of `{key}` has no closing {quote}"),
                        });
                    }
                    text.push('\n');
                    text.push_str(lines[index]);
                    index += 1;
                };
                let after = after.trim();
                if !after.is_empty() && !after.starts_with('#') {
                    return Err(EnvFileError {
                        line: number,
                        message: format!("unexpected `{after}` after the quoted value of `{key}`"),
                    });
                }
                value
            }
            _ => unquoted(rest),
        };
        entries.push(Entry {
            key: key.to_string(),
            value,
            line: number,
            literal,
        });
    }
    Ok(entries)
}

/// The value inside quotes and the text after the closing quote, or None if unclosed.
fn closing(text: &str, quote: char) -> Option<(String, String)> {
    let mut value = String::new();
    let mut chars = text.char_indices();
    while let Some((at, c)) = chars.next() {
        if c == quote {
            return Some((value, text[at + 1..].to_string()));
        }
        if c == '\\' && quote == '"' {
            match chars.next() {
                Some((_, 'n')) => value.push('\n'),
                Some((_, 'r')) => value.push('\r'),
                Some((_, 't')) => value.push('\t'),
                // Kept escaped for interpolation: `\$` is a literal `$`.
                Some((_, '$')) => value.push_str("$$"),
                Some((_, e @ ('"' | '\\'))) => value.push(e),
                Some((_, other)) => {
                    value.push('\\');
                    value.push(other);
                }
                None => value.push('\\'),
            }
            continue;
        }
        value.push(c);
    }
    None
}

/// An unquoted value: up to a ` #` comment, trailing blanks trimmed.
fn unquoted(rest: &str) -> String {
    let mut end = rest.len();
    let bytes = rest.as_bytes();
    for (at, byte) in bytes.iter().enumerate() {
        if *byte == b'#' && at > 0 && bytes[at - 1].is_ascii_whitespace() {
            end = at;
            break;
        }
    }
    rest[..end].trim_end().to_string()
}

/// Resolve the values of `entries` in order, as Compose reads an env file: an unquoted or
/// double-quoted value interpolates variables of `vars` (the process environment first) and
/// of the lines above it; a single-quoted one stays literal. Each entry is added to `vars`
/// as it is resolved (from `file`), so later lines and files see it.
pub fn expand(
    entries: &mut [Entry],
    vars: &mut super::interpolate::Variables,
    file: &str,
) -> Result<(), EnvFileError> {
    for entry in entries.iter_mut() {
        if !entry.literal && entry.value.contains('$') {
            let mut uses = Vec::new();
            entry.value =
                super::interpolate::interpolate(&entry.value, vars, &mut uses).map_err(|e| {
                    EnvFileError {
                        line: entry.line,
                        message: format!(
                            "the value of `{}`: {}; {}",
                            entry.key,
                            e.message,
                            "single-quote a value to keep every `$` in it literally"
                        ),
                    }
                })?;
        }
        vars.set_from_env_file(&entry.key, &entry.value, file, entry.line);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_like_docker_and_compose() {
        let cases: &[(&str, &[(&str, &str)])] = &[
            ("A=1", &[("A", "1")]),
            ("A=", &[("A", "")]),
            ("  A = spaced  ", &[("A", "spaced")]),
            ("# comment\n\nA=1\n", &[("A", "1")]),
            ("export A=1", &[("A", "1")]),
            ("A=1 # note", &[("A", "1")]),
            ("A=a#b", &[("A", "a#b")]),
            ("A='x # y'", &[("A", "x # y")]),
            ("A='$lit\\n'", &[("A", "$lit\\n")]),
            (r#"A="a\nb""#, &[("A", "a\nb")]),
            (r#"A="q\"uote\\" # c"#, &[("A", "q\"uote\\")]),
            (r#"A="\$HOME""#, &[("A", "$$HOME")]),
            ("A=\"one\ntwo\"\nB=2", &[("A", "one\ntwo"), ("B", "2")]),
            ("A=${B}", &[("A", "${B}")]),
            ("A=x=y", &[("A", "x=y")]),
            ("A=1\r\nB=2\r\n", &[("A", "1"), ("B", "2")]),
            ("A=1\nA=2", &[("A", "1"), ("A", "2")]),
            ("DB.HOST-1=h", &[("DB.HOST-1", "h")]),
        ];
        for (text, expected) in cases {
            let entries = parse(text).unwrap_or_else(|e| panic!("{text:?}: {e}"));
            let got: Vec<(&str, &str)> = entries
                .iter()
                .map(|e| (e.key.as_str(), e.value.as_str()))
                .collect();
            assert_eq!(&got, expected, "input {text:?}");
        }
    }

    #[test]
    fn reports_the_line_of_bad_input() {
        let cases: &[(&str, usize, &str)] = &[
            ("A=1\nnonsense\n", 2, "expected `KEY=VALUE`"),
            ("\n\nA='open\nB=2\n", 3, "no closing '"),
            ("A=\"x\" y", 1, "unexpected `y`"),
            ("=1", 1, "not a variable name"),
            ("MY KEY=1", 1, "not a variable name"),
        ];
        for (text, line, fragment) in cases {
            let err = parse(text).expect_err(text);
            assert_eq!(err.line, *line, "input {text:?}: {err}");
            assert!(err.message.contains(fragment), "input {text:?}: {err}");
        }
    }

    #[test]
    fn values_interpolate_earlier_variables_unless_single_quoted() {
        let text = "SCHEME=https\nHOST=db\nURL=${SCHEME}://${HOST}\nQ=\"$HOST:${PORT:-5432}\"\nLIT='${HOST}$x'\nESC=\"\\$HOST\"\nDOLLARS=a$$b\nFROM_ENV=$OUTSIDE\n";
        let mut entries = parse(text).unwrap();
        let mut vars = super::super::interpolate::Variables::new(
            [("OUTSIDE".to_string(), "process".to_string())],
            &[],
            "",
            &[],
        );
        expand(&mut entries, &mut vars, ".env").unwrap();
        let got: Vec<(&str, &str)> = entries
            .iter()
            .map(|e| (e.key.as_str(), e.value.as_str()))
            .collect();
        assert_eq!(
            got,
            [
                ("SCHEME", "https"),
                ("HOST", "db"),
                ("URL", "https://db"),
                ("Q", "db:5432"),
                ("LIT", "${HOST}$x"),
                ("ESC", "$HOST"),
                ("DOLLARS", "a$b"),
                ("FROM_ENV", "process"),
            ]
        );
        let mut bad = parse("A=1\nB=x$\n").unwrap();
        let err = expand(&mut bad, &mut vars, ".env").unwrap_err();
        assert_eq!(err.line, 2);
        assert!(err.message.contains("single-quote"), "{err}");
    }

    #[test]
    fn entries_keep_their_line() {
        let entries = parse("# head\nA=1\n\nB=2\n").unwrap();
        assert_eq!(entries[0].line, 2);
        assert_eq!(entries[1].line, 4);
    }
}

//! The README and the manual (`docs/`, an mdBook) stay true: the README is short, every page
//! of the book is in its summary, every relative link and anchor resolves, and every
//! `stackctl` command in a shell code block parses with the real command line.

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};

use clap::Parser;
use stackctl::cli::Cli;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

/// The book's pages, as the summary lists them.
fn summary_pages() -> Vec<PathBuf> {
    let src = root().join("docs/src");
    let summary = read(&src.join("SUMMARY.md"));
    links(&summary)
        .into_iter()
        .map(|(target, _)| src.join(target))
        .collect()
}

/// Every markdown page of the documentation: the README and the book's pages.
fn pages() -> Vec<PathBuf> {
    let mut pages = vec![root().join("README.md")];
    let mut book: Vec<PathBuf> = std::fs::read_dir(root().join("docs/src"))
        .expect("docs/src")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "md"))
        .collect();
    book.sort();
    pages.extend(book);
    pages
}

/// The text outside fenced code blocks.
fn prose(text: &str) -> String {
    let mut out = String::new();
    let mut fenced = false;
    for line in text.lines() {
        if line.trim_start().starts_with("```") {
            fenced = !fenced;
            continue;
        }
        if !fenced {
            out.push_str(line);
            out.push('\n');
        }
    }
    out
}

/// Relative links `[text](target#anchor)`: (path part, anchor). Links with a scheme and
/// pure anchors within the page are returned with an empty path.
fn links(text: &str) -> Vec<(String, Option<String>)> {
    let text = prose(text);
    let mut found = Vec::new();
    let mut rest = text.as_str();
    while let Some(i) = rest.find("](") {
        rest = &rest[i + 2..];
        let Some(end) = rest.find(')') else { break };
        let target = &rest[..end];
        rest = &rest[end..];
        if target.contains("://") || target.starts_with("mailto:") || target.contains(' ') {
            continue;
        }
        let (path, anchor) = match target.split_once('#') {
            Some((path, anchor)) => (path.to_string(), Some(anchor.to_string())),
            None => (target.to_string(), None),
        };
        found.push((path, anchor));
    }
    found
}

/// The anchors of a page's headings, as GitHub and mdBook make them.
fn anchors(text: &str) -> BTreeSet<String> {
    let mut seen: HashMap<String, usize> = HashMap::new();
    let mut out = BTreeSet::new();
    for line in prose(text).lines() {
        let Some(title) = line.strip_prefix('#') else {
            continue;
        };
        let title = title.trim_start_matches('#').trim();
        let slug: String = title
            .to_lowercase()
            .chars()
            .filter(|c| c.is_alphanumeric() || *c == ' ' || *c == '-' || *c == '_')
            .map(|c| if c == ' ' { '-' } else { c })
            .collect();
        let n = seen.entry(slug.clone()).or_insert(0);
        out.insert(if *n == 0 {
            slug.clone()
        } else {
            format!("{slug}-{n}")
        });
        *n += 1;
    }
    out
}

#[test]
fn the_readme_is_short_and_links_to_the_manual() {
    let readme = read(&root().join("README.md"));
    let lines = readme.lines().count();
    assert!(lines <= 250, "README.md has {lines} lines (at most 250)");
    assert!(readme.contains("docs/src/"), "README links to the manual");
}

#[test]
fn every_page_of_the_book_is_in_its_summary_and_exists() {
    let listed = summary_pages();
    for page in &listed {
        assert!(
            page.is_file(),
            "SUMMARY.md lists {}, which is missing",
            page.display()
        );
    }
    for page in pages().into_iter().skip(1) {
        if page.file_name().is_some_and(|n| n == "SUMMARY.md") {
            continue;
        }
        assert!(
            listed.contains(&page),
            "{} is not in docs/src/SUMMARY.md",
            page.display()
        );
    }
    assert!(root().join("docs/book.toml").is_file(), "docs/book.toml");
}

#[test]
fn every_relative_link_and_anchor_resolves() {
    let mut broken = Vec::new();
    for page in pages() {
        let text = read(&page);
        let dir = page.parent().unwrap().to_path_buf();
        for (path, anchor) in links(&text) {
            let target = if path.is_empty() {
                page.clone()
            } else {
                dir.join(&path)
            };
            if !target.exists() {
                broken.push(format!("{}: `{path}` does not exist", page.display()));
                continue;
            }
            if let Some(anchor) = anchor {
                if target.extension().is_some_and(|x| x == "md")
                    && !anchors(&read(&target)).contains(&anchor)
                {
                    broken.push(format!(
                        "{}: `{path}#{anchor}`: no such heading",
                        page.display()
                    ));
                }
            }
        }
    }
    assert!(broken.is_empty(), "broken links:\n{}", broken.join("\n"));
}

/// The `stackctl` invocations of a shell code block's lines: comments, pipes, redirections
/// and `&&` chains cut, `$VAR`s and `…` placeholders given a value.
fn commands_in(text: &str) -> Vec<(usize, Vec<String>)> {
    let mut found = Vec::new();
    let mut fenced: Option<String> = None;
    for (n, line) in text.lines().enumerate() {
        let trimmed = line.trim_start();
        if let Some(lang) = trimmed.strip_prefix("```") {
            fenced = match fenced {
                Some(_) => None,
                None => Some(lang.trim().to_string()),
            };
            continue;
        }
        let Some(lang) = &fenced else { continue };
        if !matches!(lang.as_str(), "sh" | "bash" | "shell" | "console") {
            continue;
        }
        let line = trimmed.trim_start_matches("$ ");
        for part in line.split("&&").flat_map(|p| p.split(';')) {
            let part = part.split('#').next().unwrap_or("");
            let part = part.split(['|', '<', '>']).next().unwrap_or("").trim();
            let Ok(words) = shell_words::split(part) else {
                continue;
            };
            let Some(start) = words.iter().position(|w| w == "stackctl") else {
                continue;
            };
            // `VAR=value stackctl …` and `time stackctl …` are stackctl runs too.
            if !words[..start]
                .iter()
                .all(|w| w.contains('=') || w == "time" || w == "sudo")
            {
                continue;
            }
            let args: Vec<String> = words[start..].iter().map(|w| w.replace('…', "x")).collect();
            found.push((n + 1, args));
        }
    }
    found
}

#[test]
fn every_stackctl_command_in_a_shell_block_parses() {
    let mut bad = Vec::new();
    let mut checked = 0;
    for page in pages() {
        let text = read(&page);
        for (line, args) in commands_in(&text) {
            // `--help` lines, and usage synopses (`[--yes]`, `[-- CMD…]`), are not runs.
            if args
                .iter()
                .any(|a| a == "--help" || a == "-h" || a == "--version" || a.starts_with('['))
            {
                continue;
            }
            checked += 1;
            if let Err(err) = Cli::try_parse_from(&args) {
                let first = err.to_string();
                let first = first.lines().next().unwrap_or_default().to_string();
                bad.push(format!(
                    "{}:{line}: `{}`: {first}",
                    page.display(),
                    args.join(" ")
                ));
            }
        }
    }
    assert!(checked >= 30, "only {checked} commands found");
    assert!(
        bad.is_empty(),
        "commands that do not parse:\n{}",
        bad.join("\n")
    );
}

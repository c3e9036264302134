//! A seeded mutation fuzz of stack files through the real `stackctl config`: real stack
//! files (the broken corpus, the init template, the monolith example) with lines deleted,
//! duplicated and swapped, overflowing numbers, deep nesting, bad UTF-8, tabs, anchors and
//! second documents. Each run must exit 0 or 2, never panic, and every error must name
//! `file:line:col` (an empty file needs no line). Deterministic: the same seed gives the
//! same files; a failure prints the seed and the file. No Docker engine is needed.

mod support;

use std::path::Path;

use support::TestStack;

/// How many mutated files are run.
const RUNS: usize = 300;
const SEED: u64 = 0x5eed_0009;

/// xorshift64*: small, seeded, good enough to pick mutations.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

/// The stack files mutations start from, with `{stage}`/`{project}` filled in.
fn corpus(stage: &str) -> Vec<(String, String)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files: Vec<std::path::PathBuf> = std::fs::read_dir(root.join("tests/stacks/broken"))
        .expect("read tests/stacks/broken")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "yml"))
        .collect();
    files.sort();
    // The valid files last (picked more often).
    files.push(root.join("src/templates/stack.yml"));
    files.push(root.join("examples/monolith/templates/stack.yml"));
    files
        .into_iter()
        .map(|path| {
            let text = std::fs::read_to_string(&path).expect("read corpus file");
            let name = path
                .strip_prefix(root)
                .unwrap_or(&path)
                .display()
                .to_string();
            (
                name,
                text.replace("{stage}", stage).replace("{project}", "fuzz"),
            )
        })
        .collect()
}

const OVERFLOWS: &[&str] = &[
    "99999999999999999999",
    "99999999999999999999h",
    "99999999999999g",
    "9223372036854775807",
    "-9223372036854775809",
    "1e400",
    "-1",
    "0",
    ".inf",
    "99999999999999999999:80",
    "on-failure:99999999999",
    "\"\"",
    "[]",
    "{}",
    "~",
];

/// One mutation of `text`; bytes, since some mutations make it invalid UTF-8.
fn mutate(rng: &mut Rng, text: &str) -> Vec<u8> {
    let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
    if lines.is_empty() {
        lines.push(String::new());
    }
    let at = rng.below(lines.len());
    match rng.below(14) {
        0 => {
            lines.remove(at);
        }
        1 => {
            let line = lines[at].clone();
            lines.insert(at, line);
        }
        2 => {
            let other = rng.below(lines.len());
            lines.swap(at, other);
        }
        3 | 4 => {
            // An overflowing or odd value in place of a value.
            let value = rng.pick(OVERFLOWS);
            let line = &lines[at];
            lines[at] = match line.split_once(": ") {
                Some((key, _)) => format!("{key}: {value}"),
                None => match line.split_once("- ") {
                    Some((indent, _)) => format!("{indent}- {value}"),
                    None => format!("{line} {value}"),
                },
            };
        }
        5 => {
            let depth = [10, 63, 64, 65, 1000, 100_000][rng.below(6)];
            let indent: String = lines[at].chars().take_while(|c| *c == ' ').collect();
            lines.insert(
                at,
                format!("{indent}x-deep: {}{}", "[".repeat(depth), "]".repeat(depth)),
            );
        }
        6 => {
            let mut bytes = lines.join("\n").into_bytes();
            let position = rng.below(bytes.len() + 1);
            bytes.insert(position, [0xff, 0xc3, 0x80, 0xe9][rng.below(4)]);
            return bytes;
        }
        7 => {
            let line = &lines[at];
            let trimmed = line.trim_start();
            lines[at] = format!("\t{trimmed}");
        }
        8 => {
            // An anchor on one value and an alias or merge somewhere else.
            let line = lines[at].clone();
            if let Some((key, value)) = line.split_once(": ") {
                lines[at] = format!("{key}: &a {value}");
            }
            let other = rng.below(lines.len());
            let indent: String = lines[other].chars().take_while(|c| *c == ' ').collect();
            let inserted = match rng.below(3) {
                0 => format!("{indent}x-alias: *a"),
                1 => format!("{indent}<<: *a"),
                _ => format!("{indent}<<: 1"),
            };
            lines.insert(other, inserted);
        }
        9 => {
            lines.insert(at, "---".to_string());
        }
        10 => {
            lines.truncate(at);
        }
        11 => {
            // A character removed or added in the middle of a line.
            let mut chars: Vec<char> = lines[at].chars().collect();
            let position = rng.below(chars.len() + 1);
            if rng.below(2) == 0 && position < chars.len() {
                chars.remove(position);
            } else {
                chars.insert(
                    position,
                    *rng.pick(&[':', '-', '[', '{', '"', '\'', '&', '*', '!', '#', '$', '%']),
                );
            }
            lines[at] = chars.into_iter().collect();
        }
        12 => {
            let line = &lines[at];
            if let Some((key, _)) = line.split_once(": ") {
                lines[at] = format!("{key}: {}", "y".repeat(100_000));
            }
        }
        _ => {
            let tag = rng.pick(&["!reset", "!!str", "!!int", "!override", "!!binary"]);
            if let Some((key, value)) = lines[at].clone().split_once(": ") {
                lines[at] = format!("{key}: {tag} {value}");
            }
        }
    }
    let mut text = lines.join("\n");
    text.push('\n');
    text.into_bytes()
}

/// Whether an `error:` line names a place: `error: FILE:LINE:COL: …`.
fn located(line: &str) -> bool {
    let Some(rest) = line.strip_prefix("error: ") else {
        return true;
    };
    let Some((place, _)) = rest.split_once(": ") else {
        return false;
    };
    let mut parts = place.rsplitn(3, ':');
    let column = parts.next().unwrap_or("");
    let row = parts.next().unwrap_or("");
    !column.is_empty()
        && column.bytes().all(|b| b.is_ascii_digit())
        && !row.is_empty()
        && row.bytes().all(|b| b.is_ascii_digit())
}

/// One mutated file: where it came from and its bytes.
struct Case {
    run: usize,
    from: String,
    bytes: Vec<u8>,
}

/// Every case, generated up front from the seed (so workers do not change them).
fn cases() -> Vec<Case> {
    let corpus = corpus("fuzzstage");
    let mut rng = Rng(SEED);
    (0..RUNS)
        .map(|run| {
            // Valid files (the last two) more often than broken ones: mutations of a valid
            // file reach deeper into validation.
            let (from, text) = if rng.below(10) < 6 {
                corpus[corpus.len() - 1 - rng.below(2)].clone()
            } else {
                rng.pick(&corpus).clone()
            };
            // One to three mutations on top of each other.
            let mut bytes = text.into_bytes();
            for _ in 0..=rng.below(3) {
                let current = String::from_utf8_lossy(&bytes).into_owned();
                bytes = mutate(&mut rng, &current);
            }
            Case { run, from, bytes }
        })
        .collect()
}

/// Run `config` on each case in a project of its own; the exit codes seen and the problems.
/// With `base`, each case is written to `stacks/base.yml` instead, under a stage file that
/// is either a one-line overlay or the next case, so the two merge.
fn check(cases: &[Case], base: bool) -> ([usize; 2], Vec<String>) {
    let stack = TestStack::new("fuzz");
    stack.write(
        &format!(".env.{}", stack.stage),
        "DB_PASSWORD=fuzz-password\nSECRET_KEY=fuzz-secret-key\n",
    );
    let file = stack.path(&format!("stacks/{}.yml", stack.stage));
    let base_file = stack.path("stacks/base.yml");
    let mut failures = Vec::new();
    let mut exits = [0usize; 2];
    for (index, case) in cases.iter().enumerate() {
        if base {
            std::fs::write(&base_file, &case.bytes).expect("write mutated base");
            // Every other time the stage's file only renames the project (so valid bases
            // stay valid); else it is another mutated file.
            let stage: &[u8] = if index % 2 == 0 {
                b"name: fuzzmerged\n"
            } else {
                &cases[(index + 1) % cases.len()].bytes
            };
            std::fs::write(&file, stage).expect("write mutated stack");
        } else {
            std::fs::write(&file, &case.bytes).expect("write mutated stack");
        }
        let output = stack
            .cmd()
            .arg("config")
            .env_remove("STACKCTL_PROFILES")
            .timeout(std::time::Duration::from_secs(10))
            .output()
            .expect("run stackctl");
        let stderr = String::from_utf8_lossy(&output.stderr);
        let code = output.status.code();
        let empty = stderr.contains("is empty");
        let problem = match code {
            Some(0) => None,
            Some(2) if stderr.contains("panicked") => Some("panicked".to_string()),
            Some(2) => stderr
                .lines()
                .find(|line| !empty && !located(line))
                .map(|line| format!("error without file:line:col: {line}")),
            other => Some(format!("exit {other:?}")),
        };
        match code {
            Some(0) => exits[0] += 1,
            Some(2) => exits[1] += 1,
            _ => {}
        }
        if let Some(problem) = problem {
            let shown: String = String::from_utf8_lossy(&case.bytes)
                .chars()
                .take(2000)
                .collect();
            failures.push(format!(
                "run {} (seed {SEED:#x}, from {}): {problem}\n--- stderr:\n{}\n--- file:\n{shown}",
                case.run,
                case.from,
                stderr.chars().take(2000).collect::<String>()
            ));
        }
    }
    (exits, failures)
}

#[test]
fn fuzz_mutated_stack_files_exit_0_or_2_with_located_errors() {
    fuzz(false);
}

/// The same with `stacks/base.yml` merged under the stage's file: every error is located in
/// one of the two files.
#[test]
fn fuzz_mutated_base_and_stage_files_merge_with_located_errors() {
    fuzz(true);
}

fn fuzz(base: bool) {
    let cases = cases();
    let started = std::time::Instant::now();
    // Two workers: each run is a short process, mostly start-up.
    let results: Vec<([usize; 2], Vec<String>)> = std::thread::scope(|scope| {
        let workers: Vec<_> = cases
            .chunks(cases.len().div_ceil(2))
            .map(|chunk| scope.spawn(move || check(chunk, base)))
            .collect();
        workers
            .into_iter()
            .map(|w| w.join().expect("fuzz worker"))
            .collect()
    });
    let mut exits = [0usize; 2];
    let mut failures = Vec::new();
    for (seen, problems) in results {
        exits[0] += seen[0];
        exits[1] += seen[1];
        failures.extend(problems);
    }
    eprintln!(
        "{RUNS} mutated files in {:?}: {} accepted, {} refused",
        started.elapsed(),
        exits[0],
        exits[1]
    );
    assert!(
        failures.is_empty(),
        "{} of {RUNS} runs failed:\n{}",
        failures.len(),
        failures.join("\n\n")
    );
    // The corpus is not all broken: some mutations keep a file valid.
    assert!(exits[0] > 0 && exits[1] > 0, "exits: {exits:?}");
}

/// The check itself: an error line without a place is caught.
#[test]
fn located_requires_file_line_and_column() {
    assert!(located("error: stacks/dev.yml:3:14: invalid YAML: x"));
    assert!(located("  hint: not an error line"));
    assert!(!located("error: invalid YAML: more than one document"));
    assert!(!located("error: stacks/dev.yml: no line"));
    assert!(!located(
        "error: cannot read `stacks/dev.yml`: it is a FIFO"
    ));
}

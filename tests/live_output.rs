//! The live output on a real terminal: the real binary runs under util-linux `script` (a
//! pseudo-terminal of 80 columns and 24 rows), and the transcript is checked byte for byte
//! (every line ends in a newline, nothing is padded to the terminal's width) and, replayed
//! on a small screen model, snapshotted: one line per object, in a stable order.

mod support;

use support::{busybox_image, TestStack};

/// Run `stackctl ARGS` in the test project on a pseudo-terminal; the transcript (stderr and
/// stdout as the terminal got them).
fn on_terminal(t: &TestStack, args: &str) -> (String, i32) {
    support::on_terminal(t, args, &[])
}

/// Replay a transcript on a screen model that knows what stackctl sends: text, `\r`, `\n`,
/// cursor up (`ESC[nA`), erase below (`ESC[J`), erase line (`ESC[K`, `ESC[2K`), colours.
fn screen(transcript: &str) -> Vec<String> {
    let mut lines: Vec<Vec<char>> = vec![Vec::new()];
    let (mut row, mut col) = (0usize, 0usize);
    let chars: Vec<char> = transcript.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c == '\x1b' && chars.get(i + 1) == Some(&'[') {
            let mut j = i + 2;
            let mut number = String::new();
            while j < chars.len() && (chars[j].is_ascii_digit() || chars[j] == ';') {
                number.push(chars[j]);
                j += 1;
            }
            let n: usize = number.parse().unwrap_or(1);
            match chars.get(j) {
                Some('A') => row = row.saturating_sub(n),
                Some('J') => {
                    lines.truncate(row + 1);
                    lines[row].truncate(col);
                }
                Some('K') => lines[row].truncate(col),
                _ => {}
            }
            i = j + 1;
            continue;
        }
        match c {
            '\r' => col = 0,
            '\n' => {
                row += 1;
                col = 0;
                if lines.len() <= row {
                    lines.push(Vec::new());
                }
            }
            _ => {
                let line = &mut lines[row];
                while line.len() < col {
                    line.push(' ');
                }
                if col < line.len() {
                    line[col] = c;
                } else {
                    line.push(c);
                }
                col += 1;
            }
        }
        i += 1;
    }
    lines
        .into_iter()
        .map(|l| l.into_iter().collect::<String>())
        .filter(|l| !l.is_empty())
        .collect()
}

/// Times change from run to run: `(1.2s)` → `(T)`.
fn redact(t: &TestStack, text: &str) -> String {
    let times = regex::Regex::new(r"\(\d+\.\ds\)|in \d+\.\ds").unwrap();
    times
        .replace_all(text, "(T)")
        .replace(&t.stage, "STAGE")
        .replace(&t.project, "PROJECT")
}

#[test]
fn defect8_live_output_is_one_line_per_object_in_a_stable_order() {
    let base = busybox_image();
    let t = TestStack::new("d8live");
    t.write(
        "web/Dockerfile",
        &format!("FROM {base}\nRUN echo built > /built\n"),
    );
    t.stack(&format!(
        r#"
services:
  web:
    build: web
    init: true
    command: [sh, -c, "exec sleep 3600"]
    depends_on: {{ db: {{ condition: service_healthy }} }}
  db:
    image: {base}
    init: true
    command: [sh, -c, "exec sleep 3600"]
    healthcheck: {{ test: [CMD, "true"], interval: 500ms }}
    volumes: ["data:/data"]
  cache:
    image: {base}
    init: true
    command: [sh, -c, "exec sleep 3600"]
volumes:
  data: {{}}
"#
    ));
    let (transcript, code) = on_terminal(&t, "up --build");
    assert_eq!(code, 0, "{transcript}");

    // Byte for byte: every line ends in a newline and none is padded to the width.
    assert!(transcript.ends_with('\n'), "{transcript:?}");
    for line in transcript.split('\n') {
        let line = line.trim_end_matches('\r');
        assert!(!line.ends_with(' '), "a padded line: {line:?}");
        assert!(
            line.chars().count() < 80 + 20,
            "a line wider than the terminal: {line:?}"
        );
    }

    let shown = screen(&transcript);
    for object in ["web", "db", "cache"] {
        let rows = shown
            .iter()
            .filter(|l| l.contains(&format!("service {}:", t.container(object))))
            .count();
        assert_eq!(rows, 1, "one line for `{object}`: {shown:#?}");
    }
    insta::assert_snapshot!(redact(&t, &shown.join("\n")));

    // The order is the same on the next run (nothing to do but the same objects listed).
    let (again, code) = on_terminal(&t, "down");
    assert_eq!(code, 0, "{again}");
    // The object rows (the summary and notes such as an ended context monitor follow them).
    let removed: Vec<String> = screen(&again)
        .into_iter()
        .filter(|l| l.starts_with('✔'))
        .collect();
    assert_eq!(removed.len(), 4, "{again}");
    let mut sorted = removed.clone();
    sorted.sort();
    assert_eq!(removed, sorted, "rows in order by kind then name");
}

//! Broken stack files (tests/stacks/broken/*.yml) through the real `stackctl config`: each
//! exits 2 and reports every problem at its file, line and column (stderr snapshots). No
//! Docker engine is needed.

mod support;

use support::TestStack;

/// Run `config` on one corpus file; return stderr with the test's stage name replaced.
fn config_errors(name: &str) -> String {
    let source = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/stacks/broken")
        .join(format!("{name}.yml"));
    let yaml = std::fs::read_to_string(&source).expect("read corpus file");
    let stack = TestStack::new(name);
    stack.stack(&yaml);
    let output = stack
        .cmd()
        .arg("config")
        .env_remove("STACKCTL_PROFILES")
        .output()
        .expect("run stackctl");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(
        output.status.code(),
        Some(2),
        "`{name}` must be rejected with exit code 2; stderr:\n{stderr}"
    );
    assert!(stdout.is_empty(), "nothing on stdout: {stdout}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(
        !stderr.contains(&stack.dir.display().to_string()),
        "paths are relative to the project directory: {stderr}"
    );
    stderr.replace(&stack.stage, "STAGE")
}

macro_rules! broken {
    ($($name:ident),* $(,)?) => {
        $(
            #[test]
            fn $name() {
                insta::assert_snapshot!(stringify!($name), config_errors(stringify!($name)));
            }
        )*
        /// Every file of the corpus has its test above.
        #[test]
        fn every_corpus_file_is_tested() {
            let listed = [$(stringify!($name)),*];
            let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/stacks/broken");
            let mut files: Vec<String> = std::fs::read_dir(dir)
                .expect("read corpus")
                .filter_map(|e| e.ok())
                .filter_map(|e| e.file_name().to_str()?.strip_suffix(".yml").map(String::from))
                .collect();
            files.sort();
            let mut listed: Vec<String> = listed.iter().map(|s| s.to_string()).collect();
            listed.sort();
            assert_eq!(files, listed);
        }
    };
}

broken!(
    bad_duration,
    bad_interpolation,
    bad_port,
    cycle,
    dangling_depends_on,
    dangling_task_service,
    dangling_volumes_from,
    duplicate_key,
    inactive_profile,
    many_errors,
    typo_key,
    unset_required,
    tab_indent,
    unsupported_key,
    wrong_shapes,
    yaml_syntax,
);

#[test]
fn a_missing_stack_file_says_how_to_create_it() {
    let stack = TestStack::new("missing-file");
    let output = stack.cmd().arg("config").output().expect("run stackctl");
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr).replace(&stack.stage, "STAGE");
    insta::assert_snapshot!(stderr, @r"
    error: cannot read stack file `stacks/STAGE.yml`: no such file
      hint: run `stackctl init --env STAGE` to create it
    ");
}

#[test]
fn a_bad_env_file_line_is_located() {
    let stack = TestStack::new("bad-env-file");
    stack.stack("services:\n  api:\n    image: busybox\n");
    stack.write(&format!(".env.{}", stack.stage), "A=1\n\nnot a pair\n");
    let output = stack.cmd().arg("config").output().expect("run stackctl");
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr).replace(&stack.stage, "STAGE");
    insta::assert_snapshot!(stderr, @"error: .env.STAGE:3:1: expected `KEY=VALUE`, found `not a pair`");
}

//! Test support shared by the integration tests: a unique project and stage per test, the
//! real `stackctl` binary pointed at it, cleanup by labels on every path (the guard's `Drop`
//! runs on failure too), and the busybox test image, built once per test run.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command as StdCommand;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;

/// Tag of the fast test image: `FROM scratch` + Debian's static busybox.
pub const BUSYBOX: &str = "stackctl-fixture/busybox:latest";

static COUNTER: AtomicUsize = AtomicUsize::new(0);

/// One test's own project directory and stage. Everything the engine holds with this
/// project's labels is removed when it drops.
pub struct TestStack {
    pub root: tempfile::TempDir,
    /// The project directory (`root/<project>`).
    pub dir: PathBuf,
    pub project: String,
    pub stage: String,
}

impl TestStack {
    /// A fresh project named after the test (`name`) with a stage unique to this process.
    pub fn new(name: &str) -> TestStack {
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let pid = std::process::id();
        let project = format!("t{pid}x{n}-{name}")
            .to_ascii_lowercase()
            .replace('_', "-");
        let stage = format!("s{pid}x{n}");
        let root = tempfile::tempdir().expect("create temp dir");
        let dir = root.path().join(&project);
        std::fs::create_dir_all(dir.join("stacks")).expect("create stacks/");
        TestStack {
            root,
            dir,
            project,
            stage,
        }
    }

    /// Write `stacks/<stage>.yml`.
    pub fn stack(&self, yaml: &str) -> &Self {
        self.write(&format!("stacks/{}.yml", self.stage), yaml)
    }

    /// Write a file under the project directory.
    pub fn write(&self, rel: &str, text: &str) -> &Self {
        let path = self.dir.join(rel);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).expect("create parent dir");
        }
        std::fs::write(path, text).expect("write file");
        self
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.join(rel)
    }

    /// The real binary, run in this project on this stage, off a terminal, without colour.
    pub fn cmd(&self) -> assert_cmd::Command {
        let mut cmd = assert_cmd::Command::cargo_bin("stackctl").expect("stackctl binary");
        cmd.current_dir(&self.dir)
            .env("STACKCTL_ENV", &self.stage)
            .env("CI", "true")
            .env("NO_COLOR", "1")
            .env_remove("DOCKER_HOST")
            .env_remove("DOCKER_BUILDKIT")
            .env_remove("COMPOSE_FILE");
        cmd
    }

    /// The same binary as a std `Command` (for signals and streaming tests).
    pub fn std_cmd(&self) -> StdCommand {
        let mut cmd = StdCommand::new(assert_cmd::cargo::cargo_bin("stackctl"));
        cmd.current_dir(&self.dir)
            .env("STACKCTL_ENV", &self.stage)
            .env("CI", "true")
            .env("NO_COLOR", "1")
            .env_remove("DOCKER_HOST")
            .env_remove("DOCKER_BUILDKIT")
            .env_remove("COMPOSE_FILE");
        cmd
    }

    /// Container name of a service on this stage.
    pub fn container(&self, service: &str) -> String {
        format!("{}-{}--{}", self.stage, self.project, service)
    }

    /// Label filter matching this test's objects.
    pub fn filter(&self) -> Vec<String> {
        vec![
            "--filter".into(),
            format!("label=io.stackctl.project={}", self.project),
            "--filter".into(),
            format!("label=io.stackctl.stage={}", self.stage),
        ]
    }

    /// Names of this stage's containers (all states).
    pub fn containers(&self) -> Vec<String> {
        let mut args = vec![
            "ps".to_string(),
            "-a".into(),
            "--format".into(),
            "{{.Names}}".into(),
        ];
        args.extend(self.filter());
        lines(&docker(&args))
    }

    /// Remove everything this test's project owns on the engine.
    pub fn cleanup(&self) {
        cleanup_project(&self.project);
    }
}

impl Drop for TestStack {
    fn drop(&mut self) {
        self.cleanup();
    }
}

/// Remove every container, volume, network and image labelled with this project.
pub fn cleanup_project(project: &str) {
    let filter = format!("label=io.stackctl.project={project}");
    let containers = lines(&docker(&["ps", "-aq", "--filter", &filter]));
    if !containers.is_empty() {
        // The anonymous volumes a recreated container took over are mounted by name: the
        // engine does not remove them with the container.
        let kept: Vec<String> = containers
            .iter()
            .flat_map(|id| {
                let label = docker(&[
                    "inspect",
                    "--format",
                    "{{index .Config.Labels \"io.stackctl.kept-volumes\"}}",
                    id,
                ]);
                label
                    .trim()
                    .split(',')
                    .filter(|v| !v.is_empty())
                    .map(str::to_string)
                    .collect::<Vec<_>>()
            })
            .collect();
        let mut args = vec!["rm", "-fv"];
        args.extend(containers.iter().map(String::as_str));
        docker(&args);
        if !kept.is_empty() {
            let mut args = vec!["volume", "rm"];
            args.extend(kept.iter().map(String::as_str));
            docker(&args);
        }
    }
    let networks = lines(&docker(&["network", "ls", "-q", "--filter", &filter]));
    if !networks.is_empty() {
        let mut args = vec!["network", "rm"];
        args.extend(networks.iter().map(String::as_str));
        docker(&args);
    }
    let volumes = lines(&docker(&["volume", "ls", "-q", "--filter", &filter]));
    if !volumes.is_empty() {
        let mut args = vec!["volume", "rm", "-f"];
        args.extend(volumes.iter().map(String::as_str));
        docker(&args);
    }
    // Built images carry their ownership under keys of their own (older builds: the
    // container keys). The project name is this test's alone.
    let image_filter = format!("label=io.stackctl.image.project={project}");
    let mut images = lines(&docker(&["images", "-q", "--filter", &filter]));
    images.extend(lines(&docker(&["images", "-q", "--filter", &image_filter])));
    images.sort();
    images.dedup();
    if !images.is_empty() {
        let mut args = vec!["rmi", "-f"];
        args.extend(images.iter().map(String::as_str));
        docker(&args);
    }
}

/// Everything the engine holds for one stage: containers, volumes and networks by the
/// stage's labels, built images by their own image labels (`name` or `repo:tag`, IDs for
/// untagged images).
pub fn stage_objects(project: &str, stage: &str) -> Vec<String> {
    let by = |prefix: &str| {
        vec![
            "--filter".to_string(),
            format!("label={prefix}.project={project}"),
            "--filter".to_string(),
            format!("label={prefix}.stage={stage}"),
        ]
    };
    let mut all = Vec::new();
    for (kind, prefix) in [
        (vec!["ps", "-a", "--format", "{{.Names}}"], "io.stackctl"),
        (vec!["volume", "ls", "--format", "{{.Name}}"], "io.stackctl"),
        (
            vec!["network", "ls", "--format", "{{.Name}}"],
            "io.stackctl",
        ),
        (
            vec!["images", "--format", "{{.Repository}}:{{.Tag}} {{.ID}}"],
            "io.stackctl",
        ),
        (
            vec!["images", "--format", "{{.Repository}}:{{.Tag}} {{.ID}}"],
            "io.stackctl.image",
        ),
    ] {
        let mut args: Vec<String> = kind.iter().map(|s| s.to_string()).collect();
        args.extend(by(prefix));
        all.extend(lines(&docker(&args)));
    }
    all
}

/// Run the docker CLI, returning stdout (empty on failure).
pub fn docker<S: AsRef<std::ffi::OsStr>>(args: &[S]) -> String {
    let output = StdCommand::new("docker")
        .args(args)
        .output()
        .expect("run docker CLI");
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// Run the docker CLI and require success.
pub fn docker_ok<S: AsRef<std::ffi::OsStr>>(args: &[S]) -> String {
    let output = StdCommand::new("docker")
        .args(args)
        .output()
        .expect("run docker CLI");
    assert!(
        output.status.success(),
        "docker {:?} failed: {}",
        args.iter()
            .map(|a| a.as_ref().to_string_lossy().into_owned())
            .collect::<Vec<_>>(),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

pub fn lines(text: &str) -> Vec<String> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(String::from)
        .collect()
}

/// The busybox test image, built once per test run (kept across runs: the tag is the cache).
/// The Debian packages the tests use: busybox for the fast test image, debootstrap for the
/// reference systems' base images, curl to talk to their APIs, Docker Distribution and
/// htpasswd for the registry tests, docker-compose for the differential Compose tests,
/// util-linux's `script` for the terminal tests, sshd, ip and iptables for the lab of the
/// remote-engine tests.
pub const PACKAGES: &[&str] = &[
    "busybox-static",
    "debootstrap",
    "curl",
    "docker-registry",
    "apache2-utils",
    "docker-compose",
    "util-linux",
    "openssh-server",
    "openssh-client",
    "iproute2",
    "iptables",
];

/// Make sure the machine has what the tests need, once per test binary: the missing
/// packages are installed with apt-get when the tests run as root (under a lock, so two test
/// binaries never run apt at once), unless `STACKCTL_TEST_NO_INSTALL` is set; otherwise the
/// run stops with one line saying what to install.
pub fn machine_ready() {
    static READY: OnceLock<()> = OnceLock::new();
    READY.get_or_init(|| {
        let missing: Vec<&str> = PACKAGES
            .iter()
            .copied()
            .filter(|package| {
                !StdCommand::new("dpkg-query")
                    .args(["-W", "-f", "${Status}", package])
                    .output()
                    .map(|o| String::from_utf8_lossy(&o.stdout).contains("install ok installed"))
                    .unwrap_or(false)
            })
            .collect();
        if missing.is_empty() {
            return;
        }
        let root = StdCommand::new("id")
            .arg("-u")
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
            .unwrap_or(false);
        let line = format!(
            "the tests need these packages: {} (as root: apt-get install {})",
            missing.join(" "),
            missing.join(" ")
        );
        if !root || std::env::var_os("STACKCTL_TEST_NO_INSTALL").is_some() {
            panic!("{line}");
        }
        eprintln!("installing what the tests need: {}", missing.join(" "));
        let script = format!(
            "export DEBIAN_FRONTEND=noninteractive; apt-get update -qq && apt-get install -y -qq {} >/dev/null",
            missing.join(" ")
        );
        let status = StdCommand::new("flock")
            .args(["/tmp/stackctl-test-packages.lock", "sh", "-c", &script])
            .status()
            .unwrap_or_else(|e| panic!("{line}: {e}"));
        assert!(status.success(), "apt-get failed; {line}");
    });
}

pub fn busybox_image() -> &'static str {
    static BUILT: OnceLock<()> = OnceLock::new();
    BUILT.get_or_init(|| {
        machine_ready();
        if StdCommand::new("docker")
            .args(["image", "inspect", BUSYBOX])
            .output()
            .map(|o| o.status.success())
            .unwrap_or(false)
        {
            return;
        }
        let busybox = Path::new("/bin/busybox");
        assert!(busybox.exists(), "/bin/busybox is missing: apt-get install busybox-static");
        let ctx = tempfile::tempdir().expect("temp dir");
        std::fs::copy(busybox, ctx.path().join("busybox")).expect("copy busybox");
        std::fs::write(
            ctx.path().join("Dockerfile"),
            "FROM scratch\nCOPY busybox /bin/busybox\nRUN [\"/bin/busybox\", \"--install\", \"-s\", \"/bin\"]\nRUN mkdir -p /tmp /var/www && chmod 1777 /tmp\nCMD [\"sh\"]\n",
        )
        .expect("write Dockerfile");
        docker_ok(&["build", "-q", "-t", BUSYBOX, &ctx.path().to_string_lossy()]);
    });
    BUSYBOX
}

/// Run `stackctl ARGS` in the test project on a pseudo-terminal of 80 columns and 24 rows
/// (util-linux `script`), with `env` set; the transcript (stderr and stdout as the terminal
/// got them) and the exit code.
#[allow(dead_code)]
pub fn on_terminal(t: &TestStack, args: &str, env: &[(&str, &std::ffi::OsStr)]) -> (String, i32) {
    let binary = assert_cmd::cargo::cargo_bin("stackctl");
    let command = format!("stty cols 80 rows 24; exec {} {args}", binary.display());
    let mut cmd = StdCommand::new("script");
    cmd.args(["-q", "-e", "-c", &command, "/dev/null"])
        .current_dir(&t.dir)
        .env("STACKCTL_ENV", &t.stage)
        .env("NO_COLOR", "1")
        .env("COLUMNS", "80")
        .env_remove("CI")
        .env_remove("DOCKER_HOST")
        .env_remove("DOCKER_BUILDKIT")
        .stdin(std::process::Stdio::null());
    for (key, value) in env {
        cmd.env(key, value);
    }
    let output = cmd.output().expect("run script(1): install util-linux");
    (
        String::from_utf8_lossy(&output.stdout).into_owned(),
        output.status.code().unwrap_or(-1),
    )
}

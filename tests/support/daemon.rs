//! Lab daemons (dockerd, sshd, the registry) that die with the test process: shared by the
//! remote-engine lab (lab.rs) and the Swarm lab (swarm.rs).

use std::path::Path;
use std::process::{Command, Stdio};

/// Start `program` from a thread that lives as long as the process: PR_SET_PDEATHSIG fires
/// when the spawning *thread* ends, and test threads end early. Its output goes to `log`;
/// returns its pid.
pub fn spawn_forever(program: &str, args: &[&str], log: &Path) -> u32 {
    let program = program.to_string();
    let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    let log = log.to_path_buf();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::os::unix::process::CommandExt;
        let log = std::fs::File::create(&log).expect("lab log");
        let mut command = Command::new(&program);
        command
            .args(&args)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log);
        // SAFETY: prctl is async-signal-safe; nothing else runs between fork and exec.
        unsafe {
            command.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        let child = command
            .spawn()
            .unwrap_or_else(|e| panic!("start the lab daemon `{program}`: {e}"));
        let _ = tx.send(child.id());
        let _child = child;
        loop {
            std::thread::park();
        }
    });
    rx.recv().expect("lab thread")
}

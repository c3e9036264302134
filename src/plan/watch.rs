//! `stackctl watch`: which changed paths each `develop.watch` rule takes, and what a burst of
//! changes makes each service do. Pure: the command feeds it the paths the file watcher
//! reported (after its quiet period) and runs the result.
//!
//! As Compose does: a rule's `path` is a file or a directory (watched recursively);
//! `ignore` and `include` use `.dockerignore` syntax relative to `path`; for a service that
//! builds, what its build context's `.dockerignore` leaves out is ignored too; `.git`
//! directories and the temporary files of common editors never count. When several rules of
//! a service take a change, a `rebuild` wins over everything (the new container has every
//! file); otherwise every sync happens, then one restart, then each `exec`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use crate::context::Dockerignore;
use crate::stack::model::{WatchAction, WatchExec};

/// One rule, ready to match paths.
#[derive(Debug, Clone)]
pub struct Rule {
    pub service: String,
    pub action: WatchAction,
    /// The watched file or directory (absolute).
    pub path: PathBuf,
    /// Where `path` lands in the container (sync actions).
    pub target: Option<String>,
    pub ignore: Dockerignore,
    /// Only paths these patterns match count (none: every path).
    pub include: Option<Dockerignore>,
    /// The service's build context and its `.dockerignore`.
    pub context: Option<(PathBuf, Dockerignore)>,
    pub exec: Option<WatchExec>,
    pub initial_sync: bool,
}

/// Whether a path is an editor's temporary or backup file (Vim, Emacs, JetBrains, …).
pub fn editor_temporary(name: &str) -> bool {
    name.ends_with('~')
        || name.ends_with(".swp")
        || name.ends_with(".swx")
        || name.ends_with(".swo")
        || name == "4913"
        || name.starts_with(".#")
        || (name.starts_with('#') && name.ends_with('#'))
        || name.ends_with("___jb_tmp___")
        || name.ends_with("___jb_old___")
        || name == ".DS_Store"
}

impl Rule {
    /// The path relative to the rule's `path` (`""` for the path itself), when the rule
    /// takes a change of `changed`.
    pub fn takes(&self, changed: &Path) -> Option<String> {
        let rel = changed.strip_prefix(&self.path).ok()?;
        let rel = rel.to_string_lossy().replace('\\', "/");
        let name = changed.file_name()?.to_string_lossy();
        if editor_temporary(&name) || changed.components().any(|c| c.as_os_str() == ".git") {
            return None;
        }
        if !rel.is_empty() {
            if self.ignore.excluded(&rel) {
                return None;
            }
            if let Some(include) = &self.include {
                if !include.excluded(&rel) {
                    return None;
                }
            }
        }
        if let Some((root, ignore)) = &self.context {
            if let Ok(in_context) = changed.strip_prefix(root) {
                let in_context = in_context.to_string_lossy().replace('\\', "/");
                if !in_context.is_empty() && ignore.excluded(&in_context) {
                    return None;
                }
            }
        }
        Some(rel)
    }

    /// Where a path the rule took lands in the container.
    pub fn target_of(&self, rel: &str) -> Option<String> {
        let target = self.target.as_deref()?.trim_end_matches('/');
        Some(if rel.is_empty() {
            if target.is_empty() {
                "/".to_string()
            } else {
                target.to_string()
            }
        } else {
            format!("{target}/{rel}")
        })
    }
}

/// A change to copy into (or remove from) a container.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Sync {
    /// On this machine (absolute).
    pub local: PathBuf,
    /// In the container (absolute).
    pub target: String,
}

/// What one service does for one burst of changes.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ServiceWork {
    /// Rebuild the image and recreate the service (nothing else is done then).
    pub rebuild: bool,
    pub syncs: BTreeSet<Sync>,
    pub restart: bool,
    /// Commands of the `sync+exec` rules that took a change, in rule order.
    pub execs: Vec<WatchExec>,
    /// A changed path, relative to the project directory, to name in the output.
    pub first_change: Option<PathBuf>,
}

/// The work of each service for a burst of changed paths, by service name.
pub fn work(rules: &[Rule], changed: &BTreeSet<PathBuf>) -> BTreeMap<String, ServiceWork> {
    let mut works: BTreeMap<String, ServiceWork> = BTreeMap::new();
    for (index, rule) in rules.iter().enumerate() {
        let mut took = false;
        for path in changed {
            let Some(rel) = rule.takes(path) else {
                continue;
            };
            took = true;
            let work = works.entry(rule.service.clone()).or_default();
            if work.first_change.is_none() {
                work.first_change = Some(path.clone());
            }
            match rule.action {
                WatchAction::Rebuild => work.rebuild = true,
                WatchAction::Restart => work.restart = true,
                WatchAction::Sync | WatchAction::SyncRestart | WatchAction::SyncExec => {
                    if let Some(target) = rule.target_of(&rel) {
                        work.syncs.insert(Sync {
                            local: path.clone(),
                            target,
                        });
                    }
                    if rule.action == WatchAction::SyncRestart {
                        work.restart = true;
                    }
                }
            }
        }
        if took && rule.action == WatchAction::SyncExec {
            if let Some(exec) = &rules[index].exec {
                let work = works.entry(rule.service.clone()).or_default();
                work.execs.push(exec.clone());
            }
        }
    }
    for work in works.values_mut() {
        if work.rebuild {
            work.syncs.clear();
            work.restart = false;
            work.execs.clear();
        }
    }
    works
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(service: &str, action: WatchAction, path: &str, target: Option<&str>) -> Rule {
        Rule {
            service: service.into(),
            action,
            path: path.into(),
            target: target.map(String::from),
            ignore: Dockerignore::default(),
            include: None,
            context: None,
            exec: None,
            initial_sync: false,
        }
    }

    fn paths(list: &[&str]) -> BTreeSet<PathBuf> {
        list.iter().map(PathBuf::from).collect()
    }

    #[test]
    fn sync_maps_paths_under_the_target() {
        let rules = [rule("api", WatchAction::Sync, "/p/api", Some("/app/"))];
        let works = work(
            &rules,
            &paths(&["/p/api/app.py", "/p/api/lib/x.py", "/p/web/a"]),
        );
        let api = &works["api"];
        let targets: Vec<&str> = api.syncs.iter().map(|s| s.target.as_str()).collect();
        assert_eq!(targets, ["/app/app.py", "/app/lib/x.py"]);
        assert!(!api.rebuild && !api.restart);
        assert_eq!(works.len(), 1);
    }

    #[test]
    fn a_file_rule_lands_on_its_target() {
        let rules = [rule(
            "api",
            WatchAction::Sync,
            "/p/conf.ini",
            Some("/etc/app.ini"),
        )];
        let works = work(&rules, &paths(&["/p/conf.ini", "/p/conf.ini.bak"]));
        let targets: Vec<&str> = works["api"]
            .syncs
            .iter()
            .map(|s| s.target.as_str())
            .collect();
        assert_eq!(targets, ["/etc/app.ini"]);
    }

    #[test]
    fn ignore_include_git_and_editor_files_do_not_count() {
        let mut r = rule("api", WatchAction::Sync, "/p/api", Some("/app"));
        r.ignore = Dockerignore::parse("cache/\n*.log").unwrap();
        r.include = Some(Dockerignore::parse("*.py\nlib").unwrap());
        let works = work(
            &[r],
            &paths(&[
                "/p/api/cache/x.py",
                "/p/api/a.log",
                "/p/api/readme.md",
                "/p/api/.git/HEAD",
                "/p/api/.app.py.swp",
                "/p/api/app.py~",
                "/p/api/app.py",
                "/p/api/lib/y.txt",
            ]),
        );
        let targets: Vec<&str> = works["api"]
            .syncs
            .iter()
            .map(|s| s.target.as_str())
            .collect();
        assert_eq!(targets, ["/app/app.py", "/app/lib/y.txt"]);
    }

    #[test]
    fn the_build_contexts_dockerignore_applies() {
        let mut r = rule("api", WatchAction::Rebuild, "/p/api", None);
        r.context = Some(("/p/api".into(), Dockerignore::parse("tests").unwrap()));
        assert!(work(std::slice::from_ref(&r), &paths(&["/p/api/tests/t.py"])).is_empty());
        assert!(work(&[r], &paths(&["/p/api/app.py"]))["api"].rebuild);
    }

    #[test]
    fn rebuild_wins_and_restart_and_exec_follow_syncs() {
        let mut exec = rule("api", WatchAction::SyncExec, "/p/api/static", Some("/srv"));
        exec.exec = Some(WatchExec {
            command: vec!["reload".into()],
            ..Default::default()
        });
        let rules = [
            rule(
                "api",
                WatchAction::SyncRestart,
                "/p/api/conf",
                Some("/etc/api"),
            ),
            exec,
            rule("api", WatchAction::Rebuild, "/p/api/requirements.txt", None),
        ];
        let works = work(&rules, &paths(&["/p/api/conf/a", "/p/api/static/b"]));
        let api = &works["api"];
        assert!(api.restart && !api.rebuild);
        assert_eq!(api.syncs.len(), 2);
        assert_eq!(api.execs.len(), 1);
        let works = work(
            &rules,
            &paths(&["/p/api/conf/a", "/p/api/requirements.txt"]),
        );
        let api = &works["api"];
        assert!(api.rebuild && !api.restart && api.syncs.is_empty());
    }
}

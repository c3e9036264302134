//! `stackctl lock status|release`: the stage's lock, for when a holder is stuck or gone.
//! `status` shows this machine's file lock and the engine's lock (holder, since when,
//! whether its lease is being renewed); `release` removes the engine's lock.

use std::time::{Duration, Instant};

use anyhow::Result;

use super::{connect, load_stack, Context};
use crate::cli::{LockAction, LockArgs};
use crate::error::exit;
use crate::output::Mode;

pub async fn run(ctx: &Context, args: &LockArgs) -> Result<i32> {
    let (loaded, printer) = load_stack(ctx)?;
    let engine = connect().await?;
    let (project, stage) = (&loaded.project, &loaded.stage);
    let holder = engine.lock_holder(project, stage).await?;
    match args.action {
        LockAction::Status => {
            let local = crate::lock::local_holder(project, stage);
            // Renewed: the lease counter changes within one lease.
            let renewed = match &holder {
                Some(h) => {
                    let first = engine.lock_lease(&h.id).await?;
                    let wait = Duration::from_millis(h.lease_ms.clamp(1000, 60_000) / 2);
                    let start = Instant::now();
                    let mut changed = false;
                    while start.elapsed() < wait {
                        tokio::time::sleep(Duration::from_millis(250)).await;
                        let now = engine.lock_lease(&h.id).await?;
                        if now != first {
                            changed = true;
                            break;
                        }
                        if now.is_none() {
                            break;
                        }
                    }
                    Some(changed)
                }
                None => None,
            };
            if printer.mode == Mode::Json {
                let value = serde_json::json!({
                    "stage": stage,
                    "engine": engine.address,
                    "local": local,
                    "holder": holder.as_ref().map(|h| serde_json::json!({
                        "host": h.host, "pid": h.pid, "command": h.command,
                        "since": h.since, "lease_ms": h.lease_ms, "renewed": renewed,
                    })),
                });
                printer.data(&value.to_string());
                return Ok(exit::OK);
            }
            let mut out = format!(
                "this machine  {}\n",
                if local {
                    "held by a stackctl here"
                } else {
                    "free"
                }
            );
            match &holder {
                Some(h) => out.push_str(&format!(
                    "engine        held by {} since {} on {}; lease {}s, {}",
                    h.describe(),
                    crate::lock::clock(h.since),
                    engine.address,
                    h.lease_ms / 1000,
                    if renewed == Some(true) {
                        "being renewed"
                    } else {
                        "not renewed lately: its holder may be gone (`stackctl lock release`)"
                    }
                )),
                None => out.push_str(&format!("engine        free on {}", engine.address)),
            }
            printer.data(&out);
            Ok(exit::OK)
        }
        LockAction::Release => {
            match holder {
                Some(h) if engine.remove_lock(&h.id).await? => printer.status(&format!(
                    "released the lock on stage `{stage}` held by {} since {}",
                    h.describe(),
                    crate::lock::clock(h.since)
                )),
                _ => printer.status(&format!(
                    "stage `{stage}` is not locked on {}",
                    engine.address
                )),
            }
            Ok(exit::OK)
        }
    }
}

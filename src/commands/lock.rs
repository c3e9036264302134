//! `stackctl lock status|release`: the stage's lock, for when a holder is stuck or gone.
//! `status` shows this machine's file lock and the engine's lock (holder, since when,
//! whether its lease is being renewed); `release` removes the engine's lock.

use anyhow::Result;

use super::{connect, load_stack, Context};
use crate::cli::{LockAction, LockArgs};
use crate::error::exit;
use crate::output::Mode;

pub async fn run(ctx: &Context, args: &LockArgs) -> Result<i32> {
    let (loaded, printer) = load_stack(ctx)?;
    let engine = connect(ctx, &loaded).await?;
    let (project, stage) = (&loaded.project, &loaded.stage);
    let holder = engine.lock_holder(project, stage).await?;
    match args.action {
        LockAction::Status => {
            let local = crate::lock::local_holder(project, stage);
            // The holder writes `COUNTER UNIX_MS` (its clock) at every renewal.
            let renewed_ms = match &holder {
                Some(h) => engine.lock_lease(&h.id).await?.and_then(|lease| {
                    lease
                        .split_whitespace()
                        .nth(1)
                        .and_then(|ms| ms.parse::<u64>().ok())
                }),
                None => None,
            };
            let now_ms = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_millis() as u64)
                .unwrap_or(0);
            let ago = renewed_ms.map(|ms| now_ms.saturating_sub(ms) / 1000);
            if printer.mode == Mode::Json {
                let value = serde_json::json!({
                    "stage": stage,
                    "engine": engine.address,
                    "local": local,
                    "holder": holder.as_ref().map(|h| serde_json::json!({
                        "host": h.host, "pid": h.pid, "command": h.command,
                        "since": h.since, "lease_ms": h.lease_ms, "renewed_ms": renewed_ms,
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
                    match ago {
                        Some(ago) if ago * 1000 <= h.lease_ms => {
                            format!("renewed {ago}s ago (by its clock)")
                        }
                        Some(ago) => format!(
                            "last renewed {ago}s ago (by its clock): its holder may be gone (`stackctl lock release`)"
                        ),
                        None => "never renewed".to_string(),
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

//! `stackctl logs [SERVICE…] [-f] [-t] [--tail N] [--since T] [--until T]`: the services'
//! output merged into one stream, each line prefixed `service | ` (coloured on a terminal
//! unless `NO_COLOR`), with the engine's timestamp after the prefix with `-t`.

use std::collections::HashMap;
use std::io::Write;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::Result;
use futures_util::stream::{select_all, StreamExt};

use super::{check_services, connect, load_stack, Context};
use crate::cli::LogsArgs;
use crate::engine::containers::LogQuery;
use crate::error::{Interrupted, UsageError};
use crate::output::{log_prefix, Mode};
use crate::stack::model::DurationSpec;

pub async fn run(ctx: &Context, args: &LogsArgs) -> Result<i32> {
    let (loaded, printer) = load_stack(ctx)?;
    if crate::apply::swarm::is_swarm(&loaded) {
        let wanted = check_services(&loaded, &args.services)?;
        return crate::apply::swarm::logs(
            &super::endpoint(ctx, &loaded)?,
            &loaded,
            &printer,
            &wanted,
            args.follow,
            args.tail,
        )
        .await;
    }
    let wanted = check_services(&loaded, &args.services)?;
    let since = args
        .since
        .as_deref()
        .map(|t| parse_time("--since", t))
        .transpose()?;
    let until = args
        .until
        .as_deref()
        .map(|t| parse_time("--until", t))
        .transpose()?;
    let query = LogQuery {
        follow: args.follow,
        tail: args.tail,
        since,
        until,
        timestamps: args.timestamps,
    };
    let engine = connect(ctx, &loaded).await?;
    let observed = engine
        .observe_named(
            &loaded.stage,
            &loaded.project,
            &crate::plan::container::custom_names(&loaded),
        )
        .await?;
    let present: Vec<(String, String)> = wanted
        .iter()
        .flat_map(|service| {
            crate::plan::container::replica_names(&loaded, service)
                .into_iter()
                .filter(|name| observed.container(name).is_some())
                .map(|name| (service.clone(), name))
        })
        .collect();
    if present.is_empty() {
        printer.warn_with_hint(
            &format!("no service of stage `{}` has a container", loaded.stage),
            "`stackctl up` creates them",
        );
        return Ok(0);
    }
    let width = present.iter().map(|(s, _)| s.len()).max().unwrap_or(0);
    let prefixes: HashMap<String, String> = present
        .iter()
        .enumerate()
        .map(|(i, (service, _))| (service.clone(), log_prefix(&printer, service, width, i)))
        .collect();
    let streams = present.iter().map(|(service, container)| {
        let service = service.clone();
        engine
            .log_stream(container, &query)
            .map(move |item| (service.clone(), item))
            .boxed()
    });
    let mut merged = select_all(streams);
    // Output arrives in chunks; keep each service's partial last line until it ends.
    let mut partial: HashMap<String, Vec<u8>> = HashMap::new();
    let mut stdout = std::io::stdout().lock();
    let containers: HashMap<&str, &str> = present
        .iter()
        .map(|(service, container)| (service.as_str(), container.as_str()))
        .collect();
    let json = printer.mode == Mode::Json;
    let write_line = |service: &str, line: &[u8], out: &mut std::io::StdoutLock| {
        let text = printer.mask(&String::from_utf8_lossy(line));
        let text = text.trim_end_matches('\r');
        if json {
            // With `-t` the engine starts each line with its timestamp and a space.
            let (time, text) = match text.split_once(' ') {
                Some((time, rest)) if args.timestamps => (Some(time), rest),
                _ => (None, text),
            };
            let record = LogLine {
                service,
                container: containers.get(service).copied().unwrap_or_default(),
                time,
                line: text,
            };
            if let Ok(record) = serde_json::to_string(&record) {
                let _ = writeln!(out, "{record}");
            }
        } else {
            let _ = writeln!(out, "{}{}", prefixes[service], text);
        }
    };
    loop {
        let item = tokio::select! {
            item = merged.next() => item,
            _ = crate::interrupt::wait() => {
                let _ = stdout.flush();
                return Err(Interrupted.into());
            }
        };
        let Some((service, chunk)) = item else { break };
        let chunk = chunk?;
        let buffer = partial.entry(service.clone()).or_default();
        buffer.extend_from_slice(&chunk);
        while let Some(pos) = buffer.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = buffer.drain(..=pos).collect();
            write_line(&service, &line[..line.len() - 1], &mut stdout);
        }
        let _ = stdout.flush();
    }
    for (service, rest) in partial {
        if !rest.is_empty() {
            write_line(&service, &rest, &mut stdout);
        }
    }
    Ok(0)
}

/// One line of output with `--json`: `{"service","container","line"}`, and `"time"` with
/// `--timestamps`.
#[derive(serde::Serialize)]
struct LogLine<'a> {
    service: &'a str,
    container: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    time: Option<&'a str>,
    line: &'a str,
}

/// `--since` / `--until`: a duration ago (`10m`, `1h30m`), an RFC 3339 date
/// (`2026-11-30T14:05:00Z`, `2026-11-30T15:05:00+01:00`, `2026-11-30`), or a Unix timestamp;
/// as Unix seconds.
fn parse_time(flag: &str, text: &str) -> Result<i32> {
    if let Ok(ts) = text.parse::<i32>() {
        return Ok(ts);
    }
    if let Some(ts) = rfc3339(text) {
        return Ok(ts.clamp(0, i32::MAX as i64) as i32);
    }
    let looks_like_a_date = text.len() >= 10 && text.as_bytes()[4] == b'-';
    let ago = DurationSpec::parse(text).map_err(|e| {
        let message = if looks_like_a_date {
            format!("{flag}: `{text}` is not an RFC 3339 date")
        } else {
            format!("{flag}: {e}")
        };
        UsageError::new(message).with_hint(
            "give a duration like `10m`, an RFC 3339 date like `2026-11-30T14:05:00Z`, or a Unix timestamp",
        )
    })?;
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default();
    Ok(now.saturating_sub(ago.0.as_secs()).min(i32::MAX as u64) as i32)
}

/// An RFC 3339 date-time (`2026-11-30T14:05:00Z`, `…T14:05:00.5+01:00`; `t`, `z` and a
/// space for `T` accepted) or a bare date (midnight UTC), as Unix seconds (fractions cut).
pub fn rfc3339(text: &str) -> Option<i64> {
    let text = text.trim();
    let number = |s: &str| -> Option<i64> {
        (!s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
            .then(|| s.parse().ok())
            .flatten()
    };
    let (date, time) = match text.find(['T', 't', ' ']) {
        Some(at) => (&text[..at], Some(&text[at + 1..])),
        None => (text, None),
    };
    let mut parts = date.split('-');
    let (year, month, day) = (
        number(parts.next()?)?,
        number(parts.next()?)?,
        number(parts.next()?)?,
    );
    if parts.next().is_some() || date.len() != 10 || !(1..=12).contains(&month) {
        return None;
    }
    if day < 1 || day > days_in_month(year, month) {
        return None;
    }
    let mut seconds = days_from_civil(year, month, day) * 86_400;
    let Some(time) = time else {
        return Some(seconds);
    };
    // The offset: `Z`, or `+hh:mm` / `-hh:mm` after the clock.
    let (clock, offset) = if let Some(clock) = time.strip_suffix(['Z', 'z']) {
        (clock, 0)
    } else {
        let at = time.rfind(['+', '-'])?;
        let (clock, zone) = time.split_at(at);
        let sign = if zone.starts_with('-') { -1 } else { 1 };
        let (hours, minutes) = zone[1..].split_once(':')?;
        let (hours, minutes) = (number(hours)?, number(minutes)?);
        if hours > 23 || minutes > 59 || zone.len() != 6 {
            return None;
        }
        (clock, sign * (hours * 3600 + minutes * 60))
    };
    let clock = clock.split_once('.').map_or(clock, |(whole, fraction)| {
        if number(fraction).is_some() {
            whole
        } else {
            ""
        }
    });
    let mut hms = clock.split(':');
    let (hour, minute, second) = (
        number(hms.next()?)?,
        number(hms.next()?)?,
        number(hms.next()?)?,
    );
    if hms.next().is_some() || clock.len() != 8 || hour > 23 || minute > 59 || second > 60 {
        return None;
    }
    seconds += hour * 3600 + minute * 60 + second - offset;
    Some(seconds)
}

fn days_in_month(year: i64, month: i64) -> i64 {
    match month {
        2 if (year % 4 == 0 && year % 100 != 0) || year % 400 == 0 => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days from 1970-01-01 to a date of the proleptic Gregorian calendar.
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let month_index = (month + 9) % 12;
    let day_of_year = (153 * month_index + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn issue12_rfc3339_dates_become_unix_seconds() {
        assert_eq!(rfc3339("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(rfc3339("2026-11-30T14:05:00Z"), Some(1_796_047_500));
        assert_eq!(rfc3339("2026-11-30T15:05:00+01:00"), Some(1_796_047_500));
        assert_eq!(
            rfc3339("2026-11-30t14:05:00.123456789z"),
            Some(1_796_047_500)
        );
        assert_eq!(rfc3339("2026-11-30 09:05:00-05:00"), Some(1_796_047_500));
        assert_eq!(rfc3339("2026-11-30"), Some(1_795_996_800));
        assert_eq!(rfc3339("2024-02-29T00:00:00Z"), Some(1_709_164_800));
        for bad in [
            "2026-11-30T14:05:00",
            "2026-13-01",
            "2026-02-29",
            "2026-11-30T25:00:00Z",
            "2026-11-30T14:05Z",
            "2026-11-30T14:05:00+0100",
            "yesterday",
            "10m",
        ] {
            assert_eq!(rfc3339(bad), None, "{bad}");
        }
    }

    #[test]
    fn issue12_since_takes_a_date_a_duration_or_a_timestamp() {
        assert_eq!(parse_time("--since", "1700000000").unwrap(), 1_700_000_000);
        assert_eq!(
            parse_time("--since", "2026-11-30T14:05:00Z").unwrap(),
            1_796_047_500
        );
        let ago = parse_time("--since", "10m").unwrap() as u64;
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs();
        assert!((now - 601..=now - 599).contains(&ago));
        let err = parse_time("--until", "2026-11-30T14:05").unwrap_err();
        assert!(err.to_string().contains("is not an RFC 3339 date"), "{err}");
    }
}

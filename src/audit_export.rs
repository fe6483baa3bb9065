//! `frontdesk audit export`: the audit log, oldest first, as JSON lines or CSV on standard
//! output, for a SIEM or an archive before a retention purge (docs/deployment.md §7). Also the
//! one serialization of an audit row that the admin page's bounded export uses, so that a file
//! from either reads the same.
//!
//! The log is read forwards in keyset pages of at most [`PAGE_ROWS`] rows (`id > last written`),
//! so memory stays bounded however long the log is, and every read stops at a *horizon*: an id
//! up to which every event that will ever exist is already committed. A one-off export's
//! horizon is the highest id when it starts (one point in time). `--follow` keeps polling, and
//! its horizon is the highest id it saw `settle` seconds before ([`Horizon`]): on PostgreSQL
//! ids are drawn when a row is inserted, not when it commits, and with two group-commit batches
//! in flight (or several instances, or an admin change in its own transaction) a later id can
//! become visible before an earlier one. Reading only up to ids that have had `settle` seconds
//! to commit means no event is skipped unless its transaction stayed open that long after it
//! drew its id (the group commit's take milliseconds), and none is written twice. On SQLite
//! writers are serialised and ids are drawn inside the write transaction, so ids become visible
//! in order and the horizon is simply the highest id seen (no settle delay by default).

use std::collections::VecDeque;
use std::future::Future;
use std::io::Write;
use std::time::{Duration, Instant};

use crate::store::{AuditFilter, AuditLog, AuditRecord, Decision, StoreError};

/// Rows per page read from the store: the bound on what an export holds in memory at once
/// (the store's own cap on one query).
pub const PAGE_ROWS: u32 = 1000;

/// How long `--follow` waits, by default, on PostgreSQL before it trusts that every id below
/// one it saw has committed or never will (see the module documentation). Generous against a
/// group commit's milliseconds; the cost is that the feed runs this far behind.
pub const POSTGRES_SETTLE: Duration = Duration::from_secs(10);

/// The CSV header line; the columns of [`csv_line`], in order.
pub const CSV_HEADER: &str = "id,occurred_at,request_id,event,decision,reason,error_code,client_id,grant_type,subject_issuer,subject,audience,resources,scopes_requested,scopes_granted,issued_jti,issued_expires_at,detail\r\n";

/// Output format of an export.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Format {
    /// One JSON object per line (the admin API's event object, with its `id`).
    #[default]
    Jsonl,
    /// RFC 4180 CSV with a header line, cells defused against spreadsheet formulas.
    Csv,
}

impl Format {
    /// Appends one row in this format (with its line end) to `out`.
    pub fn line(self, record: &AuditRecord, out: &mut String) {
        match self {
            Format::Jsonl => json_line(record, out),
            Format::Csv => csv_line(record, out),
        }
    }

    /// What precedes the rows: the CSV header, nothing for JSON lines.
    pub fn header(self) -> &'static str {
        match self {
            Format::Jsonl => "",
            Format::Csv => CSV_HEADER,
        }
    }
}

/// Appends `record` as one JSON line. An event holds no secret (`store::audit`), and every
/// field of it is written, so what an auditor reads is what was recorded.
pub fn json_line(record: &AuditRecord, out: &mut String) {
    out.push_str(&serde_json::to_string(record).unwrap_or_default());
    out.push('\n');
}

/// One CSV cell: quoted when needed, and prefixed with `'` when a spreadsheet would take it
/// for a formula (CSV injection: a client chooses some of these values).
fn cell(text: &str) -> String {
    let text = if text.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        format!("'{text}")
    } else {
        text.to_string()
    };
    if text.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", text.replace('"', "\"\""))
    } else {
        text
    }
}

/// Appends `record` as one CSV line (columns as [`CSV_HEADER`]; lists space-separated).
pub fn csv_line(record: &AuditRecord, out: &mut String) {
    let event = &record.event;
    let optional = |value: &Option<String>| cell(value.as_deref().unwrap_or(""));
    let cells = [
        record.id.to_string(),
        event.occurred_at.to_string(),
        optional(&event.request_id),
        cell(&event.event),
        event.decision.as_str().to_string(),
        optional(&event.reason),
        optional(&event.error_code),
        optional(&event.client_id),
        optional(&event.grant_type),
        optional(&event.subject_issuer),
        optional(&event.subject),
        optional(&event.audience),
        cell(&event.resources.join(" ")),
        cell(&event.scopes_requested.join(" ")),
        cell(&event.scopes_granted.join(" ")),
        optional(&event.issued_jti),
        event
            .issued_expires_at
            .map(|at| at.to_string())
            .unwrap_or_default(),
        cell(
            &event
                .detail
                .as_ref()
                .map(|detail| detail.to_string())
                .unwrap_or_default(),
        ),
    ];
    out.push_str(&cells.join(","));
    out.push_str("\r\n");
}

/// `--since`/`--until`: RFC 3339 (`2026-01-31T00:00:00Z`, any offset) or unix seconds, so that
/// a script can pass either what a person writes or what `date +%s` prints.
pub fn parse_time(text: &str) -> Result<i64, String> {
    let text = text.trim();
    if let Ok(seconds) = text.parse::<i64>() {
        return Ok(seconds);
    }
    chrono::DateTime::parse_from_rfc3339(text)
        .map(|time| time.timestamp())
        .map_err(|_| {
            format!(
                "`{text}` is not a time: use RFC 3339 (e.g. 2026-01-31T00:00:00Z) or unix seconds"
            )
        })
}

/// `--decision`: the stored names, as the admin page's filter takes them.
pub fn parse_decision(text: &str) -> Result<Decision, String> {
    match text.trim() {
        "issued" => Ok(Decision::Issued),
        "denied" => Ok(Decision::Denied),
        "changed" => Ok(Decision::Changed),
        other => Err(format!(
            "`{other}` is not a decision: use issued, denied or changed"
        )),
    }
}

/// How `--follow` polls.
#[derive(Debug, Clone, Copy)]
pub struct Follow {
    /// Time between two polls for new events.
    pub poll_interval: Duration,
    /// How long an id must have been visible before every smaller id is trusted to be committed
    /// or never to be ([`Horizon`]).
    pub settle: Duration,
}

/// The ids `--follow` may read up to: the highest id observed at least `settle` ago. Every id
/// below one that was visible then was drawn before then, so its transaction has had `settle`
/// to commit. Holds one observation per poll within the last `settle`, no more.
#[derive(Debug)]
pub struct Horizon {
    settle: Duration,
    observed: VecDeque<(Instant, i64)>,
    reached: i64,
}

impl Horizon {
    /// A horizon below every id.
    pub fn new(settle: Duration) -> Horizon {
        Horizon {
            settle,
            observed: VecDeque::new(),
            reached: i64::MIN,
        }
    }

    /// Records that `latest` was the highest visible id `at` this moment, and returns the id up
    /// to which reading is now safe. Never goes back, even if the newest events were deleted.
    pub fn observe(&mut self, at: Instant, latest: i64) -> i64 {
        self.observed.push_back((at, latest));
        while let Some(&(seen, id)) = self.observed.front() {
            if at.saturating_duration_since(seen) < self.settle {
                break;
            }
            self.reached = self.reached.max(id);
            self.observed.pop_front();
        }
        self.reached
    }
}

/// Resolves when standard output is a pipe whose reader has gone, so that an idle follower
/// (no new events to write, hence no `EPIPE` to notice) ends with its shipper instead of
/// lingering. Never resolves for a file or a terminal, or where this cannot be watched.
#[cfg(unix)]
pub async fn stdout_reader_gone() {
    use std::os::fd::AsFd;
    use std::os::unix::fs::FileTypeExt;
    use tokio::io::Interest;
    // A copy of the descriptor, watched for the error a pipe's write end reports once no reader
    // is left. Left blocking (the export writes through the original) and never written to.
    let pipe = std::io::stdout()
        .as_fd()
        .try_clone_to_owned()
        .map(std::fs::File::from)
        .ok()
        .filter(|file| file.metadata().is_ok_and(|meta| meta.file_type().is_fifo()))
        .and_then(|file| tokio::net::unix::pipe::Sender::from_file_unchecked(file).ok());
    let Some(pipe) = pipe else {
        return std::future::pending().await;
    };
    loop {
        match pipe.ready(Interest::ERROR).await {
            Ok(ready) if ready.is_error() || ready.is_write_closed() => return,
            Ok(_) => tokio::task::yield_now().await,
            Err(_) => return std::future::pending().await,
        }
    }
}

/// Never resolves where standard output cannot be watched; a write still notices the reader
/// has gone.
#[cfg(not(unix))]
pub async fn stdout_reader_gone() {
    std::future::pending().await
}

/// Why an export failed.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    /// Reading the log failed (database unreachable, not migrated, …).
    #[error("cannot read the audit log: {0}")]
    Store(#[from] StoreError),
    /// Standard output failed other than by its reader going away.
    #[error("cannot write the export: {0}")]
    Write(std::io::Error),
}

/// How an export that did not fail ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ended {
    /// Every matching event up to the horizon was written (a one-off export).
    Complete,
    /// The reader closed its end (`--follow | shipper` and the shipper stopped): not an error.
    ReaderGone,
    /// `stop` resolved (SIGINT or SIGTERM while following).
    Stopped,
}

/// A write error that only says the reader has gone becomes [`Ended::ReaderGone`].
fn written(result: std::io::Result<()>) -> Result<Option<Ended>, ExportError> {
    match result {
        Ok(()) => Ok(None),
        Err(error) if error.kind() == std::io::ErrorKind::BrokenPipe => Ok(Some(Ended::ReaderGone)),
        Err(error) => Err(ExportError::Write(error)),
    }
}

/// Writes every event matching `filter` (its `before_id`, `after_id`, order and limit are
/// ignored) to `out` in `format`, oldest first, reading pages of `page_rows` (at most 1000).
/// With `follow`, keeps polling for new events until `stop` resolves or the reader goes away;
/// without it, `stop` is not listened to and the export ends at the highest id it saw at start.
pub async fn export<S: AuditLog, W: Write>(
    store: &S,
    filter: &AuditFilter,
    format: Format,
    follow: Option<Follow>,
    page_rows: u32,
    out: &mut W,
    stop: impl Future<Output = ()>,
) -> Result<Ended, ExportError> {
    let mut reader = Reader {
        store,
        filter: AuditFilter {
            oldest_first: true,
            limit: Some(page_rows.clamp(1, PAGE_ROWS)),
            before_id: None,
            after_id: None,
            ..filter.clone()
        },
        format,
        after: i64::MIN,
        line: String::new(),
    };
    if let Some(ended) = written(out.write_all(format.header().as_bytes()))? {
        return Ok(ended);
    }
    let ended = match follow {
        None => {
            let latest = store.latest_event_id().await?;
            match latest {
                Some(latest) => reader.write_up_to(latest, out).await?,
                None => None,
            }
            .unwrap_or(Ended::Complete)
        }
        Some(follow) => {
            tokio::select! {
                ended = reader.follow(follow, out) => ended?,
                () = stop => Ended::Stopped,
            }
        }
    };
    if ended == Ended::ReaderGone {
        return Ok(ended);
    }
    Ok(written(out.flush())?.unwrap_or(ended))
}

/// Reads forwards from the last id written.
struct Reader<'a, S> {
    store: &'a S,
    filter: AuditFilter,
    format: Format,
    /// Every matching event with an id up to this one has been written.
    after: i64,
    line: String,
}

impl<S: AuditLog> Reader<'_, S> {
    /// Writes the matching events with ids in (`after`, `horizon`], a page at a time, and moves
    /// `after` to `horizon`. `Some` when the reader went away.
    async fn write_up_to<W: Write>(
        &mut self,
        horizon: i64,
        out: &mut W,
    ) -> Result<Option<Ended>, ExportError> {
        if horizon <= self.after {
            return Ok(None);
        }
        self.filter.before_id = horizon.checked_add(1);
        let page_rows = self.filter.limit.map_or(1, |rows| rows as usize);
        loop {
            self.filter.after_id = Some(self.after);
            let page = self.store.audit_events(&self.filter).await?;
            for record in &page {
                self.line.clear();
                self.format.line(record, &mut self.line);
                if let Some(ended) = written(out.write_all(self.line.as_bytes()))? {
                    return Ok(Some(ended));
                }
            }
            match page.last() {
                Some(last) if page.len() >= page_rows => self.after = last.id,
                _ => break,
            }
        }
        self.after = horizon;
        Ok(None)
    }

    /// Polls until the reader goes away (or fails); the caller stops it on a signal.
    async fn follow<W: Write>(
        &mut self,
        follow: Follow,
        out: &mut W,
    ) -> Result<Ended, ExportError> {
        let mut horizon = Horizon::new(follow.settle);
        loop {
            let latest = self.store.latest_event_id().await?.unwrap_or(i64::MIN);
            let safe = horizon.observe(Instant::now(), latest);
            if let Some(ended) = self.write_up_to(safe, out).await? {
                return Ok(ended);
            }
            // Each poll's lines reach the shipper now, not when a buffer fills.
            if let Some(ended) = written(out.flush())? {
                return Ok(ended);
            }
            tokio::time::sleep(follow.poll_interval).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_cells_are_quoted_and_defused() {
        assert_eq!(cell("plain"), "plain");
        assert_eq!(cell("a,b"), "\"a,b\"");
        assert_eq!(cell("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(cell("=cmd()"), "'=cmd()");
    }

    #[test]
    fn times_are_rfc3339_or_unix_seconds() {
        assert_eq!(parse_time("1700000000"), Ok(1_700_000_000));
        assert_eq!(parse_time("2023-11-14T22:13:20Z"), Ok(1_700_000_000));
        assert_eq!(parse_time("2023-11-15T00:13:20+02:00"), Ok(1_700_000_000));
        assert!(parse_time("yesterday").is_err());
        assert!(parse_time("2023-11-14").is_err());
        assert_eq!(parse_decision("denied"), Ok(Decision::Denied));
        assert!(parse_decision("deny").is_err());
    }

    /// Without a settle delay (SQLite) the horizon is the latest id; with one, an id counts
    /// only once it was seen `settle` ago, and the horizon never goes back.
    #[test]
    fn the_horizon_trails_the_latest_id_by_the_settle_delay() {
        let start = Instant::now();
        let at = |secs: u64| start + Duration::from_secs(secs);
        let mut immediate = Horizon::new(Duration::ZERO);
        assert_eq!(immediate.observe(at(0), 5), 5);
        assert_eq!(immediate.observe(at(1), 9), 9);
        assert_eq!(immediate.observe(at(2), 3), 9, "never back");

        let mut settled = Horizon::new(Duration::from_secs(10));
        assert_eq!(
            settled.observe(at(0), 5),
            i64::MIN,
            "nothing has settled yet"
        );
        assert_eq!(settled.observe(at(4), 8), i64::MIN);
        assert_eq!(settled.observe(at(10), 12), 5, "5 was seen 10 s ago");
        assert_eq!(settled.observe(at(13), 12), 5, "8 was seen only 9 s ago");
        assert_eq!(settled.observe(at(14), 12), 8);
        assert_eq!(settled.observe(at(30), 12), 12);
        assert!(settled.observed.len() <= 1, "old observations are dropped");
    }
}

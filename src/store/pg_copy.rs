//! PostgreSQL's group commit appends a large batch of audit events with `COPY … FROM STDIN` in
//! the binary format instead of a multi-row `INSERT … VALUES`. The database then reads each row
//! as typed fields and appends the batch's rows page by page (one WAL record for several rows),
//! where a `VALUES` list makes it bind a parameter and evaluate an expression per cell; it costs
//! one more round trip per batch (the server's `CopyInResponse` before the data), which is why
//! small batches keep the `INSERT` (`pg_batch::COPY_FROM`; docs/performance.md, sixteenth run).
//!
//! The format (PostgreSQL manual, `COPY`, "Binary Format"): a fixed signature, a flags word and
//! a header-extension length; per row the number of fields, then each field as a 32-bit
//! length (−1 for NULL) and its bytes in the type's binary form — for `BIGINT` 8 bytes
//! big-endian, for `TEXT` its UTF-8 text; a 16-bit −1 ends the data. The statement names its
//! columns, so the rows need no other description.

use sqlx::postgres::PgConnection;

use super::audit::{event_column_list, storable};
use super::{AuditDetail, AuditEvent, StoreError};

/// Appends the events of a batch, in their order, as one `COPY` statement (atomic on its own;
/// inside a transaction, part of it). Nothing for an empty batch.
pub(super) async fn copy_events(
    connection: &mut PgConnection,
    events: &[AuditEvent],
) -> Result<(), StoreError> {
    if events.is_empty() {
        return Ok(());
    }
    let rows = event_rows(events)?;
    let mut copy = connection
        .copy_in_raw(COPY_EVENTS)
        .await
        .map_err(StoreError::classify)?;
    // A database error (a constraint, a trigger) ends the COPY cleanly: `finish` reads the
    // server's error and its ReadyForQuery, and the connection is as good as before. An I/O
    // error leaves a broken socket, which sqlx's check of a connection returned to the pool
    // finds, closing it; the store never keeps a connection whose batch failed. What must not
    // happen is this future being dropped half-way (sqlx does not count the replies it then
    // still owes): only spawned tasks copy — the group commit's commits and
    // `AuditLog::record_batch`'s — and nothing cancels those while the server runs.
    copy.send(rows).await.map_err(StoreError::classify)?;
    copy.finish().await.map_err(StoreError::classify)?;
    Ok(())
}

/// The statement; the columns in the order [`event_rows`] writes each row's fields.
const COPY_EVENTS: &str = concat!(
    "COPY audit_events (",
    event_column_list!(),
    ") FROM STDIN (FORMAT binary)"
);

/// How many fields each row has (the columns of [`COPY_EVENTS`]).
const EVENT_FIELDS: i16 = 17;

/// The signature `PGCOPY\n\xff\r\n\0`, then a flags word (no OIDs) and a header extension of
/// no bytes.
const HEADER: &[u8; 19] = b"PGCOPY\n\xff\r\n\0\0\0\0\0\0\0\0\0";

/// The 16-bit field count that ends the rows.
const TRAILER: i16 = -1;

/// The batch in COPY's binary format, ready to send.
fn event_rows(events: &[AuditEvent]) -> Result<Vec<u8>, StoreError> {
    // About 400 bytes for a token exchange's event; growing once or twice is cheap.
    let mut rows = CopyRows::new(events.len() * 512);
    for event in events {
        rows.row(EVENT_FIELDS);
        rows.bigint(Some(event.occurred_at));
        rows.text(event.request_id.as_deref())?;
        rows.text(Some(&event.event))?;
        rows.text(Some(event.decision.as_str()))?;
        rows.text(event.reason.as_deref())?;
        rows.text(event.error_code.as_deref())?;
        rows.text(event.client_id.as_deref())?;
        rows.text(event.grant_type.as_deref())?;
        rows.text(event.subject_issuer.as_deref())?;
        rows.text(event.subject.as_deref())?;
        rows.text(event.audience.as_deref())?;
        rows.list(&event.resources)?;
        rows.list(&event.scopes_requested)?;
        rows.list(&event.scopes_granted)?;
        rows.text(event.issued_jti.as_deref())?;
        rows.bigint(event.issued_expires_at);
        rows.text(event.detail.as_ref().map(AuditDetail::as_str))?;
    }
    Ok(rows.finish())
}

/// A growing COPY payload. Each field is written straight into it: a list is serialised in
/// place, not into a string of its own first.
struct CopyRows {
    bytes: Vec<u8>,
}

impl CopyRows {
    fn new(capacity: usize) -> CopyRows {
        let mut bytes = Vec::with_capacity(HEADER.len() + capacity + 2);
        bytes.extend_from_slice(HEADER);
        CopyRows { bytes }
    }

    fn row(&mut self, fields: i16) {
        self.bytes.extend_from_slice(&fields.to_be_bytes());
    }

    fn null(&mut self) {
        self.bytes.extend_from_slice(&(-1_i32).to_be_bytes());
    }

    fn bigint(&mut self, value: Option<i64>) {
        match value {
            Some(value) => {
                self.bytes.extend_from_slice(&8_i32.to_be_bytes());
                self.bytes.extend_from_slice(&value.to_be_bytes());
            }
            None => self.null(),
        }
    }

    /// Text in its stored form (`storable`: PostgreSQL's `TEXT` cannot hold a NUL).
    fn text(&mut self, value: Option<&str>) -> Result<(), StoreError> {
        let Some(value) = value else {
            self.null();
            return Ok(());
        };
        let value = storable(value);
        self.bytes
            .extend_from_slice(&field_length(value.len())?.to_be_bytes());
        self.bytes.extend_from_slice(value.as_bytes());
        Ok(())
    }

    /// A list as the audit log stores it: a JSON array of strings, NULL when empty (`join`).
    fn list(&mut self, items: &[String]) -> Result<(), StoreError> {
        if items.is_empty() {
            self.null();
            return Ok(());
        }
        // Serialised in place behind a length written afterwards (JSON escapes a NUL, so none
        // reaches the column).
        let start = self.bytes.len();
        self.bytes.extend_from_slice(&0_i32.to_be_bytes());
        serde_json::to_writer(&mut self.bytes, items)
            .map_err(|error| encoding_error(error.to_string()))?;
        let length = field_length(self.bytes.len() - start - 4)?;
        self.bytes[start..start + 4].copy_from_slice(&length.to_be_bytes());
        Ok(())
    }

    fn finish(mut self) -> Vec<u8> {
        self.bytes.extend_from_slice(&TRAILER.to_be_bytes());
        self.bytes
    }
}

/// A field's length as the format's signed 32-bit count. No audit value comes near 2 GiB (request
/// bodies are limited far below); one that did would fail its batch, not be cut short.
fn field_length(length: usize) -> Result<i32, StoreError> {
    i32::try_from(length).map_err(|_| encoding_error("an audit value longer than 2 GiB".into()))
}

fn encoding_error(message: String) -> StoreError {
    StoreError::Database(sqlx::Error::Encode(message.into()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Decision;

    /// The bytes of one sparse row follow the manual's layout field by field: the header, a
    /// field count of 17, NULLs as a length of −1, a BIGINT as 8 big-endian bytes, text as its
    /// UTF-8 bytes with NUL stored as U+FFFD, and the −1 trailer.
    #[test]
    fn a_row_is_laid_out_as_the_binary_format_says() {
        let mut event = AuditEvent::new(0x0102_0304_0506_0708, "e", Decision::Denied);
        event.reason = Some("a\0".into());
        event.scopes_granted = vec!["r".into()];
        let bytes = event_rows(&[event]).expect("encodes");

        let mut expected = b"PGCOPY\n\xff\r\n\0".to_vec();
        expected.extend_from_slice(&[0, 0, 0, 0, 0, 0, 0, 0]);
        expected.extend_from_slice(&[0, 17]);
        expected.extend_from_slice(&[0, 0, 0, 8, 1, 2, 3, 4, 5, 6, 7, 8]);
        let null = [0xff, 0xff, 0xff, 0xff];
        expected.extend_from_slice(&null); // request_id
        expected.extend_from_slice(&[0, 0, 0, 1, b'e']);
        expected.extend_from_slice(&[0, 0, 0, 6]);
        expected.extend_from_slice(b"denied");
        expected.extend_from_slice(&[0, 0, 0, 4, b'a', 0xef, 0xbf, 0xbd]); // "a\u{FFFD}"
        for _ in 0..8 {
            // error_code … scopes_requested
            expected.extend_from_slice(&null);
        }
        expected.extend_from_slice(&[0, 0, 0, 5]);
        expected.extend_from_slice(br#"["r"]"#);
        expected.extend_from_slice(&null); // issued_jti
        expected.extend_from_slice(&null); // issued_expires_at
        expected.extend_from_slice(&null); // detail
        expected.extend_from_slice(&[0xff, 0xff]);
        assert_eq!(bytes, expected);
    }

    /// The statement names as many columns as each row has fields.
    #[test]
    fn the_statement_names_one_column_per_field() {
        let list = COPY_EVENTS
            .split_once('(')
            .and_then(|(_, rest)| rest.split_once(')'))
            .map(|(columns, _)| columns)
            .expect("a column list");
        assert_eq!(
            list.split(',').count(),
            usize::from(EVENT_FIELDS.unsigned_abs())
        );
    }
}

//! Token Status List (draft-ietf-oauth-status-list) for the access tokens frontdesk issues.
//!
//! Why: a resource server (an MCP server, say) that verifies frontdesk's access tokens locally
//! never calls `/introspect`, so a revocation — of one token, of a user's tokens (the kill
//! switch), of a deleted client's — would not reach it before `exp`. With `tokens.status_list`
//! on, every access token carries `status.status_list` = {`idx`, `uri`}, and the list at `uri` is
//! a signed `statuslist+jwt` with one bit per token (1 = revoked, the draft's INVALID), which a
//! resource server fetches once per `ttl` and reads offline.
//!
//! Indexes are global (`issued_tokens.status_index`): list `n` holds indexes
//! `n·2^20 .. (n+1)·2^20`, 128 KiB of bits before compression. Each instance reserves blocks of
//! [`BLOCK`] indexes (one database write per block) and hands them out in a random order within
//! the block, so neighbouring indexes do not tell a token's issuance order or volume to whoever
//! sees two tokens (the draft's privacy considerations). The list is derived from `revoked_at`
//! when it is fetched, so every way of revoking reaches it with no extra write.

use std::io::Write;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Value, json};

use crate::store::{Store, StoreError, TokenStore};

/// Entries (tokens) per list: 2^20, so a list is 128 KiB of bits before compression.
pub const LIST_ENTRIES: i64 = 1 << 20;
/// Indexes an instance reserves at a time. Divides [`LIST_ENTRIES`], so a block never straddles
/// two lists.
pub const BLOCK: i64 = 1024;
/// The JWT `typ` of a status list token (draft §5.1).
pub const TYP_STATUS_LIST: &str = "statuslist+jwt";
/// Its media type (draft §14).
pub const MEDIA_TYPE: &str = "application/statuslist+jwt";
/// How long past its `iat` a list token may still be used when a fresh one cannot be fetched.
pub const LIST_TOKEN_LIFETIME_SECS: i64 = 3_600;

/// How long a signed list is served again while its revoked set has not changed.
pub const REUSE_SECS: i64 = 10;

/// The last signed token of each list, reused while the list's revoked indexes are the same and
/// the token is younger than [`REUSE_SECS`]. The endpoint is public, and the bit array, its
/// compression and the signature are costly: a burst of fetches (every resource server of a
/// fleet at the top of its `ttl`, or someone hammering it) costs one build. The lock is held
/// while building, so concurrent fetches wait for one build instead of each making one.
///
/// The revoked-index query is not free either: after a mass revocation (a kill switch, a busy
/// client deleted) it returns up to a whole list's indexes. So fetches of one list query one at
/// a time, and one that waited for its turn takes the answer of a query that began after it
/// arrived, if one did ([`ListTokens::fetch`]): a flood of fetches costs one query at a time
/// per list, however many wait, and a revocation is still never served stale.
///
/// It also keeps the aggregation's answer (the lists holding an unexpired token) for
/// [`REUSE_SECS`]: that query reads every unexpired token's row, so on a busy deployment it is
/// the costly part of a public endpoint, and a list new for a few seconds is not yet worth
/// prefetching anyway (a token names its own list).
#[derive(Debug, Default)]
pub struct ListTokens {
    built: tokio::sync::Mutex<std::collections::HashMap<i64, Built>>,
    live: tokio::sync::Mutex<Option<(i64, std::sync::Arc<[i64]>)>>,
    /// Revoked-index queries begun so far: the number of the next one.
    queries: std::sync::atomic::AtomicU64,
    /// Per list, the turn its fetches take to query (at most one per list that exists).
    turns: std::sync::Mutex<std::collections::HashMap<i64, std::sync::Arc<tokio::sync::Mutex<()>>>>,
}

#[derive(Debug)]
struct Built {
    revoked: Vec<i64>,
    iat: i64,
    token: std::sync::Arc<str>,
    /// The number of the latest query whose answer this token matches.
    query: u64,
}

impl ListTokens {
    /// The token of `list` at `now`, its revoked indexes read by `query` (any order) and signed
    /// by `build` (given them sorted) unless a kept token fits. A query that began after this
    /// fetch arrived saw every revocation committed before it, so its answer is reused instead
    /// of asking again; any earlier one is not.
    pub async fn fetch<E, F>(
        &self,
        list: i64,
        now: i64,
        query: impl FnOnce() -> F,
        build: impl FnOnce(&[i64]) -> Result<String, E>,
    ) -> Result<std::sync::Arc<str>, E>
    where
        F: Future<Output = Result<Vec<i64>, E>>,
    {
        use std::sync::atomic::Ordering::SeqCst;
        let arrived = self.queries.load(SeqCst);
        let turn = {
            let mut turns = match self.turns.lock() {
                Ok(guard) => guard,
                Err(poisoned) => poisoned.into_inner(),
            };
            turns.entry(list).or_default().clone()
        };
        let _turn = turn.lock().await;
        if let Some(kept) = self.built.lock().await.get(&list)
            && kept.query >= arrived
            && (0..REUSE_SECS).contains(&(now - kept.iat))
        {
            return Ok(kept.token.clone());
        }
        let number = self.queries.fetch_add(1, SeqCst);
        let revoked = query().await?;
        self.get_or_build(list, revoked, now, number, build).await
    }

    /// The token of `list` for the revoked indexes `revoked` (any order), answer of query
    /// `query`, at `now`: the kept one if it still fits, else `build(&revoked_sorted)`, kept for
    /// next time.
    async fn get_or_build<E>(
        &self,
        list: i64,
        mut revoked: Vec<i64>,
        now: i64,
        query: u64,
        build: impl FnOnce(&[i64]) -> Result<String, E>,
    ) -> Result<std::sync::Arc<str>, E> {
        revoked.sort_unstable();
        let mut built = self.built.lock().await;
        if let Some(kept) = built.get_mut(&list)
            && kept.revoked == revoked
            && (0..REUSE_SECS).contains(&(now - kept.iat))
        {
            kept.query = kept.query.max(query);
            return Ok(kept.token.clone());
        }
        let token: std::sync::Arc<str> = build(&revoked)?.into();
        built.insert(
            list,
            Built {
                revoked,
                iat: now,
                token: token.clone(),
                query,
            },
        );
        Ok(token)
    }

    /// The lists holding an unexpired token at `now`: the kept answer if younger than
    /// [`REUSE_SECS`], else `query()`'s, kept for next time.
    pub async fn live_lists<E, F>(
        &self,
        now: i64,
        query: impl FnOnce() -> F,
    ) -> Result<std::sync::Arc<[i64]>, E>
    where
        F: Future<Output = Result<Vec<i64>, E>>,
    {
        let mut live = self.live.lock().await;
        if let Some((at, lists)) = live.as_ref()
            && (0..REUSE_SECS).contains(&(now - at))
        {
            return Ok(lists.clone());
        }
        let lists: std::sync::Arc<[i64]> = query().await?.into();
        *live = Some((now, lists.clone()));
        Ok(lists)
    }
}

/// This instance's reserved indexes not yet given out, in random order.
#[derive(Debug, Default)]
pub struct StatusIndexes {
    reserved: tokio::sync::Mutex<Vec<i64>>,
}

impl StatusIndexes {
    /// An index no other token has or will have.
    pub async fn next(&self, store: &Store) -> Result<i64, StoreError> {
        let mut reserved = self.reserved.lock().await;
        if let Some(index) = reserved.pop() {
            return Ok(index);
        }
        let first = store.reserve_status_indexes(BLOCK).await?;
        let mut block: Vec<i64> = (first..first + BLOCK).collect();
        shuffle(&mut block);
        let index = block.pop().unwrap_or(first);
        *reserved = block;
        Ok(index)
    }
}

/// Fisher–Yates with the system's secure random source; on its (theoretical) failure the
/// block stays in order, which costs privacy, not correctness.
fn shuffle(items: &mut [i64]) {
    use aws_lc_rs::rand::SecureRandom;
    let mut random = vec![0u8; items.len() * 4];
    if aws_lc_rs::rand::SystemRandom::new()
        .fill(&mut random)
        .is_err()
    {
        return;
    }
    for i in (1..items.len()).rev() {
        let bytes = [
            random[i * 4],
            random[i * 4 + 1],
            random[i * 4 + 2],
            random[i * 4 + 3],
        ];
        let j = (u32::from_le_bytes(bytes) as usize) % (i + 1);
        items.swap(i, j);
    }
}

/// The URI of list `list` under `issuer` (its `sub`, and the `uri` tokens point at).
pub fn list_uri(issuer: &str, list: i64) -> String {
    format!("{}/status-lists/{list}", issuer.trim_end_matches('/'))
}

/// The `status` claim of the token with global index `index` (draft §6.1).
pub fn status_claim(issuer: &str, index: i64) -> Value {
    json!({ "status_list": {
        "idx": index % LIST_ENTRIES,
        "uri": list_uri(issuer, index / LIST_ENTRIES),
    } })
}

/// The `status_list` member of list `list` (draft §4.1): one bit per entry, set for each of
/// `revoked` (global indexes) that falls in the list, least significant bit first, ZLIB at the
/// best compression, base64url.
pub fn encode(list: i64, revoked: &[i64]) -> std::io::Result<Value> {
    let start = list * LIST_ENTRIES;
    let mut bits = vec![0u8; (LIST_ENTRIES / 8) as usize];
    for &index in revoked {
        let Some(offset) = index
            .checked_sub(start)
            .filter(|offset| (0..LIST_ENTRIES).contains(offset))
        else {
            continue;
        };
        bits[(offset / 8) as usize] |= 1 << (offset % 8);
    }
    let mut encoder = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::best());
    encoder.write_all(&bits)?;
    let compressed = encoder.finish()?;
    Ok(json!({ "bits": 1, "lst": URL_SAFE_NO_PAD.encode(compressed) }))
}

/// The claims of the status list token for list `list` (draft §5.1).
pub fn list_token_claims(
    issuer: &str,
    list: i64,
    revoked: &[i64],
    now: i64,
    ttl: u64,
) -> std::io::Result<Value> {
    Ok(json!({
        "iss": issuer,
        "sub": list_uri(issuer, list),
        "iat": now,
        "exp": now + LIST_TOKEN_LIFETIME_SECS,
        "ttl": ttl,
        "status_list": encode(list, revoked)?,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    fn decode(status_list: &Value) -> Vec<u8> {
        let lst = status_list["lst"].as_str().expect("lst");
        let compressed = URL_SAFE_NO_PAD.decode(lst).expect("base64url");
        let mut bits = Vec::new();
        flate2::read::ZlibDecoder::new(compressed.as_slice())
            .read_to_end(&mut bits)
            .expect("zlib");
        bits
    }

    #[test]
    fn the_drafts_one_bit_example_decodes_to_its_statuses() {
        // draft §4.1: statuses 1,0,0,1,1,1,0,1 and 1,1,0,0,0,1,0,1 are bytes 0xB9 0xA3.
        let bits = decode(&json!({ "bits": 1, "lst": "eNrbuRgAAhcBXQ" }));
        assert_eq!(bits, vec![0xB9, 0xA3]);
        // The same statuses, encoded here, give the same bytes.
        let revoked: Vec<i64> = [0, 3, 4, 5, 7, 8, 9, 13, 15].to_vec();
        let ours = decode(&encode(0, &revoked).expect("encode"));
        assert_eq!(&ours[..2], &[0xB9, 0xA3]);
        assert!(ours[2..].iter().all(|byte| *byte == 0));
        assert_eq!(ours.len() as i64, LIST_ENTRIES / 8);
    }

    #[test]
    fn each_list_holds_only_its_own_indexes() {
        let revoked = [5, LIST_ENTRIES + 2, 2 * LIST_ENTRIES - 1];
        let second = decode(&encode(1, &revoked).expect("encode"));
        assert_eq!(second[0], 0b100);
        assert_eq!(second[second.len() - 1], 0b1000_0000);
        assert_eq!(second.iter().map(|b| b.count_ones()).sum::<u32>(), 2);
    }

    #[test]
    fn the_claim_points_at_the_list_and_position_of_a_global_index() {
        let claim = status_claim("https://sts.example/t/", LIST_ENTRIES + 7);
        assert_eq!(claim["status_list"]["idx"], 7);
        assert_eq!(
            claim["status_list"]["uri"],
            "https://sts.example/t/status-lists/1"
        );
    }

    #[tokio::test]
    async fn a_list_token_is_reused_only_while_its_revocations_and_age_allow() {
        let tokens = ListTokens::default();
        let builds = std::cell::Cell::new(0);
        let build = |revoked: &[i64]| {
            builds.set(builds.get() + 1);
            Ok::<_, ()>(format!("{revoked:?}#{}", builds.get()))
        };
        let first = tokens.get_or_build(0, vec![9, 2], 100, 0, build).await;
        assert_eq!(first.as_deref(), Ok("[2, 9]#1"));
        // The same set in another order, a few seconds later: the same token.
        let again = tokens.get_or_build(0, vec![2, 9], 105, 1, build).await;
        assert_eq!(again.as_deref(), Ok("[2, 9]#1"));
        // A new revocation: built anew at once.
        let changed = tokens.get_or_build(0, vec![2, 9, 4], 106, 2, build).await;
        assert_eq!(changed.as_deref(), Ok("[2, 4, 9]#2"));
        // Too old: built anew; another list has its own.
        let old = tokens
            .get_or_build(0, vec![2, 9, 4], 106 + REUSE_SECS, 3, build)
            .await;
        assert_eq!(old.as_deref(), Ok("[2, 4, 9]#3"));
        let other = tokens.get_or_build(1, vec![], 116, 4, build).await;
        assert_eq!(other.as_deref(), Ok("[]#4"));
    }

    /// A flood of fetches of one list: those that arrive while a query runs wait for their turn,
    /// then share one new query (the running one may predate a revocation they must see);
    /// a fetch after them queries again.
    #[tokio::test]
    async fn fetches_waiting_for_a_running_query_share_the_next_one() {
        use std::pin::Pin;
        use std::task::{Context, Poll};
        let tokens = ListTokens::default();
        let queries = std::cell::Cell::new(0);
        let counted = || {
            queries.set(queries.get() + 1);
            std::future::ready(Ok::<_, ()>(vec![7]))
        };
        let build = |revoked: &[i64]| Ok::<_, ()>(format!("{revoked:?}"));
        let mut cx = Context::from_waker(std::task::Waker::noop());

        let (release, released) = tokio::sync::oneshot::channel::<()>();
        let mut running = Box::pin(tokens.fetch(
            0,
            100,
            || async {
                queries.set(queries.get() + 1);
                let _ = released.await;
                Ok(vec![7])
            },
            build,
        ));
        assert!(
            running.as_mut().poll(&mut cx).is_pending(),
            "its query runs"
        );
        type Fetch<'a> = Pin<Box<dyn Future<Output = Result<std::sync::Arc<str>, ()>> + 'a>>;
        let mut waiting: Vec<Fetch<'_>> = (0..3)
            .map(|_| Box::pin(tokens.fetch(0, 100, counted, build)) as Fetch<'_>)
            .collect();
        for fetch in &mut waiting {
            assert!(fetch.as_mut().poll(&mut cx).is_pending(), "waits its turn");
        }
        release.send(()).expect("the query waits");
        assert_eq!(running.await.as_deref(), Ok("[7]"));
        for fetch in waiting {
            assert_eq!(fetch.await.as_deref(), Ok("[7]"));
        }
        assert_eq!(queries.get(), 2, "one query for the three that waited");
        assert!(matches!(
            Box::pin(tokens.fetch(0, 100, counted, build))
                .as_mut()
                .poll(&mut cx),
            Poll::Ready(Ok(_))
        ));
        assert_eq!(queries.get(), 3, "a later fetch queries again");
    }

    #[tokio::test]
    async fn the_live_lists_are_queried_again_only_once_the_kept_answer_is_old() {
        let tokens = ListTokens::default();
        let queries = std::cell::Cell::new(0);
        let query = || {
            queries.set(queries.get() + 1);
            std::future::ready(Ok::<_, ()>(vec![queries.get()]))
        };
        let first = tokens.live_lists(100, query).await;
        assert_eq!(first.as_deref(), Ok(&[1][..]));
        let again = tokens.live_lists(100 + REUSE_SECS - 1, query).await;
        assert_eq!(again.as_deref(), Ok(&[1][..]));
        let old = tokens.live_lists(100 + REUSE_SECS, query).await;
        assert_eq!(old.as_deref(), Ok(&[2][..]));
        // A failed query is not kept: the next call asks again.
        let failed = tokens
            .live_lists(200, || std::future::ready(Err::<Vec<i64>, _>(())))
            .await;
        assert_eq!(failed, Err(()));
        let after = tokens.live_lists(200, query).await;
        assert_eq!(after.as_deref(), Ok(&[3][..]));
    }

    #[test]
    fn a_shuffled_block_keeps_every_index_once() {
        let mut block: Vec<i64> = (0..BLOCK).collect();
        shuffle(&mut block);
        let mut sorted = block.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, (0..BLOCK).collect::<Vec<_>>());
    }
}

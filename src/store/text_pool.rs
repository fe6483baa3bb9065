//! Shared copies of the audit log's recurring values, for the SQLite group commit.
//!
//! sqlx's SQLite arguments own every bound value: binding a `String` wraps it in a fresh `Arc`,
//! and both are freed on SQLite's worker thread once the statement has run — frees that the
//! allocator must hand back to the request worker that allocated them. A native profile put
//! that at about 6 µs of CPU per exchange (docs/performance.md, twelfth run). Most of a row's
//! text repeats from row to row — event name, decision, grant type, client, issuer, audience,
//! reason, error code, scope lists — so the writer binds one shared `Arc<str>` per distinct
//! value instead: a reference count, no allocation, nothing freed across threads.

use std::collections::HashSet;
use std::sync::Arc;

use super::audit::storable;

/// Distinct values kept. When full the pool starts over, so a flood of distinct values (client
/// ids claimed by failed requests, say) costs the sharing, never unbounded memory.
const CAPACITY: usize = 1024;

/// Interned text for the values bound into audit rows. Not a cache of anything secret: it holds
/// only what the audit log itself stores.
#[derive(Debug, Default)]
pub(crate) struct TextPool {
    texts: HashSet<Arc<str>>,
    /// Zero: nothing is kept ([`TextPool::unshared`]).
    capacity: usize,
    /// Where lists are serialised before their lookup, so a known list allocates nothing.
    scratch: Vec<u8>,
}

impl TextPool {
    /// A pool for a long-lived writer.
    pub(crate) fn new() -> TextPool {
        TextPool {
            capacity: CAPACITY,
            ..TextPool::default()
        }
    }

    /// A pool that keeps nothing, for one-off inserts where sharing would not pay.
    pub(crate) fn unshared() -> TextPool {
        TextPool::default()
    }

    /// The shared copy of `text`, in its stored form (`audit::storable`).
    pub(crate) fn share(&mut self, text: &str) -> Arc<str> {
        let text = &*storable(text);
        if let Some(shared) = self.texts.get(text) {
            return Arc::clone(shared);
        }
        let shared: Arc<str> = Arc::from(text);
        if self.capacity > 0 {
            if self.texts.len() >= self.capacity {
                self.texts.clear();
            }
            self.texts.insert(Arc::clone(&shared));
        }
        shared
    }

    /// [`TextPool::share`] for an optional value.
    pub(crate) fn share_option(&mut self, text: Option<&str>) -> Option<Arc<str>> {
        text.map(|text| self.share(text))
    }

    /// The stored form of a list (a JSON array of strings; nothing for an empty list), shared.
    pub(crate) fn share_list(&mut self, items: &[String]) -> Option<Arc<str>> {
        if items.is_empty() {
            return None;
        }
        let mut scratch = std::mem::take(&mut self.scratch);
        scratch.clear();
        // Serialising strings into memory cannot fail; an empty text would only lose the list.
        let _ = serde_json::to_writer(&mut scratch, items);
        let shared = std::str::from_utf8(&scratch)
            .map(|text| self.share(text))
            .ok();
        self.scratch = scratch;
        shared
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn equal_texts_share_one_allocation() {
        let mut pool = TextPool::new();
        let first = pool.share("token_exchange");
        let second = pool.share(&String::from("token_exchange"));
        assert!(Arc::ptr_eq(&first, &second));
        assert!(!Arc::ptr_eq(&first, &pool.share("jwt_bearer")));
    }

    #[test]
    fn an_unshared_pool_keeps_nothing() {
        let mut pool = TextPool::unshared();
        let first = pool.share("issued");
        let second = pool.share("issued");
        assert_eq!(first, second);
        assert!(!Arc::ptr_eq(&first, &second));
        assert!(pool.texts.is_empty());
    }

    #[test]
    fn lists_are_stored_as_json_arrays_and_shared() {
        let mut pool = TextPool::new();
        let scopes = vec!["read".to_string(), "write \"x\"".to_string()];
        let first = pool.share_list(&scopes).expect("a list");
        assert_eq!(&*first, r#"["read","write \"x\""]"#);
        assert_eq!(
            Some(first.to_string()),
            super::super::audit::join(&scopes),
            "the same text as the unshared path"
        );
        assert!(Arc::ptr_eq(
            &first,
            &pool.share_list(&scopes).expect("a list")
        ));
        assert_eq!(pool.share_list(&[]), None);
    }

    #[test]
    fn shared_text_is_in_its_stored_form() {
        let mut pool = TextPool::new();
        assert_eq!(&*pool.share("token\0exchange"), "token\u{FFFD}exchange");
        let list = pool.share_list(&["a\0".to_string()]).expect("a list");
        assert_eq!(&*list, r#"["a\u0000"]"#, "JSON escapes it");
    }

    #[test]
    fn a_full_pool_starts_over_instead_of_growing() {
        let mut pool = TextPool::new();
        for index in 0..CAPACITY * 3 {
            pool.share(&format!("client-{index}"));
        }
        assert!(pool.texts.len() <= CAPACITY);
        let kept = pool.share("after");
        assert!(Arc::ptr_eq(&kept, &pool.share("after")));
    }
}

//! What a request frame carries beyond the original `Request` fields, kept per request.
//!
//! `Request`'s public fields must stay exactly the original's, so the exact body bytes of a
//! binary body and the all-values maps of repeated query keys and headers live here. The
//! worker loop fills an entry when it decodes a request frame and removes it once the
//! response to that request has been written.
//!
//! An entry is found by request id and must match a fingerprint of the request's own fields
//! (method, path, query, headers, body): a clone kept past its response, or another request
//! that reuses the id (clients may choose `X-Request-Id`), never gets this entry's data.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Mutex, MutexGuard};

/// The extra data of one request.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct RequestExtras {
    /// The exact body bytes, when `body` alone cannot give them: a binary body, or a text
    /// body that contains U+FFFD (which is what a binary body's rendering contains).
    pub body: Option<Vec<u8>>,
    /// Every value of every query key, when some key repeated.
    pub query_all: Option<HashMap<String, Vec<String>>>,
    /// Every value of every header (names lower case), when some header repeated.
    pub headers_all: Option<HashMap<String, Vec<String>>>,
}

impl RequestExtras {
    fn is_empty(&self) -> bool {
        self.body.is_none() && self.query_all.is_none() && self.headers_all.is_none()
    }
}

struct Entry {
    fingerprint: u64,
    extras: RequestExtras,
}

static TABLE: Mutex<BTreeMap<String, Entry>> = Mutex::new(BTreeMap::new());

fn table() -> MutexGuard<'static, BTreeMap<String, Entry>> {
    TABLE.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Records the extras of a request (nothing is stored when there are none).
pub(crate) fn insert(request_id: &str, fingerprint: u64, extras: RequestExtras) {
    if !extras.is_empty() {
        table().insert(request_id.to_owned(), Entry { fingerprint, extras });
    }
}

/// Forgets the extras of a request.
pub(crate) fn remove(request_id: &str) {
    table().remove(request_id);
}

/// Runs `f` on the extras of this very request (its id, and the fingerprint of its fields:
/// `Request::fingerprint`), if it has any and has not been answered.
pub(crate) fn with<T>(
    request_id: &str,
    fingerprint: u64,
    f: impl FnOnce(&RequestExtras) -> Option<T>,
) -> Option<T> {
    let table = table();
    let entry = table.get(request_id)?;
    if entry.fingerprint != fingerprint {
        return None;
    }
    f(&entry.extras)
}

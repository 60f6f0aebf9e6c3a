//! What a request frame carries beyond the original `Request` fields, kept per request id.
//!
//! `Request`'s public fields must stay exactly the original's, so the exact body bytes of a
//! base64 body and the all-values maps of repeated query keys and headers live here. The
//! worker loop fills an entry when it decodes a request frame and removes it once the
//! response to that request has been written.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Mutex, MutexGuard};

/// The extra data of one request.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct RequestExtras {
    /// The exact body bytes, when the body arrived base64-encoded.
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

static TABLE: Mutex<BTreeMap<String, RequestExtras>> = Mutex::new(BTreeMap::new());

fn table() -> MutexGuard<'static, BTreeMap<String, RequestExtras>> {
    TABLE.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Records the extras of a request (nothing is stored when there are none).
pub(crate) fn insert(request_id: &str, extras: RequestExtras) {
    if !extras.is_empty() {
        table().insert(request_id.to_owned(), extras);
    }
}

/// Forgets the extras of a request.
pub(crate) fn remove(request_id: &str) {
    table().remove(request_id);
}

/// Runs `f` on the extras of a request, if it has any.
pub(crate) fn with<T>(request_id: &str, f: impl FnOnce(&RequestExtras) -> Option<T>) -> Option<T> {
    table().get(request_id).and_then(f)
}

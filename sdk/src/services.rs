//! Service handles (database, Redis, storage, objects): each call is a `service_call` frame
//! answered by the gateway, which owns the real connections (docs/services.md).

use std::cell::Cell;
use std::collections::HashMap;
use std::sync::OnceLock;

use base64::Engine;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::error::HandlerError;

/// Something that can carry a service call to the gateway and wait for its reply.
pub(crate) trait ServiceChannel {
    fn call(&mut self, service: &str, op: &str, args: Value) -> Result<Value, HandlerError>;
}

type ChannelPtr = *mut (dyn ServiceChannel + 'static);

thread_local! {
    /// The channel of the request being handled on this thread, while its handler runs.
    static CHANNEL: Cell<Option<ChannelPtr>> = const { Cell::new(None) };
}

/// Puts a pointer back into `CHANNEL` when dropped (also when unwinding).
struct Restore(Option<ChannelPtr>);

impl Drop for Restore {
    fn drop(&mut self) {
        CHANNEL.with(|cell| cell.set(self.0));
    }
}

/// Runs `f` with `channel` as this thread's service channel.
pub(crate) fn with_channel<T>(channel: &mut dyn ServiceChannel, f: impl FnOnce() -> T) -> T {
    let ptr: *mut (dyn ServiceChannel + '_) = channel;
    // SAFETY: only the lifetime bound of the trait object changes. The pointer is reachable
    // through CHANNEL only until `Restore` runs at the end of this function, while `channel`
    // stays mutably borrowed here, so it is never used after the borrow ends; call_service
    // takes it out of the cell while it uses it, so no two `&mut` to it exist at once.
    let ptr: ChannelPtr = unsafe { std::mem::transmute(ptr) };
    let _restore = Restore(CHANNEL.with(|cell| cell.replace(Some(ptr))));
    f()
}

/// How a service call is carried when no handler's channel is in place on this thread.
pub(crate) type FallbackCall = fn(&str, &str, Value) -> Result<Value, HandlerError>;

/// The fallback carrier, registered once by the worker that owns it (the hand-written
/// loop of [`crate::read_request`]); without one, such calls are refused.
static FALLBACK: OnceLock<FallbackCall> = OnceLock::new();

/// Registers the carrier for calls made outside [`with_channel`]; the first one stays.
pub(crate) fn register_fallback(call: FallbackCall) {
    let _ = FALLBACK.set(call);
}

pub(crate) fn no_channel() -> HandlerError {
    HandlerError::IpcError(
        "service calls can only be made while a handler answers a request, on its thread".into(),
    )
}

/// Runs operation `op` on the bound service named `service` and returns its JSON result.
///
/// The typed handles below are built on this; it is public for operations they do not
/// wrap. Must be called from the thread running the handler, while it handles a request.
///
/// # Errors
///
/// The reply's error mapped to a [`HandlerError`] (see [`error_for`]), or `IpcError` when
/// the gateway cannot be reached.
///
/// # Examples
///
/// ```no_run
/// use edgebook_sdk::prelude::*;
///
/// fn handle(_req: Request) -> Result<Response, HandlerError> {
///     let hits = edgebook_sdk::call_service("cache", "redis.incr", json!({"key": "hits"}))?;
///     Ok(Response::ok(json!({"hits": hits})))
/// }
/// ```
pub fn call_service(service: &str, op: &str, args: Value) -> Result<Value, HandlerError> {
    match CHANNEL.with(Cell::take) {
        Some(ptr) => {
            let _restore = Restore(Some(ptr));
            // SAFETY: see with_channel; the pointer was taken out of the cell, so this is
            // the only live reference to the channel until `_restore` puts it back.
            unsafe { (*ptr).call(service, op, args) }
        }
        None => match FALLBACK.get() {
            Some(fallback) => fallback(service, op, args),
            None => Err(no_channel()),
        },
    }
}

fn call_as<T: DeserializeOwned>(service: &str, op: &str, args: Value) -> Result<T, HandlerError> {
    let result = call_service(service, op, args)?;
    serde_json::from_value(result)
        .map_err(|e| HandlerError::IpcError(format!("unexpected result of {op}: {e}")))
}

/// The `HandlerError` for a failed service call's `error.kind`.
///
/// `unavailable` and `timeout` give `ServiceUnavailable` (503); `database`, `redis` and
/// `storage` give `DatabaseError`, `RedisError` and `StorageError` (500); `bad_request`
/// gives `BadRequest` (400); `not_bound`, `internal` and unknown kinds give
/// `InternalError` (500).
///
/// # Examples
///
/// ```
/// use edgebook_sdk::{error_for, HandlerError};
///
/// let err = error_for("timeout", "redis 'cache' did not answer in 5s".into());
/// assert_eq!(err.status_code(), 503);
/// assert!(matches!(error_for("database", "no such table".into()), HandlerError::DatabaseError(_)));
/// ```
#[must_use]
pub fn error_for(kind: &str, message: String) -> HandlerError {
    match kind {
        "unavailable" | "timeout" => HandlerError::ServiceUnavailable(message),
        "database" => HandlerError::DatabaseError(message),
        "redis" => HandlerError::RedisError(message),
        "storage" => HandlerError::StorageError(message),
        "bad_request" => HandlerError::BadRequest(message),
        "not_bound" => HandlerError::InternalError(format!("service not bound: {message}")),
        _ => HandlerError::InternalError(message),
    }
}

/// Rows and affected-row count of a database query.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct DbResult {
    /// One map per row, column name to value.
    #[serde(default)]
    pub rows: Vec<HashMap<String, Value>>,
    /// Rows changed by the statement.
    #[serde(default)]
    pub rows_affected: u64,
}

/// A bound SQL database (SQLite or PostgreSQL), named `pool_id`.
///
/// Parameters are positional `?` placeholders.
///
/// # Examples
///
/// ```no_run
/// use edgebook_sdk::prelude::*;
///
/// fn handle(_req: Request) -> Result<Response, HandlerError> {
///     let db = DbPool { pool_id: "default".into() };
///     let sold = db.query("select * from pets where status = ?", &["sold"])?;
///     Ok(Response::ok(json!({"pets": sold.rows})))
/// }
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DbPool {
    /// Name of the bound service.
    pub pool_id: String,
}

impl DbPool {
    /// Runs a query and returns its rows (`db.query`).
    ///
    /// # Errors
    ///
    /// `DatabaseError` for SQL errors; see [`error_for`] for the others.
    pub fn query(&self, sql: &str, params: &[&str]) -> Result<DbResult, HandlerError> {
        self.query_values(sql, &strings(params))
    }

    /// Runs a statement and returns the number of rows it changed (`db.execute`).
    ///
    /// # Errors
    ///
    /// As for [`DbPool::query`].
    pub fn execute(&self, sql: &str, params: &[&str]) -> Result<u64, HandlerError> {
        self.execute_values(sql, &strings(params))
    }

    /// [`DbPool::query`] with JSON parameters (numbers, booleans, null, strings).
    ///
    /// # Errors
    ///
    /// As for [`DbPool::query`].
    pub fn query_values(&self, sql: &str, params: &[Value]) -> Result<DbResult, HandlerError> {
        call_as(&self.pool_id, "db.query", json!({"sql": sql, "params": params}))
    }

    /// [`DbPool::execute`] with JSON parameters.
    ///
    /// # Errors
    ///
    /// As for [`DbPool::query`].
    pub fn execute_values(&self, sql: &str, params: &[Value]) -> Result<u64, HandlerError> {
        let result: DbResult =
            call_as(&self.pool_id, "db.execute", json!({"sql": sql, "params": params}))?;
        Ok(result.rows_affected)
    }

    /// Starts a transaction (`db.begin`); finish it with commit or rollback.
    ///
    /// # Errors
    ///
    /// As for [`DbPool::query`].
    pub fn begin(&self) -> Result<Transaction, HandlerError> {
        #[derive(Deserialize)]
        struct Begun {
            tx: String,
        }
        let begun: Begun = call_as(&self.pool_id, "db.begin", json!({}))?;
        Ok(Transaction { pool_id: self.pool_id.clone(), tx: begun.tx })
    }
}

/// An open database transaction; the gateway rolls back one left open when the request ends.
///
/// # Examples
///
/// ```no_run
/// use edgebook_sdk::prelude::*;
///
/// # fn run() -> Result<(), HandlerError> {
/// let db = DbPool { pool_id: "default".into() };
/// let tx = db.begin()?;
/// tx.execute("update pets set status = ? where id = ?", &["sold", "1"])?;
/// tx.commit()?;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Transaction {
    /// Name of the bound service.
    pub pool_id: String,
    /// The gateway's id of the transaction.
    pub tx: String,
}

impl Transaction {
    /// `db.query` inside the transaction.
    ///
    /// # Errors
    ///
    /// As for [`DbPool::query`].
    pub fn query(&self, sql: &str, params: &[&str]) -> Result<DbResult, HandlerError> {
        let args = json!({"sql": sql, "params": strings(params), "tx": self.tx});
        call_as(&self.pool_id, "db.query", args)
    }

    /// `db.execute` inside the transaction.
    ///
    /// # Errors
    ///
    /// As for [`DbPool::query`].
    pub fn execute(&self, sql: &str, params: &[&str]) -> Result<u64, HandlerError> {
        let args = json!({"sql": sql, "params": strings(params), "tx": self.tx});
        let result: DbResult = call_as(&self.pool_id, "db.execute", args)?;
        Ok(result.rows_affected)
    }

    /// Commits (`db.commit`).
    ///
    /// # Errors
    ///
    /// As for [`DbPool::query`].
    pub fn commit(self) -> Result<(), HandlerError> {
        call_service(&self.pool_id, "db.commit", json!({"tx": self.tx})).map(drop)
    }

    /// Rolls back (`db.rollback`).
    ///
    /// # Errors
    ///
    /// As for [`DbPool::query`].
    pub fn rollback(self) -> Result<(), HandlerError> {
        call_service(&self.pool_id, "db.rollback", json!({"tx": self.tx})).map(drop)
    }
}

fn strings(params: &[&str]) -> Vec<Value> {
    params.iter().map(|p| Value::String((*p).to_owned())).collect()
}

/// A bound Redis server, named `pool_id`.
///
/// # Examples
///
/// ```no_run
/// use edgebook_sdk::prelude::*;
///
/// # fn run() -> Result<(), HandlerError> {
/// let cache = RedisPool { pool_id: "cache".into() };
/// cache.setex("greeting", "hello", 60)?;
/// assert_eq!(cache.get("greeting")?.as_deref(), Some("hello"));
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RedisPool {
    /// Name of the bound service.
    pub pool_id: String,
}

impl RedisPool {
    /// `GET key` (`redis.get`).
    ///
    /// # Errors
    ///
    /// `RedisError` for Redis errors; see [`error_for`] for the others.
    pub fn get(&self, key: &str) -> Result<Option<String>, HandlerError> {
        call_as(&self.pool_id, "redis.get", json!({"key": key}))
    }

    /// `SET key value` (`redis.set`).
    ///
    /// # Errors
    ///
    /// As for [`RedisPool::get`].
    pub fn set(&self, key: &str, value: &str) -> Result<(), HandlerError> {
        call_service(&self.pool_id, "redis.set", json!({"key": key, "value": value})).map(drop)
    }

    /// `SETEX key seconds value` (`redis.setex`).
    ///
    /// # Errors
    ///
    /// As for [`RedisPool::get`].
    pub fn setex(&self, key: &str, value: &str, seconds: u64) -> Result<(), HandlerError> {
        let args = json!({"key": key, "value": value, "seconds": seconds});
        call_service(&self.pool_id, "redis.setex", args).map(drop)
    }

    /// `DEL key`; whether the key existed (`redis.del`).
    ///
    /// # Errors
    ///
    /// As for [`RedisPool::get`].
    pub fn del(&self, key: &str) -> Result<bool, HandlerError> {
        call_as(&self.pool_id, "redis.del", json!({"key": key}))
    }

    /// `INCRBY key 1`; the new value (`redis.incr`).
    ///
    /// # Errors
    ///
    /// As for [`RedisPool::get`].
    pub fn incr(&self, key: &str) -> Result<i64, HandlerError> {
        self.incr_by(key, 1)
    }

    /// `INCRBY key by`; the new value (`redis.incr`).
    ///
    /// # Errors
    ///
    /// As for [`RedisPool::get`].
    pub fn incr_by(&self, key: &str, by: i64) -> Result<i64, HandlerError> {
        call_as(&self.pool_id, "redis.incr", json!({"key": key, "by": by}))
    }

    /// `EXPIRE key seconds`; whether the key exists (`redis.expire`).
    ///
    /// # Errors
    ///
    /// As for [`RedisPool::get`].
    pub fn expire(&self, key: &str, seconds: u64) -> Result<bool, HandlerError> {
        call_as(&self.pool_id, "redis.expire", json!({"key": key, "seconds": seconds}))
    }

    /// `EXISTS key` (`redis.exists`).
    ///
    /// # Errors
    ///
    /// As for [`RedisPool::get`].
    pub fn exists(&self, key: &str) -> Result<bool, HandlerError> {
        call_as(&self.pool_id, "redis.exists", json!({"key": key}))
    }

    /// `HGET key field` (`redis.hget`).
    ///
    /// # Errors
    ///
    /// As for [`RedisPool::get`].
    pub fn hget(&self, key: &str, field: &str) -> Result<Option<String>, HandlerError> {
        call_as(&self.pool_id, "redis.hget", json!({"key": key, "field": field}))
    }

    /// `HSET key field value` (`redis.hset`).
    ///
    /// # Errors
    ///
    /// As for [`RedisPool::get`].
    pub fn hset(&self, key: &str, field: &str, value: &str) -> Result<(), HandlerError> {
        let args = json!({"key": key, "field": field, "value": value});
        call_service(&self.pool_id, "redis.hset", args).map(drop)
    }

    /// `HGETALL key` (`redis.hgetall`); empty for a missing key.
    ///
    /// # Errors
    ///
    /// As for [`RedisPool::get`].
    pub fn hgetall(&self, key: &str) -> Result<HashMap<String, String>, HandlerError> {
        call_as(&self.pool_id, "redis.hgetall", json!({"key": key}))
    }
}

/// The backend kind of a [`Storage`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StorageType {
    /// A table of a SQL database.
    Database,
    /// A prefix of an object store (S3-compatible).
    ObjectStorage,
    /// A directory of a file store.
    FileStorage,
}

/// JSON documents by id, over a database table, an object store or a file store.
///
/// # Examples
///
/// ```no_run
/// use edgebook_sdk::prelude::*;
///
/// # fn run() -> Result<(), HandlerError> {
/// let pets = Storage::database("default", "pets");
/// pets.create("1", &json!({"name": "Rex"}))?;
/// assert_eq!(pets.get("1")?, Some(json!({"name": "Rex"})));
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Storage {
    /// Backend kind.
    pub storage_type: StorageType,
    /// Name of the bound service.
    pub pool_id: String,
    /// Prefix for object and file storage.
    pub base_path: Option<String>,
    /// Table for database storage.
    pub table_name: Option<String>,
}

impl Storage {
    /// Documents in table `table_name` of database `pool_id`.
    #[must_use]
    pub fn database(pool_id: &str, table_name: &str) -> Self {
        Storage {
            storage_type: StorageType::Database,
            pool_id: pool_id.to_owned(),
            base_path: None,
            table_name: Some(table_name.to_owned()),
        }
    }

    /// Documents under `base_path` of object store `pool_id`.
    #[must_use]
    pub fn object_storage(pool_id: &str, base_path: &str) -> Self {
        Storage {
            storage_type: StorageType::ObjectStorage,
            pool_id: pool_id.to_owned(),
            base_path: Some(base_path.to_owned()),
            table_name: None,
        }
    }

    /// Documents under `base_path` of file store `pool_id`.
    #[must_use]
    pub fn file_storage(pool_id: &str, base_path: &str) -> Self {
        Storage {
            storage_type: StorageType::FileStorage,
            pool_id: pool_id.to_owned(),
            base_path: Some(base_path.to_owned()),
            table_name: None,
        }
    }

    fn args(&self, extra: Value) -> Value {
        let mut args = json!({
            "storage_type": self.storage_type,
            "table_name": self.table_name,
            "base_path": self.base_path,
        });
        if let (Value::Object(args), Value::Object(extra)) = (&mut args, extra) {
            args.extend(extra);
        }
        args
    }

    /// The document `id`, if it exists (`storage.get`).
    ///
    /// # Errors
    ///
    /// `StorageError` (or `DatabaseError`) from the backend; see [`error_for`].
    pub fn get(&self, id: &str) -> Result<Option<Value>, HandlerError> {
        call_as(&self.pool_id, "storage.get", self.args(json!({"id": id})))
    }

    /// All documents, or those whose `status` field equals `filter` (`storage.list`), as the
    /// original pet store uses it.
    ///
    /// # Errors
    ///
    /// As for [`Storage::get`].
    pub fn list(&self, filter: Option<&str>) -> Result<Vec<Value>, HandlerError> {
        call_as(&self.pool_id, "storage.list", self.args(json!({"filter": filter})))
    }

    /// Stores a new document `id` (`storage.create`).
    ///
    /// # Errors
    ///
    /// As for [`Storage::get`].
    pub fn create(&self, id: &str, data: &Value) -> Result<(), HandlerError> {
        let args = self.args(json!({"id": id, "data": data}));
        call_service(&self.pool_id, "storage.create", args).map(drop)
    }

    /// Replaces document `id` (`storage.update`).
    ///
    /// # Errors
    ///
    /// As for [`Storage::get`].
    pub fn update(&self, id: &str, data: &Value) -> Result<(), HandlerError> {
        let args = self.args(json!({"id": id, "data": data}));
        call_service(&self.pool_id, "storage.update", args).map(drop)
    }

    /// Deletes document `id`; whether it existed (`storage.delete`).
    ///
    /// # Errors
    ///
    /// As for [`Storage::get`].
    pub fn delete(&self, id: &str) -> Result<bool, HandlerError> {
        call_as(&self.pool_id, "storage.delete", self.args(json!({"id": id})))
    }
}

/// A bound object store (S3-compatible or local), named `pool_id`; objects are raw bytes.
///
/// # Examples
///
/// ```no_run
/// use edgebook_sdk::prelude::*;
///
/// # fn run() -> Result<(), HandlerError> {
/// let store = ObjectStore { pool_id: "files".into() };
/// store.put("logo.png", [0x89, b'P', b'N', b'G'], "image/png")?;
/// let logo = store.get("logo.png")?.expect("just stored");
/// let response = Response::binary(200, logo.data, logo.content_type);
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ObjectStore {
    /// Name of the bound service.
    pub pool_id: String,
}

/// An object's bytes and content type.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredObject {
    /// The object's bytes.
    pub data: Vec<u8>,
    /// Its content type.
    pub content_type: String,
}

/// One entry of [`ObjectStore::list`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ObjectInfo {
    /// The object's key.
    pub key: String,
    /// Size in bytes.
    pub size: u64,
    /// Content type, when the store knows it.
    #[serde(default)]
    pub content_type: Option<String>,
}

impl ObjectStore {
    /// The object `key`, if it exists (`objects.get`).
    ///
    /// # Errors
    ///
    /// `StorageError` from the store; see [`error_for`].
    pub fn get(&self, key: &str) -> Result<Option<StoredObject>, HandlerError> {
        #[derive(Deserialize)]
        struct Wire {
            data: String,
            content_type: String,
        }
        let wire: Option<Wire> = call_as(&self.pool_id, "objects.get", json!({"key": key}))?;
        wire.map(|w| {
            let data =
                base64::engine::general_purpose::STANDARD.decode(w.data.as_bytes()).map_err(
                    |e| HandlerError::IpcError(format!("objects.get data is not base64: {e}")),
                )?;
            Ok(StoredObject { data, content_type: w.content_type })
        })
        .transpose()
    }

    /// Stores `data` as object `key` (`objects.put`).
    ///
    /// # Errors
    ///
    /// As for [`ObjectStore::get`].
    pub fn put(
        &self,
        key: &str,
        data: impl AsRef<[u8]>,
        content_type: &str,
    ) -> Result<(), HandlerError> {
        let encoded = base64::engine::general_purpose::STANDARD.encode(data.as_ref());
        let args = json!({"key": key, "data": encoded, "content_type": content_type});
        call_service(&self.pool_id, "objects.put", args).map(drop)
    }

    /// Deletes object `key`; whether it existed (`objects.delete`).
    ///
    /// # Errors
    ///
    /// As for [`ObjectStore::get`].
    pub fn delete(&self, key: &str) -> Result<bool, HandlerError> {
        call_as(&self.pool_id, "objects.delete", json!({"key": key}))
    }

    /// Objects whose key starts with `prefix` (all when `None`), by key (`objects.list`).
    ///
    /// # Errors
    ///
    /// As for [`ObjectStore::get`].
    pub fn list(&self, prefix: Option<&str>) -> Result<Vec<ObjectInfo>, HandlerError> {
        call_as(&self.pool_id, "objects.list", json!({"prefix": prefix}))
    }
}

/// Environment variables configured for the endpoint.
///
/// # Examples
///
/// ```
/// use edgebook_sdk::prelude::*;
///
/// let env = EnvVars { vars: [("MODE".to_string(), "test".to_string())].into() };
/// assert_eq!(env.get("MODE").map(String::as_str), Some("test"));
/// ```
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct EnvVars {
    /// Name to value.
    pub vars: HashMap<String, String>,
}

impl EnvVars {
    /// The value of `key`.
    #[must_use]
    pub fn get(&self, key: &str) -> Option<&String> {
        self.vars.get(key)
    }

    /// The worker process's own environment.
    ///
    /// # Examples
    ///
    /// ```
    /// let env = edgebook_sdk::EnvVars::from_process();
    /// assert_eq!(env.get("PATH").is_some(), std::env::var("PATH").is_ok());
    /// ```
    #[must_use]
    pub fn from_process() -> Self {
        EnvVars { vars: std::env::vars().collect() }
    }
}

//! The storage interface the server answers resource requests through. The object store
//! implements it; the server does content negotiation, body decoding, patch parsing, Table
//! output and watch framing around it. Every failure is an API [`ApiError`] (a `Status`).

use std::time::Duration;

use bytes::Bytes;
use futures::future::BoxFuture;
use futures::stream::BoxStream;
use serde_json::Value;
use serde_json::value::RawValue;

use crate::catalogue::Resource;
use crate::patch::PatchType;
use crate::status::ApiError;

/// One object: resource, namespace (for namespaced kinds), name and subresource.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectRef {
    /// The resource.
    pub resource: &'static Resource,
    /// Namespace; `None` for cluster-scoped kinds.
    pub namespace: Option<String>,
    /// Object name.
    pub name: String,
    /// Subresource (`status`, `scale`), if any.
    pub subresource: Option<&'static str>,
}

/// A collection: a resource in one namespace, or across all (or cluster-scoped).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CollectionRef {
    /// The resource.
    pub resource: &'static Resource,
    /// Namespace; `None` for all namespaces or a cluster-scoped kind.
    pub namespace: Option<String>,
}

/// Options of a GET.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GetOptions {
    /// `resourceVersion` (`""` latest, `"0"` any cached).
    pub resource_version: Option<String>,
}

/// Options of a LIST (and the selection of a DELETE of a collection).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ListOptions {
    /// `labelSelector`.
    pub label_selector: Option<String>,
    /// `fieldSelector`.
    pub field_selector: Option<String>,
    /// `resourceVersion`.
    pub resource_version: Option<String>,
    /// `resourceVersionMatch`.
    pub resource_version_match: Option<String>,
    /// `limit` (0 or `None`: everything).
    pub limit: Option<i64>,
    /// `continue` token from a previous page.
    pub continue_token: Option<String>,
}

/// Options of a WATCH.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WatchOptions {
    /// `labelSelector`.
    pub label_selector: Option<String>,
    /// `fieldSelector`.
    pub field_selector: Option<String>,
    /// Start after this `resourceVersion`; `None`, `""` or `"0"` start with the current
    /// objects as `ADDED` events.
    pub resource_version: Option<String>,
    /// `resourceVersionMatch`.
    pub resource_version_match: Option<String>,
    /// Whether `BOOKMARK` events may be sent.
    pub allow_bookmarks: bool,
    /// Watch-list: `ADDED` for every current object, then a bookmark annotated
    /// `k8s.io/initial-events-end: "true"`.
    pub send_initial_events: Option<bool>,
}

/// How unknown or duplicate fields in a body are treated (`fieldValidation`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum FieldValidation {
    /// Drop them silently.
    Ignore,
    /// Drop them and warn.
    #[default]
    Warn,
    /// Refuse the request.
    Strict,
}

/// Options of a create, update or patch.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WriteOptions {
    /// `dryRun=All`: validate and answer, but store nothing.
    pub dry_run: bool,
    /// `fieldManager`.
    pub field_manager: Option<String>,
    /// `fieldValidation`.
    pub field_validation: FieldValidation,
    /// `force` (server-side apply conflicts).
    pub force: bool,
}

/// A PATCH body with its type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PatchRequest {
    /// Which kind of patch.
    pub patch_type: PatchType,
    /// The patch document as sent.
    pub body: Bytes,
}

/// Options of a DELETE.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeleteOptions {
    /// `gracePeriodSeconds`.
    pub grace_period_seconds: Option<i64>,
    /// `propagationPolicy`: `Orphan`, `Background` or `Foreground`.
    pub propagation_policy: Option<String>,
    /// `preconditions.uid`.
    pub precondition_uid: Option<String>,
    /// `preconditions.resourceVersion`.
    pub precondition_resource_version: Option<String>,
    /// `dryRun=All`.
    pub dry_run: bool,
}

/// A page of objects.
#[derive(Debug, Clone, Default)]
pub struct ObjectList {
    /// The objects as JSON text (each a JSON object; `kind`/`apiVersion` not needed), as
    /// the store holds them: a list answer copies them without decoding them, and a
    /// Table decodes only the fields its cells need.
    pub items: Vec<Box<RawValue>>,
    /// The list's `resourceVersion`.
    pub resource_version: String,
    /// Token for the next page, if there is one.
    pub continue_token: Option<String>,
    /// How many objects the next pages hold, when known.
    pub remaining_item_count: Option<i64>,
}

/// `object` as JSON text, for an [`ObjectList`].
pub fn encode_object(object: &Value) -> Box<RawValue> {
    serde_json::value::to_raw_value(object).expect("JSON values serialise")
}

/// What a DELETE did.
#[derive(Debug, Clone, PartialEq)]
pub enum Deleted {
    /// The object is gone; the answer is a `Success` Status naming it.
    Gone {
        /// The deleted object's UID.
        uid: String,
    },
    /// The object (gone, or marked with a `deletionTimestamp` for graceful deletion),
    /// returned as the answer.
    Object(Value),
}

/// What a PATCH did.
#[derive(Debug, Clone, PartialEq)]
pub struct Patched {
    /// The object after the patch.
    pub object: Value,
    /// Whether the patch created it (server-side apply): 201 instead of 200.
    pub created: bool,
}

/// The type of a watch event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventType {
    /// `ADDED`.
    Added,
    /// `MODIFIED`.
    Modified,
    /// `DELETED`.
    Deleted,
    /// `BOOKMARK`: only `metadata.resourceVersion` (and annotations) are meaningful.
    Bookmark,
    /// `ERROR`: the object is a `Status` (410 Expired and the like); the stream ends.
    Error,
}

impl EventType {
    /// The wire name.
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Added => "ADDED",
            Self::Modified => "MODIFIED",
            Self::Deleted => "DELETED",
            Self::Bookmark => "BOOKMARK",
            Self::Error => "ERROR",
        }
    }
}

/// One watch event.
#[derive(Debug, Clone, PartialEq)]
pub struct WatchEvent {
    /// Its type.
    pub event_type: EventType,
    /// The object, with `kind` and `apiVersion`.
    pub object: Value,
}

/// Options of a `pods/log` request.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LogOptions {
    /// `container`.
    pub container: Option<String>,
    /// `follow`.
    pub follow: bool,
    /// `previous`.
    pub previous: bool,
    /// `tailLines`.
    pub tail_lines: Option<i64>,
    /// `sinceSeconds`.
    pub since_seconds: Option<i64>,
    /// `sinceTime` (RFC 3339).
    pub since_time: Option<String>,
    /// `timestamps`.
    pub timestamps: bool,
    /// `limitBytes`.
    pub limit_bytes: Option<i64>,
    /// `stream`: `Stdout`, `Stderr` or `All`.
    pub stream: Option<String>,
}

/// Options of a `pods/exec` request (`PodExecOptions`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExecOptions {
    /// `container`; the only container when left out.
    pub container: Option<String>,
    /// `command`, in order.
    pub command: Vec<String>,
    /// `stdin`.
    pub stdin: bool,
    /// `stdout`.
    pub stdout: bool,
    /// `stderr` (false with `tty`: the terminal carries both).
    pub stderr: bool,
    /// `tty`.
    pub tty: bool,
    /// The client's terminal size (width, height) before the command starts, in TTY mode.
    pub size: Option<(u16, u16)>,
}

/// A command started in a container for `pods/exec`. Dropping it (every part) kills the
/// command if it still runs.
pub struct ExecProcess {
    /// Writes the command's stdin; dropped to close it.
    pub stdin: Option<std::pin::Pin<Box<dyn tokio::io::AsyncWrite + Send>>>,
    /// Reads the command's stdout (with `tty`: the terminal's output).
    pub stdout: Option<std::pin::Pin<Box<dyn tokio::io::AsyncRead + Send>>>,
    /// Reads the command's stderr.
    pub stderr: Option<std::pin::Pin<Box<dyn tokio::io::AsyncRead + Send>>>,
    /// Sets the terminal size (width, height) in TTY mode.
    pub resize: Box<dyn Fn(u16, u16) + Send + Sync>,
    /// The command's exit code (`128 + n` when signal `n` ended it), or why it could not
    /// be started (the error channel then carries an `InternalError`).
    pub exit: BoxFuture<'static, Result<i32, String>>,
}

impl ExecProcess {
    /// A command that could not be started, for `why`.
    pub fn failed(why: String) -> ExecProcess {
        ExecProcess {
            stdin: None,
            stdout: None,
            stderr: None,
            resize: Box::new(|_, _| {}),
            exit: Box::pin(async move { Err(why) }),
        }
    }
}

/// What a `pods/exec` request asks of the node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExecRequest {
    /// Only whether the container runs there (answering a request that cannot be
    /// upgraded with the same error an upgradable one would get).
    Check,
    /// Start the command.
    Start(ExecOptions),
}

impl std::fmt::Debug for ExecProcess {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ExecProcess")
            .field("stdin", &self.stdin.is_some())
            .field("stdout", &self.stdout.is_some())
            .field("stderr", &self.stderr.is_some())
            .finish()
    }
}

/// Objects as the API server stores them. Every method answers or fails with a `Status`.
pub trait Backend: Send + Sync + 'static {
    /// GET one object (or its `status`/`scale` subresource).
    fn get(&self, object: ObjectRef, options: GetOptions)
    -> BoxFuture<'_, Result<Value, ApiError>>;
    /// LIST a collection.
    fn list(
        &self,
        collection: CollectionRef,
        options: ListOptions,
    ) -> BoxFuture<'_, Result<ObjectList, ApiError>>;
    /// CREATE an object in a collection; answers the stored object.
    fn create(
        &self,
        collection: CollectionRef,
        object: Value,
        options: WriteOptions,
    ) -> BoxFuture<'_, Result<Value, ApiError>>;
    /// UPDATE (replace) an object or subresource; a stale `metadata.resourceVersion` is a
    /// 409 Conflict.
    fn update(
        &self,
        object: ObjectRef,
        body: Value,
        options: WriteOptions,
    ) -> BoxFuture<'_, Result<Value, ApiError>>;
    /// PATCH an object or subresource: read the live object, apply the patch with
    /// [`crate::patch`] (JSON, merge, strategic merge with the kind's schema), check the
    /// result with [`crate::openapi::unknown_fields`] as `options.field_validation` says, and
    /// store it if `metadata.resourceVersion` in the patch (if any) still matches.
    fn patch(
        &self,
        object: ObjectRef,
        patch: PatchRequest,
        options: WriteOptions,
    ) -> BoxFuture<'_, Result<Patched, ApiError>>;
    /// DELETE an object.
    fn delete(
        &self,
        object: ObjectRef,
        options: DeleteOptions,
    ) -> BoxFuture<'_, Result<Deleted, ApiError>>;
    /// DELETE every selected object of a collection; answers the deleted objects.
    fn delete_collection(
        &self,
        collection: CollectionRef,
        selection: ListOptions,
        options: DeleteOptions,
    ) -> BoxFuture<'_, Result<ObjectList, ApiError>>;
    /// WATCH a collection: a stream of events that ends when the watch ends (the server
    /// also ends it after `timeoutSeconds`).
    fn watch(
        &self,
        collection: CollectionRef,
        options: WatchOptions,
    ) -> BoxFuture<'_, Result<BoxStream<'static, WatchEvent>, ApiError>>;
    /// `pods/log`: the log bytes, as a stream that ends when the log does (or, with
    /// `follow`, when the container ends).
    fn log(
        &self,
        pod: ObjectRef,
        options: LogOptions,
    ) -> BoxFuture<'_, Result<BoxStream<'static, Bytes>, ApiError>>;

    /// `pods/exec`: finds container `container` of `pod` (the object as stored, already
    /// checked by [`crate::exec::select`]) running on the node and, for
    /// [`ExecRequest::Start`], starts the command there (`None` for a check). An error is
    /// what the node answered (`container not found ("c")`); a command that cannot be
    /// started is an [`ExecProcess::failed`]. Without a node there is nothing to run the
    /// command on.
    fn exec(
        &self,
        pod: Value,
        container: String,
        request: ExecRequest,
    ) -> BoxFuture<'_, Result<Option<ExecProcess>, ApiError>> {
        let _ = (pod, container, request);
        Box::pin(async { Err(no_node_for_exec()) })
    }
}

/// How long a watch lasts when the client names no `timeoutSeconds`: a random time
/// between 30 and 60 minutes in the API server; podrun uses the upper bound.
pub const DEFAULT_WATCH_TIMEOUT: Duration = Duration::from_secs(3600);

/// The answer to `pods/exec` on a server without a node.
pub(crate) fn no_node_for_exec() -> ApiError {
    ApiError::bad_request("exec needs a node to run the command on, and this server has none")
}

//! Watch: a cursor over the storage's rows that turns each into the event a client of
//! the API server sees, honouring selectors (an object that leaves a selector is
//! `DELETED` for that watch, one that enters it `ADDED`), initial events
//! (`sendInitialEvents` and the `k8s.io/initial-events-end` bookmark), bookmarks and
//! `410 Expired` for a revision older than the retained window.
//!
//! The cursor does no I/O of its own: a driver feeds it rows as they are written
//! ([`Watch::handle_row`]), or lets it read what it missed from storage
//! ([`Watch::catch_up`]) — after a lag, or when rows came from another process.

use serde_json::{Value, json};

use crate::error::{ApiError, FieldError, Result};
use crate::resource::ResourceType;
use crate::selector::Filter;
use crate::storage::{Row, Storage};
use crate::store::{ListOptions, Store};

/// A watch event's type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventType {
    /// `ADDED`.
    Added,
    /// `MODIFIED`.
    Modified,
    /// `DELETED`.
    Deleted,
    /// `BOOKMARK`.
    Bookmark,
    /// `ERROR` (the object is a `Status`).
    Error,
}

impl EventType {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::Added => "ADDED",
            EventType::Modified => "MODIFIED",
            EventType::Deleted => "DELETED",
            EventType::Bookmark => "BOOKMARK",
            EventType::Error => "ERROR",
        }
    }
}

/// One event of a watch stream.
#[derive(Clone, Debug, PartialEq)]
pub struct WatchEvent {
    /// `type`.
    pub kind: EventType,
    /// `object`, with `kind`, `apiVersion` and the event's `resourceVersion`.
    pub object: Value,
}

impl WatchEvent {
    /// `{"type": …, "object": …}` as it goes on the wire.
    pub fn to_json(&self) -> Value {
        json!({"type": self.kind.as_str(), "object": self.object})
    }

    /// The `ERROR` event carrying a Status (a 410 for a watch that fell out of the window).
    pub fn error(err: &ApiError) -> WatchEvent {
        WatchEvent {
            kind: EventType::Error,
            object: err.to_json(),
        }
    }

    /// The event's revision (`metadata.resourceVersion`), 0 if none.
    pub fn revision(&self) -> u64 {
        self.object
            .pointer("/metadata/resourceVersion")
            .and_then(Value::as_str)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0)
    }
}

/// The query of a watch, as the API server reads it.
#[derive(Clone, Debug, Default)]
pub struct WatchOptions {
    /// Label and field selectors.
    pub filter: Filter,
    /// `resourceVersion` (`None`, `""`, `"0"` or a revision).
    pub resource_version: Option<String>,
    /// `resourceVersionMatch`.
    pub resource_version_match: Option<String>,
    /// `sendInitialEvents`.
    pub send_initial_events: Option<bool>,
    /// `allowWatchBookmarks`.
    pub allow_bookmarks: bool,
}

/// An open watch: where it is in the log and what it selects.
#[derive(Clone, Debug)]
pub struct Watch {
    rt: ResourceType,
    prefix: String,
    filter: Filter,
    after: u64,
    bookmarks: bool,
}

/// The annotation of the bookmark that ends a watch's initial events.
pub const INITIAL_EVENTS_END: &str = "k8s.io/initial-events-end";

/// Rows read from storage per catch-up step.
const CATCH_UP_CHUNK: usize = 1024;

impl<S: Storage> Store<S> {
    /// Opens a watch: the cursor, and the events to send first (initial `ADDED`s and,
    /// for `sendInitialEvents`, the bookmark that ends them). A revision older than the
    /// retained window is `410 Expired`.
    pub fn watch(
        &self,
        rt: &ResourceType,
        namespace: Option<&str>,
        opts: &WatchOptions,
    ) -> Result<(Watch, Vec<WatchEvent>)> {
        check_watch_options(opts)?;
        let namespace = if rt.namespaced { namespace } else { None };
        let rv = match opts.resource_version.as_deref() {
            None | Some("") => None,
            Some(s) => Some(s.parse::<u64>().map_err(|_| {
                ApiError::bad_request(format!(
                    "resourceVersion: Invalid value: {}: must be a non-negative integer",
                    crate::error::quote(s)
                ))
            })?),
        };
        // Initial events: asked for, or implied by an unset or "0" resourceVersion.
        let initial = opts
            .send_initial_events
            .unwrap_or(matches!(rv, None | Some(0)));
        let mut watch = Watch {
            rt: *rt,
            prefix: rt.prefix(namespace),
            filter: opts.filter.clone(),
            after: 0,
            bookmarks: opts.allow_bookmarks,
        };
        let mut events = Vec::new();
        if initial {
            let list = self.list(
                rt,
                namespace,
                &ListOptions {
                    filter: opts.filter.clone(),
                    ..ListOptions::default()
                },
            )?;
            watch.after = list.revision;
            events.extend(list.items.into_iter().map(|object| WatchEvent {
                kind: EventType::Added,
                object,
            }));
            // The end of the initial events is a bookmark: sent when bookmarks are allowed.
            if opts.send_initial_events == Some(true) && opts.allow_bookmarks {
                let mut mark = watch.bookmark_at(list.revision);
                mark.object["metadata"]["annotations"] = json!({INITIAL_EVENTS_END: "true"});
                events.push(mark);
            }
        } else {
            let from = rv.unwrap_or(0);
            let compacted = self.compacted()?;
            if from < compacted {
                return Err(ApiError::too_old(from, compacted));
            }
            watch.after = from;
        }
        Ok((watch, events))
    }
}

/// The API server's validation of a watch's options (`validateWatchOptions`).
fn check_watch_options(opts: &WatchOptions) -> Result<()> {
    const NOT_OLDER_THAN: &str = "NotOlderThan";
    let mut errs = Vec::new();
    let matched = opts.resource_version_match.as_deref().unwrap_or("");
    if opts.send_initial_events.is_some() && matched != NOT_OLDER_THAN {
        errs.push(FieldError::forbidden(
            "resourceVersionMatch",
            "sendInitialEvents requires setting resourceVersionMatch to NotOlderThan",
        ));
    }
    if !matched.is_empty() {
        if opts.send_initial_events.is_none() {
            errs.push(FieldError::forbidden(
                "resourceVersionMatch",
                "resourceVersionMatch is forbidden for watch unless sendInitialEvents is provided",
            ));
        }
        if matched != NOT_OLDER_THAN {
            errs.push(FieldError::not_supported(
                "resourceVersionMatch",
                matched,
                &[NOT_OLDER_THAN],
            ));
        }
    }
    if errs.is_empty() {
        return Ok(());
    }
    let list = match errs.as_slice() {
        [one] => one.to_string(),
        many => format!(
            "[{}]",
            many.iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        ),
    };
    Err(ApiError::invalid_options(&list, &errs))
}

impl Watch {
    /// The newest revision this watch has seen: a resumed watch starts here.
    pub fn revision(&self) -> u64 {
        self.after
    }

    /// The key prefix of the collection watched.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The event a new row makes for this watch, if any. Rows must come in revision
    /// order; rows at or below the cursor, outside the collection, or outside the
    /// selectors make none.
    pub fn handle_row(&mut self, row: &Row) -> Option<WatchEvent> {
        if row.revision <= self.after {
            return None;
        }
        // Rows come in revision order: one outside the collection still moves the
        // cursor, so a bookmark can name it.
        self.after = row.revision;
        if !row.key.starts_with(&self.prefix) {
            return None;
        }
        let rt = &self.rt;
        let now = !row.deleted && self.filter.matches(rt, &row.value);
        let before = if row.deleted {
            self.filter.matches(rt, &row.value)
        } else {
            row.prev_value
                .as_ref()
                .is_some_and(|p| self.filter.matches(rt, p))
        };
        let (kind, mut object) = match (before, now) {
            (_, true) if !before => (EventType::Added, row.value.clone()),
            (true, true) => (EventType::Modified, row.value.clone()),
            (true, false) if row.deleted => (EventType::Deleted, row.value.clone()),
            // It left the selector: gone for this watch, with the content it had.
            (true, false) => (
                EventType::Deleted,
                row.prev_value.clone().unwrap_or_else(|| row.value.clone()),
            ),
            _ => return None,
        };
        crate::object::set_revision(&mut object, row.revision);
        Some(WatchEvent { kind, object })
    }

    /// Reads from storage what this watch has not seen, in order. `410 Expired` when
    /// history it needs was compacted away (the client must relist).
    pub fn catch_up<S: Storage>(&mut self, store: &Store<S>) -> Result<Vec<WatchEvent>> {
        let mut out = Vec::new();
        loop {
            let head = store.revision()?;
            let rows = store
                .storage()
                .events(&self.prefix, self.after, CATCH_UP_CHUNK)
                .map_err(ApiError::internal)?;
            // Checked after the read: a compaction racing it could have removed rows.
            let compacted = store.compacted()?;
            if self.after < compacted {
                return Err(ApiError::too_old(self.after, compacted));
            }
            let full = rows.len() == CATCH_UP_CHUNK;
            out.extend(rows.iter().filter_map(|r| self.handle_row(r)));
            if !full {
                // Every row up to `head` has been seen (rows are committed in order).
                self.after = self.after.max(head);
                return Ok(out);
            }
        }
    }

    /// Did the client allow bookmarks (`allowWatchBookmarks`)?
    pub fn bookmarks_allowed(&self) -> bool {
        self.bookmarks
    }

    /// A `BOOKMARK` at the watch's revision, if the client allowed bookmarks.
    pub fn bookmark(&self) -> Option<WatchEvent> {
        self.bookmarks.then(|| self.bookmark_at(self.after))
    }

    /// Moves the cursor to `revision` without events: the driver saw every row up to
    /// it and none was in this watch's collection.
    pub fn advance(&mut self, revision: u64) {
        self.after = self.after.max(revision);
    }

    fn bookmark_at(&self, revision: u64) -> WatchEvent {
        WatchEvent {
            kind: EventType::Bookmark,
            object: json!({
                "kind": self.rt.kind,
                "apiVersion": self.rt.api_version(),
                "metadata": {"resourceVersion": revision.to_string()},
            }),
        }
    }
}

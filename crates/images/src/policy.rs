//! The kubelet's image decisions before each container start, as pure code: the image pull
//! back-off, and the waiting reason, message and Events of each outcome of
//! [`crate::ImageService::ensure_image`].
//!
//! Time is an argument ([`Instant`]s the caller reads); nothing here reads a clock or does I/O.
//! The node asks [`ImagePuller::handle_start`] whether it may call `ensure_image` at all (not
//! while the image is in back-off), then reports the result to
//! [`ImagePuller::handle_result`], and records the Events and waiting state it is given. When
//! `ensure_image` goes to the network, the node records [`ImagePuller::pulling`] before the pull
//! starts.
//!
//! Back-off follows the kubelet (`imageBackOffPeriod` 10 s, `MaxImageBackOff` 300 s, client-go's
//! `flowcontrol.Backoff` without jitter): after a failure the key is in back-off for 10 s, the
//! window doubles per failure up to 300 s, and an entry unused for 600 s starts again at 10 s.
//! The key is `<pod UID>_<spec image>`, so two containers naming the same image share it.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use crate::service::{EnsureError, EnsuredImage, pulled_message};

/// The first back-off window after a failed pull (`imageBackOffPeriod`).
pub const IMAGE_BACK_OFF_INITIAL: Duration = Duration::from_secs(10);
/// The largest back-off window (`MaxImageBackOff`).
pub const IMAGE_BACK_OFF_MAX: Duration = Duration::from_secs(300);

/// An Event's `type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventType {
    /// `Normal`.
    Normal,
    /// `Warning`.
    Warning,
}

impl EventType {
    /// The API's spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Normal => "Normal",
            Self::Warning => "Warning",
        }
    }
}

/// An Event about a container's image, as the kubelet words it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageEvent {
    /// `Normal` or `Warning`.
    pub type_: EventType,
    /// `Pulling`, `Pulled`, `Failed`, `BackOff`, `InspectFailed` or `ErrImageNeverPull`.
    pub reason: &'static str,
    /// The message.
    pub message: String,
}

impl ImageEvent {
    fn normal(reason: &'static str, message: String) -> Self {
        Self {
            type_: EventType::Normal,
            reason,
            message,
        }
    }

    fn warning(reason: &'static str, message: String) -> Self {
        Self {
            type_: EventType::Warning,
            reason,
            message,
        }
    }
}

/// Why the container cannot be created yet: its waiting state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageFailure {
    /// `ErrImagePull`, `ImagePullBackOff`, `InvalidImageName` or `ErrImageNeverPull`.
    pub reason: &'static str,
    /// The waiting message.
    pub message: String,
}

/// What [`ImagePuller::handle_start`] decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StartStep {
    /// Call `ensure_image` and report the result to [`ImagePuller::handle_result`].
    Ensure,
    /// Do not try: the image is in back-off. Record `events` and wait in `failure`.
    BackOff {
        /// The `ImagePullBackOff` waiting state.
        failure: ImageFailure,
        /// `BackOff` and `Failed` events.
        events: Vec<ImageEvent>,
    },
}

/// What an `ensure_image` result means for the container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnsureOutcome {
    /// The waiting state when the container cannot be created; `None` when it can.
    pub failure: Option<ImageFailure>,
    /// Events to record, in order.
    pub events: Vec<ImageEvent>,
}

#[derive(Debug, Clone)]
struct BackOffEntry {
    window: Duration,
    last_update: Instant,
    /// The failure that stepped it (for the `ImagePullBackOff` message).
    last: ImageFailure,
}

/// The kubelet's per-node image pull decisions.
#[derive(Debug, Clone, Default)]
pub struct ImagePuller {
    back_off: HashMap<String, BackOffEntry>,
}

/// The kubelet's `FailedToRetrieveImagePullSecret` Warning about the pod, when some of the
/// `imagePullSecrets` it names do not exist (the pull goes on without them).
pub fn missing_pull_secrets(names: &[String]) -> ImageEvent {
    ImageEvent::warning(
        "FailedToRetrieveImagePullSecret",
        format!(
            "Unable to retrieve some image pull secrets ({}); attempting to pull the image may \
             not succeed.",
            names.join(", ")
        ),
    )
}

/// The back-off key of a container's image: `<pod UID>_<spec image>`.
pub fn back_off_key(pod_uid: &str, spec: &str) -> String {
    format!("{pod_uid}_{spec}")
}

fn expired(now: Instant, last_update: Instant) -> bool {
    now.saturating_duration_since(last_update) > 2 * IMAGE_BACK_OFF_MAX
}

impl ImagePuller {
    /// No image in back-off.
    pub fn new() -> Self {
        Self::default()
    }

    /// Whether `key` is in back-off at `now`.
    pub fn in_back_off(&self, key: &str, now: Instant) -> bool {
        self.back_off.get(key).is_some_and(|e| {
            !expired(now, e.last_update) && now.saturating_duration_since(e.last_update) < e.window
        })
    }

    /// The back-off window of `key`, if it has one.
    pub fn window(&self, key: &str) -> Option<Duration> {
        self.back_off.get(key).map(|e| e.window)
    }

    /// Before creating a container of image `spec`: may `ensure_image` run now?
    pub fn handle_start(&self, key: &str, spec: &str, now: Instant) -> StartStep {
        match self.back_off.get(key) {
            Some(e) if self.in_back_off(key, now) => {
                let short = format!("Back-off pulling image {spec:?}");
                StartStep::BackOff {
                    failure: ImageFailure {
                        reason: "ImagePullBackOff",
                        message: format!("{short}: {}: {}", e.last.reason, e.last.message),
                    },
                    events: vec![
                        ImageEvent::normal("BackOff", short),
                        ImageEvent::warning("Failed", "Error: ImagePullBackOff".into()),
                    ],
                }
            }
            _ => StartStep::Ensure,
        }
    }

    /// The `Pulling` Event, recorded when a pull starts (before [`Self::handle_result`]).
    pub fn pulling(spec: &str) -> ImageEvent {
        ImageEvent::normal("Pulling", format!("Pulling image {spec:?}"))
    }

    /// The result of `ensure_image(spec, …)` at `now`: events, the waiting state, and the
    /// back-off stepped for a failed pull. `size` is the image's size for the `Pulled` message.
    pub fn handle_result(
        &mut self,
        key: &str,
        spec: &str,
        result: Result<&EnsuredImage, &EnsureError>,
        size: u64,
        now: Instant,
    ) -> EnsureOutcome {
        match result {
            Ok(image) => EnsureOutcome {
                failure: None,
                events: match image.pulled_in {
                    Some(times) => vec![ImageEvent::normal(
                        "Pulled",
                        pulled_message(spec, times, size),
                    )],
                    None => vec![ImageEvent::normal(
                        "Pulled",
                        format!(
                            "Container image {spec:?} already present on machine and can be \
                             accessed by the pod"
                        ),
                    )],
                },
            },
            Err(e) => self.failed(key, spec, e, now),
        }
    }

    fn failed(&mut self, key: &str, spec: &str, e: &EnsureError, now: Instant) -> EnsureOutcome {
        let reason = e.reason();
        let message = e.to_string();
        let events = match e {
            EnsureError::InvalidImageName(_) => vec![
                ImageEvent::warning("InspectFailed", message.clone()),
                ImageEvent::warning("Failed", format!("Error: {reason}")),
            ],
            EnsureError::NeverPull(_) => vec![
                ImageEvent::warning("ErrImageNeverPull", message.clone()),
                ImageEvent::warning("Failed", format!("Error: {reason}")),
            ],
            EnsureError::Pull(_) | EnsureError::Store(_) => {
                let failure = ImageFailure {
                    reason,
                    message: message.clone(),
                };
                self.step(key, failure, now);
                vec![
                    ImageEvent::warning(
                        "Failed",
                        format!("Failed to pull image {spec:?}: {message}"),
                    ),
                    ImageEvent::warning("Failed", format!("Error: {reason}")),
                ]
            }
        };
        EnsureOutcome {
            failure: Some(ImageFailure { reason, message }),
            events,
        }
    }

    /// Steps the back-off of `key` after a failed pull at `now` (client-go's `Next`).
    pub fn step(&mut self, key: &str, last: ImageFailure, now: Instant) {
        match self.back_off.get_mut(key) {
            Some(e) if !expired(now, e.last_update) => {
                e.window = (e.window * 2).min(IMAGE_BACK_OFF_MAX);
                e.last_update = now;
                e.last = last;
            }
            _ => {
                self.back_off.insert(
                    key.to_owned(),
                    BackOffEntry {
                        window: IMAGE_BACK_OFF_INITIAL,
                        last_update: now,
                        last,
                    },
                );
            }
        }
    }

    /// Forgets entries unused for longer than twice the largest window (the kubelet's GC).
    pub fn gc(&mut self, now: Instant) {
        self.back_off.retain(|_, e| !expired(now, e.last_update));
    }

    /// Forgets every entry of pod `pod_uid` (the pod was deleted).
    pub fn forget_pod(&mut self, pod_uid: &str) {
        let prefix = format!("{pod_uid}_");
        self.back_off.retain(|k, _| !k.starts_with(&prefix));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::service::PullError;

    fn not_found() -> EnsureError {
        EnsureError::Pull(PullError::Resolve {
            reference: "127.0.0.1:5000/busybox:nope".into(),
            message: "127.0.0.1:5000/busybox:nope: not found".into(),
        })
    }

    /// The node retries a failed start every 10 s: pulls happen at 0, 10, 30, 70, 150, 310,
    /// 610 s and the container shows `ImagePullBackOff` at every other retry.
    #[test]
    fn a_missing_image_is_pulled_at_the_kubelets_back_off_times() {
        let t0 = Instant::now();
        let mut p = ImagePuller::new();
        let key = back_off_key("uid-1", "127.0.0.1:5000/busybox:nope");
        let mut pulls = Vec::new();
        let mut back_offs = 0;
        for s in (0..=620).step_by(10) {
            let now = t0 + Duration::from_secs(s);
            match p.handle_start(&key, "127.0.0.1:5000/busybox:nope", now) {
                StartStep::Ensure => {
                    pulls.push(s);
                    let out = p.handle_result(
                        &key,
                        "127.0.0.1:5000/busybox:nope",
                        Err(&not_found()),
                        0,
                        now,
                    );
                    assert_eq!(out.failure.expect("failure").reason, "ErrImagePull");
                }
                StartStep::BackOff { failure, events } => {
                    back_offs += 1;
                    assert_eq!(failure.reason, "ImagePullBackOff");
                    assert_eq!(
                        failure.message,
                        "Back-off pulling image \"127.0.0.1:5000/busybox:nope\": ErrImagePull: \
                         failed to pull and unpack image \"127.0.0.1:5000/busybox:nope\": failed \
                         to resolve image: 127.0.0.1:5000/busybox:nope: not found"
                    );
                    assert_eq!(events[0].reason, "BackOff");
                    assert_eq!(events[0].type_, EventType::Normal);
                    assert_eq!(events[1].message, "Error: ImagePullBackOff");
                }
            }
        }
        assert_eq!(pulls, [0, 10, 30, 70, 150, 310, 610]);
        assert_eq!(back_offs, 63 - pulls.len());
        assert_eq!(p.window(&key), Some(IMAGE_BACK_OFF_MAX));
    }

    #[test]
    fn back_off_resets_after_600_s_unused_and_is_shared_by_pod_and_spec() {
        let t0 = Instant::now();
        let mut p = ImagePuller::new();
        let key = back_off_key("uid-1", "x:1");
        let f = ImageFailure {
            reason: "ErrImagePull",
            message: "m".into(),
        };
        for i in 0..5 {
            p.step(&key, f.clone(), t0 + Duration::from_secs(i));
        }
        assert_eq!(p.window(&key), Some(Duration::from_secs(160)));
        assert!(!p.in_back_off(&back_off_key("uid-2", "x:1"), t0));
        let later = t0 + Duration::from_secs(4 + 601);
        assert!(!p.in_back_off(&key, later));
        p.step(&key, f.clone(), later);
        assert_eq!(p.window(&key), Some(IMAGE_BACK_OFF_INITIAL));
        p.gc(later + Duration::from_secs(601));
        assert_eq!(p.window(&key), None);
        p.step(&key, f, later);
        p.forget_pod("uid-1");
        assert_eq!(p.window(&key), None);
    }

    #[test]
    fn invalid_names_and_never_pull_fail_without_back_off() {
        let t0 = Instant::now();
        let mut p = ImagePuller::new();
        let invalid = crate::apply_default_image_tag("Busybox:1").expect_err("invalid");
        let out = p.handle_result("k", "Busybox:1", Err(&invalid.into()), 0, t0);
        let failure = out.failure.expect("failure");
        assert_eq!(failure.reason, "InvalidImageName");
        assert!(
            failure
                .message
                .starts_with("Failed to apply default image tag \"Busybox:1\": couldn't parse image name \"Busybox:1\": "),
            "{}",
            failure.message
        );
        let reasons: Vec<_> = out.events.iter().map(|e| (e.type_, e.reason)).collect();
        assert_eq!(
            reasons,
            [
                (EventType::Warning, "InspectFailed"),
                (EventType::Warning, "Failed")
            ]
        );
        let never = EnsureError::NeverPull("busybox:1".into());
        let out = p.handle_result("k", "busybox:1", Err(&never), 0, t0);
        let failure = out.failure.expect("failure");
        assert_eq!(failure.reason, "ErrImageNeverPull");
        assert_eq!(
            failure.message,
            "Container image \"busybox:1\" is not present with pull policy of Never"
        );
        assert_eq!(out.events[0].reason, "ErrImageNeverPull");
        assert_eq!(out.events[1].message, "Error: ErrImageNeverPull");
        assert!(!p.in_back_off("k", t0));
        assert_eq!(p.handle_start("k", "busybox:1", t0), StartStep::Ensure);
    }

    #[test]
    fn pulling_and_missing_secret_events_are_the_kubelets() {
        let pulling = ImagePuller::pulling("busybox:1");
        assert_eq!(
            (pulling.type_, pulling.reason, pulling.message.as_str()),
            (EventType::Normal, "Pulling", "Pulling image \"busybox:1\"")
        );
        let missing = missing_pull_secrets(&["a".into(), "b".into()]);
        assert_eq!(missing.type_, EventType::Warning);
        assert_eq!(missing.reason, "FailedToRetrieveImagePullSecret");
        assert_eq!(
            missing.message,
            "Unable to retrieve some image pull secrets (a, b); attempting to pull the image may \
             not succeed."
        );
        // A failed pull's events follow the `Pulling` the node recorded when it began.
        let mut p = ImagePuller::new();
        let out = p.handle_result(
            "k",
            "127.0.0.1:5000/busybox:nope",
            Err(&not_found()),
            0,
            Instant::now(),
        );
        let reasons: Vec<&str> = out.events.iter().map(|e| e.reason).collect();
        assert_eq!(reasons, ["Failed", "Failed"]);
    }
}

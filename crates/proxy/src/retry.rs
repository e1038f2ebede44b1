//! Whether a failed upstream attempt is sent again: Istio's default retry policy for
//! sidecar outbound routes, and the connection pool's rule for stale connections.
//!
//! Istio gives every outbound HTTP route `retries: {attempts: 2}` with `retryOn:
//! connect-failure,refused-stream,unavailable,cancelled,retriable-status-codes` and the
//! retriable status `503`, and a host predicate preferring endpoints not tried yet.
//! Envoy's router applies it: a connect failure or an upstream `503` is tried again on
//! a new connection, at most twice, after a fully jittered exponential backoff (base
//! 25 ms, cap 250 ms); a reset after the request went out (`connection termination`)
//! is not retried, since the upstream may have acted on the request. Once the retries
//! are spent the access log carries `URX` besides the failure's own flag. Inbound
//! routes have no retry policy. `refused-stream`, `unavailable` and `cancelled` are
//! HTTP/2 and gRPC conditions: hyper hands back a refused stream's request, which is
//! the [`Failure::Unsent`] case here.
//!
//! Separately, Envoy's pool never hands a request to a connection it knows the
//! upstream closed: a pooled connection found closed (or refusing the write) before
//! any byte of the request reached it is replaced by a new one, whatever the route's
//! policy, and that costs no retry.

use std::time::Duration;

use crate::config::Direction;

/// Retries Istio allows on an outbound route (`attempts: 2`).
pub const RETRIES: u32 = 2;
/// Envoy's base retry backoff interval.
pub const BACKOFF_BASE: Duration = Duration::from_millis(25);
/// Envoy's default backoff cap: ten times the base.
pub const BACKOFF_MAX: Duration = Duration::from_millis(250);

/// How an upstream attempt failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// The connection was closed or refused the request before any of its bytes went
    /// out on it (a stale pooled connection, or a refused HTTP/2 stream).
    Unsent,
    /// The connect failed or timed out (`connect-failure`).
    ConnectFailure,
    /// Closed or reset after the request went out, before any response byte
    /// (`connection termination`): the upstream may have processed it.
    ResetAfterSend,
    /// The upstream answered this status (its head read, nothing relayed yet).
    Status(u16),
}

/// One failed attempt and what is known about the request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Attempt {
    /// What failed.
    pub failure: Failure,
    /// Outbound routes carry Istio's retry policy; inbound ones none.
    pub direction: Direction,
    /// The connection had carried a request before (came from the pool or stayed
    /// with the downstream connection).
    pub reused: bool,
    /// Retries already made for this request (`0` on the first attempt).
    pub retries: u32,
    /// The whole request (head and body) is still at hand to send again.
    pub replayable: bool,
}

/// What to do after a failed attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Send the request again on a new connection, after `backoff`; `counted`: the
    /// new attempt spends one of the route's retries.
    Retry {
        /// Wait before the new attempt.
        backoff: Duration,
        /// Whether it is one of the route's retries (a stale pooled connection is not).
        counted: bool,
    },
    /// Answer with this failure (a local reply, or the upstream's own response);
    /// `retries_exhausted` adds `URX` to the access log.
    Answer {
        /// The retry policy would have retried, but its retries are spent.
        retries_exhausted: bool,
    },
}

/// Decides whether `attempt` is sent again. `jitter` is a uniformly random number
/// (the caller draws it), from which the backoff is taken.
pub fn decide(attempt: &Attempt, jitter: u64) -> Decision {
    let answer = Decision::Answer {
        retries_exhausted: false,
    };
    if attempt.failure == Failure::Unsent && attempt.reused {
        // The pool's rule, not the route's: nothing reached the upstream.
        return Decision::Retry {
            backoff: Duration::ZERO,
            counted: false,
        };
    }
    if attempt.direction != Direction::Outbound {
        return answer;
    }
    let retriable = match attempt.failure {
        Failure::ConnectFailure => true,
        Failure::Status(503) => attempt.replayable,
        Failure::Unsent | Failure::ResetAfterSend | Failure::Status(_) => false,
    };
    if !retriable {
        return answer;
    }
    if attempt.retries >= RETRIES {
        return Decision::Answer {
            retries_exhausted: true,
        };
    }
    Decision::Retry {
        backoff: backoff(attempt.retries + 1, jitter),
        counted: true,
    }
}

/// Envoy's fully jittered exponential backoff before retry number `n` (from 1):
/// uniform in `[0, base × (2ⁿ − 1))`, the bound capped at [`BACKOFF_MAX`].
pub fn backoff(n: u32, jitter: u64) -> Duration {
    let base = BACKOFF_BASE.as_millis() as u64;
    let bound = base
        .saturating_mul((1u64 << n.min(16)) - 1)
        .min(BACKOFF_MAX.as_millis() as u64);
    Duration::from_millis(jitter % bound.max(1))
}

/// A random number for [`decide`]'s backoff.
pub fn jitter() -> u64 {
    rand::random()
}

#[cfg(test)]
mod tests {
    use super::*;

    const OUT: Direction = Direction::Outbound;
    const IN: Direction = Direction::Inbound;

    fn at(failure: Failure, direction: Direction, reused: bool, retries: u32) -> Attempt {
        Attempt {
            failure,
            direction,
            reused,
            retries,
            replayable: true,
        }
    }

    fn retry(ms: u64) -> Decision {
        Decision::Retry {
            backoff: Duration::from_millis(ms),
            counted: true,
        }
    }

    const ANSWER: Decision = Decision::Answer {
        retries_exhausted: false,
    };
    const URX: Decision = Decision::Answer {
        retries_exhausted: true,
    };
    const STALE: Decision = Decision::Retry {
        backoff: Duration::ZERO,
        counted: false,
    };

    #[test]
    fn decisions() {
        use Failure::*;
        // (attempt, jitter, decision)
        let table = [
            // A pooled connection closed before the request reached it: a new one,
            // both directions, whatever the retries spent, no backoff.
            (at(Unsent, OUT, true, 0), 7, STALE),
            (at(Unsent, IN, true, 0), 7, STALE),
            (at(Unsent, OUT, true, RETRIES), 7, STALE),
            // A new connection that fails before the request went out is a reset
            // Istio's policy does not name (`reset-before-request`).
            (at(Unsent, OUT, false, 0), 7, ANSWER),
            // connect-failure: twice, then `URX`; never inbound.
            (at(ConnectFailure, OUT, false, 0), 7, retry(7)),
            (at(ConnectFailure, OUT, false, 0), 31, retry(6)),
            (at(ConnectFailure, OUT, false, 1), 80, retry(5)),
            (at(ConnectFailure, OUT, false, 2), 7, URX),
            (at(ConnectFailure, IN, false, 0), 7, ANSWER),
            // The request went out: not retried (no `reset` in Istio's retryOn),
            // fresh or reused, first attempt or not.
            (at(ResetAfterSend, OUT, true, 0), 7, ANSWER),
            (at(ResetAfterSend, OUT, false, 0), 7, ANSWER),
            (at(ResetAfterSend, OUT, false, 1), 7, ANSWER),
            (at(ResetAfterSend, IN, true, 0), 7, ANSWER),
            // retriable-status-codes: 503 only, outbound only.
            (at(Status(503), OUT, true, 0), 24, retry(24)),
            (at(Status(503), OUT, true, 1), 74, retry(74)),
            (at(Status(503), OUT, true, 2), 7, URX),
            (at(Status(503), IN, true, 0), 7, ANSWER),
            (at(Status(502), OUT, true, 0), 7, ANSWER),
            (at(Status(504), OUT, true, 0), 7, ANSWER),
            (at(Status(200), OUT, true, 0), 7, ANSWER),
        ];
        for (i, (attempt, jitter, want)) in table.into_iter().enumerate() {
            assert_eq!(decide(&attempt, jitter), want, "row {i}: {attempt:?}");
        }
    }

    #[test]
    fn a_503_whose_body_is_gone_is_answered() {
        // The request body streamed upstream and is no longer at hand.
        let a = Attempt {
            replayable: false,
            ..at(Failure::Status(503), OUT, true, 0)
        };
        assert_eq!(decide(&a, 3), ANSWER);
        // A connect failure sent nothing: the request is still whole.
        let a = Attempt {
            replayable: false,
            ..at(Failure::ConnectFailure, OUT, false, 0)
        };
        assert_eq!(decide(&a, 3), retry(3));
    }

    #[test]
    fn backoff_is_fully_jittered_and_capped() {
        // Retry n waits less than 25 ms × (2ⁿ − 1): 25, 75, 175, then 250 ms.
        for (n, bound) in [(1, 25), (2, 75), (3, 175), (4, 250), (10, 250), (40, 250)] {
            assert_eq!(backoff(n, bound - 1), Duration::from_millis(bound - 1));
            assert_eq!(backoff(n, bound), Duration::ZERO);
            assert_eq!(
                backoff(n, u64::MAX),
                Duration::from_millis(u64::MAX % bound)
            );
        }
    }
}

//! Sequence numbers and consistency: the committed sequence (acknowledged writes, with the
//! bounded-staleness window), the applied sequence, and the waits a read makes for the
//! sequence its consistency level requires.

use std::collections::VecDeque;
use std::sync::atomic::Ordering;
use std::time::Instant;

use proxima_core::consistency::Seq;
use proxima_core::ConsistencyLevel;

use super::Collection;
use crate::engine::error::{EngineError, EngineResult};

pub(super) struct Clock {
    /// Highest sequence acknowledged to a client.
    pub(super) committed: Seq,
    /// Acknowledgements younger than the bounded staleness window, oldest first.
    pub(super) recent: VecDeque<(Instant, Seq)>,
    /// Highest sequence acknowledged before the window.
    pub(super) floor: Seq,
}

impl Clock {
    /// Moves acknowledgements older than `horizon` (now minus the bounded staleness) out of
    /// the window into `floor`.
    pub(super) fn advance(&mut self, horizon: Option<Instant>) {
        let Some(horizon) = horizon else { return };
        while let Some(&(t, seq)) = self.recent.front() {
            if t > horizon {
                break;
            }
            self.floor = self.floor.max(seq);
            self.recent.pop_front();
        }
    }
}

impl Collection {
    /// Highest acknowledged sequence.
    pub fn committed_seq(&self) -> Seq {
        self.clock.lock().committed
    }

    /// Acknowledgements held for the bounded-staleness window.
    #[cfg(test)]
    pub(crate) fn acks_in_window(&self) -> usize {
        self.clock.lock().recent.len()
    }

    /// Highest sequence applied to the shards.
    pub fn applied_seq(&self) -> Seq {
        *self.applied.lock()
    }

    /// The sequence a search at `level` must wait for.
    ///
    /// A `session_seq` above every acknowledged sequence is refused: it is another
    /// collection's, or its writes were lost (`--fsync never` and a crash), and waiting for it
    /// would promise read-your-writes that cannot hold.
    pub fn required_seq(
        &self,
        level: ConsistencyLevel,
        session_seq: Option<Seq>,
    ) -> EngineResult<Seq> {
        let mut clock = self.clock.lock();
        if level == ConsistencyLevel::Session {
            if let Some(given) = session_seq.filter(|&s| s > clock.committed) {
                return Err(EngineError::SessionAhead {
                    session_seq: given,
                    committed: clock.committed,
                });
            }
        }
        clock.advance(Instant::now().checked_sub(self.config.bounded_staleness));
        Ok(level.required_seq(clock.committed, session_seq, clock.floor))
    }

    pub(super) fn wait_applied(&self, required: Seq) -> EngineResult<Seq> {
        let start = Instant::now();
        let deadline = start + self.config.consistency_timeout;
        let mut applied = self.applied.lock();
        while *applied < required {
            if self.closed.load(Ordering::SeqCst) {
                return Err(EngineError::Closed);
            }
            if self
                .applied_cv
                .wait_until(&mut applied, deadline)
                .timed_out()
                && *applied < required
            {
                return Err(EngineError::ConsistencyTimeout {
                    required,
                    applied: *applied,
                    waited_ms: start.elapsed().as_millis() as u64,
                });
            }
        }
        Ok(*applied)
    }
}

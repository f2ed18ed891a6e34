//! The decision board: what the HTTP side may read, published by the core
//! thread after each group commit — so nothing is visible to a client before
//! the packet that caused it is in the chronicle.

use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use serde_json::Value as Json;
use tokio::sync::{broadcast, watch};

use crate::supervisor::Event;

/// Events kept for clients that resume the stream with `Last-Event-ID`.
/// A client further behind is told how many it missed.
pub const EVENTS_KEPT_MAX: usize = 16_384;
/// Events buffered per stream subscriber before it counts as lagging.
pub const STREAM_BUFFER_LEN_MAX: usize = 4_096;

/// One job's committed decision.
#[derive(Clone, Debug, PartialEq)]
pub struct JobDecision {
    /// The last tick that changed it.
    pub tick: u64,
    /// The decision as JSON.
    pub json: Json,
}

/// Committed state, behind the board's lock.
#[derive(Default)]
pub struct BoardState {
    /// Decisions by job.
    pub jobs: BTreeMap<String, JobDecision>,
    /// The last prior update, as JSON.
    pub prior: Option<Json>,
    /// The newest events, oldest first.
    pub events: VecDeque<Arc<Event>>,
    /// Events ever published (so a resuming client knows what it missed).
    pub events_published: u64,
    /// The last committed tick.
    pub tick: u64,
}

/// Shared between the core thread (writer) and the shell (readers).
pub struct Board {
    state: Mutex<BoardState>,
    tick: watch::Sender<u64>,
    events: broadcast::Sender<Arc<Event>>,
    ready: AtomicBool,
    shutdown: watch::Sender<bool>,
}

impl Default for Board {
    fn default() -> Self {
        Board {
            state: Mutex::new(BoardState::default()),
            tick: watch::channel(0).0,
            events: broadcast::channel(STREAM_BUFFER_LEN_MAX).0,
            ready: AtomicBool::new(false),
            shutdown: watch::channel(false).0,
        }
    }
}

impl Board {
    /// The committed state. A poisoned lock means a reader panicked while
    /// holding it; the state itself is only ever replaced whole, so it is
    /// still consistent and is used as it is.
    pub fn lock(&self) -> MutexGuard<'_, BoardState> {
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Publishes one commit: the decisions of the jobs it touched, the
    /// prior, its events, and the new committed tick.
    pub fn publish(&self, jobs: Vec<(String, JobDecision)>, prior: Option<Json>, events: Vec<Event>, tick: u64) {
        let events: Vec<Arc<Event>> = events.into_iter().map(Arc::new).collect();
        {
            let mut state = self.lock();
            state.jobs.extend(jobs);
            if prior.is_some() {
                state.prior = prior;
            }
            for event in &events {
                if state.events.len() == EVENTS_KEPT_MAX {
                    state.events.pop_front();
                }
                state.events.push_back(event.clone());
                state.events_published += 1;
            }
            state.tick = tick;
        }
        for event in events {
            // No subscriber is not an error: nobody is streaming.
            let _ = self.events.send(event);
        }
        self.tick.send_replace(tick);
    }

    /// A receiver of every committed tick.
    pub fn ticks(&self) -> watch::Receiver<u64> {
        self.tick.subscribe()
    }

    /// A receiver of every event published from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<Event>> {
        self.events.subscribe()
    }

    /// Marks the supervisor ready to take packets (its state is rebuilt).
    pub fn set_ready(&self) {
        self.ready.store(true, Ordering::SeqCst);
    }

    /// Whether the state is rebuilt and packets are governed.
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::SeqCst)
    }

    /// Tells streams and long polls to end: the supervisor is stopping.
    pub fn begin_shutdown(&self) {
        self.ready.store(false, Ordering::SeqCst);
        self.shutdown.send_replace(true);
    }

    /// A receiver that turns `true` when shutdown begins.
    pub fn shutdown_signal(&self) -> watch::Receiver<bool> {
        self.shutdown.subscribe()
    }
}

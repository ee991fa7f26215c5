//! What just changed, for live views (the HTTP API's `/api/v1/events`, the dashboard).
//!
//! An event is a hint to read again, never data: the rows and states it points at are read
//! through the usual queries. It is published when its transition is applied, a group
//! commit (milliseconds) before that is durable; a view that reads on it may therefore see
//! a staged epoch that a crash in those milliseconds loses, which its worker then sends
//! again. Publishing never blocks and never fails a transition: with nobody listening the
//! event is dropped, and a listener that falls more than [`CAPACITY`] events behind is told
//! how many it missed.

use serde::Serialize;
use tokio::sync::broadcast;

use crate::ids::{JobId, SweepId};
use crate::lifecycle::StateKind;

/// Events kept for a slow listener before it lags.
pub const CAPACITY: usize = 4_096;

/// One change, as its JSON object (`kind` names the variant).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Event {
    /// A running job's histograms or estimates for `epoch` arrived: its provisional rows
    /// grew.
    Measured { sweep_id: SweepId, job_id: JobId, epoch: u32 },
    /// A job changed state (leased, done, re-queued, failed, cancelled).
    Job { sweep_id: SweepId, job_id: JobId, state: &'static str },
    /// A sweep was submitted, cancelled or had its failed jobs retried.
    Sweep { sweep_id: SweepId },
}

impl Event {
    pub fn job(sweep_id: SweepId, job_id: JobId, state: StateKind) -> Event {
        Event::Job { sweep_id, job_id, state: state.as_str() }
    }

    pub fn sweep_id(&self) -> SweepId {
        match *self {
            Event::Measured { sweep_id, .. } | Event::Job { sweep_id, .. } | Event::Sweep { sweep_id } => sweep_id,
        }
    }

    /// The SSE event name: the `kind`.
    pub fn name(&self) -> &'static str {
        match self {
            Event::Measured { .. } => "measured",
            Event::Job { .. } => "job",
            Event::Sweep { .. } => "sweep",
        }
    }
}

/// The scheduler's outlet for [`Event`]s.
#[derive(Debug)]
pub struct EventBus {
    sender: broadcast::Sender<Event>,
}

impl Default for EventBus {
    fn default() -> Self {
        EventBus { sender: broadcast::Sender::new(CAPACITY) }
    }
}

impl EventBus {
    pub(super) fn publish(&self, event: Event) {
        // An error only means nobody is listening.
        let _ = self.sender.send(event);
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.sender.subscribe()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_are_tagged_json_objects() {
        let sweep_id = SweepId(uuid::Uuid::from_u128(1));
        let job_id = JobId(uuid::Uuid::from_u128(2));
        let json = serde_json::to_value(Event::Measured { sweep_id, job_id, epoch: 3 }).unwrap();
        assert_eq!(json["kind"], "measured");
        assert_eq!(json["epoch"], 3);
        assert_eq!(json["job_id"], job_id.to_string());
        let json = serde_json::to_value(Event::job(sweep_id, job_id, StateKind::Done)).unwrap();
        assert_eq!((json["kind"].as_str(), json["state"].as_str()), (Some("job"), Some("done")));
    }

    #[test]
    fn publishing_with_nobody_listening_is_fine_and_a_listener_hears_what_follows() {
        let bus = EventBus::default();
        let sweep_id = SweepId(uuid::Uuid::from_u128(1));
        bus.publish(Event::Sweep { sweep_id });
        let mut listener = bus.subscribe();
        bus.publish(Event::Sweep { sweep_id });
        assert_eq!(listener.try_recv().unwrap(), Event::Sweep { sweep_id });
        assert!(listener.try_recv().is_err());
    }
}

//! The uplink's send window: which journal records are in flight and what to send next.
//!
//! Pure state, no I/O: the driver asks [`SendWindow::next_after`] where to read the journal from,
//! reports each batch it wrote with [`SendWindow::on_sent`] and each acknowledgement with
//! [`SendWindow::on_ack`]. Acknowledgements are cumulative; the journal deletes only acknowledged
//! records, so anything in flight when a connection drops is simply sent again on the next one
//! (at-least-once on the wire; the control plane deduplicates by sequence number).

use std::collections::VecDeque;

/// How much may be unacknowledged at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WindowLimits {
    /// Batches in flight.
    pub max_batches: usize,
    /// Encoded bytes in flight.
    pub max_bytes: usize,
}

impl Default for WindowLimits {
    fn default() -> Self {
        // Enough to keep a loopback or LAN link busy during replay without letting a slow
        // control plane pin much memory in QUIC buffers.
        Self {
            max_batches: 8,
            max_bytes: 8 << 20,
        }
    }
}

/// A protocol violation by the control plane.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WindowError {
    /// The control plane acknowledged a sequence number that was never sent.
    #[error("acknowledgement of {upto} beyond the last sent record {sent}")]
    AckBeyondSent {
        /// Acknowledged.
        upto: u64,
        /// Highest sent.
        sent: u64,
    },
}

#[derive(Debug, Clone, Copy)]
struct InFlight {
    last_seq: u64,
    bytes: usize,
}

/// Send state of one connection.
#[derive(Debug, Clone)]
pub struct SendWindow {
    limits: WindowLimits,
    acked_upto: u64,
    sent_upto: u64,
    in_flight: VecDeque<InFlight>,
    in_flight_bytes: usize,
}

impl SendWindow {
    /// A window that starts after `resume_after` (what the control plane already stored).
    pub fn new(resume_after: u64, limits: WindowLimits) -> Self {
        Self {
            limits,
            acked_upto: resume_after,
            sent_upto: resume_after,
            in_flight: VecDeque::new(),
            in_flight_bytes: 0,
        }
    }

    /// Read the journal after this sequence number for the next batch.
    pub fn next_after(&self) -> u64 {
        self.sent_upto
    }

    /// Whether another batch may be sent now.
    pub fn has_room(&self) -> bool {
        self.in_flight.len() < self.limits.max_batches
            && self.in_flight_bytes < self.limits.max_bytes
    }

    /// Records a batch ending at `last_seq`, `bytes` long, as sent.
    pub fn on_sent(&mut self, last_seq: u64, bytes: usize) {
        debug_assert!(
            last_seq > self.sent_upto,
            "batches are sent in sequence order"
        );
        self.sent_upto = self.sent_upto.max(last_seq);
        self.in_flight.push_back(InFlight { last_seq, bytes });
        self.in_flight_bytes += bytes;
    }

    /// Applies a cumulative acknowledgement; returns the new acknowledged sequence number if it
    /// moved forward (the journal can delete up to it).
    ///
    /// # Errors
    /// When `upto` was never sent.
    pub fn on_ack(&mut self, upto: u64) -> Result<Option<u64>, WindowError> {
        if upto > self.sent_upto {
            return Err(WindowError::AckBeyondSent {
                upto,
                sent: self.sent_upto,
            });
        }
        if upto <= self.acked_upto {
            return Ok(None);
        }
        self.acked_upto = upto;
        while self
            .in_flight
            .front()
            .is_some_and(|batch| batch.last_seq <= upto)
        {
            if let Some(batch) = self.in_flight.pop_front() {
                self.in_flight_bytes -= batch.bytes;
            }
        }
        Ok(Some(upto))
    }

    /// Highest acknowledged sequence number.
    pub fn acked_upto(&self) -> u64 {
        self.acked_upto
    }

    /// Batches sent and not yet acknowledged.
    pub fn in_flight(&self) -> usize {
        self.in_flight.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fills_up_to_the_batch_limit_and_drains_on_cumulative_acks() {
        let mut window = SendWindow::new(
            10,
            WindowLimits {
                max_batches: 2,
                max_bytes: 1000,
            },
        );
        assert_eq!(window.next_after(), 10);
        window.on_sent(15, 100);
        assert!(window.has_room());
        window.on_sent(20, 100);
        assert!(!window.has_room());
        assert_eq!(window.next_after(), 20);
        assert_eq!(window.on_ack(15), Ok(Some(15)));
        assert!(window.has_room());
        assert_eq!(window.in_flight(), 1);
        assert_eq!(window.on_ack(12), Ok(None), "stale ack is ignored");
        assert_eq!(window.on_ack(20), Ok(Some(20)));
        assert_eq!(window.in_flight(), 0);
    }

    #[test]
    fn byte_limit_applies() {
        let mut window = SendWindow::new(
            0,
            WindowLimits {
                max_batches: 10,
                max_bytes: 150,
            },
        );
        window.on_sent(1, 100);
        assert!(window.has_room());
        window.on_sent(2, 100);
        assert!(!window.has_room());
    }

    #[test]
    fn ack_beyond_sent_is_a_violation() {
        let mut window = SendWindow::new(0, WindowLimits::default());
        window.on_sent(5, 1);
        assert_eq!(
            window.on_ack(6),
            Err(WindowError::AckBeyondSent { upto: 6, sent: 5 })
        );
    }

    #[test]
    fn partial_ack_inside_a_batch_keeps_it_in_flight() {
        let mut window = SendWindow::new(0, WindowLimits::default());
        window.on_sent(10, 50);
        assert_eq!(window.on_ack(4), Ok(Some(4)));
        assert_eq!(window.in_flight(), 1);
    }
}

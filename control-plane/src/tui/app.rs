//! The interactive driver: the terminal in raw mode on the alternate screen, and one loop over a
//! closed [`Event`] enum (keys from a reader thread, refresh ticks, finished fetches). It owns no
//! logic of its own: keys go to [`UiState::handle_key`], drawing to [`render`], fetching to
//! [`fetch`].

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use crossterm::event::{self, KeyEvent};
use tokio::sync::mpsc;

use super::{
    Snapshot, fetch, render,
    ui::{Action, UiState},
};
use crate::{
    remote::{Remote, RemoteError},
    store::now_ms,
};

/// Why the dashboard stopped.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    /// The first fetch failed (nothing to show).
    #[error(transparent)]
    Remote(#[from] RemoteError),
    /// The terminal could not be set up or drawn to.
    #[error("terminal: {0}")]
    Terminal(#[from] std::io::Error),
}

/// What the loop reacts to.
#[derive(Debug)]
enum Event {
    /// A key press.
    Key(KeyEvent),
    /// The terminal was resized.
    Resize,
    /// A fetch finished.
    Fetched(Box<Result<Snapshot, RemoteError>>),
}

/// How long the key reader waits for input before checking whether to stop.
const KEY_POLL: Duration = Duration::from_millis(200);

/// Runs the dashboard until `q`: fetches first (so an unreachable control plane or a refused
/// token is reported on the normal screen), then refreshes every `every`.
///
/// # Errors
/// The first fetch failing, or the terminal failing.
///
/// # Cancel safety
/// Not cancel-safe: cancelling it leaves the terminal in raw mode. Run it to completion.
pub async fn run(remote: Remote, every: Duration) -> Result<(), AppError> {
    let mut snapshot = fetch(&remote, now_ms()).await?;
    let mut ui = UiState::default();
    let mut terminal = ratatui::try_init()?;
    let (tx, mut rx) = mpsc::channel::<Event>(64);
    let stop = Arc::new(AtomicBool::new(false));
    let reader = spawn_key_reader(tx.clone(), Arc::clone(&stop));
    let mut ticks = tokio::time::interval(every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ticks.reset();
    let mut in_flight: Option<tokio::task::JoinHandle<()>> = None;
    let mut refresh_now = false;
    let result = loop {
        if let Err(error) = terminal.draw(|frame| render(frame, &snapshot, &ui)) {
            break Err(AppError::Terminal(error));
        }
        if refresh_now && in_flight.as_ref().is_none_or(|t| t.is_finished()) {
            let remote = remote.clone();
            let tx = tx.clone();
            in_flight = Some(tokio::spawn(async move {
                let result = fetch(&remote, now_ms()).await;
                let _ = tx.send(Event::Fetched(Box::new(result))).await;
            }));
        }
        refresh_now = false;
        let event = tokio::select! {
            _ = ticks.tick() => {
                refresh_now = true;
                continue;
            }
            event = rx.recv() => event,
        };
        match event {
            // The reader thread stopped (terminal closed): leave.
            None => break Ok(()),
            Some(Event::Resize) => {}
            Some(Event::Key(key)) => match ui.handle_key(key) {
                Action::Quit => break Ok(()),
                Action::Refresh => refresh_now = true,
                Action::Redraw => {}
            },
            Some(Event::Fetched(result)) => match *result {
                Ok(next) => {
                    snapshot = next;
                    ui.last_error = None;
                }
                Err(error) => ui.last_error = Some(error.to_string()),
            },
        }
    };
    stop.store(true, Ordering::SeqCst);
    if let Some(task) = in_flight {
        task.abort();
    }
    ratatui::restore();
    // The reader notices `stop` within one poll interval.
    let _ = tokio::task::spawn_blocking(move || reader.join()).await;
    result
}

/// Reads terminal events on a thread of its own (crossterm's reads block) until `stop`.
fn spawn_key_reader(tx: mpsc::Sender<Event>, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        while !stop.load(Ordering::SeqCst) {
            match event::poll(KEY_POLL) {
                Ok(false) => continue,
                Ok(true) => {}
                Err(_) => return,
            }
            let event = match event::read() {
                Ok(event::Event::Key(key)) => Event::Key(key),
                Ok(event::Event::Resize(..)) => Event::Resize,
                Ok(_) => continue,
                Err(_) => return,
            };
            if tx.blocking_send(event).is_err() {
                return;
            }
        }
    })
}

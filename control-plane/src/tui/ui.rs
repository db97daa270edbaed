//! The dashboard's interface state (focused pane, scroll offsets, the last refresh error) and
//! what each key does. Pure: keys in, [`Action`]s out.

use crossterm::event::{KeyCode, KeyEvent, KeyEventKind, KeyModifiers};

/// The five panes, in Tab order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pane {
    /// Fleet summary.
    Status,
    /// Alerts by severity.
    Alerts,
    /// Hosts, checks, services, models.
    Services,
    /// Log stats.
    Logs,
    /// Backups.
    Backups,
}

impl Pane {
    /// Every pane in Tab order.
    pub const ALL: [Pane; 5] = [
        Pane::Status,
        Pane::Alerts,
        Pane::Services,
        Pane::Logs,
        Pane::Backups,
    ];

    /// The pane's title.
    pub fn title(self) -> &'static str {
        match self {
            Self::Status => "System status",
            Self::Alerts => "Alerts",
            Self::Services => "Services",
            Self::Logs => "Log stats",
            Self::Backups => "Backups",
        }
    }

    fn idx(self) -> usize {
        Self::ALL.iter().position(|p| *p == self).unwrap_or(0)
    }

    fn step(self, by: isize) -> Self {
        let n = Self::ALL.len() as isize;
        Self::ALL[(self.idx() as isize + by).rem_euclid(n) as usize]
    }
}

/// What the loop should do after a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Redraw (or nothing).
    Redraw,
    /// Fetch a new snapshot now.
    Refresh,
    /// Leave.
    Quit,
}

/// Focus, scroll offsets, and the last refresh's error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UiState {
    /// The focused pane.
    pub focus: Pane,
    scroll: [u16; 5],
    /// Why the last refresh failed (the previous snapshot stays on screen).
    pub last_error: Option<String>,
}

impl Default for UiState {
    fn default() -> Self {
        Self {
            focus: Pane::Status,
            scroll: [0; 5],
            last_error: None,
        }
    }
}

impl UiState {
    /// A pane's scroll offset in lines.
    pub fn scroll(&self, pane: Pane) -> u16 {
        self.scroll[pane.idx()]
    }

    /// Applies a key.
    pub fn handle_key(&mut self, key: KeyEvent) -> Action {
        if key.kind == KeyEventKind::Release {
            return Action::Redraw;
        }
        let scroll = &mut self.scroll[self.focus.idx()];
        match key.code {
            KeyCode::Char('q') | KeyCode::Esc => return Action::Quit,
            KeyCode::Char('c') if key.modifiers.contains(KeyModifiers::CONTROL) => {
                return Action::Quit;
            }
            KeyCode::Char('r') => return Action::Refresh,
            KeyCode::Tab | KeyCode::Right | KeyCode::Char('l') => self.focus = self.focus.step(1),
            KeyCode::BackTab | KeyCode::Left | KeyCode::Char('h') => {
                self.focus = self.focus.step(-1);
            }
            KeyCode::Char('j') | KeyCode::Down => *scroll = scroll.saturating_add(1),
            KeyCode::Char('k') | KeyCode::Up => *scroll = scroll.saturating_sub(1),
            KeyCode::PageDown => *scroll = scroll.saturating_add(10),
            KeyCode::PageUp => *scroll = scroll.saturating_sub(10),
            KeyCode::Home | KeyCode::Char('g') => *scroll = 0,
            _ => {}
        }
        Action::Redraw
    }
}

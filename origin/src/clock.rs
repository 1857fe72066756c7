//! The one place the origin reads the wall clock. Handlers take `now` from here so that the
//! logic they call (in `domain`) receives time as an argument.

use std::time::{SystemTime, UNIX_EPOCH};

use domain::time::UnixMillis;

#[derive(Debug, Clone, Copy)]
pub enum Clock {
    System,
}

impl Clock {
    pub fn now(self) -> UnixMillis {
        match self {
            Clock::System => UnixMillis(
                SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
                    .unwrap_or(0),
            ),
        }
    }
}

//! Time as a value. The core never reads a clock; callers pass `UnixMillis` in.

use serde::{Deserialize, Serialize};

/// Milliseconds since the Unix epoch, as both the Worker (`Date.now()`) and the origin
/// (`SystemTime`) can produce it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct UnixMillis(pub u64);

impl UnixMillis {
    pub fn as_secs(self) -> u64 {
        self.0 / 1000
    }

    pub fn from_secs(secs: u64) -> Self {
        Self(secs.saturating_mul(1000))
    }

    pub fn saturating_sub_ms(self, ms: u64) -> Self {
        Self(self.0.saturating_sub(ms))
    }

    pub fn saturating_add_ms(self, ms: u64) -> Self {
        Self(self.0.saturating_add(ms))
    }

    /// Absolute distance between two instants, in milliseconds.
    pub fn distance_ms(self, other: Self) -> u64 {
        self.0.abs_diff(other.0)
    }
}

//! Listening events: what a user played, as one analytics event of kind `track_played`.
//!
//! Two producers write them — the integration hub's sync of the music services (Spotify,
//! Apple Music, YouTube Music, Amazon Music, Deezer, Last.fm) and `demo-data`'s synthetic
//! catalogue — and the personalisation engine, insights and churn read them. The event id is
//! derived from the provider, the user, the provider's track id and the play time, so a sync
//! that sees the same play twice stores it once (the event store is exactly-once by id).

use serde::{Deserialize, Serialize};

use crate::time::UnixMillis;

/// The event kind every listening event is stored under.
pub const KIND: &str = crate::wire::event::EventKind::TrackPlayed.as_str();
/// The endpoint class listening events carry (breadth in engagement ignores it).
pub const CLASS: &str = "listening";

/// Audio features of a track, each in [0, 1] except `tempo` (beats per minute), as the music
/// services describe them (Spotify's audio-features vocabulary).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct AudioFeatures {
    pub energy: f64,
    pub valence: f64,
    pub danceability: f64,
    pub tempo: f64,
    pub acousticness: f64,
}

impl AudioFeatures {
    /// Whether every feature is finite and in its range (tempo 0–300 bpm).
    pub fn is_valid(&self) -> bool {
        let unit = |x: f64| x.is_finite() && (0.0..=1.0).contains(&x);
        unit(self.energy)
            && unit(self.valence)
            && unit(self.danceability)
            && unit(self.acousticness)
            && self.tempo.is_finite()
            && (0.0..=300.0).contains(&self.tempo)
    }
}

/// One play of one track: the `data` of a `track_played` event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrackPlayed {
    /// `spotify`, `lastfm`, … or `demo` for the synthetic catalogue.
    pub provider: String,
    /// The provider's id of the track (Spotify track id, Last.fm mbid or artist/title, …).
    pub provider_track_id: String,
    pub title: String,
    pub artist: String,
    /// The provider's id of the (first) artist, when it has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artist_id: Option<String>,
    /// Genres, most specific first; empty when the provider gives none.
    #[serde(default)]
    pub genres: Vec<String>,
    /// The track's length.
    pub duration_ms: u64,
    /// How long it was played, when the provider says (a skip is a short play).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub played_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub features: Option<AudioFeatures>,
    /// The provider's popularity, 0–100, when it gives one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub popularity: Option<u8>,
    /// `recently_played` or `saved` (a saved track is a signal of taste, not a play).
    #[serde(default = "default_source")]
    pub source: String,
}

fn default_source() -> String {
    "recently_played".into()
}

impl TrackPlayed {
    /// Whether the play was skipped: played for less than half the track and under 30 s
    /// (the usual threshold of a counted stream). Unknown play length counts as not skipped.
    pub fn skipped(&self) -> bool {
        match self.played_ms {
            Some(p) => p < 30_000 && p * 2 < self.duration_ms,
            None => false,
        }
    }
}

/// The stable event id of one play: the same play seen by two syncs has the same id.
pub fn event_id(provider: &str, user_id: &str, provider_track_id: &str, played_at: UnixMillis) -> String {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    for part in [provider, user_id, provider_track_id] {
        h.update(part.as_bytes());
        h.update([0u8]);
    }
    h.update(played_at.0.to_be_bytes());
    let digest = h.finalize();
    let hex: String = digest.iter().take(16).map(|b| format!("{b:02x}")).collect();
    format!("lp-{hex}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_play_has_the_same_id_and_another_play_does_not() {
        let a = event_id("spotify", "u1", "t1", UnixMillis(1_000));
        assert_eq!(a, event_id("spotify", "u1", "t1", UnixMillis(1_000)));
        assert_ne!(a, event_id("spotify", "u1", "t1", UnixMillis(1_001)));
        assert_ne!(a, event_id("lastfm", "u1", "t1", UnixMillis(1_000)));
        // The separator keeps ("ab", "c") apart from ("a", "bc").
        assert_ne!(
            event_id("spotify", "ab", "c", UnixMillis(0)),
            event_id("spotify", "a", "bc", UnixMillis(0))
        );
    }

    #[test]
    fn a_short_play_of_a_long_track_is_a_skip() {
        let mut t = TrackPlayed {
            provider: "demo".into(),
            provider_track_id: "t".into(),
            title: "T".into(),
            artist: "A".into(),
            artist_id: None,
            genres: vec![],
            duration_ms: 200_000,
            played_ms: Some(10_000),
            features: None,
            popularity: None,
            source: default_source(),
        };
        assert!(t.skipped());
        t.played_ms = Some(40_000);
        assert!(!t.skipped());
        t.played_ms = None;
        assert!(!t.skipped());
        // A 20 s track played for 15 s is not a skip.
        t.duration_ms = 20_000;
        t.played_ms = Some(15_000);
        assert!(!t.skipped());
    }

    #[test]
    fn features_out_of_range_are_invalid() {
        let f =
            AudioFeatures { energy: 0.5, valence: 0.5, danceability: 0.5, tempo: 120.0, acousticness: 0.1 };
        assert!(f.is_valid());
        assert!(!AudioFeatures { energy: 1.5, ..f }.is_valid());
        assert!(!AudioFeatures { tempo: f64::NAN, ..f }.is_valid());
    }
}

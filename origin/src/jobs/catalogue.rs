//! The synthetic music catalogue of `demo-data` and the listeners who play it: genres with
//! their typical audio features, artists whose fame follows a power law (so track popularity
//! has a long tail), and listeners with consistent tastes (two or three favourite genres, a
//! preferred energy, a shared dislike of acoustic, undanceable tracks), so a recommendation's
//! hit rate on held-out plays and a skip model's AUC are measurable. Everything is drawn from
//! one seeded generator: the same seed gives the same catalogue and plays.

use std::collections::{BTreeMap, BTreeSet};

use domain::listening::{AudioFeatures, TrackPlayed};
use domain::personalization::{CatalogueTrack, TasteProfile};
use domain::profile::PersonalizationLevel;
use domain::time::UnixMillis;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// Genres with their typical (energy, valence, danceability, tempo, acousticness).
const GENRES: [(&str, [f64; 5]); 12] = [
    ("pop", [0.7, 0.7, 0.75, 118.0, 0.15]),
    ("rock", [0.8, 0.5, 0.5, 125.0, 0.1]),
    ("metal", [0.95, 0.25, 0.35, 140.0, 0.02]),
    ("jazz", [0.35, 0.55, 0.5, 105.0, 0.7]),
    ("classical", [0.2, 0.4, 0.25, 90.0, 0.95]),
    ("hip-hop", [0.7, 0.55, 0.85, 95.0, 0.1]),
    ("electronic", [0.85, 0.5, 0.8, 128.0, 0.05]),
    ("folk", [0.3, 0.5, 0.45, 100.0, 0.85]),
    ("r&b", [0.55, 0.6, 0.7, 100.0, 0.25]),
    ("ambient", [0.15, 0.35, 0.2, 80.0, 0.8]),
    ("reggae", [0.55, 0.75, 0.8, 90.0, 0.2]),
    ("blues", [0.45, 0.35, 0.45, 95.0, 0.6]),
];
const ARTISTS_PER_GENRE: usize = 10;
const DAY_MS: u64 = 86_400_000;

/// A track of the catalogue and its length.
#[derive(Debug, Clone)]
pub struct DemoTrack {
    pub track: CatalogueTrack,
    pub duration_ms: u64,
}

/// The catalogue: about 12 genres × 10 artists × 4–8 tracks.
pub fn catalogue(seed: u64) -> Vec<DemoTrack> {
    let mut rng = StdRng::seed_from_u64(seed ^ 0xCA7A_1064);
    let mut tracks = Vec::new();
    let artists = GENRES.len() * ARTISTS_PER_GENRE;
    // Fame by a random rank: power law, so a few artists are famous and most are not.
    let mut ranks: Vec<usize> = (0..artists).collect();
    for i in (1..ranks.len()).rev() {
        ranks.swap(i, rng.gen_range(0..=i));
    }
    for (g, (genre, centre)) in GENRES.iter().enumerate() {
        for a in 0..ARTISTS_PER_GENRE {
            let index = g * ARTISTS_PER_GENRE + a;
            let rank = ranks.get(index).copied().unwrap_or(index);
            let fame = ((rank + 1) as f64).powf(-0.9);
            let artist = format!("{} Artist {}", title_case(genre), a + 1);
            for t in 0..rng.gen_range(4..=8) {
                let jitter = |rng: &mut StdRng, c: f64, spread: f64| {
                    (c + rng.gen_range(-spread..spread)).clamp(0.0, 1.0)
                };
                let features = AudioFeatures {
                    energy: jitter(&mut rng, centre[0], 0.2),
                    valence: jitter(&mut rng, centre[1], 0.3),
                    danceability: jitter(&mut rng, centre[2], 0.2),
                    tempo: (centre[3] + rng.gen_range(-20.0..20.0)).clamp(40.0, 220.0),
                    acousticness: jitter(&mut rng, centre[4], 0.15),
                };
                let popularity =
                    (100.0 * fame.sqrt() * rng.gen_range(0.5..1.0)).round().clamp(1.0, 100.0) as u8;
                tracks.push(DemoTrack {
                    track: CatalogueTrack {
                        id: format!("demo-track-{g:02}-{a:02}-{t}"),
                        title: format!("{} No. {}", title_case(genre), a * 10 + t + 1),
                        artist: artist.clone(),
                        genre: (*genre).to_owned(),
                        features,
                        popularity,
                    },
                    duration_ms: rng.gen_range(150_000..300_000),
                });
            }
        }
    }
    tracks
}

fn title_case(s: &str) -> String {
    let mut c = s.chars();
    c.next().map(|f| f.to_uppercase().chain(c).collect()).unwrap_or_default()
}

/// A listener's taste, hidden from the engine: it sees only the plays.
#[derive(Debug, Clone)]
pub struct Listener {
    /// Favourite genres (indexes into the catalogue's genres) with their weights.
    pub genres: Vec<(usize, f64)>,
    pub energy: f64,
}

pub fn listener(rng: &mut StdRng) -> Listener {
    let count = rng.gen_range(2..=3);
    let mut genres: Vec<(usize, f64)> = Vec::new();
    while genres.len() < count {
        let g = rng.gen_range(0..GENRES.len());
        if genres.iter().all(|(h, _)| *h != g) {
            genres.push((g, rng.gen_range(0.2..1.0)));
        }
    }
    Listener { genres, energy: rng.gen_range(0.15..0.95) }
}

/// Whether the listener plays a track in full: the log-odds fall with distance from their
/// preferred energy and with acoustic, undanceable tracks (a taste every listener shares a bit).
fn plays_in_full(rng: &mut StdRng, who: &Listener, f: &AudioFeatures) -> bool {
    let z = 1.0 + 2.5 * (f.danceability - 0.5)
        - 2.0 * (f.acousticness - 0.5)
        - 4.0 * (f.energy - who.energy).abs();
    rng.gen_bool(1.0 / (1.0 + (-z).exp()))
}

/// `plays` plays by the listener between `from` and `to`, oldest first: 85% from their
/// favourite genres (by weight), the rest anywhere; within a genre, popular tracks more often.
pub fn plays(
    rng: &mut StdRng,
    who: &Listener,
    tracks: &[DemoTrack],
    count: usize,
    from: UnixMillis,
    to: UnixMillis,
) -> Vec<(UnixMillis, TrackPlayed)> {
    let by_genre: BTreeMap<&str, Vec<&DemoTrack>> = tracks.iter().fold(BTreeMap::new(), |mut m, t| {
        m.entry(t.track.genre.as_str()).or_insert_with(Vec::new).push(t);
        m
    });
    let total: f64 = who.genres.iter().map(|(_, w)| w).sum();
    let mut out: Vec<(UnixMillis, TrackPlayed)> = Vec::with_capacity(count);
    for _ in 0..count {
        let genre = if rng.gen_bool(0.85) {
            let mut pick = rng.gen_range(0.0..total);
            let mut chosen = who.genres.first().map(|g| g.0).unwrap_or(0);
            for (g, w) in &who.genres {
                if pick < *w {
                    chosen = *g;
                    break;
                }
                pick -= w;
            }
            chosen
        } else {
            rng.gen_range(0..GENRES.len())
        };
        let Some(pool) = GENRES.get(genre).and_then(|(name, _)| by_genre.get(name)) else { continue };
        let weights: f64 = pool.iter().map(|t| f64::from(t.track.popularity) + 5.0).sum();
        let mut pick = rng.gen_range(0.0..weights);
        let mut chosen = pool.first();
        for t in pool {
            let w = f64::from(t.track.popularity) + 5.0;
            if pick < w {
                chosen = Some(t);
                break;
            }
            pick -= w;
        }
        let Some(t) = chosen else { continue };
        let full = plays_in_full(rng, who, &t.track.features);
        let at = UnixMillis(rng.gen_range(from.0..to.0.max(from.0 + 1)));
        out.push((
            at,
            TrackPlayed {
                provider: "demo".into(),
                provider_track_id: t.track.id.clone(),
                title: t.track.title.clone(),
                artist: t.track.artist.clone(),
                artist_id: None,
                genres: vec![t.track.genre.clone()],
                duration_ms: t.duration_ms,
                played_ms: Some(if full { t.duration_ms } else { rng.gen_range(3_000..25_000) }),
                features: Some(t.track.features),
                popularity: Some(t.track.popularity),
                source: "recently_played".into(),
            },
        ));
    }
    out.sort_by_key(|(at, _)| *at);
    out
}

/// The recommendation measures on a synthetic population, without and with bias mitigation:
/// each listener's first 80% of plays train a profile, the rest are held out; a hit is a
/// held-out track (not played before) in the top 20.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Evaluation {
    pub users: usize,
    pub hit_rate: [f64; 2],
    pub calibration_kl: [f64; 2],
    pub mean_popularity_percentile: [f64; 2],
}

pub fn evaluate(seed: u64, users: usize) -> Evaluation {
    let tracks = catalogue(seed);
    let items: Vec<CatalogueTrack> = tracks.iter().map(|t| t.track.clone()).collect();
    let mut rng = StdRng::seed_from_u64(seed);
    let mut hits = [0usize; 2];
    let mut kl = [0.0; 2];
    let mut pop = [0.0; 2];
    let mut counted = 0usize;
    for _ in 0..users {
        let who = listener(&mut rng);
        let played = plays(&mut rng, &who, &tracks, 150, UnixMillis(0), UnixMillis(60 * DAY_MS));
        let split = played.len() * 4 / 5;
        let (train, test) = played.split_at(split);
        let mut profile = TasteProfile::default();
        for (at, p) in train {
            profile.learn(p, *at, 0.1, PersonalizationLevel::Standard);
        }
        let seen: BTreeSet<String> = train.iter().map(|(_, p)| p.provider_track_id.clone()).collect();
        let held: BTreeSet<&String> = test
            .iter()
            .filter(|(_, p)| !p.skipped() && !seen.contains(&p.provider_track_id))
            .map(|(_, p)| &p.provider_track_id)
            .collect();
        if held.is_empty() {
            continue;
        }
        counted += 1;
        for (k, mitigation) in
            [None, Some(domain::personalization::DEFAULT_MITIGATION)].into_iter().enumerate()
        {
            let recs = domain::personalization::recommend(&domain::personalization::RankingInput {
                profile: &profile,
                level: PersonalizationLevel::Standard,
                catalogue: &items,
                recent: &seen,
                model: None,
                mitigation,
                n: 20,
            });
            if recs.items.iter().any(|r| held.contains(&r.track_id)) {
                if let Some(h) = hits.get_mut(k) {
                    *h += 1;
                }
            }
            if let (Some(a), Some(b)) = (kl.get_mut(k), pop.get_mut(k)) {
                *a += recs.calibration_kl;
                *b += recs.mean_popularity_percentile;
            }
        }
    }
    let n = counted.max(1) as f64;
    let r = |x: f64| (x * 1000.0).round() / 1000.0;
    Evaluation {
        users: counted,
        hit_rate: hits.map(|h| r(h as f64 / n)),
        calibration_kl: kl.map(|x| r(x / n)),
        mean_popularity_percentile: pop.map(|x| r(x / n)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_catalogue_is_deterministic_and_its_popularity_has_a_long_tail() {
        let a = catalogue(7);
        let b = catalogue(7);
        assert_eq!(a.len(), b.len());
        assert!(a.iter().zip(&b).all(|(x, y)| x.track == y.track));
        assert!(a.len() >= 12 * 10 * 4);
        let mut pops: Vec<u8> = a.iter().map(|t| t.track.popularity).collect();
        pops.sort_unstable();
        let median = pops[pops.len() / 2];
        let top = pops[pops.len() - 1];
        assert!(median < 30 && top > 60, "a long tail: median {median}, top {top}");
    }

    /// Mitigation lowers both measures on demo data and costs at most 0.12 of hit rate (the
    /// stated margin; measured: 0.895 → 0.795 at seed 7).
    #[test]
    fn bias_mitigation_lowers_both_measures_and_keeps_the_hit_rate() {
        let e = evaluate(7, 200);
        assert!(e.users > 150, "{e:?}");
        assert!(e.calibration_kl[1] < e.calibration_kl[0], "{e:?}");
        assert!(e.mean_popularity_percentile[1] < e.mean_popularity_percentile[0], "{e:?}");
        assert!(e.hit_rate[0] - e.hit_rate[1] <= 0.12, "{e:?}");
        assert!(e.hit_rate[0] > 0.3, "the profile predicts held-out plays: {e:?}");
    }
}

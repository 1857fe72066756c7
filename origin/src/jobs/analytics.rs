//! `generate-analytics`: trains the churn model and writes the reports.
//!
//! Churn is learnt without looking ahead: the observation point is 14 days ago; each user
//! with at least 7 days of tenure then is described by the engagement components computed
//! from the events before it (and their tenure), and labelled churned when they have no event
//! since. One user in five (by a hash of the id, so the split is the same every run) is held
//! out, and the model's AUC on them is reported. The same data gives the same model.
//!
//! The events are streamed from the database one user at a time and folded into a few numbers
//! per user (segment, engagement, the 30-day periods with activity, the model's features), so
//! memory follows the number of users, not of events (`scripts/bench-analytics`).
//!
//! Reports (in the reports folder): `analytics.json`, `segments.csv`, `cohorts.csv` and
//! `report.html` with the charts, each private to the origin's user (see `files`).

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;

use domain::analytics::{self, Activity, ChurnModel};
use domain::time::UnixMillis;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use super::files::{create_private_dir, csv_cell, write_private};
use super::JobOptions;
use crate::AppState;

/// A member of a JSON object, or null.
fn field<'a>(value: &'a Value, key: &str) -> &'a Value {
    value.get(key).unwrap_or(&Value::Null)
}

const DAY_MS: u64 = 86_400_000;
const HORIZON_DAYS: u64 = 14;
const MIN_TRAINING: usize = 50;

fn held_out(id: &str) -> bool {
    Sha256::digest(id.as_bytes()).first().is_some_and(|b| b % 5 == 0)
}

/// What the job keeps of one user once their events are read: a few numbers, so that memory
/// grows with the number of users, never with the number of events.
struct Described {
    segment: &'static str,
    engagement: u32,
    /// The 30-day periods since signup with activity (`analytics::active_periods`).
    periods: u32,
    /// The churn model's features as of now.
    today: [f64; 5],
}

/// Describes every user from their events as the store streams them, one user at a time.
struct Describer<'a> {
    users: &'a [(String, String, UnixMillis)],
    index: HashMap<&'a str, usize>,
    now: UnixMillis,
    observed: UnixMillis,
    described: Vec<Option<Described>>,
    train: Vec<([f64; 5], bool)>,
    test: Vec<([f64; 5], bool)>,
    progress: super::Progress,
}

impl<'a> Describer<'a> {
    fn describe(&mut self, at: usize, events: &[Activity]) {
        let Some((id, _, created)) = self.users.get(at) else { return };
        let engagement = analytics::engagement(events, self.now);
        let tenure_now = self.now.0.saturating_sub(created.0) / DAY_MS;
        let segment = analytics::segment(&engagement, tenure_now);
        if created.0 + 7 * DAY_MS <= self.observed.0 {
            let before: Vec<Activity> = events.iter().filter(|e| e.at < self.observed).cloned().collect();
            let churned = !events.iter().any(|e| e.at >= self.observed);
            let tenure = self.observed.0.saturating_sub(created.0) / DAY_MS;
            let features = analytics::engagement(&before, self.observed).components.features(tenure);
            if held_out(id) {
                self.test.push((features, churned));
            } else {
                self.train.push((features, churned));
            }
        }
        let periods = analytics::active_periods(events, *created);
        if let Some(slot) = self.described.get_mut(at) {
            let today = engagement.components.features(tenure_now);
            *slot = Some(Described { segment, engagement: engagement.score, periods, today });
        }
        self.progress.inc(1);
    }

    /// One user's events, from the store's stream (users in id order).
    fn visit(&mut self, user: &str, events: &[Activity]) {
        if let Some(&at) = self.index.get(user) {
            self.describe(at, events);
        }
    }

    /// The users the stream did not name: they have no events.
    fn describe_the_rest(&mut self) {
        for at in 0..self.users.len() {
            if self.described.get(at).is_some_and(Option::is_none) {
                self.describe(at, &[]);
            }
        }
    }
}

pub async fn run(state: &AppState, options: &JobOptions, now: UnixMillis) -> anyhow::Result<Value> {
    let users = state.store.all_users().await?;
    let mut describer = Describer {
        users: &users,
        index: users.iter().enumerate().map(|(i, (id, _, _))| (id.as_str(), i)).collect(),
        now,
        observed: now.saturating_sub_ms(HORIZON_DAYS * DAY_MS),
        described: (0..users.len()).map(|_| None).collect(),
        train: Vec::new(),
        test: Vec::new(),
        progress: options.progress(users.len() as u64, "analytics"),
    };
    let events = state
        .store
        .for_each_user_activity(UnixMillis(0), now.saturating_add_ms(1), &mut |user, events| {
            describer.visit(user, events);
        })
        .await?;
    describer.describe_the_rest();
    describer.progress.finish();
    let Describer { described, train, test, .. } = describer;

    let mut segments: BTreeMap<&'static str, u64> = BTreeMap::new();
    let mut segment_rows = String::from("user_id,tier,segment,engagement\n");
    let mut cohort_members: BTreeMap<String, Vec<(UnixMillis, u32)>> = BTreeMap::new();
    for ((id, tier, created), d) in users.iter().zip(&described) {
        let Some(d) = d else { continue };
        *segments.entry(d.segment).or_default() += 1;
        let _ = writeln!(
            segment_rows,
            "{},{},{},{}",
            csv_cell(id),
            csv_cell(tier),
            csv_cell(d.segment),
            d.engagement
        );
        cohort_members.entry(analytics::cohort(*created)).or_default().push((*created, d.periods));
    }

    let churners = train.iter().filter(|s| s.1).count();
    let model: Option<ChurnModel> = if train.len() >= MIN_TRAINING && churners > 0 && churners < train.len() {
        let mut model = analytics::train_churn(&train, 600, 1.0);
        let scored: Vec<(f64, bool)> = test.iter().map(|(x, y)| (model.probability(x), *y)).collect();
        model.auc = (analytics::auc(&scored) * 1000.0).round() / 1000.0;
        state.store.put_model("churn", &serde_json::to_string(&model)?, now).await?;
        Some(model)
    } else {
        None
    };

    // Each user's features today, scored by the trained model: the churn-risk deciles.
    let churn_risk = model.as_ref().map(|m| {
        let probabilities: Vec<f64> = described.iter().flatten().map(|d| m.probability(&d.today)).collect();
        domain::observe::churn_deciles(&probabilities)
    });
    let cohorts: BTreeMap<String, (usize, Vec<f64>)> = cohort_members
        .into_iter()
        .map(|(cohort, members)| {
            let retention = analytics::retention(&members, now);
            (cohort, (members.len(), retention))
        })
        .collect();
    create_private_dir(&options.reports)?;
    let mut cohort_csv = String::from("cohort,users,month,retention\n");
    for (cohort, (size, retention)) in &cohorts {
        for (month, r) in retention.iter().enumerate() {
            let _ = writeln!(cohort_csv, "{},{size},{month},{r:.3}", csv_cell(cohort));
        }
    }
    let report = json!({
        "generated_at": now.0,
        "users": users.len(),
        "events": events,
        "churn_model": model.as_ref().map(|m| json!({
            "trained_on": m.trained_on, "held_out": test.len(), "auc": m.auc,
            "weights": analytics::FEATURE_NAMES.iter().zip(m.weights).map(|(n, w)| json!({ "feature": n, "weight": (w * 1000.0).round() / 1000.0 })).collect::<Vec<_>>(),
        })),
        "churn_training": { "samples": train.len() + test.len(), "churned": churners + test.iter().filter(|s| s.1).count() },
        "segments": segments,
        "cohorts": cohorts.iter().map(|(c, (size, r))| json!({ "cohort": c, "users": size, "retention": r })).collect::<Vec<_>>(),
    });
    let dir = &options.reports;
    write_private(&dir.join("analytics.json"), serde_json::to_string_pretty(&report)?)?;
    write_private(&dir.join("segments.csv"), segment_rows)?;
    write_private(&dir.join("cohorts.csv"), cohort_csv)?;
    write_private(&dir.join("report.html"), html(&report))?;
    // The summary holds what the model and the reports say, the same for the same data (the
    // events read are in the report: the count moves while events keep arriving).
    Ok(json!({
        "users": users.len(),
        "auc": model.as_ref().map(|m| m.auc),
        "trained_on": model.as_ref().map(|m| m.trained_on),
        "held_out": test.len(),
        "model": if model.is_some() { "churn model trained and stored" } else { "too little data to train a churn model" },
        "segments": field(&report, "segments"),
        "churn_risk": churn_risk,
        "cohorts": field(&report, "cohorts"),
        "reports": dir.display().to_string(),
    }))
}

fn html(report: &Value) -> String {
    let mut bars = String::new();
    let segments = field(report, "segments").as_object().cloned().unwrap_or_default();
    let max = segments.values().filter_map(Value::as_u64).max().unwrap_or(1).max(1);
    for (i, (name, count)) in segments.iter().enumerate() {
        let n = count.as_u64().unwrap_or(0);
        let width = n * 400 / max;
        let y = i * 30;
        let _ = write!(
            bars,
            r##"<text x="0" y="{}" font-size="13">{name}</text><rect x="110" y="{}" width="{width}" height="20" fill="#4c78a8"/><text x="{}" y="{}" font-size="12">{n}</text>"##,
            y + 15,
            y,
            width + 115,
            y + 15
        );
    }
    let mut cohort_rows = String::new();
    for c in field(report, "cohorts").as_array().cloned().unwrap_or_default() {
        let cells: String = field(&c, "retention")
            .as_array()
            .cloned()
            .unwrap_or_default()
            .iter()
            .map(|r| {
                let v = r.as_f64().unwrap_or(0.0);
                let shade = 255 - (v * 155.0) as u8;
                format!(r#"<td style="background:rgb({shade},{shade},255)">{:.0}%</td>"#, v * 100.0)
            })
            .collect();
        let _ = write!(
            cohort_rows,
            "<tr><th>{}</th><td>{}</td>{cells}</tr>",
            field(&c, "cohort").as_str().unwrap_or(""),
            field(&c, "users")
        );
    }
    let model = field(report, "churn_model");
    let model_text = if model.is_null() {
        "No churn model: too little history to learn from.".to_owned()
    } else {
        format!("Churn model trained on {} users, held-out AUC {}.", model["trained_on"], model["auc"])
    };
    format!(
        r#"<!doctype html><html><head><meta charset="utf-8"><title>User analytics</title>
<style>body{{font-family:sans-serif;margin:2em}}td,th{{padding:4px 8px;text-align:right}}</style></head><body>
<h1>User analytics</h1><p>{} users. {model_text}</p>
<h2>Segments</h2><svg width="600" height="{}">{bars}</svg>
<h2>Cohort retention (share active in each 30-day period after signup)</h2>
<table><tr><th>cohort</th><th>users</th><th colspan="25">periods</th></tr>{cohort_rows}</table>
</body></html>"#,
        field(report, "users"),
        segments.len() * 30 + 10
    )
}

#[cfg(test)]
#[cfg(unix)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;
    use crate::testing::TestOrigin;

    fn mode(path: &std::path::Path) -> u32 {
        std::fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[tokio::test]
    async fn analytics_and_tier_reports_are_written_with_mode_0600() {
        let origin = TestOrigin::start().await;
        let options = origin.options();
        let now = UnixMillis(1_700_000_000_000);
        run(&origin.state, &options, now).await.unwrap();
        super::super::tiers::run(&origin.state, &options, now).await.unwrap();
        assert_eq!(mode(&options.reports), 0o700);
        let mut names: Vec<String> = Vec::new();
        for entry in std::fs::read_dir(&options.reports).unwrap() {
            let path = entry.unwrap().path();
            assert_eq!(mode(&path), 0o600, "{}", path.display());
            names.push(path.file_name().unwrap().to_string_lossy().into_owned());
        }
        names.sort();
        assert_eq!(names, ["analytics.json", "cohorts.csv", "report.html", "segments.csv", "tiers.json"]);
    }
}

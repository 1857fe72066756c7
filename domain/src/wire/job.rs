//! job: the automation jobs the origin runs, by name: the CLI's subcommands, the signed
//! `POST /internal/jobs/{job}` (answered by [`JobStarted`]) the edge's cron triggers call
//! ([`SCHEDULES`]), and the run history `GET /internal/jobs/runs` ([`JobRuns`]).

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// A job, named in kebab-case (`provision-users`, ...) on the wire, in the CLI and in the
/// store's run history.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Job {
    /// Accounts from a CSV/JSON file (the named one, else the inbox).
    ProvisionUsers,
    /// Tier recommendations from usage.
    AnalyzeTiers,
    /// Segments, cohorts and the churn model.
    GenerateAnalytics,
    /// Expired rows and old events.
    Cleanup,
    /// Re-encrypts the sealed data under the current master key.
    RewrapKeys,
    /// The four above, in order: provisioning, tiers, analytics, cleanup.
    RunAll,
    /// Renews the integration hub's access tokens that are about to expire.
    RefreshIntegrations,
    /// Syncs the connected music services' plays.
    SyncIntegrations,
    /// Updates the taste profiles.
    Personalization,
    /// Closes the federated-learning round.
    FederatedRound,
}

impl Job {
    /// Every job.
    pub const ALL: [Job; 10] = [
        Job::ProvisionUsers,
        Job::AnalyzeTiers,
        Job::GenerateAnalytics,
        Job::Cleanup,
        Job::RewrapKeys,
        Job::RunAll,
        Job::RefreshIntegrations,
        Job::SyncIntegrations,
        Job::Personalization,
        Job::FederatedRound,
    ];

    /// The job's name.
    pub const fn as_str(self) -> &'static str {
        match self {
            Job::ProvisionUsers => "provision-users",
            Job::AnalyzeTiers => "analyze-tiers",
            Job::GenerateAnalytics => "generate-analytics",
            Job::Cleanup => "cleanup",
            Job::RewrapKeys => "rewrap-keys",
            Job::RunAll => "run-all",
            Job::RefreshIntegrations => "refresh-integrations",
            Job::SyncIntegrations => "sync-integrations",
            Job::Personalization => "personalization",
            Job::FederatedRound => "federated-round",
        }
    }
}

impl std::fmt::Display for Job {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A name that is no [`Job`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("no job {0:?}")]
pub struct UnknownJob(pub String);

impl std::str::FromStr for Job {
    type Err = UnknownJob;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Job::ALL.into_iter().find(|j| j.as_str() == s).ok_or_else(|| UnknownJob(s.to_owned()))
    }
}

/// The job each cron expression of `wrangler.toml` starts (the edge's fourth cron, every 15
/// minutes, is its own: the erasures' edge wipes).
pub const SCHEDULES: [(&str, Job); 3] = [
    ("0 */6 * * *", Job::ProvisionUsers),
    ("0 2 * * *", Job::GenerateAnalytics),
    ("0 3 * * 0", Job::Cleanup),
];

/// The job cron expression `cron` starts, if any.
pub fn scheduled(cron: &str) -> Option<Job> {
    SCHEDULES.iter().find(|(c, _)| *c == cron).map(|(_, job)| *job)
}

/// How a run was started.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobTrigger {
    /// The origin's command line.
    Cli,
    /// A cron trigger, through the edge.
    Schedule,
}

impl JobTrigger {
    pub const fn as_str(self) -> &'static str {
        match self {
            JobTrigger::Cli => "cli",
            JobTrigger::Schedule => "schedule",
        }
    }
}

impl std::str::FromStr for JobTrigger {
    type Err = UnknownJob;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "cli" => Ok(JobTrigger::Cli),
            "schedule" => Ok(JobTrigger::Schedule),
            other => Err(UnknownJob(other.to_owned())),
        }
    }
}

/// The answer to `POST /internal/jobs/{job}` (202): the job runs in the background.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobStarted {
    pub job: Job,
    pub started: bool,
}

/// One recorded run.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobRun {
    pub job: Job,
    pub trigger: JobTrigger,
    /// Unix milliseconds.
    pub started_at: i64,
    /// Unix milliseconds; none while it runs.
    pub finished_at: Option<i64>,
    /// Whether it succeeded; none while it runs.
    pub ok: Option<bool>,
    /// The job's JSON summary (or `{"error": ...}`); none while it runs.
    pub summary: Option<Value>,
}

/// `GET /internal/jobs/runs`: the latest runs, newest first.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobRuns {
    pub runs: Vec<JobRun>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_serde_s_and_parse_back() {
        for job in Job::ALL {
            assert_eq!(serde_json::to_value(job).unwrap(), Value::String(job.as_str().to_owned()));
            assert_eq!(job.as_str().parse::<Job>(), Ok(job));
        }
        assert!("demo-data".parse::<Job>().is_err());
        assert_eq!(serde_json::to_value(JobTrigger::Schedule).unwrap(), "schedule");
    }

    #[test]
    fn each_cron_starts_its_job() {
        assert_eq!(scheduled("0 2 * * *"), Some(Job::GenerateAnalytics));
        assert_eq!(scheduled("0 */6 * * *"), Some(Job::ProvisionUsers));
        assert_eq!(scheduled("0 3 * * 0"), Some(Job::Cleanup));
        assert_eq!(scheduled("*/15 * * * *"), None);
    }
}

//! The admin operations: the operations dashboard (`/admin`), its numbers (`/admin/data`) and
//! its files (`/admin/assets/{name}`). The edge authenticates the caller, refuses anyone but an
//! admin, counts the request against the admin's tier and forwards it signed as that admin;
//! the origin checks the role again.

use utoipa::OpenApi;

use crate::common;
use domain::wire::admin::{
    Activity, Business, Cohort, Compliance, ComplianceCounts, Dashboard, RecentSecurityEvent, Security,
    TierUsage,
};

/// The operations dashboard.
#[utoipa::path(
    get,
    path = "/admin",
    operation_id = "adminDashboard",
    tag = "admin",
    summary = "The operations dashboard (admins only): server-rendered HTML with every number in tables, charts drawn by the page's own scripts, refreshed every 5 s; strict Content-Security-Policy",
    security(("bearerAuth" = [])),
    responses(
        (status = 200, description = "The page", body = String, content_type = "text/html",
            headers(
                ("Content-Security-Policy" = String, description = "The page's own scripts and styles only"),
                ("RateLimit-Policy" = String, description = "The admin's tier quota (absent for unlimited tiers)"),
                ("RateLimit" = String, description = "What is left of it"),
            )),
        (status = 401, response = common::Unauthenticated),
        (status = 403, response = common::Forbidden),
    )
)]
pub fn dashboard() {}

/// The dashboard's numbers.
#[utoipa::path(
    get,
    path = "/admin/data",
    operation_id = "adminDashboardData",
    tag = "admin",
    summary = "The dashboard's numbers as JSON (admins only): activity per minute over the last hour, usage by tier, security (24 h), compliance, business (last analytics and tier runs)",
    security(("bearerAuth" = [])),
    responses(
        (status = 200, description = "The numbers", body = Dashboard,
            headers(
                ("RateLimit-Policy" = String, description = "The admin's tier quota (absent for unlimited tiers)"),
                ("RateLimit" = String, description = "What is left of it"),
            )),
        (status = 401, response = common::Unauthenticated),
        (status = 403, response = common::Forbidden),
    )
)]
pub fn dashboard_data() {}

/// The dashboard's files: the vendored uPlot and the page's own script and style.
#[utoipa::path(
    get,
    path = "/admin/assets/{name}",
    operation_id = "adminDashboardAsset",
    tag = "admin",
    summary = "A file of the dashboard (admins only): uplot.js, uplot.css, dashboard.js, dashboard.css",
    security(("bearerAuth" = [])),
    params(("name" = AssetName, Path, description = "The file")),
    responses(
        (status = 200, description = "The file (cached privately for 5 minutes)", content(
            (String = "text/javascript"),
            (String = "text/css"),
        )),
        (status = 401, response = common::Unauthenticated),
        (status = 403, response = common::Forbidden),
        (status = 404, response = common::NotFound),
    )
)]
pub fn dashboard_asset() {}

/// The dashboard's files, by name.
#[derive(utoipa::ToSchema)]
#[schema(as = AdminAssetName)]
#[allow(dead_code)]
pub enum AssetName {
    #[schema(rename = "uplot.js")]
    UplotJs,
    #[schema(rename = "uplot.css")]
    UplotCss,
    #[schema(rename = "dashboard.js")]
    DashboardJs,
    #[schema(rename = "dashboard.css")]
    DashboardCss,
}

#[derive(OpenApi)]
#[openapi(
    paths(dashboard, dashboard_data, dashboard_asset),
    components(schemas(
        Dashboard,
        Activity,
        TierUsage,
        Security,
        RecentSecurityEvent,
        Compliance,
        ComplianceCounts,
        Business,
        Cohort,
        AssetName
    )),
    tags((name = "admin", description = "The operations dashboard (admins only)"))
)]
pub struct Api;

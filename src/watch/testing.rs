//! What the tests of `watch/` share: rows as a pass judges them.

use chrono::{DateTime, Utc};

use crate::policy::{Reason, Verdict};
use crate::watch::report::Row;
use crate::watch::running::RunningImage;

pub(crate) fn running(workload: &str) -> RunningImage {
    RunningImage {
        namespace: "shop".into(),
        workload: workload.parse().unwrap(),
        image: "r.example/api:1".into(),
        digest: None,
        pods: vec!["p".into()],
        pull: Default::default(),
    }
}

pub(crate) fn row(workload: &str, problems: &[&str], reasons: &[Reason]) -> Row {
    Row::judged(
        running(workload),
        "production".into(),
        Verdict {
            problems: problems.iter().map(|s| s.to_string()).collect(),
            reasons: reasons.to_vec(),
            ..Default::default()
        },
    )
}

pub(crate) fn at(h: i64) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2026-06-01T00:00:00Z").unwrap().with_timezone(&Utc) + chrono::Duration::hours(h)
}

//! Watching what runs: the images of running Pods by workload
//! ([`running`]), judged as admission would judge them today ([`report`]:
//! `portcullis report` and each re-evaluation pass), the re-evaluation loop
//! with its Events and metrics ([`reevaluate`]), what it remembers between
//! passes ([`memory`]), the PolicyReports it writes ([`policy_report`]), and
//! acting on a workload that no longer passes ([`rollback`]).

pub mod memory;
pub mod policy_report;
pub mod reevaluate;
pub mod report;
pub mod rollback;
pub mod running;
#[cfg(test)]
mod testing;

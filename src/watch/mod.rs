//! Watching what runs: the images of running Pods by workload
//! ([`running`]), judged as admission would judge them today ([`report`]:
//! `portcullis report` and each re-evaluation pass), the re-evaluation loop
//! with its memory, PolicyReports, Events and metrics ([`reevaluate`]), and
//! acting on a workload that no longer passes ([`rollback`]).

pub mod reevaluate;
pub mod report;
pub mod rollback;
pub mod running;

//! The promotion policy: its file format and its pure evaluation.
//!
//! Evaluation does no I/O and reads no clock: `now` is an argument, so the
//! same inputs always give the same verdict, in `portcullis check` and at
//! admission alike.

mod breakglass;
mod condition;
pub mod decide;
mod duration;
mod eval;
mod locate;
mod model;
mod rules;

pub use breakglass::{
    break_glass, check as check_grant, is_controller, max_duration as break_glass_max_duration, new_grant, BreakGlass,
    BreakGlassRequest, Carried, Grant, GrantError, GrantKeyError, GrantKeys, ObjectId, Presented, Presenter,
    ANNOTATION as BREAK_GLASS_ANNOTATION, CONTROLLER_USERS, GRANT_ANNOTATION as BREAK_GLASS_GRANT_ANNOTATION,
    TICKET_ANNOTATION as BREAK_GLASS_TICKET_ANNOTATION,
};
pub use decide::{decide, Decision, Judged, Outcome};
pub use duration::{parse_duration, Duration};
pub use eval::{
    evaluate, evaluate_with_vex, Cited, Counted, EvidenceKind, ExpiringException, Failure, Reason, Verdict,
};
pub use model::*;
pub use rules::base_image::{BaseImageStatus, BaseState};

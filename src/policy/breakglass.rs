//! Break-glass: an audited, justified override of a denial in an emergency.

use serde::Serialize;

use super::model::TierSpec;

/// The annotation whose value is the justification.
pub const ANNOTATION: &str = "portcullis.dev/break-glass";
/// Optional ticket reference annotation.
pub const TICKET_ANNOTATION: &str = "portcullis.dev/break-glass-ticket";

/// What the request says about break-glass.
#[derive(Clone, Debug, Default)]
pub struct BreakGlassRequest<'a> {
    pub justification: Option<&'a str>,
    pub ticket: Option<&'a str>,
    pub user: &'a str,
    pub groups: &'a [String],
    /// A built-in controller creating the object from its owner's template,
    /// which was judged (with its break-glass) when the owner was admitted.
    pub by_controller: bool,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "breakGlass", rename_all = "camelCase")]
pub enum BreakGlass {
    NotRequested,
    Granted { user: String, justification: String, ticket: Option<String> },
    Refused { why: String },
}

/// Decides whether a break-glass request may override denials in `tier`.
pub fn break_glass(tier_name: &str, tier: &TierSpec, req: &BreakGlassRequest<'_>) -> BreakGlass {
    let Some(justification) = req.justification else {
        return BreakGlass::NotRequested;
    };
    let refuse = |why: String| BreakGlass::Refused { why };
    let Some(bg) = tier.break_glass.as_ref().filter(|b| b.allowed) else {
        return refuse(format!("break-glass is not allowed in tier {tier_name}"));
    };
    if justification.trim().len() < 10 {
        return refuse(format!(
            "the {} annotation must carry a justification (at least 10 characters)",
            super::breakglass::ANNOTATION
        ));
    }
    if !req.by_controller && !req.groups.iter().any(|g| bg.groups.contains(g)) {
        return refuse(format!(
            "user {} is not in a group allowed to break glass in tier {tier_name} ({})",
            req.user,
            bg.groups.join(", ")
        ));
    }
    let ticket = req.ticket.map(str::trim).filter(|t| !t.is_empty());
    if bg.require_ticket && ticket.is_none() {
        return refuse(format!("tier {tier_name} requires a ticket in the {TICKET_ANNOTATION} annotation"));
    }
    BreakGlass::Granted {
        user: req.user.to_string(),
        justification: justification.trim().to_string(),
        ticket: ticket.map(String::from),
    }
}

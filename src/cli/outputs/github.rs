//! `github`: GitHub Actions workflow commands, one `::error` (denied) or
//! `::warning` (admitted in warn mode) per problem, which the pull request
//! shows as annotations; and `markdown`: the job summary, a table per image
//! (a row per tier, a column per check) and the findings that decide.
//!
//! Written by hand: a workflow command is one line, and the escaping is
//! GitHub's own (actions/toolkit `command.ts`): `%`, `\r`, `\n` in the
//! message; those and `:` and `,` in a property. A finding's text can then
//! never end the line and start a command of its own.

use super::{failures, judged, standing, Check, Checked, Standing};

/// The workflow commands.
pub(super) fn commands(c: &Checked) -> String {
    let mut out = String::new();
    for t in &c.tiers {
        for v in &t.decision.verdicts {
            let (command, verb) = match standing(v) {
                Standing::Admitted => continue,
                Standing::Warned => ("warning", "would be denied"),
                Standing::Denied => ("error", "denied"),
                Standing::Error => ("error", "not verified"),
            };
            let title = format!("portcullis: {} {verb} in {}", short(&v.image), t.tier);
            let fix = v.remedies.first().map(|r| format!("\nTo fix: {r}")).unwrap_or_default();
            for f in failures(v) {
                out.push_str(&format!(
                    "::{command} title={}::{}\n",
                    escape_property(&title),
                    escape_data(&format!("{}: {}{fix}", judged(v), f.problem))
                ));
            }
            if v.problems.is_empty() {
                if let Some(e) = &v.error {
                    out.push_str(&format!(
                        "::{command} title={}::{}\n",
                        escape_property(&title),
                        escape_data(&format!("{}: {e}", judged(v)))
                    ));
                }
            }
        }
    }
    out
}

/// A message (after `::`): GitHub's `escapeData`.
pub(super) fn escape_data(s: &str) -> String {
    s.replace('%', "%25").replace('\r', "%0D").replace('\n', "%0A")
}

/// A property value (`title=…`): GitHub's `escapeProperty`.
pub(super) fn escape_property(s: &str) -> String {
    escape_data(s).replace(':', "%3A").replace(',', "%2C")
}

/// `shop/api@sha256:0123456789ab`, or the reference as written.
fn short(image: &str) -> String {
    match image.split_once("@sha256:") {
        Some((name, hex)) => format!("{name}@sha256:{}", &hex[..hex.len().min(12)]),
        None => image.to_string(),
    }
}

/// The job summary in Markdown.
pub(super) fn summary(c: &Checked) -> String {
    let tiers: Vec<&str> = c.tiers.iter().map(|t| t.tier.as_str()).collect();
    let verdict = match c.exit_code() {
        0 => "admitted",
        1 => "denied",
        _ => "not verified",
    };
    let mut md = format!("## Portcullis: {verdict} ({})\n\n", inert(&tiers.join(", ")));
    let mut images: Vec<&str> = Vec::new();
    for t in &c.tiers {
        for v in &t.decision.verdicts {
            if !images.contains(&v.image.as_str()) {
                images.push(&v.image);
            }
        }
    }
    for image in images {
        md.push_str(&format!("### `{}`\n\n", image.replace('`', "'")));
        md.push_str("| tier | verdict |");
        for check in Check::ALL {
            md.push_str(&format!(" {} |", check.as_str()));
        }
        md.push_str("\n|---|---|");
        md.push_str(&"---|".repeat(Check::ALL.len()));
        md.push('\n');
        let mut deciding = String::new();
        for t in &c.tiers {
            let Some(v) = t.decision.verdicts.iter().find(|v| v.image == image) else { continue };
            let st = standing(v);
            let word = match st {
                Standing::Admitted => "✅ admitted",
                Standing::Warned => "⚠️ admitted (warn)",
                Standing::Denied => "❌ denied",
                Standing::Error => "❌ not verified",
            };
            md.push_str(&format!("| {} | {word} |", inert(&t.tier)));
            let filed: Vec<Vec<Check>> = failures(v).iter().map(|f| Check::of(f, &t.requires)).collect();
            for check in Check::ALL {
                let failing = filed.iter().any(|cs| cs.contains(&check));
                let cell = match (failing, st, check.made(&t.requires)) {
                    (true, Standing::Warned, _) => "⚠️",
                    (true, _, _) => "❌",
                    (false, _, true) => "✅",
                    (false, _, false) => "–",
                };
                md.push_str(&format!(" {cell} |"));
            }
            md.push('\n');
            for f in failures(v) {
                deciding.push_str(&format!("- **{}**: {}\n", inert(&t.tier), inert(&f.problem)));
            }
            for r in &v.remedies {
                deciding.push_str(&format!("  - to fix: {}\n", inert(r)));
            }
        }
        if !deciding.is_empty() {
            md.push_str("\nWhat decides:\n\n");
            md.push_str(&deciding);
        }
        md.push('\n');
    }
    md.push_str(&format!(
        "Policy `{}`, evaluated at {}.\n",
        c.policy_digest,
        c.evaluated_at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
    ));
    md
}

/// Text from the evidence, made inert in Markdown: one line, no table
/// cells, links, HTML or emphasis of its own.
pub(crate) fn inert(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for ch in s.chars() {
        match ch {
            '\r' | '\n' => out.push(' '),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '\\' | '`' | '*' | '_' | '[' | ']' | '|' | '#' | '!' => {
                out.push('\\');
                out.push(ch);
            }
            _ => out.push(ch),
        }
    }
    out
}

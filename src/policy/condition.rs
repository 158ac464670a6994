//! CEL conditions on attestations (`attestations[].conditions`), written as
//! Kubernetes ValidatingAdmissionPolicy and Kyverno write them, compiled
//! when the policy loads and evaluated, pure, over a verified Statement.
//!
//! **Cost.** cel-rust has no cost tracking or step budget of its own, so
//! the bound is enforced here, in two parts:
//!
//! - when the policy loads, an expression is at most [`MAX_EXPRESSION`]
//!   bytes, nests at most [`MAX_NESTING`] deep (the parser's recursion
//!   limit) and its comprehensions (`all`, `exists`, `exists_one`, `map`,
//!   `filter`) at most [`MAX_COMPREHENSIONS`] deep;
//! - each compiled expression is instrumented: every comprehension's range
//!   and every argument of an operator or function whose work grows with
//!   its operands (`in`, `==`, `+`, `contains`, `matches`, `size`, …) pass
//!   through a charge that counts, before the work is done, what it will
//!   cost: a loop, its length times the nodes of its body; an operand, the
//!   elements (and string bytes / 16) it holds. Past [`MAX_COST`] units the
//!   evaluation stops with an error, so no condition runs longer than about
//!   that many steps, whatever the data (a unit is one node evaluated or
//!   one element an operator touches). What is not charged is constant per
//!   node: reading a variable or a field, indexing, a literal, `&&`, `||`,
//!   `?:`.
//!
//! The inputs are bounded beforehand: a predicate is kept for conditions
//! only within [`crate::evidence::MAX_KEPT_PREDICATE`] of memory, and
//! converting it to CEL values is linear in its size.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

use cel::common::ast::{operators, CallExpr, EntryExpr, Expr};
use cel::{Context, Env, ExecutionError, IdedExpr, Value};
use chrono::{DateTime, Utc};

/// Longest expression, in bytes.
pub const MAX_EXPRESSION: usize = 2048;
/// Deepest nesting of an expression (the parser's recursion limit).
pub const MAX_NESTING: u16 = 32;
/// Most comprehensions nested in one another.
pub const MAX_COMPREHENSIONS: usize = 3;
/// Most units of work one evaluation may charge.
pub const MAX_COST: u64 = 1_000_000;

/// The function the instrumented expression charges through.
const CHARGE: &str = "@portcullis_charge";

/// Operators whose work does not grow with their operands: not charged.
/// (Indexing is a lookup: charging the whole list or map indexed would make
/// `predicate['a']` cost the predicate.)
const FREE: &[&str] = &[
    operators::INDEX,
    operators::CONDITIONAL,
    operators::LOGICAL_AND,
    operators::LOGICAL_OR,
    operators::LOGICAL_NOT,
    operators::NOT_STRICTLY_FALSE,
    operators::NEGATE,
];

/// A condition as compiled when the policy loads: the instrumented
/// expression.
#[derive(Clone)]
pub struct Compiled(Arc<IdedExpr>);

impl std::fmt::Debug for Compiled {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Compiled")
    }
}

/// Compiles an expression, within the load-time bounds.
pub fn compile(expression: &str) -> Result<Compiled, String> {
    if expression.trim().is_empty() {
        return Err("is empty".into());
    }
    if expression.len() > MAX_EXPRESSION {
        return Err(format!("is {} bytes long, more than the {MAX_EXPRESSION} allowed", expression.len()));
    }
    let mut expr = cel::parser::Parser::new().max_recursion_depth(MAX_NESTING).parse(expression).map_err(|e| {
        // One line per problem: where in the expression, and what.
        let each: Vec<String> =
            e.errors.iter().map(|e| format!("at {}:{} of the expression: {}", e.pos.0, e.pos.1, e.msg)).collect();
        format!("does not compile: {}", each.join("; "))
    })?;
    let depth = comprehensions(&expr);
    if depth > MAX_COMPREHENSIONS {
        return Err(format!(
            "nests {depth} comprehensions (all, exists, exists_one, map, filter) in one another, more than the \
             {MAX_COMPREHENSIONS} allowed"
        ));
    }
    let mut next = u64::MAX / 2;
    instrument(&mut expr, &mut next);
    Ok(Compiled(Arc::new(expr)))
}

/// The deepest nesting of comprehensions in `e`.
fn comprehensions(e: &IdedExpr) -> usize {
    let mut deepest = 0;
    let mut each = |c: &IdedExpr| deepest = deepest.max(comprehensions(c));
    match &e.expr {
        Expr::Call(c) => {
            c.target.iter().for_each(|t| each(t));
            c.args.iter().for_each(&mut each);
        }
        Expr::Comprehension(c) => {
            for part in [&c.iter_range, &c.accu_init, &c.loop_cond, &c.loop_step, &c.result] {
                each(part);
            }
            return deepest + 1;
        }
        Expr::List(l) => l.elements.iter().for_each(each),
        Expr::Map(m) => m.entries.iter().for_each(|en| entry(en, &mut each)),
        Expr::Struct(s) => s.entries.iter().for_each(|en| entry(en, &mut each)),
        Expr::Select(s) => each(&s.operand),
        _ => {}
    }
    deepest
}

fn entry(e: &cel::common::ast::IdedEntryExpr, f: &mut impl FnMut(&IdedExpr)) {
    match &e.expr {
        EntryExpr::MapEntry(m) => {
            f(&m.key);
            f(&m.value);
        }
        EntryExpr::StructField(s) => f(&s.value),
    }
}

/// The number of nodes of `e`: what one evaluation of it costs, but for
/// what its operators charge.
fn nodes(e: &IdedExpr) -> u64 {
    let mut n = 1;
    let mut each = |c: &IdedExpr| n += nodes(c);
    match &e.expr {
        Expr::Call(c) => {
            c.target.iter().for_each(|t| each(t));
            c.args.iter().for_each(&mut each);
        }
        Expr::Comprehension(c) => {
            for part in [&c.iter_range, &c.accu_init, &c.loop_cond, &c.loop_step, &c.result] {
                each(part);
            }
        }
        Expr::List(l) => l.elements.iter().for_each(each),
        Expr::Map(m) => m.entries.iter().for_each(|en| entry(en, &mut each)),
        Expr::Struct(s) => s.entries.iter().for_each(|en| entry(en, &mut each)),
        Expr::Select(s) => each(&s.operand),
        _ => {}
    }
    n
}

/// `e` charged before it is used: `CHARGE(e, per)`, which charges `per`
/// for each element of its value (a loop's range: the nodes of its body)
/// or the elements it holds (`per` 0: an operand).
fn charged(e: IdedExpr, per: u64, next: &mut u64) -> IdedExpr {
    *next += 2;
    let per = IdedExpr {
        id: *next - 1,
        expr: Expr::Literal(cel::common::ast::LiteralValue::Int(cel::common::types::CelInt::from(per as i64))),
    };
    IdedExpr { id: *next, expr: Expr::Call(CallExpr { func_name: CHARGE.into(), target: None, args: vec![e, per] }) }
}

/// Whether `e` is worth charging: not a literal, nor a comprehension's own
/// accumulator (`@result`, whose appends cel-rust recognises by shape).
fn worth_charging(e: &IdedExpr) -> bool {
    match &e.expr {
        Expr::Literal(_) => false,
        Expr::Ident(name) => !name.starts_with('@'),
        _ => true,
    }
}

/// Instruments `e`: each comprehension's range, and each operand of an
/// operator or function whose work grows with it, charged before use.
fn instrument(e: &mut IdedExpr, next: &mut u64) {
    let mut each = |c: &mut IdedExpr| instrument(c, next);
    match &mut e.expr {
        Expr::Call(c) => {
            if let Some(t) = c.target.as_deref_mut() {
                each(t);
            }
            c.args.iter_mut().for_each(&mut each);
            if FREE.contains(&c.func_name.as_str()) {
                return;
            }
            // A comprehension's own append (`@result + [x]`, map and filter)
            // is left in the shape cel-rust recognises (it appends in
            // place); what it appends is charged (copied into the result).
            if c.args.iter().any(|a| matches!(&a.expr, Expr::Ident(n) if n.starts_with('@'))) {
                for a in c.args.iter_mut() {
                    if let Expr::List(l) = &mut a.expr {
                        for x in l.elements.iter_mut().filter(|x| worth_charging(x)) {
                            *x = charged(std::mem::take(x), 0, next);
                        }
                    }
                }
                return;
            }
            if let Some(t) = c.target.take() {
                c.target = Some(Box::new(if worth_charging(&t) { charged(*t, 0, next) } else { *t }));
            }
            for a in c.args.iter_mut() {
                if worth_charging(a) {
                    *a = charged(std::mem::take(a), 0, next);
                }
            }
        }
        Expr::Comprehension(c) => {
            for part in [&mut c.iter_range, &mut c.accu_init, &mut c.loop_cond, &mut c.loop_step, &mut c.result] {
                each(part);
            }
            let body = nodes(&c.loop_cond) + nodes(&c.loop_step);
            c.iter_range = charged(std::mem::take(&mut c.iter_range), body, next);
        }
        Expr::List(l) => l.elements.iter_mut().for_each(each),
        Expr::Map(m) => {
            for en in &mut m.entries {
                match &mut en.expr {
                    EntryExpr::MapEntry(me) => {
                        each(&mut me.key);
                        each(&mut me.value);
                    }
                    EntryExpr::StructField(s) => each(&mut s.value),
                }
            }
        }
        Expr::Select(s) => each(&mut s.operand),
        _ => {}
    }
}

/// What a value costs an operator that goes through it, up to `cap`.
fn weight(v: &Value, cap: u64) -> u64 {
    let mut total = 1u64;
    match v {
        Value::List(l) => {
            for x in l.iter() {
                total = total.saturating_add(weight(x, cap));
                if total > cap {
                    break;
                }
            }
        }
        Value::Map(m) => {
            for x in m.map.values() {
                total = total.saturating_add(1 + weight(x, cap));
                if total > cap {
                    break;
                }
            }
        }
        Value::String(s) => total += s.len() as u64 / 16,
        Value::Bytes(b) => total += b.len() as u64 / 16,
        _ => {}
    }
    total
}

/// The elements a loop over `v` goes through.
fn length(v: &Value) -> u64 {
    match v {
        Value::List(l) => l.len() as u64,
        Value::Map(m) => m.map.len() as u64,
        _ => 1,
    }
}

/// The standard environment, made once.
fn env() -> Arc<Env> {
    static ENV: OnceLock<Arc<Env>> = OnceLock::new();
    ENV.get_or_init(|| Arc::new(Env::stdlib())).clone()
}

/// Who signed the attestation a condition is evaluated on.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct Signer {
    /// The policy's name for the signer.
    pub name: String,
    /// For a keyless signer: the certificate's subject (a workflow, an email).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub identity: Option<String>,
    /// For a keyless signer: the OIDC issuer.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub issuer: Option<String>,
}

/// The variables of one attestation, converted once for all its conditions.
pub struct Vars {
    predicate: Value,
    subject: Value,
    predicate_type: Value,
    signer: Value,
    now: Value,
}

impl Vars {
    pub fn new(
        predicate: &serde_json::Value,
        subjects: &[crate::attest::StatementSubject],
        predicate_type: &str,
        signer: &Signer,
        now: DateTime<Utc>,
    ) -> Result<Vars, String> {
        let conv = |what: &str, r: Result<Value, cel::SerializationError>| {
            r.map_err(|e| format!("the {what} cannot be read as CEL values: {e}"))
        };
        Ok(Vars {
            predicate: conv("predicate", cel::to_value(predicate))?,
            subject: conv("subjects", cel::to_value(subjects))?,
            predicate_type: Value::String(Arc::new(predicate_type.to_string())),
            signer: conv("signer", cel::to_value(signer))?,
            now: Value::Timestamp(now.fixed_offset()),
        })
    }
}

/// Evaluates a compiled condition over an attestation's variables: its
/// boolean result, or why there is none (an error, a result of another
/// type, the cost bound reached).
pub fn evaluate(c: &Compiled, vars: &Vars) -> Result<bool, String> {
    let spent = Arc::new(AtomicU64::new(0));
    let mut ctx = Context::with_env(env());
    let meter = spent.clone();
    let charge = move |v: Value, per: i64| -> Result<Value, ExecutionError> {
        let before = meter.load(Ordering::Relaxed);
        let left = MAX_COST.saturating_sub(before);
        let cost = if per > 0 { length(&v).saturating_mul(per as u64 + 1) } else { weight(&v, left) };
        let now = before.saturating_add(cost);
        meter.store(now, Ordering::Relaxed);
        if now > MAX_COST {
            return Err(ExecutionError::function_error(
                "condition",
                format!("exceeds the evaluation bound of {MAX_COST} steps"),
            ));
        }
        Ok(v)
    };
    ctx.add_function(CHARGE, charge).map_err(|e| e.to_string())?;
    ctx.add_variable_from_value("predicate", vars.predicate.clone());
    ctx.add_variable_from_value("subject", vars.subject.clone());
    ctx.add_variable_from_value("predicateType", vars.predicate_type.clone());
    ctx.add_variable_from_value("signer", vars.signer.clone());
    ctx.add_variable_from_value("now", vars.now.clone());
    // The interpreter is not ours: should it panic on some input, that is
    // an error of this condition, never of the decision.
    let resolved = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| Value::resolve(&c.0, &ctx)));
    match resolved {
        Ok(Ok(Value::Bool(b))) => Ok(b),
        Ok(Ok(other)) => Err(format!("gives {} {}, not a bool", kind(&other), shown(&other))),
        Ok(Err(e)) => Err(shown_error(&e)),
        Err(_) => Err("the CEL interpreter failed on it (a panic)".into()),
    }
}

/// An execution error in words (the charge function's own name left out).
fn shown_error(e: &ExecutionError) -> String {
    match e {
        ExecutionError::FunctionError { function, message } if function == "condition" => message.clone(),
        e => e.to_string(),
    }
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::List(_) => "a list",
        Value::Map(_) => "a map",
        Value::Int(_) | Value::UInt(_) => "an int",
        Value::Float(_) => "a double",
        Value::String(_) => "a string",
        Value::Bytes(_) => "bytes",
        Value::Null => "null",
        Value::Timestamp(_) => "a timestamp",
        Value::Duration(_) => "a duration",
        _ => "a value",
    }
}

/// A short rendering of a value for a message.
fn shown(v: &Value) -> String {
    let s = match v {
        Value::String(s) => format!("{:?}", s.as_str()),
        Value::Int(i) => i.to_string(),
        Value::UInt(u) => format!("{u}u"),
        Value::Float(f) => f.to_string(),
        Value::Null => String::new(),
        other => format!("{other:?}"),
    };
    super::decide::truncate(&s, 80)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(predicate: serde_json::Value) -> Vars {
        let signer = Signer { name: "ci".into(), identity: None, issuer: None };
        Vars::new(&predicate, &[], "https://example.com/coverage/v1", &signer, "2026-06-15T12:00:00Z".parse().unwrap())
            .unwrap()
    }

    #[test]
    fn expressions_are_bounded_when_they_compile() {
        // (expression, error expected)
        let deep = format!("{}true{}", "(".repeat(40), ")".repeat(40));
        let long = format!("predicate.a == '{}'", "x".repeat(MAX_EXPRESSION));
        let rows: Vec<(&str, &str)> = vec![
            ("predicate.coverage >= 80", ""),
            ("predicate.xs.all(x, predicate.xs.exists(y, predicate.xs.exists(z, x == y)))", ""),
            (
                "predicate.xs.all(x, predicate.xs.all(y, predicate.xs.all(z, predicate.xs.all(w, x == w))))",
                "nests 4 comprehensions",
            ),
            ("predicate.coverage >=", "does not compile"),
            ("", "is empty"),
            (&deep, "does not compile"),
            (&long, "bytes long, more than the 2048 allowed"),
        ];
        for (expr, want) in rows {
            match (compile(expr), want) {
                (Ok(_), "") => {}
                (Ok(_), w) => panic!("{expr}: compiled, want {w:?}"),
                (Err(e), "") => panic!("{expr}: {e}"),
                (Err(e), w) => assert!(e.contains(w), "{expr}: want {w:?} in {e}"),
            }
        }
    }

    #[test]
    fn runaway_expressions_stop_at_the_bound() {
        let xs: Vec<u32> = (0..2000).collect();
        let v = vars(serde_json::json!({ "xs": xs, "coverage": 85.5, "tools": ["a", "b"] }));
        // (expression, result)
        let rows: Vec<(&str, Result<bool, &str>)> = vec![
            ("predicate.coverage >= 80.0", Ok(true)),
            ("predicate.xs.exists(x, x == 1999)", Ok(true)),
            ("'b' in predicate.tools", Ok(true)),
            // 2000^3 iterations: stopped after a million steps.
            (
                "predicate.xs.all(x, predicate.xs.all(y, predicate.xs.all(z, x + y + z >= 0)))",
                Err("exceeds the evaluation bound of 1000000 steps"),
            ),
            // 2000 iterations, each scanning 2000 elements.
            ("predicate.xs.all(x, x in predicate.xs)", Err("exceeds the evaluation bound")),
            // Lists built by map are charged as they are built.
            ("predicate.xs.map(x, predicate.xs).all(l, size(l) > 0)", Err("exceeds the evaluation bound")),
            ("predicate.xs + predicate.xs + predicate.xs == predicate.xs", Ok(false)),
            // Indexing is a lookup, not charged as the list it indexes.
            ("predicate.xs.all(x, predicate.xs[1999] >= x)", Ok(true)),
        ];
        for (expr, want) in rows {
            let c = compile(expr).unwrap();
            let started = std::time::Instant::now();
            let got = evaluate(&c, &v);
            assert!(started.elapsed() < std::time::Duration::from_secs(20), "{expr}: {:?}", started.elapsed());
            match (got, want) {
                (Ok(g), Ok(w)) => assert_eq!(g, w, "{expr}"),
                (Err(e), Err(w)) => assert!(e.contains(w), "{expr}: want {w:?} in {e}"),
                (g, w) => panic!("{expr}: {g:?}, want {w:?}"),
            }
        }
    }
}

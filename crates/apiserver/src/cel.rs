//! CEL expressions as Kubernetes uses them (webhook `matchConditions`,
//! ValidatingAdmissionPolicy, CRD `x-kubernetes-validations`): parsed once, with the
//! optional syntax (`a.?b`), and evaluated against JSON variables (`object`,
//! `oldObject`, `request`, `params`, `namespaceObject`, `variables`, `self`, `oldSelf`)
//! with the CEL standard library and Kubernetes' libraries from the `kube-cel` crate:
//! strings, lists (`isSorted`, `sum`, `min`, `max`, `indexOf`), sets, regex (`find`,
//! `findAll`), URLs, IPs and CIDRs, quantities, semver, `format` and named formats.
//!
//! Not available: the `authorizer` variable of admission policies, and upstream's cost
//! limits (only `lists.range` is bounded, at [`MAX_RANGE`] items).
//!
//! A panic inside the third-party `cel` and `kube-cel` crates (which some expressions
//! reach, e.g. `'%.99999f'.format([1.0])`) is caught here and becomes a compile or
//! evaluation error: an expression from a request must never panic the server.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use kube_cel::KubeCelExt;
use kube_cel::cel;
use serde_json::Value;

/// Why an expression does not compile or evaluate.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("compilation failed: {0}")]
    Parse(cel::ParseErrors),
    /// The CEL library panicked while compiling.
    #[error("compilation failed: internal error in the CEL library: {0}")]
    CompilePanic(String),
    /// The CEL library panicked while evaluating.
    #[error("internal error in the CEL library: {0}")]
    Panic(String),
    #[error(transparent)]
    Execution(#[from] cel::ExecutionError),
    /// The result (described as CEL's conversion error shows it) cannot be JSON.
    #[error("the result has no JSON form: {0}")]
    NoJson(String),
    #[error("expression {expression:?} evaluated to {value}, not a bool")]
    NotBool { expression: String, value: Value },
}

/// A compiled expression and its source.
pub struct Expression {
    parsed: cel::parser::Expression,
    pub source: String,
}

/// The functions every evaluation sees: the standard library and Kubernetes'. Built
/// once; each evaluation binds its variables in an inner scope of it.
fn functions() -> &'static cel::Context<'static> {
    static FUNCTIONS: OnceLock<cel::Context<'static>> = OnceLock::new();
    FUNCTIONS.get_or_init(|| {
        let mut context = cel::Context::default().with_all();
        context.add_function("lists.range", bounded_range);
        context
    })
}

/// Most items `lists.range` builds: kube-cel's own allocates whatever it is asked for
/// and aborts the process when that fails (`lists.range(9999999999)`).
pub const MAX_RANGE: i64 = 1 << 20;

/// `lists.range(n)`: `[0, n)`, refused past [`MAX_RANGE`] as upstream's cost limit would.
fn bounded_range(n: i64) -> cel::ResolveResult {
    if !(0..=MAX_RANGE).contains(&n) {
        return Err(cel::ExecutionError::function_error(
            "lists.range",
            format!("range argument must be between 0 and {MAX_RANGE}, got {n}"),
        ));
    }
    Ok(cel::Value::List(Arc::new((0..n).map(cel::Value::Int).collect())))
}

thread_local! {
    /// Whether this thread is inside [`unpanicked`], whose panics are caught.
    static CATCHING: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Whether a panic on this thread now would be caught and turned into a CEL error (for
/// the fuzz target's panic hook, which otherwise aborts on every panic).
pub(crate) fn catching() -> bool {
    CATCHING.with(std::cell::Cell::get)
}

/// Runs `f`, turning a panic (in the third-party CEL crates) into an error.
fn unpanicked<T>(f: impl FnOnce() -> Result<T, Error>) -> Result<T, Error> {
    let outer = CATCHING.with(|c| c.replace(true));
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f));
    CATCHING.with(|c| c.set(outer));
    result.unwrap_or_else(|panic| {
        let reason = panic
            .downcast_ref::<&str>()
            .map(|s| (*s).to_owned())
            .or_else(|| panic.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "unknown".to_owned());
        Err(Error::Panic(reason))
    })
}

/// Compiled expressions by source: policies, match conditions and CRD rules run the
/// same few expressions on every request.
type Compiled = HashMap<String, Arc<Expression>>;

/// Most expressions kept; past it the memo starts over.
const MEMO: usize = 1024;

/// Compiles `source` (once: the result is kept), or says why it does not parse.
pub fn compile(source: &str) -> Result<Arc<Expression>, Error> {
    static COMPILED: OnceLock<Mutex<Compiled>> = OnceLock::new();
    let memo = COMPILED.get_or_init(Mutex::default);
    if let Some(found) = memo.lock().unwrap_or_else(|e| e.into_inner()).get(source) {
        return Ok(found.clone());
    }
    let expression = unpanicked(|| {
        let mut expression = parse(source).map_err(Error::Parse)?;
        optional_selects(&mut expression);
        Ok(expression)
    })
    .map_err(|e| match e {
        Error::Panic(reason) => Error::CompilePanic(reason),
        e => e,
    })?;
    let expression = Arc::new(Expression { parsed: expression, source: source.to_owned() });
    let mut memo = memo.lock().unwrap_or_else(|e| e.into_inner());
    if memo.len() >= MEMO {
        memo.clear();
    }
    memo.insert(source.to_owned(), expression.clone());
    Ok(expression)
}

/// A JSON value as CEL sees it: integers are `int` (Kubernetes' int64) where they fit,
/// as upstream converts them, so that `self.replicas == 3` compares like with like.
fn to_cel(value: &Value) -> cel::Value {
    use std::collections::HashMap;
    match value {
        Value::Null => cel::Value::Null,
        Value::Bool(b) => cel::Value::Bool(*b),
        Value::Number(n) => match (n.as_i64(), n.as_u64()) {
            (Some(i), _) => cel::Value::Int(i),
            (None, Some(u)) => cel::Value::UInt(u),
            _ => cel::Value::Float(n.as_f64().unwrap_or(f64::NAN)),
        },
        Value::String(s) => cel::Value::String(Arc::new(s.clone())),
        Value::Array(items) => cel::Value::List(Arc::new(items.iter().map(to_cel).collect())),
        Value::Object(map) => {
            let map: HashMap<cel::objects::Key, cel::Value> = map
                .iter()
                .map(|(k, v)| (cel::objects::Key::String(Arc::new(k.clone())), to_cel(v)))
                .collect();
            cel::Value::Map(cel::objects::Map { map: Arc::new(map) })
        }
    }
}

/// The field path `e` selects from one of `roots`, if it is a chain of selections
/// (plain, `has`, or optional) from it.
fn chain(e: &cel::IdedExpr, roots: &[&str]) -> Option<Vec<String>> {
    use cel::common::ast::{Expr, LiteralValue, operators};
    match &e.expr {
        Expr::Ident(name) if roots.contains(&name.as_str()) => Some(Vec::new()),
        Expr::Select(select) => {
            let mut path = chain(&select.operand, roots)?;
            path.push(select.field.clone());
            Some(path)
        }
        Expr::Call(call) if call.func_name == operators::OPT_SELECT => {
            let mut path = chain(call.args.first()?, roots)?;
            match &call.args.get(1)?.expr {
                Expr::Literal(LiteralValue::String(field)) => path.push(field.inner().to_owned()),
                _ => return None,
            }
            Some(path)
        }
        _ => None,
    }
}

/// Collects [`chain`]s everywhere in `e`.
fn selections(e: &cel::IdedExpr, roots: &[&str], found: &mut Vec<Vec<String>>) {
    use cel::common::ast::{EntryExpr, Expr, MapExpr, StructExpr};
    if let Some(path) = chain(e, roots).filter(|p| !p.is_empty()) {
        found.push(path);
    }
    let mut visit = |child: &cel::IdedExpr| selections(child, roots, found);
    match &e.expr {
        Expr::Call(call) => {
            call.target.iter().for_each(|t| visit(t));
            call.args.iter().for_each(&mut visit);
        }
        Expr::Comprehension(c) => {
            for child in [&c.iter_range, &c.accu_init, &c.loop_cond, &c.loop_step, &c.result] {
                visit(child);
            }
        }
        Expr::List(list) => list.elements.iter().for_each(&mut visit),
        Expr::Map(MapExpr { entries }) | Expr::Struct(StructExpr { entries, .. }) => {
            for entry in entries {
                match &entry.expr {
                    EntryExpr::MapEntry(e) => {
                        visit(&e.key);
                        visit(&e.value);
                    }
                    EntryExpr::StructField(f) => visit(&f.value),
                }
            }
        }
        Expr::Select(select) => visit(&select.operand),
        _ => {}
    }
}

fn parse(source: &str) -> Result<cel::parser::Expression, cel::ParseErrors> {
    cel::parser::Parser::new().enable_optional_syntax(true).parse(source)
}

/// Rewrites `x.?f` on a value that is not itself optional into
/// `has(x.f) ? x.?f : optional.none()`: cel 0.13 errs on a missing field there, where
/// CEL's optional selection gives `optional.none()`. (On an optional `x`, as in the
/// second step of `a.?b.?c`, cel 0.13 is right and the expression is left alone.)
fn optional_selects(expression: &mut cel::IdedExpr) {
    use cel::common::ast::{
        CallExpr, EntryExpr, Expr, LiteralValue, MapExpr, SelectExpr, StructExpr, operators,
    };
    // Decided before the operand itself is rewritten.
    let operand_is_optional = match &expression.expr {
        Expr::Call(call) => call.args.first().is_some_and(|operand| {
            matches!(&operand.expr, Expr::Call(inner) if inner.func_name == operators::OPT_SELECT)
        }),
        _ => false,
    };
    let children: Vec<&mut cel::IdedExpr> = match &mut expression.expr {
        Expr::Call(call) => {
            call.target.iter_mut().map(|t| &mut **t).chain(call.args.iter_mut()).collect()
        }
        Expr::Comprehension(c) => vec![
            &mut c.iter_range,
            &mut c.accu_init,
            &mut c.loop_cond,
            &mut c.loop_step,
            &mut c.result,
        ],
        Expr::List(list) => list.elements.iter_mut().collect(),
        Expr::Map(MapExpr { entries }) | Expr::Struct(StructExpr { entries, .. }) => entries
            .iter_mut()
            .flat_map(|e| match &mut e.expr {
                EntryExpr::MapEntry(entry) => vec![&mut entry.key, &mut entry.value],
                EntryExpr::StructField(field) => vec![&mut field.value],
            })
            .collect(),
        Expr::Select(select) => vec![&mut *select.operand],
        _ => Vec::new(),
    };
    for child in children {
        optional_selects(child);
    }
    let Expr::Call(call) = &expression.expr else { return };
    let (Some(operand), Some(field)) = (call.args.first(), call.args.get(1)) else { return };
    let Expr::Literal(LiteralValue::String(name)) = &field.expr else { return };
    if call.func_name != operators::OPT_SELECT || operand_is_optional {
        return;
    }
    let Ok(none) = parse("optional.none()") else { return };
    let id = expression.id;
    let has = cel::IdedExpr {
        id,
        expr: Expr::Select(SelectExpr {
            operand: Box::new(operand.clone()),
            field: name.inner().to_owned(),
            test: true,
        }),
    };
    let select = cel::IdedExpr { id, expr: expression.expr.clone() };
    expression.expr = Expr::Call(CallExpr {
        func_name: operators::CONDITIONAL.to_owned(),
        target: None,
        args: vec![has, select, none],
    });
}

impl Expression {
    /// Evaluates with the named variables bound.
    pub fn evaluate(&self, variables: &[(&str, &Value)]) -> Result<Value, Error> {
        unpanicked(|| {
            let mut context = functions().new_inner_scope();
            for (name, value) in variables {
                context.add_variable_from_value(*name, to_cel(value));
            }
            let result = cel::Value::resolve(&self.parsed, &context)?;
            result.json().map_err(|e| Error::NoJson(format!("{e:?}")))
        })
    }

    /// The field paths the expression selects from the variables `roots`
    /// (`self.spec.replicas`, `has(self.x)`, `self.?a.b` → `["spec", "replicas"]`, `["x"]`,
    /// `["a", "b"]`), as written (escaped names). Paths through anything else — an index,
    /// a call, a comprehension variable — are not followed.
    pub fn selections(&self, roots: &[&str]) -> Vec<Vec<String>> {
        let mut found = Vec::new();
        selections(&self.parsed, roots, &mut found);
        found
    }

    /// Evaluates to a boolean, as a condition or validation must.
    pub fn holds(&self, variables: &[(&str, &Value)]) -> Result<bool, Error> {
        match self.evaluate(variables)? {
            Value::Bool(b) => Ok(b),
            value => Err(Error::NotBool { expression: self.source.clone(), value }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn expressions_see_the_object() {
        let object = json!({ "metadata": { "name": "web", "labels": { "team": "a" } }, "spec": { "replicas": 5 } });
        let holds = |source: &str| {
            compile(source).and_then(|e| e.holds(&[("object", &object)])).map_err(|e| e.to_string())
        };
        assert_eq!(holds("object.spec.replicas <= 5"), Ok(true));
        assert_eq!(holds("object.spec.replicas < 5"), Ok(false));
        assert_eq!(
            holds("has(object.metadata.labels) && object.metadata.labels.team == 'a'"),
            Ok(true)
        );
        assert_eq!(holds("!has(object.metadata.annotations)"), Ok(true));
        assert_eq!(
            holds(
                "object.metadata.name.startsWith('w') && object.metadata.name.lowerAscii() == 'web'"
            ),
            Ok(true)
        );
        assert_eq!(holds("['a', 'b'].exists(t, t == object.metadata.labels.team)"), Ok(true));
        assert!(holds("object.spec.missing > 1").is_err());
        assert!(holds("object.spec.replicas").is_err());
        assert!(compile("object.spec.(").is_err());
        // Optional selection: none on a missing field, chained or not.
        assert_eq!(holds("object.spec.?missing.orValue(1) == 1"), Ok(true));
        assert_eq!(holds("object.spec.?replicas.orValue(1) == 5"), Ok(true));
        assert_eq!(holds("!object.metadata.?annotations.hasValue()"), Ok(true));
        assert_eq!(holds("object.metadata.?labels.?team.orValue('') == 'a'"), Ok(true));
        assert_eq!(holds("object.metadata.?annotations.?x.orValue('none') == 'none'"), Ok(true));
        assert_eq!(holds("[1, 2].all(i, object.spec.?missing.orValue(0) < i)"), Ok(true));
    }

    #[test]
    fn errors_read_as_upstreams() {
        let error = compile("object.spec.(").err().map(|e| e.to_string()).unwrap_or_default();
        assert!(error.starts_with("compilation failed: "), "{error}");
        let error = compile("1 + 1").and_then(|e| e.holds(&[])).expect_err("not a bool");
        assert_eq!(error.to_string(), r#"expression "1 + 1" evaluated to 2, not a bool"#);
    }

    /// Inputs that crashed the `cel` fuzz target: kube-cel panics on a precision Rust's
    /// formatter refuses and on an overflowing `sum()` or quantity comparison (where
    /// overflow checks are on; a release build wraps), and aborts on a `lists.range` too
    /// large to allocate.
    #[test]
    fn library_panics_and_huge_ranges_are_errors() {
        let evaluate =
            |source: &str| compile(source).and_then(|e| e.evaluate(&[])).map_err(|e| e.to_string());
        let error = evaluate("'%.99999f'.format([1.0]) == ''").unwrap_err();
        assert!(error.contains("internal error in the CEL library"), "{error}");
        assert!(evaluate("[9223372036854775807, 1].sum() > 0").is_err());
        assert!(evaluate("quantity('1.5').compareTo(quantity('1e308')) == 0").is_err());
        let error = evaluate("lists.range(9999999999).size() > 0").unwrap_err();
        assert!(error.contains("range argument must be between 0 and"), "{error}");
        assert_eq!(evaluate("lists.range(3)"), Ok(serde_json::json!([0, 1, 2])));
        assert_eq!(evaluate("'%.2f'.format([1.0])"), Ok(serde_json::json!("1.00")));
    }
}

//! CEL expressions as Kubernetes uses them (webhook `matchConditions`,
//! ValidatingAdmissionPolicy): compiled once with the standard library and the strings
//! and lists extensions (the `cel` crate), evaluated against JSON variables (`object`,
//! `oldObject`, `request`, `params`, `namespaceObject`, `variables`).
//!
//! Kubernetes adds its own libraries (quantity, URL, IP, semver, authorizer); those are
//! not available yet, and an expression that uses them fails to evaluate.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use serde_json::Value;

/// A compiled expression and its source.
pub struct Expression {
    program: cel::Program,
    pub source: String,
}

fn env() -> Arc<cel::Env> {
    static ENV: OnceLock<Arc<cel::Env>> = OnceLock::new();
    ENV.get_or_init(|| {
        let mut env = cel::Env::stdlib();
        for extension in [cel::extensions::strings, cel::extensions::lists] {
            if let Err(e) = env.add_extension(extension) {
                tracing::warn!(error = ?e, "a CEL extension is unavailable");
            }
        }
        Arc::new(env)
    })
    .clone()
}

/// Compiled expressions by source: policies, match conditions and CRD rules run the
/// same few expressions on every request.
type Compiled = HashMap<String, Arc<Expression>>;

/// Most expressions kept; past it the memo starts over.
const MEMO: usize = 1024;

/// Compiles `source` (once: the result is kept), or says why it does not parse.
pub fn compile(source: &str) -> Result<Arc<Expression>, String> {
    static COMPILED: OnceLock<Mutex<Compiled>> = OnceLock::new();
    let memo = COMPILED.get_or_init(Mutex::default);
    if let Some(found) = memo.lock().unwrap_or_else(|e| e.into_inner()).get(source) {
        return Ok(found.clone());
    }
    let program = env().compile(source).map_err(|e| format!("compilation failed: {e}"))?;
    let expression = Arc::new(Expression { program, source: source.to_owned() });
    let mut memo = memo.lock().unwrap_or_else(|e| e.into_inner());
    if memo.len() >= MEMO {
        memo.clear();
    }
    memo.insert(source.to_owned(), expression.clone());
    Ok(expression)
}

impl Expression {
    /// Evaluates with the named variables bound.
    pub fn evaluate(&self, variables: &[(&str, &Value)]) -> Result<Value, String> {
        let mut context = cel::Context::with_env(env());
        for (name, value) in variables {
            let value = cel::to_value(value).map_err(|e| format!("variable {name}: {e}"))?;
            context.add_variable_from_value(*name, value);
        }
        let result = self.program.execute(&context).map_err(|e| e.to_string())?;
        result.json().map_err(|e| format!("the result has no JSON form: {e:?}"))
    }

    /// Evaluates to a boolean, as a condition or validation must.
    pub fn holds(&self, variables: &[(&str, &Value)]) -> Result<bool, String> {
        match self.evaluate(variables)? {
            Value::Bool(b) => Ok(b),
            other => Err(format!("expression {:?} evaluated to {other}, not a bool", self.source)),
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
        let holds = |source: &str| compile(source).and_then(|e| e.holds(&[("object", &object)]));
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
    }
}

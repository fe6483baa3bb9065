//! Trust policy: CEL conditions and claim mappings, as plain functions.
//!
//! Identity providers and audiences carry optional CEL (Common Expression Language)
//! expressions: a `condition` deciding whether a request may get a grant, and mappings
//! deriving the `sub` / `aud_sub` / `email` / `tenant` of the issued token for a target
//! domain. This module compiles those expressions once (when configuration is loaded or an
//! administrator saves a trust) and evaluates them on every token request, over four
//! variables:
//!
//! * `subject` — validated claims of the subject token,
//! * `actor` — validated claims of the actor token, or `null` when there is none,
//! * `client` — the authenticated client, e.g. `{"id": ..., "audiences": [...]}`,
//! * `request` — e.g. `{"audience": ..., "resources": [...], "scopes": [...],
//!   "requested_token_type": ...}`.
//!
//! The rule is *a condition that errors denies*. [`allows`] returns a [`Decision`] in which
//! only [`Decision::Allow`] lets a request through, so a caller cannot treat an error as a
//! pass by accident.
//!
//! Notes on the interpreter (`cel-interpreter` 0.10), learned by reading its source and
//! confirmed by the tests below:
//!
//! * It panics (`todo!`) on a comprehension macro over something other than a list or map,
//!   e.g. `subject.email.all(c, c != "x")`, and on message construction such as `T{a: 1}`,
//!   and integer negation overflows on `-(i64::MIN)`. Every evaluation therefore runs inside
//!   [`std::panic::catch_unwind`] and a panic becomes [`PolicyError::Evaluation`]. This relies
//!   on the binary being built with `panic = "unwind"` (the default); the default panic hook
//!   still prints the panic to stderr.
//! * The parser (ANTLR runtime) panics on some incomplete inputs such as `a == ` (also
//!   caught, reported as a syntax error), takes exponential time in the nesting depth of
//!   function calls, overflows the stack on deep nesting, and parses `!!x` as `!x` and `--x`
//!   as `-x`. [`compile`] rejects nesting deeper than [`MAX_NESTING`] and repeated prefix
//!   operators before parsing.
//! * `&&`, `||` and `!` use "truthiness" rather than strict booleans (`"x" && true` is
//!   `true`), unlike the CEL specification. The *final* result of a condition must still be a
//!   `bool`, but authors should compare explicitly (`size(subject.groups) > 0`, not
//!   `subject.groups`).
//! * `a in b` is membership in a list or a map only, as the CEL specification defines it; with
//!   a string `b` it is an evaluation error (the interpreter alone would test for a substring;
//!   every `in` is rewritten to a strict function at compile time). A `groups`, `roles`,
//!   `entitlements` or `amr` claim sent as a string is given to policies as a one-element list,
//!   so `"admins" in subject.groups` works for a user with one group.
//! * A missing key read with `.` (`subject.acr`) is an error, but a missing key read with an
//!   index (`subject["acr"]`) or an out-of-range list index yields `null`.
//! * Available functions: `size`, `contains`, `startsWith`, `endsWith`, `matches` (RE2-like
//!   `regex` syntax), `string`, `int`, `uint`, `double`, `bytes`, `min`, `max`; macros `has`,
//!   `all`, `exists`, `exists_one`, `map`, `filter`; operators including `in`. There is no
//!   `split`, `lowerAscii`, `replace` or other string-extension function.

use std::collections::HashMap;
use std::fmt;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::str::FromStr;
use std::sync::{Arc, LazyLock};

use cel_interpreter::objects::{Key, Map, ValueType};
use cel_interpreter::{Context, ExecutionError, FunctionContext, Value};
use cel_parser::ast::{EntryExpr, Expr, IdedEntryExpr, IdedExpr};

/// Longest expression source accepted, in characters.
///
/// Policies are short; the bound keeps parsing and evaluation cost (and recursion depth in
/// the interpreter, which has no limit of its own) predictable for text typed into the admin
/// page.
pub const MAX_SOURCE_CHARS: usize = 4096;

/// Deepest bracket nesting (`(`, `[`, `{` together) accepted.
///
/// The parser (ANTLR-generated) takes time exponential in the nesting depth of function
/// calls (`int(int(int(...)))`: 0.6 s at depth 20, 9 s at 24) and recurses deeply enough to
/// overflow a thread stack at a few hundred levels, which aborts the process. Real policies
/// nest a handful of levels; 12 keeps the worst case we measured near 10 ms.
pub const MAX_NESTING: usize = 12;

/// Longest error message produced, in characters, so that an error stored in an audit event
/// or shown in the admin page stays readable.
const MAX_MESSAGE_CHARS: usize = 400;

/// Why an expression could not be compiled or evaluated.
///
/// Messages are meant for an administrator: they name the problem and its position or the
/// types involved, but never echo claim *values* from a token (which may be personal data
/// and would otherwise end up in logs and audit events).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    /// The source is not valid CEL (or is empty); the message says where, on one line.
    #[error("invalid expression: {0}")]
    Parse(String),
    /// Evaluation failed: a missing key, an unsupported operation, an interpreter panic.
    #[error("expression failed: {0}")]
    Evaluation(String),
    /// Evaluation succeeded but produced a value of the wrong type for its use.
    #[error("expression returned {found}, expected {expected}")]
    WrongType {
        /// The CEL type the caller needed, e.g. `bool`.
        expected: &'static str,
        /// The CEL type the expression produced, e.g. `string`.
        found: &'static str,
    },
    /// The source is longer than [`MAX_SOURCE_CHARS`].
    #[error("expression is longer than {MAX_SOURCE_CHARS} characters")]
    TooLong,
}

/// A compiled CEL expression together with its source text.
///
/// Compiled once when configuration is loaded or a trust is saved, then shared (cheaply
/// cloned through an [`Arc`]) by every request that evaluates it. The source is kept so the
/// admin page can show it and so `Debug` output identifies the policy without dumping the
/// syntax tree.
#[derive(Clone)]
pub struct Expression {
    inner: Arc<Compiled>,
}

struct Compiled {
    source: String,
    /// The syntax tree, with every `in` made strict ([`make_in_strict`]).
    program: IdedExpr,
}

impl Expression {
    /// The source text the expression was compiled from, for display and for saving back.
    pub fn source(&self) -> &str {
        &self.inner.source
    }
}

impl fmt::Debug for Expression {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Expression")
            .field(&self.inner.source)
            .finish()
    }
}

impl fmt::Display for Expression {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.inner.source)
    }
}

/// Two expressions are equal when their sources are: used to tell whether a saved trust
/// changed.
impl PartialEq for Expression {
    fn eq(&self, other: &Self) -> bool {
        self.inner.source == other.inner.source
    }
}

impl Eq for Expression {}

/// Parses configuration text into an expression, so config structs can use `str::parse`.
impl FromStr for Expression {
    type Err = PolicyError;

    fn from_str(source: &str) -> Result<Self, Self::Err> {
        compile(source)
    }
}

/// Compiles CEL source into an [`Expression`].
///
/// Called when loading configuration and when an administrator saves a trust, so that a
/// broken policy is rejected up front with a readable, single-line message
/// (`line 1, column 9: ...`) instead of denying every request later. Empty (or
/// whitespace-only) sources and sources longer than [`MAX_SOURCE_CHARS`] are rejected.
pub fn compile(source: &str) -> Result<Expression, PolicyError> {
    if source.trim().is_empty() {
        return Err(PolicyError::Parse("expression is empty".to_owned()));
    }
    if source.chars().count() > MAX_SOURCE_CHARS {
        return Err(PolicyError::TooLong);
    }
    check_shape(source)?;
    let parsed = catch_unwind(|| {
        cel_parser::Parser::default()
            .parse(source)
            .map(|mut program| {
                make_in_strict(&mut program);
                program
            })
            .map_err(|e| describe_parse_errors(&e))
    });
    let program = match parsed {
        Ok(Ok(program)) => program,
        Ok(Err(message)) => return Err(PolicyError::Parse(message)),
        Err(_) => {
            return Err(PolicyError::Parse(
                "syntax error (the expression looks incomplete)".to_owned(),
            ));
        }
    };
    Ok(Expression {
        inner: Arc::new(Compiled {
            source: source.to_owned(),
            program,
        }),
    })
}

/// Rejects, before parsing, shapes the parser mishandles: nesting deeper than
/// [`MAX_NESTING`] (exponential parse time, stack overflow) and repeated prefix operators.
/// cel-parser 0.10.1 drops the even-count case of `!!x` / `--x` (a missing `return` in
/// `visit_LogicalNot` / `visit_Negate`), so `!!x` silently means `!x`; `!(!x)` is parsed
/// correctly and is what the error suggests.
///
/// Brackets count wherever they are, in string literals and comments too: a pre-parser that
/// skipped strings had to agree with the ANTLR lexer on where every string ends (raw prefixes
/// only at the start of a token, no line breaks in one-line strings, what an invalid escape
/// does to the lexer), and every disagreement let nesting through to a parser that overflows
/// its stack, which aborts the process. Policies nest a few levels, regular expressions
/// included, so the cost is a limit of 12 that also covers brackets inside strings.
/// String literals and `//` comments are still skipped for the repeated-operator check, which
/// guards meaning, not the parser's resources.
fn check_shape(source: &str) -> Result<(), PolicyError> {
    let mut depth = 0usize;
    for c in source.chars() {
        match c {
            '(' | '[' | '{' => {
                depth += 1;
                if depth > MAX_NESTING {
                    return Err(PolicyError::Parse(format!(
                        "brackets are nested more than {MAX_NESTING} deep \
                         (brackets inside strings count too)"
                    )));
                }
            }
            ')' | ']' | '}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    let chars: Vec<char> = source.chars().collect();
    let mut previous: Option<char> = None;
    let mut i = 0;
    while let Some(&c) = chars.get(i) {
        match c {
            '"' | '\'' => {
                let raw = (1..=2).any(|back| {
                    i.checked_sub(back)
                        .and_then(|j| chars.get(j))
                        .is_some_and(|p| matches!(p, 'r' | 'R'))
                });
                let triple = chars.get(i + 1) == Some(&c) && chars.get(i + 2) == Some(&c);
                let quote_len = if triple { 3 } else { 1 };
                i += quote_len;
                while let Some(&d) = chars.get(i) {
                    if d == '\\' && !raw {
                        i += 2;
                    } else if d == c
                        && (!triple
                            || (chars.get(i + 1) == Some(&c) && chars.get(i + 2) == Some(&c)))
                    {
                        i += quote_len;
                        break;
                    } else {
                        i += 1;
                    }
                }
                previous = Some(c);
                continue;
            }
            '/' if chars.get(i + 1) == Some(&'/') => {
                while chars.get(i).is_some_and(|&d| d != '\n') {
                    i += 1;
                }
                continue;
            }
            '!' | '-' if previous == Some(c) => {
                return Err(PolicyError::Parse(format!(
                    "repeated '{c}' is not supported; use parentheses, e.g. {c}({c}x)"
                )));
            }
            _ => {}
        }
        if !c.is_whitespace() {
            previous = Some(c);
        }
        i += 1;
    }
    Ok(())
}

/// The function every `in` operator becomes (a name no CEL identifier can take by accident).
const STRICT_IN: &str = "__frontdesk_in";

/// Rewrites every `a in b` of the tree into [`STRICT_IN`]`(a, b)`. The interpreter evaluates
/// `"admins" in subject.groups` as a substring test when the claim is a string (an IdP's
/// one-valued attribute), so `"eng" in "engineering-contractors"` was true; CEL defines `in` on
/// lists and maps only. Every node kind is visited (the match has no catch-all), so no position
/// — a comprehension's step, a map entry, a call's target — keeps the lenient operator.
fn make_in_strict(node: &mut IdedExpr) {
    match &mut node.expr {
        Expr::Call(call) => {
            if call.func_name == "@in" && call.target.is_none() && call.args.len() == 2 {
                STRICT_IN.clone_into(&mut call.func_name);
            }
            if let Some(target) = call.target.as_deref_mut() {
                make_in_strict(target);
            }
            call.args.iter_mut().for_each(make_in_strict);
        }
        Expr::Comprehension(comprehension) => {
            for part in [
                &mut comprehension.iter_range,
                &mut comprehension.accu_init,
                &mut comprehension.loop_cond,
                &mut comprehension.loop_step,
                &mut comprehension.result,
            ] {
                make_in_strict(part);
            }
        }
        Expr::List(list) => list.elements.iter_mut().for_each(make_in_strict),
        Expr::Map(map) => map.entries.iter_mut().for_each(make_entry_in_strict),
        Expr::Struct(structure) => structure.entries.iter_mut().for_each(make_entry_in_strict),
        Expr::Select(select) => make_in_strict(&mut select.operand),
        Expr::Unspecified | Expr::Ident(_) | Expr::Literal(_) => {}
    }
}

/// [`make_in_strict`] for a map literal's or a message literal's entry.
fn make_entry_in_strict(entry: &mut IdedEntryExpr) {
    match &mut entry.expr {
        EntryExpr::MapEntry(entry) => {
            make_in_strict(&mut entry.key);
            make_in_strict(&mut entry.value);
        }
        EntryExpr::StructField(field) => make_in_strict(&mut field.value),
    }
}

/// `in` as CEL defines it: membership in a list, or a key of a map. Anything else on the right
/// — a string above all — is an error, so the condition denies (fail closed) and the message
/// says what to write instead.
fn strict_in(
    ftx: &FunctionContext,
    element: Value,
    collection: Value,
) -> Result<Value, ExecutionError> {
    match collection {
        Value::List(list) => Ok(Value::Bool(list.contains(&element))),
        Value::Map(map) => Ok(Value::Bool(
            element
                .try_into()
                .is_ok_and(|key| map.map.contains_key(&key)),
        )),
        Value::String(_) => Err(ftx.error(
            "'in' needs a list or a map on its right, not a string (a claim with one value may be a string: compare with ==, or use .contains() for a substring)",
        )),
        _ => Err(ftx.error("'in' needs a list or a map on its right")),
    }
}

fn describe_parse_errors(errors: &cel_interpreter::ParseErrors) -> String {
    let mut parts: Vec<String> = errors
        .errors
        .iter()
        .map(|e| {
            let msg = one_line(&e.msg);
            if e.pos.0 > 0 {
                format!("line {}, column {}: {}", e.pos.0, e.pos.1, msg)
            } else {
                msg
            }
        })
        .collect();
    parts.dedup();
    if parts.is_empty() {
        parts.push("syntax error".to_owned());
    }
    truncate(parts.join("; "))
}

/// The values an expression is evaluated over.
///
/// Plain JSON so callers can build it from validated token claims and request parameters
/// without knowing anything about CEL. JSON integers become CEL `int` (or `uint` above
/// `i64::MAX`), other numbers `double`, objects maps with string keys, arrays lists.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PolicyInput {
    /// Validated claims of the subject token, exposed as `subject`. A `groups`, `roles`,
    /// `entitlements` or `amr` claim sent as a string becomes a one-element list (here and in
    /// `actor`).
    pub subject: serde_json::Value,
    /// Validated claims of the actor token, exposed as `actor` (`null` when `None`).
    pub actor: Option<serde_json::Value>,
    /// The authenticated client, exposed as `client`, e.g. `{"id": ..., "audiences": [...]}`.
    pub client: serde_json::Value,
    /// The request, exposed as `request`, e.g. `{"audience": ..., "scopes": [...]}`.
    pub request: serde_json::Value,
}

impl PolicyInput {
    /// Converts the input to CEL values once, so that a request evaluating several
    /// expressions (a condition and several claim mappings) pays for the conversion once.
    pub fn prepare(&self) -> PreparedInput {
        PreparedInput {
            subject: claims_to_cel(&self.subject),
            actor: self.actor.as_ref().map_or(Value::Null, claims_to_cel),
            client: json_to_cel(&self.client),
            request: json_to_cel(&self.request),
        }
    }
}

/// A [`PolicyInput`] already converted to CEL values, for evaluating several expressions
/// against the same request without converting the claims again.
#[derive(Debug, Clone)]
pub struct PreparedInput {
    subject: Value,
    actor: Value,
    client: Value,
    request: Value,
}

impl PreparedInput {
    /// Same as [`evaluate_condition`], on prepared input.
    pub fn condition(&self, expr: &Expression) -> Result<bool, PolicyError> {
        match self.run(expr)? {
            Value::Bool(b) => Ok(b),
            other => Err(wrong_type("bool", &other)),
        }
    }

    /// Same as [`allows`], on prepared input.
    pub fn allows(&self, expr: Option<&Expression>) -> Decision {
        match expr {
            None => Decision::Allow,
            Some(expr) => match self.condition(expr) {
                Ok(true) => Decision::Allow,
                Ok(false) => Decision::Deny,
                Err(e) => Decision::Error(e.to_string()),
            },
        }
    }

    /// Same as [`evaluate_string`], on prepared input.
    pub fn string(&self, expr: &Expression) -> Result<Option<String>, PolicyError> {
        match self.run(expr)? {
            Value::String(s) => Ok(Some(s.as_str().to_owned())),
            Value::Null => Ok(None),
            other => Err(wrong_type("string or null", &other)),
        }
    }

    /// Same as [`evaluate_value`], on prepared input.
    pub fn value(&self, expr: &Expression) -> Result<serde_json::Value, PolicyError> {
        let value = self.run(expr)?;
        cel_to_json(&value)
    }

    fn run(&self, expr: &Expression) -> Result<Value, PolicyError> {
        let mut ctx = BASE_CONTEXT.new_inner_scope();
        ctx.add_variable_from_value("subject", self.subject.clone());
        ctx.add_variable_from_value("actor", self.actor.clone());
        ctx.add_variable_from_value("client", self.client.clone());
        ctx.add_variable_from_value("request", self.request.clone());
        let program = &expr.inner.program;
        // The interpreter has `todo!()`s and unchecked arithmetic reachable from policy text;
        // nothing it touches is left in a broken state by a panic (the context is dropped,
        // the program and base context are only read), so unwinding out of it is safe.
        match catch_unwind(AssertUnwindSafe(|| Value::resolve(program, &ctx))) {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(e)) => Err(PolicyError::Evaluation(describe_execution_error(&e))),
            Err(_) => Err(PolicyError::Evaluation(
                "the CEL interpreter cannot evaluate this expression \
                 (unsupported construct or arithmetic overflow)"
                    .to_owned(),
            )),
        }
    }
}

/// The built-in functions, registered once: building a root context allocates a function
/// table, so each evaluation uses a cheap child scope of this one instead.
static BASE_CONTEXT: LazyLock<Context<'static>> = LazyLock::new(|| {
    let mut context = Context::default();
    context.add_function(STRICT_IN, strict_in);
    context
});

/// Outcome of a policy condition, for the token endpoint.
///
/// A separate type rather than `Result<bool, _>` so that fail-closed handling is the only
/// easy thing to write: only [`Decision::Allow`] lets a request through, and an error keeps
/// its message for the audit event.
#[derive(Debug, Clone, PartialEq, Eq)]
#[must_use]
pub enum Decision {
    /// The condition evaluated to `true`, or there is no condition.
    Allow,
    /// The condition evaluated to `false`.
    Deny,
    /// The condition failed (missing claim, type error, non-bool result); this denies.
    Error(String),
}

impl Decision {
    /// Whether the request may proceed: true only for [`Decision::Allow`].
    pub fn is_allowed(&self) -> bool {
        matches!(self, Decision::Allow)
    }
}

/// Evaluates a condition, which must produce a `bool`.
///
/// Any failure (no such key, type error, non-bool result) is an `Err`, and callers must deny
/// on `Err`; prefer [`allows`], which makes that the only possible reading.
pub fn evaluate_condition(expr: &Expression, input: &PolicyInput) -> Result<bool, PolicyError> {
    input.prepare().condition(expr)
}

/// Decides whether a request passes an optional condition: no condition allows, `true`
/// allows, `false` denies, and an error denies with its message ("a condition that errors
/// denies").
pub fn allows(expr: Option<&Expression>, input: &PolicyInput) -> Decision {
    match expr {
        None => Decision::Allow,
        Some(_) => input.prepare().allows(expr),
    }
}

/// Evaluates a claim mapping that derives a string claim (`sub`, `aud_sub`, `email`,
/// `tenant`) for a target domain.
///
/// A string gives `Some`, `null` gives `None` (the claim is omitted), and any other type is
/// an error, so that a mapping returning e.g. an int never silently becomes a claim.
pub fn evaluate_string(
    expr: &Expression,
    input: &PolicyInput,
) -> Result<Option<String>, PolicyError> {
    input.prepare().string(expr)
}

/// Evaluates an expression to an arbitrary JSON value, for mapping claims generally (lists,
/// maps, numbers). Values without a JSON form (bytes are base64-encoded; functions,
/// non-finite doubles) are errors.
pub fn evaluate_value(
    expr: &Expression,
    input: &PolicyInput,
) -> Result<serde_json::Value, PolicyError> {
    input.prepare().value(expr)
}

/// Claims that are lists by definition: `groups`, `roles`, `entitlements` (RFC 9068
/// §2.2.3.1) and `amr` (OpenID Connect Core §2). (`aud` may be a string by definition, RFC
/// 7519 §4.1.3, and is checked before any policy runs, so it is left as sent.)
const LIST_CLAIMS: &[&str] = &["groups", "roles", "entitlements", "amr"];

/// A token's claims as CEL: like [`json_to_cel`], except that a [`LIST_CLAIMS`] claim sent as
/// a plain string (IdPs do so when it has one value, SAML attributes always) is a one-element
/// list, so the usual `"admins" in subject.groups` is a membership test for a user with one
/// group too (a string on the right of `in` is an error, [`strict_in`]).
fn claims_to_cel(value: &serde_json::Value) -> Value {
    let serde_json::Value::Object(entries) = value else {
        return json_to_cel(value);
    };
    let map: HashMap<Key, Value> = entries
        .iter()
        .map(|(name, value)| {
            let value = match value {
                serde_json::Value::String(text) if LIST_CLAIMS.contains(&name.as_str()) => {
                    Value::List(Arc::new(vec![Value::String(Arc::new(text.clone()))]))
                }
                other => json_to_cel(other),
            };
            (Key::String(Arc::new(name.clone())), value)
        })
        .collect();
    Value::Map(Map { map: Arc::new(map) })
}

fn json_to_cel(value: &serde_json::Value) -> Value {
    match value {
        serde_json::Value::Null => Value::Null,
        serde_json::Value::Bool(b) => Value::Bool(*b),
        serde_json::Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                Value::Int(i)
            } else if let Some(u) = n.as_u64() {
                Value::UInt(u)
            } else {
                Value::Float(n.as_f64().unwrap_or(f64::NAN))
            }
        }
        serde_json::Value::String(s) => Value::String(Arc::new(s.clone())),
        serde_json::Value::Array(items) => {
            Value::List(Arc::new(items.iter().map(json_to_cel).collect()))
        }
        serde_json::Value::Object(entries) => {
            let map: HashMap<Key, Value> = entries
                .iter()
                .map(|(k, v)| (Key::String(Arc::new(k.clone())), json_to_cel(v)))
                .collect();
            Value::Map(Map { map: Arc::new(map) })
        }
    }
}

fn cel_to_json(value: &Value) -> Result<serde_json::Value, PolicyError> {
    if let Value::Float(f) = value
        && !f.is_finite()
    {
        return Err(PolicyError::Evaluation(
            "expression returned a non-finite double".to_owned(),
        ));
    }
    match value {
        Value::List(items) => items
            .iter()
            .map(cel_to_json)
            .collect::<Result<Vec<_>, _>>()
            .map(serde_json::Value::Array),
        Value::Map(map) => {
            let mut out = serde_json::Map::with_capacity(map.map.len());
            for (k, v) in map.map.iter() {
                out.insert(k.to_string(), cel_to_json(v)?);
            }
            Ok(serde_json::Value::Object(out))
        }
        other => other.json().map_err(|_| {
            PolicyError::Evaluation(format!(
                "expression returned a {} which has no JSON form",
                type_name(other)
            ))
        }),
    }
}

fn wrong_type(expected: &'static str, found: &Value) -> PolicyError {
    PolicyError::WrongType {
        expected,
        found: type_name(found),
    }
}

/// CEL's names for types (the crate calls `double` "float").
fn type_name(value: &Value) -> &'static str {
    match value.type_of() {
        ValueType::List => "list",
        ValueType::Map => "map",
        ValueType::Function => "function",
        ValueType::Int => "int",
        ValueType::UInt => "uint",
        ValueType::Float => "double",
        ValueType::String => "string",
        ValueType::Bytes => "bytes",
        ValueType::Bool => "bool",
        ValueType::Duration => "duration",
        ValueType::Timestamp => "timestamp",
        ValueType::Null => "null",
    }
}

/// Describes an evaluation error by the types involved, never the values: the crate's own
/// `Display` prints operands with `Debug`, which would copy claim values into audit logs.
fn describe_execution_error(err: &ExecutionError) -> String {
    use ExecutionError as E;
    let msg = match err {
        E::NoSuchKey(key) => format!("no such key: {key}"),
        E::UndeclaredReference(name) => format!("undeclared reference to '{name}'"),
        E::InvalidArgumentCount { expected, actual } => {
            format!("wrong number of arguments: expected {expected}, got {actual}")
        }
        E::UnsupportedTargetType { target } => {
            format!("function not supported on {}", type_name(target))
        }
        E::NotSupportedAsMethod { method, target } => {
            format!("'{method}' is not a method of {}", type_name(target))
        }
        E::UnsupportedKeyType(v) => format!("a {} cannot be a map key", type_name(v)),
        // `got` is the operand's Debug form (a value), `want` a Rust type name: neither helps.
        E::UnexpectedType { .. } => "argument of the wrong type".to_owned(),
        E::MissingArgumentOrTarget => "missing argument or target".to_owned(),
        E::ValuesNotComparable(a, b) => {
            format!("cannot compare {} with {}", type_name(a), type_name(b))
        }
        E::UnsupportedUnaryOperator(op, v) => {
            format!("operator '{op}' not supported on {}", type_name(v))
        }
        E::UnsupportedBinaryOperator(op, a, b) => format!(
            "operator '{op}' not supported on {} and {}",
            type_name(a),
            type_name(b)
        ),
        E::UnsupportedMapIndex(v) => format!("a {} cannot index a map", type_name(v)),
        E::UnsupportedListIndex(v) => format!("a {} cannot index a list", type_name(v)),
        E::UnsupportedIndex(v, i) => {
            format!("a {} cannot be indexed by a {}", type_name(v), type_name(i))
        }
        E::FunctionError { function, message } => describe_function_error(function, message),
        E::DivisionByZero(_) => "division by zero".to_owned(),
        E::RemainderByZero(_) => "remainder by zero".to_owned(),
        E::Overflow(op, _, _) => format!("integer overflow in '{op}'"),
        E::UnsupportedFunctionCallIdentifierType(_) => "unsupported function call".to_owned(),
        E::UnsupportedFieldsConstruction(_) => "message construction is not supported".to_owned(),
        // `ExecutionError` is non-exhaustive; anything newer is described generically rather
        // than with its `Display`, which may contain values.
        _ => "evaluation error".to_owned(),
    };
    truncate(one_line(&msg))
}

/// The crate's function errors embed operand values (`cannot convert {v:?} to int`), so only
/// messages known to be value-free are passed on.
fn describe_function_error(function: &str, message: &str) -> String {
    if function == STRICT_IN {
        // Fixed text of `strict_in`, naming the operator as written, never a value.
        return message.to_owned();
    }
    if message.contains("not a valid regex") {
        // The regex crate's message ends with a line such as `error: unclosed group`.
        let reason = message.lines().last().unwrap_or_default().trim();
        return format!("{function}: invalid regular expression ({reason})");
    }
    let safe = [
        "string parse error",
        "integer overflow",
        "unsigned integer overflow",
    ];
    if safe.iter().any(|p| message.starts_with(p)) {
        return format!("{function}: {message}");
    }
    if let Some(rest) = message.strip_prefix("cannot convert ")
        && let Some((_, target)) = rest.rsplit_once(" to ")
    {
        return format!("{function}: cannot convert this value to {target}");
    }
    format!("{function}: not supported for this argument")
}

fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn truncate(mut s: String) -> String {
    if let Some((idx, _)) = s.char_indices().nth(MAX_MESSAGE_CHARS) {
        s.truncate(idx);
        s.push('…');
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn input() -> PolicyInput {
        PolicyInput {
            subject: json!({
                "iss": "https://idp.example.com",
                "sub": "248289761001",
                "email": "alice@example.com",
                "email_verified": true,
                "groups": ["admins", "dev"],
                "acr": "phr",
                "iat": 1_700_000_000,
                "score": 0.5,
                "big": u64::MAX,
                "min": i64::MIN,
                "org": {"id": "o1", "tenant": {"name": "acme", "regions": ["eu", "us"]}},
            }),
            actor: None,
            client: json!({"id": "agent", "audiences": ["https://api.example.com"]}),
            request: json!({
                "audience": "https://api.example.com",
                "resources": ["https://api.example.com/v1"],
                "scopes": ["read", "write"],
                "requested_token_type": "urn:ietf:params:oauth:token-type:id-jag",
            }),
        }
    }

    fn expr(source: &str) -> Expression {
        compile(source).expect("test expression compiles")
    }

    fn cond(source: &str) -> Result<bool, PolicyError> {
        evaluate_condition(&expr(source), &input())
    }

    fn string(source: &str) -> Result<Option<String>, PolicyError> {
        evaluate_string(&expr(source), &input())
    }

    fn value(source: &str) -> Result<serde_json::Value, PolicyError> {
        evaluate_value(&expr(source), &input())
    }

    fn assert_evaluation_error(result: Result<bool, PolicyError>, needle: &str) {
        match result {
            Err(PolicyError::Evaluation(msg)) => {
                assert!(msg.contains(needle), "{msg:?} should mention {needle:?}")
            }
            other => panic!("expected an evaluation error mentioning {needle:?}, got {other:?}"),
        }
    }

    #[test]
    fn typical_conditions_allow() {
        for source in [
            r#"subject.email.endsWith("@example.com")"#,
            r#""admins" in subject.groups"#,
            r#"request.scopes.all(s, s in ["read", "write"])"#,
            r#"client.id == "agent""#,
            r#"has(subject.acr) && subject.acr == "phr""#,
            r#"subject.email_verified && subject.iss == "https://idp.example.com""#,
            r#"request.audience in client.audiences"#,
            r#"request.resources.exists(r, r.startsWith(request.audience + "/"))"#,
            r#"request.scopes.exists_one(s, s == "write")"#,
            r#"size(request.scopes) == 2 && size(subject.email) > 3"#,
            r#"subject.email.contains("@")"#,
            r#"subject.email.matches("^[a-z]+@example\\.com$")"#,
            r#"request.scopes.filter(s, s != "read") == ["write"]"#,
            r#"subject.iat > 1600000000 ? true : false"#,
        ] {
            assert_eq!(cond(source), Ok(true), "{source}");
            assert_eq!(allows(Some(&expr(source)), &input()), Decision::Allow);
        }
    }

    #[test]
    fn typical_conditions_deny() {
        for source in [
            r#"subject.email.endsWith("@other.com")"#,
            r#""root" in subject.groups"#,
            r#"request.scopes.all(s, s in ["read"])"#,
            r#"client.id == "someone-else""#,
            r#"has(subject.amr) && subject.amr == "phr""#,
            r#"subject.email.matches("@other\\.com$")"#,
        ] {
            assert_eq!(cond(source), Ok(false), "{source}");
            let decision = allows(Some(&expr(source)), &input());
            assert_eq!(decision, Decision::Deny);
            assert!(!decision.is_allowed());
        }
    }

    #[test]
    fn no_condition_allows() {
        assert_eq!(allows(None, &input()), Decision::Allow);
        assert!(allows(None, &input()).is_allowed());
    }

    #[test]
    fn missing_key_is_an_error_and_denies() {
        assert_evaluation_error(cond(r#"subject.department == "sales""#), "department");
        let decision = allows(Some(&expr(r#"subject.department == "sales""#)), &input());
        match &decision {
            Decision::Error(msg) => assert!(msg.contains("no such key: department"), "{msg}"),
            other => panic!("expected Decision::Error, got {other:?}"),
        }
        assert!(!decision.is_allowed());
        // Even when the erroring side is negated or or-ed with false.
        assert!(!allows(Some(&expr("!(subject.department == 1)")), &input()).is_allowed());
        assert!(!allows(Some(&expr("false || subject.x == 1")), &input()).is_allowed());
    }

    #[test]
    fn non_bool_result_is_an_error_and_denies() {
        assert_eq!(
            cond("subject.email"),
            Err(PolicyError::WrongType {
                expected: "bool",
                found: "string"
            })
        );
        assert_eq!(
            cond("subject.groups || false"),
            Err(PolicyError::WrongType {
                expected: "bool",
                found: "list"
            })
        );
        let decision = allows(Some(&expr("subject.iat")), &input());
        assert_eq!(
            decision,
            Decision::Error("expression returned int, expected bool".to_owned())
        );
        assert!(!decision.is_allowed());
    }

    #[test]
    fn type_errors_deny() {
        assert_evaluation_error(cond("subject.email > 3"), "cannot compare string with int");
        assert_evaluation_error(cond(r#"subject.iat + "x" == 1"#), "add");
        assert_evaluation_error(cond("subject.email.startsWith(1)"), "");
        assert_evaluation_error(cond("unknown_var == 1"), "unknown_var");
        assert_evaluation_error(cond("size(subject.email_verified) == 1"), "size");
        assert_evaluation_error(cond(r#"subject.email.matches("(")"#), "invalid regular");
    }

    #[test]
    fn error_messages_do_not_echo_claim_values() {
        for source in [
            "subject.email > 3",
            "int(subject.email) == 1",
            "double(subject.org) == 1.0",
            "size(subject.email_verified) == 1",
            "subject.email + 1 == 2",
            "-subject.email == 1",
            "subject.email[subject.org] == 1",
        ] {
            let err = cond(source).expect_err(source).to_string();
            assert!(!err.contains("alice"), "{source}: {err}");
            assert!(!err.contains("acme"), "{source}: {err}");
            assert!(!err.contains('\n'), "{source}: {err}");
        }
    }

    #[test]
    fn actor_is_null_when_absent() {
        assert_eq!(cond("actor == null"), Ok(true));
        assert_eq!(cond("has(actor.sub)"), Ok(false));
        assert!(!allows(Some(&expr(r#"actor.sub == "bot""#)), &input()).is_allowed());

        let mut with_actor = input();
        with_actor.actor = Some(json!({"sub": "bot", "client_id": "agent"}));
        let e = expr(r#"actor.sub == "bot" && actor.client_id == client.id"#);
        assert_eq!(evaluate_condition(&e, &with_actor), Ok(true));
    }

    #[test]
    fn parse_errors_are_single_line_and_point_at_the_problem() {
        let err = compile(r#"subject.email.endsWith("@x.com""#).expect_err("unbalanced");
        let PolicyError::Parse(msg) = &err else {
            panic!("expected a parse error, got {err:?}")
        };
        assert!(msg.contains("line 1, column"), "{msg}");
        assert!(!msg.contains('\n'), "{msg}");

        // This input makes the ANTLR runtime hit `unreachable!()`; caught and reported.
        let err = compile("subject.email == ").expect_err("dangling operator");
        assert!(matches!(err, PolicyError::Parse(_)), "{err:?}");
        assert!(compile("subject.email == ( ").is_err());
        let err = compile("a ! b").expect_err("bad token");
        let PolicyError::Parse(msg) = &err else {
            panic!("expected a parse error, got {err:?}")
        };
        assert!(msg.contains("column 3"), "{msg}");
        assert!(err.to_string().starts_with("invalid expression: "), "{err}");
    }

    #[test]
    fn empty_and_oversized_sources_are_rejected() {
        assert!(matches!(compile(""), Err(PolicyError::Parse(_))));
        assert!(matches!(compile("  \n\t"), Err(PolicyError::Parse(_))));
        let long = format!("{}true", " ".repeat(MAX_SOURCE_CHARS));
        assert_eq!(compile(&long).map(|_| ()), Err(PolicyError::TooLong));
        let just_fits = format!("{}true", " ".repeat(MAX_SOURCE_CHARS - 4));
        assert!(compile(&just_fits).is_ok());
    }

    #[test]
    fn deep_nesting_is_rejected_before_parsing() {
        // Nested calls take exponential time to parse; 24 levels took ~9 s.
        let deep = format!("{}1{} == 1", "int(".repeat(24), ")".repeat(24));
        let err = compile(&deep).expect_err("too deep");
        assert!(err.to_string().contains("nested"), "{err}");
        // Thousands of parentheses overflow the parser's stack (a process abort).
        let parens = format!("{}true{}", "(".repeat(2000), ")".repeat(2000));
        assert!(compile(&parens).is_err());
        let ok = format!(
            "{}1{} == 1",
            "int(".repeat(MAX_NESTING),
            ")".repeat(MAX_NESTING)
        );
        assert_eq!(evaluate_condition(&expr(&ok), &input()), Ok(true));
        // Brackets inside string literals and comments count too (see
        // `nesting_behind_a_string_lookalike_is_rejected_before_parsing`): a few are fine.
        let quoted = format!(
            "subject.email != \"{}\" // {}",
            "(".repeat(5),
            "[".repeat(5)
        );
        assert_eq!(cond(&quoted), Ok(true));
        let quoted = format!("subject.email != \"{}\"", "(".repeat(50));
        assert!(compile(&quoted).is_err());
        assert_eq!(
            cond(r#"'[[[\'[[[' != r"\" && """(((""" != '''{{{'''"#),
            Ok(true)
        );
    }

    /// `check_shape` must never believe to be inside a string literal where the parser's lexer
    /// is not, or the nesting hidden there reaches the parser: 2000 parentheses overflowed its
    /// stack and aborted the process (the admin page compiles what an administrator types; the
    /// registry compiles every stored expression at start-up and reload). Each source below was
    /// taken for a string by the old pre-parser: a quote two characters after an `r` (read as
    /// a raw string, so `\"` ended it), a line break inside a one-line string, an invalid
    /// escape sequence.
    #[test]
    fn nesting_behind_a_string_lookalike_is_rejected_before_parsing() {
        let nest = |depth: usize| format!("{}1{}", "(".repeat(depth), ")".repeat(depth));
        for depth in [MAX_NESTING + 1, 1900] {
            let inner = nest(depth);
            for source in [
                format!(r#"r+""" + {inner} == 1"#),
                format!(r#"ar""" + {inner} == 1"#),
                format!("subject.x == \"a\n{inner} == 1"),
                format!(r#""\q" " {inner} ""#),
                format!(r#""//" + {inner} == 1"#),
            ] {
                let err = compile(&source).expect_err(&source);
                assert!(err.to_string().contains("nested"), "{source}: {err}");
            }
        }
    }

    /// The interpreter's `in` tests substrings when its right side is a string (the CEL
    /// specification has no such overload), and IdPs send a multi-valued claim as a plain string
    /// when it has one value (a SAML attribute, some OIDC mappers): the documented
    /// `"admins" in subject.groups` then admitted a user whose one group was `superadmins`.
    /// `groups`, `roles`, `entitlements` (RFC 9068 §2.2.3.1) and `amr` (OIDC Core §2) are lists
    /// by definition, so a string there is a one-element list.
    #[test]
    fn a_single_valued_list_claim_is_a_one_element_list() {
        for claim in ["groups", "roles", "entitlements", "amr"] {
            for variable in ["subject", "actor"] {
                let mut i = input();
                let claims = json!({ claim: "superadmins", "sub": "u" });
                if variable == "subject" {
                    i.subject = claims;
                } else {
                    i.actor = Some(claims);
                }
                let check = |source: String, expected: bool| {
                    assert_eq!(
                        evaluate_condition(&expr(&source), &i),
                        Ok(expected),
                        "{source}"
                    );
                };
                check(format!(r#""admins" in {variable}.{claim}"#), false);
                check(format!(r#""superadmins" in {variable}.{claim}"#), true);
                check(format!(r#"{variable}.{claim} == ["superadmins"]"#), true);
            }
        }
        // Lists stay as they are.
        assert_eq!(cond(r#""admins" in subject.groups"#), Ok(true));
        assert_eq!(cond(r#""adm" in subject.groups"#), Ok(false));
    }

    /// CEL's `in` is membership in a list or a map, never a substring test: the interpreter
    /// alone read `"eng" in subject.email` as "email contains eng", so a claim that happened to
    /// be a string admitted every value containing the wanted one. In every position — a
    /// comprehension's predicate, a list or map literal, a call's target or argument — a
    /// string on the right is an evaluation error, and the condition denies.
    #[test]
    fn in_is_membership_never_a_substring_test() {
        assert_eq!(cond(r#""admins" in subject.groups"#), Ok(true));
        assert_eq!(cond(r#""acr" in subject"#), Ok(true));
        assert_eq!(cond(r#""nope" in subject"#), Ok(false));
        assert_eq!(cond(r#"1 in [1, 2] && !(3 in [1, 2])"#), Ok(true));
        for source in [
            r#""alice" in subject.email"#,
            r#"subject.groups.exists(g, "example" in subject.email)"#,
            r#"["x" in subject.email][0]"#,
            r#"{"k": "x" in subject.email}.k"#,
            r#"("a" in subject.email) || true"#,
            r#"size(["a" in "abc"]) == 1"#,
            r#"subject.groups.all(g, g in subject.acr)"#,
        ] {
            assert_evaluation_error(cond(source), "'in' needs a list or a map");
            assert!(
                !allows(Some(&expr(source)), &input()).is_allowed(),
                "{source}"
            );
        }
        assert_evaluation_error(cond("1 in 1"), "'in' needs a list or a map");
        // Substrings remain available by name.
        assert_eq!(cond(r#"subject.email.contains("alice")"#), Ok(true));
    }

    #[test]
    fn repeated_prefix_operators_are_rejected() {
        // cel-parser 0.10.1 parses `!!x` as `!x` and `--x` as `-x`.
        for source in [
            "!!true",
            "! !subject.email_verified",
            "--1 == 1",
            "1 - -1 == 2",
        ] {
            let err = compile(source).expect_err(source);
            assert!(err.to_string().contains("repeated"), "{source}: {err}");
        }
        assert_eq!(cond("!(!true)"), Ok(true));
        assert_eq!(cond("-(-1) == 1"), Ok(true));
        assert_eq!(cond("1 - (-1) == 2"), Ok(true));
        assert_eq!(cond(r#"subject.email != "!!--""#), Ok(true));
        assert_eq!(cond("!false && 2 - 1 == 1 && subject.iat != -1"), Ok(true));
    }

    #[test]
    fn string_mappings() {
        assert_eq!(
            string(r#""u-" + subject.sub"#),
            Ok(Some("u-248289761001".into()))
        );
        assert_eq!(
            string("subject.email"),
            Ok(Some("alice@example.com".into()))
        );
        assert_eq!(string("subject.org.tenant.name"), Ok(Some("acme".into())));
        assert_eq!(
            string(r#"has(subject.tenant) ? subject.tenant : subject.org.id"#),
            Ok(Some("o1".into()))
        );
        assert_eq!(string("string(subject.iat)"), Ok(Some("1700000000".into())));
        assert_eq!(
            string("has(subject.tenant) ? subject.tenant : null"),
            Ok(None)
        );
        assert_eq!(string("null"), Ok(None));
        assert_eq!(
            string("subject.iat"),
            Err(PolicyError::WrongType {
                expected: "string or null",
                found: "int"
            })
        );
        assert!(matches!(
            string("subject.missing"),
            Err(PolicyError::Evaluation(_))
        ));
    }

    #[test]
    fn split_is_not_available() {
        // No string extensions in this crate version: mappings must not rely on split().
        let err = string(r#"subject.email.split("@")[0]"#).expect_err("no split");
        assert!(err.to_string().contains("split"), "{err}");
    }

    #[test]
    fn ints_and_doubles() {
        assert_eq!(value("subject.iat"), Ok(json!(1_700_000_000)));
        assert_eq!(value("subject.score"), Ok(json!(0.5)));
        assert_eq!(value("subject.big"), Ok(json!(u64::MAX)));
        assert_eq!(value("subject.iat + 1"), Ok(json!(1_700_000_001)));
        assert_eq!(cond("subject.iat == 1700000000"), Ok(true));
        assert_eq!(cond("subject.score == 0.5"), Ok(true));
        // Cross-type comparison works, cross-type arithmetic does not (as in CEL).
        assert_eq!(cond("subject.score < 1"), Ok(true));
        assert_eq!(cond("subject.big > 0"), Ok(true));
        assert_evaluation_error(cond("subject.iat + 1.0 > 0.0"), "int and double");
        assert_eq!(cond("double(subject.iat) + 1.0 > 0.0"), Ok(true));
        // A JSON integer is a CEL int, not a double: 1.0 and 1 are different types.
        let mut i = input();
        i.subject = json!({"n": 1, "f": 1.0});
        assert_eq!(evaluate_value(&expr("subject.n"), &i), Ok(json!(1)));
        assert_eq!(evaluate_value(&expr("subject.f"), &i), Ok(json!(1.0)));
        assert_eq!(
            evaluate_condition(&expr("subject.n == subject.f"), &i),
            Ok(true)
        );
        assert!(evaluate_value(&expr("1.0 / 0.0"), &i).is_err());
    }

    #[test]
    fn nested_maps_and_lists() {
        assert_eq!(cond(r#"subject.org.tenant.name == "acme""#), Ok(true));
        assert_eq!(cond(r#""eu" in subject.org.tenant.regions"#), Ok(true));
        assert_eq!(cond(r#""id" in subject.org"#), Ok(true));
        assert_eq!(cond(r#"subject.org["id"] == "o1""#), Ok(true));
        assert_eq!(cond("has(subject.org.tenant.name)"), Ok(true));
        assert_eq!(cond("has(subject.org.tenant.owner)"), Ok(false));
        assert_eq!(
            value(
                r#"{"tenant": subject.org.tenant.name, "scopes": request.scopes.map(s, "api:" + s)}"#
            ),
            Ok(json!({"tenant": "acme", "scopes": ["api:read", "api:write"]}))
        );
        assert_eq!(
            value("subject.org.tenant"),
            Ok(json!({"name": "acme", "regions": ["eu", "us"]}))
        );
    }

    #[test]
    fn interpreter_quirks_are_as_documented() {
        // Index access to a missing key or list element is null, not an error.
        assert_eq!(cond(r#"subject["department"] == null"#), Ok(true));
        assert_eq!(cond("subject.groups[5] == null"), Ok(true));
        // Logical operators use truthiness.
        assert_eq!(cond(r#"subject.email && true"#), Ok(true));
        assert_eq!(cond(r#"!subject["suspended"]"#), Ok(true));
    }

    #[test]
    fn interpreter_panics_become_errors() {
        // A comprehension over a string hits `todo!()` in cel-interpreter 0.10.
        let r = cond(r#"subject.email.all(c, c != "x")"#);
        assert_evaluation_error(r, "cannot evaluate");
        assert!(!allows(Some(&expr(r#"subject.email.exists(c, true)"#)), &input()).is_allowed());
        // Negating i64::MIN overflows: a panic with overflow checks, a wrap without.
        let r = cond("-subject.min < 0");
        if cfg!(debug_assertions) {
            assert_evaluation_error(r, "cannot evaluate");
        } else {
            assert!(r.is_ok());
        }
        // Indexing a string at i64::MAX overflows `idx + 1` the same way.
        let r = cond("subject.email[9223372036854775807] == null");
        if cfg!(debug_assertions) {
            assert_evaluation_error(r, "cannot evaluate");
        } else {
            assert!(r.is_ok());
        }
    }

    #[test]
    fn prepared_input_evaluates_several_expressions() {
        let prepared = input().prepare();
        let condition = expr(r#""admins" in subject.groups"#);
        let sub = expr(r#""u-" + subject.sub"#);
        let tenant = expr("subject.org.tenant.name");
        assert!(prepared.allows(Some(&condition)).is_allowed());
        assert_eq!(prepared.string(&sub), Ok(Some("u-248289761001".into())));
        assert_eq!(prepared.string(&tenant), Ok(Some("acme".into())));
        assert_eq!(prepared.value(&tenant), Ok(json!("acme")));
    }

    #[test]
    fn expression_is_shareable_and_shows_its_source() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<Expression>();
        assert_send_sync::<PreparedInput>();
        let e = expr("client.id == \"agent\"");
        assert_eq!(format!("{e:?}"), r#"Expression("client.id == \"agent\"")"#);
        assert_eq!(e.source(), "client.id == \"agent\"");
        assert_eq!(e.clone(), e);
        let parsed: Expression = "true".parse().expect("parses");
        assert_eq!(parsed.to_string(), "true");
    }

    #[test]
    fn evaluation_from_many_threads() {
        let e = expr(r#""admins" in subject.groups"#);
        let handles: Vec<_> = (0..4)
            .map(|_| {
                let e = e.clone();
                std::thread::spawn(move || evaluate_condition(&e, &input()))
            })
            .collect();
        for h in handles {
            assert_eq!(h.join().expect("thread"), Ok(true));
        }
    }
}

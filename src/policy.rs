//! Placeholder with the CEL policy module's API, until it lands.
#![allow(missing_docs, dead_code)]
#[derive(Debug, Clone)]
pub struct Expression(String);
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct PolicyError(String);
pub fn compile(source: &str) -> Result<Expression, PolicyError> {
    Ok(Expression(source.into()))
}
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PolicyInput {
    pub subject: serde_json::Value,
    pub actor: Option<serde_json::Value>,
    pub client: serde_json::Value,
    pub request: serde_json::Value,
}
impl PolicyInput {
    pub fn prepare(&self) -> PreparedInput {
        PreparedInput
    }
}
pub struct PreparedInput;
impl PreparedInput {
    pub fn allows(&self, expr: Option<&Expression>) -> Decision {
        if expr.is_some() {
            Decision::Deny
        } else {
            Decision::Allow
        }
    }
    pub fn string(&self, _expr: &Expression) -> Result<Option<String>, PolicyError> {
        Ok(None)
    }
}
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    Allow,
    Deny,
    Error(String),
}

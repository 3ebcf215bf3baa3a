//! Who may write: bearer tokens with a role (and a department for department tokens), stored
//! only as SHA-256 hashes, created by `onemap token create` and checked on every write.

use std::collections::HashMap;
use std::str::FromStr;
use std::sync::Arc;

use chrono::Utc;
use parking_lot::RwLock;
use rand::RngCore;
use sha2::{Digest, Sha256};

use crate::model::{ApiToken, Str};
use crate::store::schema::Val;
use crate::store::{self, Store, StoreError};

/// The roles of the workflow (`domain.md`), plus administrators, read-only viewers and the
/// public API key of the Open311 intake.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    Admin,
    /// 监督员: patrols, reports, verifies and re-inspects.
    Supervisor,
    /// 受理员: accepts or rejects reports.
    Acceptor,
    /// 值班长: files, voids and closes.
    ShiftLeader,
    /// 派遣员: dispatches, approves postponements, returns and hang-ups.
    Dispatcher,
    /// 专业部门: handles its own cases.
    Department,
    Viewer,
    /// The key of a public reporting channel (Open311).
    Public,
    /// An IoT gateway or device posting sensor readings.
    Device,
}

pub const ROLES: &[(&str, Role)] = &[
    ("admin", Role::Admin),
    ("supervisor", Role::Supervisor),
    ("acceptor", Role::Acceptor),
    ("shift_leader", Role::ShiftLeader),
    ("dispatcher", Role::Dispatcher),
    ("department", Role::Department),
    ("viewer", Role::Viewer),
    ("public", Role::Public),
    ("device", Role::Device),
];

impl Role {
    pub fn as_str(self) -> &'static str {
        ROLES.iter().find(|r| r.1 == self).map(|r| r.0).expect("every role is listed")
    }
}

impl FromStr for Role {
    type Err = AuthError;
    fn from_str(s: &str) -> Result<Role, AuthError> {
        ROLES.iter().find(|r| r.0 == s).map(|r| r.1).ok_or_else(|| AuthError::UnknownRole(s.to_string()))
    }
}

#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("a bearer token is required: send Authorization: Bearer TOKEN")]
    Missing,
    #[error("the bearer token is not valid")]
    Invalid,
    #[error("role {role} may not {action}")]
    Forbidden { role: &'static str, action: String },
    #[error(
        "unknown role {0:?}; one of admin, supervisor, acceptor, shift_leader, dispatcher, department, viewer, public, device"
    )]
    UnknownRole(String),
    #[error("{0}")]
    BadDepartment(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Who is calling, as their token says.
#[derive(Debug, Clone, PartialEq)]
pub struct Principal {
    pub role: Role,
    pub dept_code: Option<Str>,
    /// The token's label, or the role's name: recorded as the actor of workflow steps.
    pub actor: Str,
}

impl Principal {
    /// Fails with 403 unless the role is one of `allowed`.
    pub fn require(&self, allowed: &[Role], action: &str) -> Result<(), AuthError> {
        if self.role == Role::Admin || allowed.contains(&self.role) {
            Ok(())
        } else {
            Err(AuthError::Forbidden { role: self.role.as_str(), action: action.to_string() })
        }
    }
}

/// Lower-case hex SHA-256 of a token. Tokens carry 256 random bits, so a plain hash is as
/// good as a salted slow one: there is nothing to guess.
pub fn hash(token: &str) -> String {
    hex(&Sha256::digest(token.as_bytes()))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A new random token: `om_` and 64 hex digits.
pub fn generate() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    format!("om_{}", hex(&bytes))
}

/// Creates a token with `role` (and the department a department token acts for), stores its
/// hash and returns the token itself, which is never stored.
pub async fn create(
    store: &dyn Store,
    role: Role,
    dept_code: Option<&str>,
    label: Option<&str>,
) -> Result<String, AuthError> {
    match (role, dept_code) {
        (Role::Department, None) => {
            return Err(AuthError::BadDepartment("a department token needs --dept CODE".into()));
        }
        (Role::Department, Some(code)) => {
            let found: Vec<crate::model::Department> = store::find(store, "code", Val::Text(Some(code.into()))).await?;
            if found.is_empty() {
                return Err(AuthError::BadDepartment(format!("no department with code {code:?}")));
            }
        }
        (_, Some(_)) => return Err(AuthError::BadDepartment("only department tokens take --dept".into())),
        (_, None) => {}
    }
    let token = generate();
    let record = ApiToken {
        hash: hash(&token).into(),
        role: role.as_str().into(),
        dept_code: dept_code.map(Into::into),
        label: label.map(Into::into),
        created_at: Utc::now(),
    };
    store::insert(store, &[record], Vec::new()).await?;
    Ok(token)
}

/// Token checks with the known tokens remembered. Unknown hashes are looked up in the store
/// every time, so a token created while the server runs works at once.
pub struct Tokens {
    store: Arc<dyn Store>,
    known: RwLock<HashMap<String, Principal>>,
}

impl Tokens {
    pub fn new(store: Arc<dyn Store>) -> Tokens {
        Tokens { store, known: RwLock::new(HashMap::new()) }
    }

    pub async fn check(&self, token: &str) -> Result<Principal, AuthError> {
        let h = hash(token);
        if let Some(p) = self.known.read().get(&h) {
            return Ok(p.clone());
        }
        let found: Vec<ApiToken> = store::find(&*self.store, "hash", Val::Text(Some(h.as_str().into()))).await?;
        let t = found.into_iter().next().ok_or(AuthError::Invalid)?;
        let role: Role = t.role.parse()?;
        let p = Principal { role, actor: t.label.unwrap_or_else(|| role.as_str().into()), dept_code: t.dept_code };
        self.known.write().insert(h, p.clone());
        Ok(p)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_random_and_hashes_stable() {
        let (a, b) = (generate(), generate());
        assert_ne!(a, b);
        assert!(a.starts_with("om_") && a.len() == 67);
        assert_eq!(hash("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    }

    #[test]
    fn roles_parse_and_admin_may_do_anything() {
        assert_eq!("shift_leader".parse::<Role>().unwrap(), Role::ShiftLeader);
        assert!("boss".parse::<Role>().is_err());
        let p = |role| Principal { role, dept_code: None, actor: "x".into() };
        assert!(p(Role::Admin).require(&[Role::Supervisor], "report").is_ok());
        assert!(p(Role::Viewer).require(&[Role::Supervisor], "report").is_err());
    }
}

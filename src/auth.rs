//! Who may read and write: bearer tokens with a role (a department for department tokens, an
//! area, a device's sensors, an expiry), stored only as SHA-256 hashes, created by `onemap token
//! create`, revoked through the change log, and checked on every request.

use std::collections::HashMap;
use std::str::FromStr;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use parking_lot::RwLock;
use rand::RngCore;
use sha2::{Digest, Sha256};

use crate::model::{ApiToken, CaseScope, Collection, Str, TokenRevocation};
use crate::store::log::{ChangeRow, Op};
use crate::store::schema::{Filter, Val};
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
    /// 分析员: reads everything and publishes analysis overlays to the big screens.
    Analyst,
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
    ("analyst", Role::Analyst),
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
    #[error("the bearer token expired at {0}")]
    Expired(String),
    #[error("the bearer token was revoked")]
    Revoked,
    #[error("role {role} may not {action}")]
    Forbidden { role: &'static str, action: String },
    #[error(
        "unknown role {0:?}; one of admin, supervisor, acceptor, shift_leader, dispatcher, department, analyst, viewer, public, device"
    )]
    UnknownRole(String),
    #[error("{0}")]
    BadDepartment(String),
    #[error("{0}")]
    BadScope(String),
    #[error("no token {0:?} (give the token or the id that `onemap token list` shows)")]
    UnknownToken(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Who is calling, as their token says.
#[derive(Debug, Clone, PartialEq)]
pub struct Principal {
    pub role: Role,
    pub dept_code: Option<Str>,
    /// The token's label, or the role's name: recorded as the actor of workflow steps. A public
    /// key's actor carries its id, so it can find the requests it reported.
    pub actor: Str,
    /// The district or street the holder works in (两级指挥); `None`: the whole city.
    pub area: Option<Str>,
    /// A device token's sensor code prefix.
    pub sensors: Option<Str>,
    /// The member of the field staff the token belongs to (a phone's token).
    pub staff: Option<Str>,
    /// The token's public id (see [`id_of`]).
    pub id: Str,
    pub expires_at: Option<DateTime<Utc>>,
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

    /// The cases this caller may see and act on: a department its own, an area token its area,
    /// a public key and a device none (a public key reads its own requests through Open311).
    pub fn case_scope(&self) -> CaseScope {
        match self.role {
            Role::Public | Role::Device => CaseScope::nothing(),
            // A department token always names its department (`create` refuses one without).
            Role::Department => CaseScope {
                dept: Some(self.dept_code.clone().unwrap_or_default()),
                area: self.area.clone(),
                nothing: false,
            },
            _ => CaseScope { dept: None, area: self.area.clone(), nothing: false },
        }
    }

    /// Whether the caller may post positions of staff member `code`: the member's own token,
    /// a gateway (device) or an administrator; any other token that names no member, none.
    pub fn may_place(&self, code: &str) -> bool {
        match &self.staff {
            Some(mine) => mine == code,
            None => matches!(self.role, Role::Admin | Role::Device),
        }
    }

    /// Whether a device token may post readings of sensor `code`.
    pub fn may_feed(&self, code: &str) -> bool {
        self.sensors.as_deref().is_none_or(|p| code.starts_with(p))
    }

    /// A principal of `role` with no department, area or expiry (for tests).
    #[cfg(test)]
    fn of_role(role: Role) -> Principal {
        Principal {
            role,
            dept_code: None,
            actor: role.as_str().into(),
            area: None,
            sensors: None,
            staff: None,
            id: Str::default(),
            expires_at: None,
        }
    }
}

/// Lower-case hex SHA-256 of a token. Tokens carry 256 random bits, so a plain hash is as
/// good as a salted slow one: there is nothing to guess.
pub fn hash(token: &str) -> String {
    hex(&Sha256::digest(token.as_bytes()))
}

/// A token's public id: the first 12 hex digits of its hash. Shown by `token list`, accepted by
/// `token revoke`, and safe to log (the hash cannot be turned back into the token).
pub fn id_of(hash: &str) -> &str {
    hash.get(..ID_LEN).unwrap_or(hash)
}

const ID_LEN: usize = 12;

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A new random token: `om_` and 64 hex digits.
pub fn generate() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    format!("om_{}", hex(&bytes))
}

/// What a new token may do beyond its role.
#[derive(Debug, Clone, Default)]
pub struct TokenSpec {
    /// The department a `department` token acts for.
    pub dept_code: Option<String>,
    pub label: Option<String>,
    /// A district (6 digits) or street (9 digits) code.
    pub area_code: Option<String>,
    /// A device token's sensor code prefix.
    pub sensors_prefix: Option<String>,
    /// How long the token lives.
    pub expires_in: Option<std::time::Duration>,
    /// The member of the field staff the token belongs to.
    pub staff_code: Option<String>,
}

/// Creates a token with `role` (and the department a department token acts for), stores its
/// hash and returns the token itself, which is never stored.
pub async fn create(
    store: &dyn Store,
    role: Role,
    dept_code: Option<&str>,
    label: Option<&str>,
) -> Result<String, AuthError> {
    let spec = TokenSpec { dept_code: dept_code.map(Into::into), label: label.map(Into::into), ..TokenSpec::default() };
    create_with(store, role, &spec).await
}

/// Creates a token as `spec` says, after checking the department and area exist.
pub async fn create_with(store: &dyn Store, role: Role, spec: &TokenSpec) -> Result<String, AuthError> {
    match (role, spec.dept_code.as_deref()) {
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
    if let Some(area) = spec.area_code.as_deref() {
        let known = match area.len() {
            6 => !store::find::<crate::model::District>(store, "code", Val::Text(Some(area.into()))).await?.is_empty(),
            9 => !store::find::<crate::model::Street>(store, "code", Val::Text(Some(area.into()))).await?.is_empty(),
            _ => false,
        };
        if !known {
            return Err(AuthError::BadScope(format!("no district (6 digits) or street (9 digits) with code {area:?}")));
        }
        if matches!(role, Role::Public | Role::Device) {
            return Err(AuthError::BadScope("public and device tokens take no area".into()));
        }
    }
    if spec.sensors_prefix.is_some() && role != Role::Device {
        return Err(AuthError::BadScope("only device tokens take --sensors".into()));
    }
    if let Some(code) = spec.staff_code.as_deref() {
        check_staff(store, role, spec.dept_code.as_deref(), code).await?;
    }
    let now = Utc::now();
    let expires_at = spec
        .expires_in
        .map(|d| chrono::Duration::from_std(d).ok().and_then(|d| now.checked_add_signed(d)))
        .map(|t| t.ok_or_else(|| AuthError::BadScope("--expires is too far ahead".into())))
        .transpose()?;
    let token = generate();
    let record = ApiToken {
        hash: hash(&token).into(),
        role: role.as_str().into(),
        dept_code: spec.dept_code.as_deref().map(Into::into),
        label: spec.label.as_deref().map(Into::into),
        created_at: now,
        area_code: spec.area_code.as_deref().map(Into::into),
        sensors_prefix: spec.sensors_prefix.as_deref().map(Into::into),
        expires_at,
        staff_code: spec.staff_code.as_deref().map(Into::into),
    };
    store::insert(store, &[record], Vec::new()).await?;
    Ok(token)
}

/// A token bound to staff member `code` must fit them: a supervisor's or collector's token has
/// role `supervisor`, a department worker's role `department` and the worker's department.
async fn check_staff(store: &dyn Store, role: Role, dept: Option<&str>, code: &str) -> Result<(), AuthError> {
    use crate::model::{Staff, StaffRole};
    let found: Vec<Staff> = store::find(store, "code", Val::Text(Some(code.into()))).await?;
    let Some(member) = found.into_iter().next() else {
        return Err(AuthError::BadScope(format!("no staff member with code {code:?} (register them first)")));
    };
    let fits = match member.role {
        StaffRole::Supervisor | StaffRole::Collector => role == Role::Supervisor,
        StaffRole::Worker => role == Role::Department && dept == member.dept_code.as_deref(),
    };
    if !fits {
        return Err(AuthError::BadScope(format!(
            "staff member {code} is a {}{}: their token takes --role {}",
            member.role,
            member.dept_code.as_deref().map(|d| format!(" of department {d}")).unwrap_or_default(),
            if member.role.patrols() { "supervisor" } else { "department --dept CODE (their department)" }
        )));
    }
    Ok(())
}

/// A token as `token list` shows it.
#[derive(Debug, Clone)]
pub struct Listed {
    pub id: String,
    pub token: ApiToken,
    pub revoked_at: Option<DateTime<Utc>>,
}

/// Every token of the store, oldest first, with its revocation.
pub async fn list(store: &dyn Store) -> Result<Vec<Listed>, AuthError> {
    let revoked: HashMap<Str, DateTime<Utc>> = store::select::<TokenRevocation>(store, Filter::All)
        .await?
        .into_iter()
        .map(|r| (r.hash, r.revoked_at))
        .collect();
    let mut tokens: Vec<ApiToken> = store::select(store, Filter::All).await?;
    tokens.sort_by(|a, b| (a.created_at, &a.hash).cmp(&(b.created_at, &b.hash)));
    Ok(tokens
        .into_iter()
        .map(|t| Listed { id: id_of(&t.hash).to_string(), revoked_at: revoked.get(&t.hash).copied(), token: t })
        .collect())
}

/// Revokes a token given as itself or as its id, logging the revocation so every server of the
/// store drops it from its cache; returns the token's id. Revoking twice is harmless.
pub async fn revoke(store: &dyn Store, token_or_id: &str) -> Result<String, AuthError> {
    let wanted = token_or_id.trim();
    let all = list(store).await?;
    let by_hash = hash(wanted);
    let found: Vec<&Listed> = all
        .iter()
        .filter(|l| *l.token.hash == by_hash || (wanted.len() >= ID_LEN && l.token.hash.starts_with(wanted)))
        .collect();
    let [one] = found.as_slice() else { return Err(AuthError::UnknownToken(wanted.into())) };
    if one.revoked_at.is_none() {
        let r = TokenRevocation { hash: one.token.hash.clone(), revoked_at: Utc::now() };
        let change = ChangeRow::record(Collection::Tokens, one.token.hash.to_string(), Op::Remove, None, None);
        store::insert(store, &[r], vec![change]).await?;
    }
    Ok(one.id.clone())
}

/// How long a remembered token is trusted without asking the store again. Revocations arrive
/// through the change log at once; this bounds what a missed notice could cost.
const REMEMBER: std::time::Duration = std::time::Duration::from_secs(60);

/// Token checks with the known tokens remembered. Unknown hashes are looked up in the store
/// every time, so a token created while the server runs works at once; a revocation logged by
/// any server (or `onemap token revoke`) makes every follower [`Tokens::forget`] it.
pub struct Tokens {
    store: Arc<dyn Store>,
    known: RwLock<HashMap<String, (Principal, std::time::Instant)>>,
}

impl Tokens {
    pub fn new(store: Arc<dyn Store>) -> Tokens {
        Tokens { store, known: RwLock::new(HashMap::new()) }
    }

    pub async fn check(&self, token: &str) -> Result<Principal, AuthError> {
        let h = hash(token);
        let remembered = self.known.read().get(&h).filter(|(_, at)| at.elapsed() < REMEMBER).map(|(p, _)| p.clone());
        let p = match remembered {
            Some(p) => p,
            None => {
                let p = self.load(&h).await?;
                self.known.write().insert(h, (p.clone(), std::time::Instant::now()));
                p
            }
        };
        if let Some(at) = p.expires_at
            && at <= Utc::now()
        {
            return Err(AuthError::Expired(at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)));
        }
        Ok(p)
    }

    async fn load(&self, h: &str) -> Result<Principal, AuthError> {
        let text = || Val::Text(Some(h.into()));
        let found: Vec<ApiToken> = store::find(&*self.store, "hash", text()).await?;
        let t = found.into_iter().next().ok_or(AuthError::Invalid)?;
        if !store::find::<TokenRevocation>(&*self.store, "hash", text()).await?.is_empty() {
            return Err(AuthError::Revoked);
        }
        let role: Role = t.role.parse()?;
        let id: Str = id_of(h).into();
        let name = t.label.clone().unwrap_or_else(|| role.as_str().into());
        Ok(Principal {
            role,
            actor: if role == Role::Public { format!("{name}#{id}").into() } else { name },
            dept_code: t.dept_code,
            area: t.area_code,
            sensors: t.sensors_prefix,
            staff: t.staff_code,
            id,
            expires_at: t.expires_at,
        })
    }

    /// Drops a token (by hash) from the cache: the next request with it asks the store.
    pub fn forget(&self, hash: &str) {
        self.known.write().remove(hash);
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
        let p = Principal::of_role;
        assert!(p(Role::Admin).require(&[Role::Supervisor], "report").is_ok());
        assert!(p(Role::Viewer).require(&[Role::Supervisor], "report").is_err());
    }
}

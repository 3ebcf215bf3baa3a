//! The case workflow (案件流程) as a pure function: which action may move a case from which status,
//! and who may take it. Stores, HTTP and the feed only carry out what [`transition`] decides.
//!
//!
//! The main line is reported → accepted → (verified) → filed → dispatched → handled → checked →
//! closed. Side roads: a report may be rejected and a filing voided (both final); a failed check
//! sends the case back to the same department (rework, 返工); a department may ask to return a
//! case as not theirs (回退, back to filing for a new dispatch once approved) or to postpone
//! (延期, back to dispatched with a later deadline once approved); a dispatcher may hang a case
//! up (挂账) and resume it later for a new dispatch.

use crate::auth::Role;

pub use crate::model::{Action, Status};

/// One rule: `action` takes a case from any of `from` to `to`, by any of `roles` (and admin).
struct Rule {
    action: Action,
    from: &'static [Status],
    to: Status,
    roles: &'static [Role],
}

use Action as A;
use Role::*;
use Status as S;

const RULES: &[Rule] = &[
    // 受理员 accepts or rejects what was reported.
    Rule { action: A::Accept, from: &[S::Reported], to: S::Accepted, roles: &[Acceptor] },
    Rule { action: A::Reject, from: &[S::Reported], to: S::Rejected, roles: &[Acceptor] },
    // 监督员 verifies on site (optional) and re-inspects after handling.
    Rule { action: A::Verify, from: &[S::Accepted], to: S::Verified, roles: &[Supervisor] },
    // 值班长 files (立案) or voids, and closes.
    Rule { action: A::File, from: &[S::Accepted, S::Verified], to: S::Filed, roles: &[ShiftLeader] },
    Rule { action: A::Void, from: &[S::Accepted, S::Verified, S::Filed], to: S::Voided, roles: &[ShiftLeader] },
    // 派遣员 dispatches to one department and decides on its requests.
    Rule { action: A::Dispatch, from: &[S::Filed], to: S::Dispatched, roles: &[Dispatcher] },
    Rule { action: A::ApproveReturn, from: &[S::ReturnRequested], to: S::Filed, roles: &[Dispatcher] },
    Rule { action: A::ApprovePostpone, from: &[S::PostponeRequested], to: S::Dispatched, roles: &[Dispatcher] },
    Rule { action: A::Hang, from: &[S::Filed, S::Dispatched], to: S::Hung, roles: &[Dispatcher] },
    Rule { action: A::Resume, from: &[S::Hung], to: S::Filed, roles: &[Dispatcher] },
    // 专业部门 handles its own cases, or asks to return (not ours) or to postpone.
    Rule { action: A::Handle, from: &[S::Dispatched, S::PostponeRequested], to: S::Handled, roles: &[Department] },
    Rule { action: A::Return, from: &[S::Dispatched], to: S::ReturnRequested, roles: &[Department] },
    Rule { action: A::RequestPostpone, from: &[S::Dispatched], to: S::PostponeRequested, roles: &[Department] },
    // 监督员 checks the result: pass, or rework by the same department (返工).
    Rule { action: A::CheckPass, from: &[S::Handled], to: S::Checked, roles: &[Supervisor] },
    Rule { action: A::CheckFail, from: &[S::Handled], to: S::Dispatched, roles: &[Supervisor] },
    Rule { action: A::Close, from: &[S::Checked], to: S::Closed, roles: &[ShiftLeader] },
];

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WorkflowError {
    #[error(
        "unknown action {0:?}; one of accept, reject, verify, file, void, dispatch, handle, check_pass, check_fail, return, approve_return, request_postpone, approve_postpone, hang, resume, close"
    )]
    UnknownAction(String),
    #[error("role {role} may not {action}")]
    Forbidden { role: &'static str, action: &'static str },
    #[error("a case that is {status} cannot {action}; it can {allowed}")]
    Illegal { status: String, action: &'static str, allowed: String },
}

/// The status `action` moves a case in `status` to, when `role` may take it.
///
/// A role that may never take the action is refused (403) whatever the status; a role that may
/// take it, from a status it does not apply to, is an illegal transition (422).
pub fn transition(status: Status, action: Action, role: Role) -> Result<Status, WorkflowError> {
    let rule = RULES.iter().find(|r| r.action == action).expect("every action has a rule");
    if role != Admin && !rule.roles.contains(&role) {
        return Err(WorkflowError::Forbidden { role: role.as_str(), action: rule.action.as_str() });
    }
    if !rule.from.contains(&status) {
        let allowed: Vec<&str> = RULES.iter().filter(|r| r.from.contains(&status)).map(|r| r.action.as_str()).collect();
        return Err(WorkflowError::Illegal {
            status: status.to_string(),
            action: rule.action.as_str(),
            allowed: if allowed.is_empty() { "nothing more (it is finished)".into() } else { allowed.join(", ") },
        });
    }
    Ok(rule.to)
}

/// An action by its API name: an unknown one is refused.
pub fn action(name: &str) -> Result<Action, WorkflowError> {
    Action::parse(name).ok_or_else(|| WorkflowError::UnknownAction(name.into()))
}

/// The roles (besides admin) that may take `action`.
pub fn roles(action: Action) -> &'static [Role] {
    RULES.iter().find(|r| r.action == action).map_or(&[], |r| r.roles)
}

/// Replays a history of actions from `reported`: the status it ends in, or the first step that
/// does not apply. Every stored history must replay to its case's status.
pub fn replay<'a>(actions: impl IntoIterator<Item = &'a str>) -> Result<Status, WorkflowError> {
    actions.into_iter().try_fold(Status::Reported, |status, name| transition(status, action(name)?, Admin))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    #[test]
    fn the_happy_path_closes_a_case() {
        let path = [
            (A::Accept, Acceptor, S::Accepted),
            (A::Verify, Supervisor, S::Verified),
            (A::File, ShiftLeader, S::Filed),
            (A::Dispatch, Dispatcher, S::Dispatched),
            (A::Handle, Department, S::Handled),
            (A::CheckPass, Supervisor, S::Checked),
            (A::Close, ShiftLeader, S::Closed),
        ];
        let mut status = S::Reported;
        for (action, role, want) in path {
            status = transition(status, action, role).unwrap();
            assert_eq!(status, want);
        }
    }

    #[test]
    fn every_action_from_every_status_moves_by_the_table_or_is_illegal() {
        for &status in Status::ALL {
            for &action in Action::ALL {
                let rule = RULES.iter().find(|r| r.action == action).unwrap();
                let got = transition(status, action, Admin);
                if rule.from.contains(&status) {
                    assert_eq!(got, Ok(rule.to), "{status} --{action}");
                } else {
                    assert!(matches!(got, Err(WorkflowError::Illegal { .. })), "{status} --{action}: {got:?}");
                }
            }
        }
        for &t in Status::FINISHED {
            assert!(Action::ALL.iter().all(|&a| transition(t, a, Admin).is_err()), "{t} is terminal");
        }
    }

    #[test]
    fn each_action_belongs_to_its_roles() {
        let roles = [Supervisor, Acceptor, ShiftLeader, Dispatcher, Department, Viewer, Public];
        for rule in RULES {
            for role in roles {
                let got = transition(rule.from[0], rule.action, role);
                if rule.roles.contains(&role) {
                    assert!(got.is_ok(), "{role:?} may {}", rule.action);
                } else {
                    assert!(matches!(got, Err(WorkflowError::Forbidden { .. })), "{role:?} may not {}", rule.action);
                }
            }
        }
        assert!(matches!(action("teleport"), Err(WorkflowError::UnknownAction(_))));
        assert!(matches!(replay(["accept", "teleport"]), Err(WorkflowError::UnknownAction(_))));
    }

    #[test]
    fn every_status_is_reachable_and_no_status_is_a_dead_end() {
        let mut seen = vec![S::Reported];
        let mut i = 0;
        while i < seen.len() {
            let here = seen[i];
            for r in RULES.iter().filter(|r| r.from.contains(&here)) {
                if !seen.contains(&r.to) {
                    seen.push(r.to);
                }
            }
            i += 1;
        }
        let mut all = Status::ALL.to_vec();
        all.sort();
        seen.sort();
        assert_eq!(seen, all);
        for &s in Status::ALL.iter().filter(|s| !s.is_finished()) {
            assert!(RULES.iter().any(|r| r.from.contains(&s)), "{s} has a way out");
        }
    }

    /// Random sequences of actions by random roles: the status is always a known one, a refused
    /// action changes nothing, and the accepted actions replay to the same status.
    #[test]
    fn random_sequences_stay_consistent_and_replay() {
        let roles = [Admin, Supervisor, Acceptor, ShiftLeader, Dispatcher, Department, Viewer];
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(42);
        for _ in 0..2_000 {
            let mut status = S::Reported;
            let mut history = Vec::new();
            for _ in 0..rng.random_range(1..40) {
                let action = Action::ALL[rng.random_range(0..Action::ALL.len())];
                let role = roles[rng.random_range(0..roles.len())];
                if let Ok(next) = transition(status, action, role) {
                    status = next;
                    history.push(action.as_str());
                }
                assert!(Status::ALL.contains(&status));
            }
            assert_eq!(replay(history.iter().copied()), Ok(status));
        }
    }
}

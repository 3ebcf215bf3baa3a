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

/// Every status a case can be in.
pub const STATUSES: &[&str] = &[
    "reported",
    "accepted",
    "rejected",
    "verified",
    "filed",
    "voided",
    "dispatched",
    "return_requested",
    "postpone_requested",
    "hung",
    "handled",
    "checked",
    "closed",
];

/// Statuses no action leaves.
pub const TERMINAL: &[&str] = crate::model::FINISHED;

/// The actions of the API contract.
pub const ACTIONS: &[&str] = &[
    "accept",
    "reject",
    "verify",
    "file",
    "void",
    "dispatch",
    "handle",
    "check_pass",
    "check_fail",
    "return",
    "approve_return",
    "request_postpone",
    "approve_postpone",
    "hang",
    "resume",
    "close",
];

/// One rule: `action` takes a case from any of `from` to `to`, by any of `roles` (and admin).
struct Rule {
    action: &'static str,
    from: &'static [&'static str],
    to: &'static str,
    roles: &'static [Role],
}

use Role::*;

const RULES: &[Rule] = &[
    // 受理员 accepts or rejects what was reported.
    Rule { action: "accept", from: &["reported"], to: "accepted", roles: &[Acceptor] },
    Rule { action: "reject", from: &["reported"], to: "rejected", roles: &[Acceptor] },
    // 监督员 verifies on site (optional) and re-inspects after handling.
    Rule { action: "verify", from: &["accepted"], to: "verified", roles: &[Supervisor] },
    // 值班长 files (立案) or voids, and closes.
    Rule { action: "file", from: &["accepted", "verified"], to: "filed", roles: &[ShiftLeader] },
    Rule { action: "void", from: &["accepted", "verified", "filed"], to: "voided", roles: &[ShiftLeader] },
    // 派遣员 dispatches to one department and decides on its requests.
    Rule { action: "dispatch", from: &["filed"], to: "dispatched", roles: &[Dispatcher] },
    Rule { action: "approve_return", from: &["return_requested"], to: "filed", roles: &[Dispatcher] },
    Rule { action: "approve_postpone", from: &["postpone_requested"], to: "dispatched", roles: &[Dispatcher] },
    Rule { action: "hang", from: &["filed", "dispatched"], to: "hung", roles: &[Dispatcher] },
    Rule { action: "resume", from: &["hung"], to: "filed", roles: &[Dispatcher] },
    // 专业部门 handles its own cases, or asks to return (not ours) or to postpone.
    Rule { action: "handle", from: &["dispatched", "postpone_requested"], to: "handled", roles: &[Department] },
    Rule { action: "return", from: &["dispatched"], to: "return_requested", roles: &[Department] },
    Rule { action: "request_postpone", from: &["dispatched"], to: "postpone_requested", roles: &[Department] },
    // 监督员 checks the result: pass, or rework by the same department (返工).
    Rule { action: "check_pass", from: &["handled"], to: "checked", roles: &[Supervisor] },
    Rule { action: "check_fail", from: &["handled"], to: "dispatched", roles: &[Supervisor] },
    Rule { action: "close", from: &["checked"], to: "closed", roles: &[ShiftLeader] },
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
pub fn transition(status: &str, action: &str, role: Role) -> Result<&'static str, WorkflowError> {
    let rule = RULES.iter().find(|r| r.action == action).ok_or_else(|| WorkflowError::UnknownAction(action.into()))?;
    if role != Admin && !rule.roles.contains(&role) {
        return Err(WorkflowError::Forbidden { role: role.as_str(), action: rule.action });
    }
    if !rule.from.contains(&status) {
        let allowed: Vec<&str> = RULES.iter().filter(|r| r.from.contains(&status)).map(|r| r.action).collect();
        return Err(WorkflowError::Illegal {
            status: status.to_string(),
            action: rule.action,
            allowed: if allowed.is_empty() { "nothing more (it is finished)".into() } else { allowed.join(", ") },
        });
    }
    Ok(rule.to)
}

/// The roles (besides admin) that may take `action`; none for an unknown action.
pub fn roles(action: &str) -> &'static [Role] {
    RULES.iter().find(|r| r.action == action).map_or(&[], |r| r.roles)
}

/// Replays a history of actions from `reported`: the status it ends in, or the first step that
/// does not apply. Every stored history must replay to its case's status.
pub fn replay<'a>(actions: impl IntoIterator<Item = &'a str>) -> Result<&'static str, WorkflowError> {
    actions.into_iter().try_fold("reported", |status, action| transition(status, action, Admin))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    #[test]
    fn the_happy_path_closes_a_case() {
        let path = [
            ("accept", Acceptor, "accepted"),
            ("verify", Supervisor, "verified"),
            ("file", ShiftLeader, "filed"),
            ("dispatch", Dispatcher, "dispatched"),
            ("handle", Department, "handled"),
            ("check_pass", Supervisor, "checked"),
            ("close", ShiftLeader, "closed"),
        ];
        let mut status = "reported";
        for (action, role, want) in path {
            status = transition(status, action, role).unwrap();
            assert_eq!(status, want);
        }
    }

    #[test]
    fn every_action_from_every_status_moves_by_the_table_or_is_illegal() {
        for &status in STATUSES {
            for &action in ACTIONS {
                let rule = RULES.iter().find(|r| r.action == action).unwrap();
                let got = transition(status, action, Admin);
                if rule.from.contains(&status) {
                    assert_eq!(got, Ok(rule.to), "{status} --{action}");
                } else {
                    assert!(matches!(got, Err(WorkflowError::Illegal { .. })), "{status} --{action}: {got:?}");
                }
            }
        }
        for &t in TERMINAL {
            assert!(ACTIONS.iter().all(|a| transition(t, a, Admin).is_err()), "{t} is terminal");
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
        assert!(matches!(transition("reported", "teleport", Admin), Err(WorkflowError::UnknownAction(_))));
    }

    #[test]
    fn every_status_is_reachable_and_no_status_is_a_dead_end() {
        let mut seen = vec!["reported"];
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
        let mut all = STATUSES.to_vec();
        all.sort();
        seen.sort();
        assert_eq!(seen, all);
        for &s in STATUSES.iter().filter(|s| !TERMINAL.contains(s)) {
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
            let mut status = "reported";
            let mut history = Vec::new();
            for _ in 0..rng.random_range(1..40) {
                let action = ACTIONS[rng.random_range(0..ACTIONS.len())];
                let role = roles[rng.random_range(0..roles.len())];
                if let Ok(next) = transition(status, action, role) {
                    status = next;
                    history.push(action);
                }
                assert!(STATUSES.contains(&status));
            }
            assert_eq!(replay(history.iter().copied()), Ok(status));
        }
    }
}

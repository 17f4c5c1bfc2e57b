//! The handshake as a pure function: given the role, what is in the state file
//! and a little context, what to do. No I/O here; `main` performs the action.
//!
//! The table (PRODUCT.md, "The shim protocol", plus the sandbox check):
//!
//! | role   | state found                    | action |
//! |--------|--------------------------------|--------|
//! | native | none                           | write `first-run`, exit 0 |
//! | native | `first-run` of another sandbox | write `first-run`, exit 0 (init containers re-run after a sandbox restart: detect again) |
//! | native | `first-run` of this sandbox    | write `native-running`, act |
//! | native | `native-running`               | write `native-running`, act |
//! | native | `legacy-active`                | exit 0 (stand down; never an endless init container) |
//! | legacy | none, settle time left         | wait (the native copy may not have run yet) |
//! | legacy | none, no time left             | write `legacy-active`, act |
//! | legacy | `first-run`, settle time left  | wait for the state to change |
//! | legacy | `first-run`, no time left      | write `legacy-active`, act |
//! | legacy | `native-running`               | `Always`: idle until terminated; else exit 0 |
//! | legacy | `legacy-active`                | write `legacy-active`, act (its own restart) |
//! | any    | unreadable / unknown           | report it, exit non-zero, never act |
//!
//! Both writes happen under the directory lock after re-reading, so the table is
//! a compare-and-swap: only one role can ever move the state to its own "acting"
//! phase, and neither acting phase is ever left for the other's.

use crate::state::{Observed, Phase, Record};

/// Which copy this process is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// The init container with `restartPolicy: Always`.
    Native,
    /// The regular container.
    Legacy,
}

/// The pod's `spec.restartPolicy`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RestartPolicy {
    /// Containers are always restarted (Deployments).
    Always,
    /// Restarted when they fail (Jobs).
    OnFailure,
    /// Never restarted (Jobs).
    Never,
}

impl RestartPolicy {
    /// Parses the Kubernetes spelling.
    pub fn parse(s: &str) -> Option<RestartPolicy> {
        match s {
            "Always" => Some(RestartPolicy::Always),
            "OnFailure" => Some(RestartPolicy::OnFailure),
            "Never" => Some(RestartPolicy::Never),
            _ => None,
        }
    }
}

/// What the caller knows besides the state file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Context {
    /// This process's pod sandbox identity.
    pub sandbox: String,
    /// The pod's restart policy (only the legacy copy's behaviour depends on it).
    pub restart_policy: RestartPolicy,
    /// Whether the legacy copy may still wait for `first-run` to settle.
    pub settle_time_left: bool,
}

/// After writing (or not), what the process does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Then {
    /// Run CMD as the sidecar.
    Act,
    /// Exit 0 without running CMD.
    Exit,
}

/// The decision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Write this phase (under the lock, in the same critical section as the read), then go on.
    Transition(Phase, Then),
    /// Exit 0 without changing anything.
    StandDown,
    /// Sleep until terminated (the legacy copy while the native one acts, `restartPolicy: Always`).
    Idle,
    /// Re-read later: the native copy may be between its first exit and its restart.
    WaitSettle,
    /// The state cannot be trusted: report, exit non-zero, do not act.
    Fail(String),
}

/// The whole protocol. Pure: same input, same output.
pub fn decide(role: Role, found: &Observed, ctx: &Context) -> Action {
    use Action::*;
    let rec = match found {
        Observed::Absent => {
            return match role {
                Role::Native => Transition(Phase::FirstRun, Then::Exit),
                // Without a startupProbe a 1.29+ kubelet may start the regular copy
                // before the native copy's first run has written anything.
                Role::Legacy if ctx.settle_time_left => WaitSettle,
                Role::Legacy => Transition(Phase::LegacyActive, Then::Act),
            };
        }
        Observed::Unknown(why) => return Fail(why.clone()),
        Observed::Known(r) => r,
    };
    match (role, rec.phase) {
        (Role::Native, Phase::FirstRun) if !same_sandbox(rec, ctx) => {
            Transition(Phase::FirstRun, Then::Exit)
        }
        (Role::Native, Phase::FirstRun | Phase::NativeRunning) => {
            Transition(Phase::NativeRunning, Then::Act)
        }
        (Role::Native, Phase::LegacyActive) => StandDown,
        (Role::Legacy, Phase::FirstRun) if ctx.settle_time_left => WaitSettle,
        (Role::Legacy, Phase::FirstRun | Phase::LegacyActive) => {
            Transition(Phase::LegacyActive, Then::Act)
        }
        (Role::Legacy, Phase::NativeRunning) => match ctx.restart_policy {
            RestartPolicy::Always => Idle,
            RestartPolicy::OnFailure | RestartPolicy::Never => StandDown,
        },
    }
}

fn same_sandbox(rec: &Record, ctx: &Context) -> bool {
    rec.sandbox == ctx.sandbox
}

/// Whether a phase means "some copy is the sidecar": used by the probe and by `wait`.
pub fn settled(found: &Observed) -> bool {
    matches!(
        found,
        Observed::Known(Record {
            phase: Phase::NativeRunning | Phase::LegacyActive,
            ..
        })
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const ROLES: [Role; 2] = [Role::Native, Role::Legacy];
    const POLICIES: [RestartPolicy; 3] = [
        RestartPolicy::Always,
        RestartPolicy::OnFailure,
        RestartPolicy::Never,
    ];
    const PHASES: [Phase; 3] = [Phase::FirstRun, Phase::NativeRunning, Phase::LegacyActive];

    fn ctx(policy: RestartPolicy, settle: bool) -> Context {
        Context {
            sandbox: "sb-now".into(),
            restart_policy: policy,
            settle_time_left: settle,
        }
    }

    /// Every input the function can see: roles × observed states (absent, unknown,
    /// each phase from this or another sandbox) × policies × settle flag.
    fn all_inputs() -> Vec<(Role, Observed, Context)> {
        let mut found = vec![Observed::Absent, Observed::Unknown("garbage".into())];
        for p in PHASES {
            for sb in ["sb-now", "sb-old"] {
                found.push(Observed::Known(Record {
                    phase: p,
                    sandbox: sb.into(),
                }));
            }
        }
        let mut out = vec![];
        for r in ROLES {
            for f in &found {
                for pol in POLICIES {
                    for settle in [false, true] {
                        out.push((r, f.clone(), ctx(pol, settle)));
                    }
                }
            }
        }
        out
    }

    fn expected(role: Role, found: &Observed, c: &Context) -> Action {
        use Action::*;
        let Observed::Known(rec) = found else {
            return match (found, role) {
                (Observed::Absent, Role::Native) => Transition(Phase::FirstRun, Then::Exit),
                (Observed::Absent, Role::Legacy) if c.settle_time_left => WaitSettle,
                (Observed::Absent, Role::Legacy) => Transition(Phase::LegacyActive, Then::Act),
                _ => Fail("garbage".into()),
            };
        };
        let same = rec.sandbox == c.sandbox;
        match role {
            Role::Native => match rec.phase {
                Phase::FirstRun if same => Transition(Phase::NativeRunning, Then::Act),
                Phase::FirstRun => Transition(Phase::FirstRun, Then::Exit),
                Phase::NativeRunning => Transition(Phase::NativeRunning, Then::Act),
                Phase::LegacyActive => StandDown,
            },
            Role::Legacy => match rec.phase {
                Phase::FirstRun if c.settle_time_left => WaitSettle,
                Phase::FirstRun | Phase::LegacyActive => Transition(Phase::LegacyActive, Then::Act),
                Phase::NativeRunning if c.restart_policy == RestartPolicy::Always => Idle,
                Phase::NativeRunning => StandDown,
            },
        }
    }

    #[test]
    fn exhaustive_table() {
        let inputs = all_inputs();
        assert_eq!(inputs.len(), 2 * 8 * 3 * 2);
        for (r, f, c) in &inputs {
            assert_eq!(decide(*r, f, c), expected(*r, f, c), "{r:?} {f:?} {c:?}");
        }
    }

    /// Safety: no role ever overwrites the other role's acting phase, and a
    /// role only acts after writing its own acting phase.
    #[test]
    fn never_takes_over_an_acting_peer() {
        for (r, f, c) in all_inputs() {
            let a = decide(r, &f, &c);
            if let Observed::Known(rec) = &f {
                let peer_acting = match r {
                    Role::Native => Phase::LegacyActive,
                    Role::Legacy => Phase::NativeRunning,
                };
                if rec.phase == peer_acting {
                    assert!(
                        !matches!(a, Action::Transition(..)),
                        "{r:?} overwrote {rec:?}: {a:?}"
                    );
                }
            }
            if let Action::Transition(p, Then::Act) = a {
                let own = match r {
                    Role::Native => Phase::NativeRunning,
                    Role::Legacy => Phase::LegacyActive,
                };
                assert_eq!(p, own);
            }
        }
    }

    /// Unknown state never leads to acting or writing.
    #[test]
    fn unknown_is_reported() {
        for (r, f, c) in all_inputs() {
            if matches!(f, Observed::Unknown(_)) {
                assert!(matches!(decide(r, &f, &c), Action::Fail(_)));
            }
        }
    }

    /// Interleavings of the two copies on both kinds of kubelet end with
    /// exactly one acting: a small model checker over the decision function.
    #[test]
    fn both_kubelets_end_with_one_actor() {
        // native kubelet: native runs (first-run), is restarted, legacy may
        // look at any point with or without settle time.
        for pol in POLICIES {
            for settle in [false, true] {
                // legacy looks after first-run, before the restart.
                let c = ctx(pol, settle);
                let mut st = Observed::Absent;
                let a = decide(Role::Native, &st, &c);
                assert_eq!(a, Action::Transition(Phase::FirstRun, Then::Exit));
                st = known(Phase::FirstRun, "sb-now");
                let l = decide(Role::Legacy, &st, &c);
                if settle {
                    assert_eq!(l, Action::WaitSettle);
                    // native restarts in time
                    let n = decide(Role::Native, &st, &c);
                    assert_eq!(n, Action::Transition(Phase::NativeRunning, Then::Act));
                    st = known(Phase::NativeRunning, "sb-now");
                    let l2 = decide(Role::Legacy, &st, &c);
                    assert!(matches!(l2, Action::Idle | Action::StandDown));
                } else {
                    // legacy claims first; native must then stand down
                    assert_eq!(l, Action::Transition(Phase::LegacyActive, Then::Act));
                    st = known(Phase::LegacyActive, "sb-now");
                    assert_eq!(decide(Role::Native, &st, &c), Action::StandDown);
                }
            }
        }
    }

    /// Without a probe a 1.29+ kubelet can start the regular copy before the
    /// native copy's first run wrote anything: the regular copy must wait.
    #[test]
    fn legacy_waits_when_native_has_not_run_yet() {
        for pol in POLICIES {
            let c = ctx(pol, true);
            assert_eq!(
                decide(Role::Legacy, &Observed::Absent, &c),
                Action::WaitSettle
            );
            // then the native copy runs twice and acts; the regular copy stands down
            assert_eq!(
                decide(Role::Native, &Observed::Absent, &c),
                Action::Transition(Phase::FirstRun, Then::Exit)
            );
            let st = known(Phase::FirstRun, "sb-now");
            assert_eq!(decide(Role::Legacy, &st, &c), Action::WaitSettle);
            assert_eq!(
                decide(Role::Native, &st, &c),
                Action::Transition(Phase::NativeRunning, Then::Act)
            );
            let st = known(Phase::NativeRunning, "sb-now");
            assert!(matches!(
                decide(Role::Legacy, &st, &c),
                Action::Idle | Action::StandDown
            ));
        }
    }

    fn known(p: Phase, sb: &str) -> Observed {
        Observed::Known(Record {
            phase: p,
            sandbox: sb.into(),
        })
    }

    #[test]
    fn settled_only_for_acting_phases() {
        assert!(!settled(&Observed::Absent));
        assert!(!settled(&Observed::Unknown("x".into())));
        assert!(!settled(&known(Phase::FirstRun, "a")));
        assert!(settled(&known(Phase::NativeRunning, "a")));
        assert!(settled(&known(Phase::LegacyActive, "a")));
    }

    #[test]
    fn parses_policies() {
        assert_eq!(RestartPolicy::parse("Always"), Some(RestartPolicy::Always));
        assert_eq!(
            RestartPolicy::parse("OnFailure"),
            Some(RestartPolicy::OnFailure)
        );
        assert_eq!(RestartPolicy::parse("Never"), Some(RestartPolicy::Never));
        assert_eq!(RestartPolicy::parse("never"), None);
    }
}

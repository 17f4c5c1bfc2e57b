//! The doctor's report: checks with a status, evidence, hints and the permission or
//! nodes at fault; the exit code; and the text and JSON renderings.
//!
//! JSON schema (version 1), stable: fields are only ever added.
//! ```text
//! { "schemaVersion": 1,
//!   "checks": [ { "id": "apiserver-version" | "apiserver-gate" | "nodes" | "webhooks"
//!                       | "stuck-pods" | "missed-injections",
//!                 "title": str, "status": "pass" | "warn" | "fail" | "error" | "skip",
//!                 "summary": str, "evidence": [str], "hint": str?,
//!                 "permission": { "verb": str, "resource": str, "namespace": str? }?,
//!                 "items": [ { "status": str, "subject": str, "detail": str,
//!                              "nodes": [str]? } ] } ],
//!   "summary": { "pass": n, "warn": n, "fail": n, "error": n, "skip": n },
//!   "exitCode": 0 | 1 | 2 }
//! ```

use serde::Serialize;
use tandem_kube::Access;

use crate::text;

/// How a check came out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// All good.
    Pass,
    /// Worth a look; doesn't fail the run.
    Warn,
    /// A problem: native sidecars will break somewhere.
    Fail,
    /// The check could not run (no permission, API error).
    Error,
    /// Not applicable or turned off.
    Skip,
}

impl Status {
    /// The mark that starts the check's line.
    pub fn mark(self) -> &'static str {
        match self {
            Status::Pass => "√",
            Status::Warn => "‼",
            Status::Fail => "×",
            Status::Error => "×",
            Status::Skip => "-",
        }
    }
}

/// One line of detail inside a check: a group of nodes, a webhook, a pod.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Item {
    /// This item's status.
    pub status: Status,
    /// What it is about (`kubelet v1.27.9 (12 nodes)`, `webhook x.example.com`, `pod ns/name`).
    pub subject: String,
    /// The sentence that explains it.
    pub detail: String,
    /// Node names, for node groups (all of them in JSON; a few in text).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub nodes: Vec<String>,
}

impl Item {
    /// An item without node names.
    pub fn new(status: Status, subject: impl Into<String>, detail: impl Into<String>) -> Self {
        Self {
            status,
            subject: subject.into(),
            detail: detail.into(),
            nodes: Vec::new(),
        }
    }
}

/// One check's outcome.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Check {
    /// Stable id.
    pub id: &'static str,
    /// What is checked, as a statement that should be true.
    pub title: String,
    /// The outcome.
    pub status: Status,
    /// One sentence: the verdict.
    pub summary: String,
    /// The facts it rests on (versions, metric lines, webhook names).
    pub evidence: Vec<String>,
    /// What to do about it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hint: Option<String>,
    /// The permission that was missing, when one was.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub permission: Option<Access>,
    /// Details.
    pub items: Vec<Item>,
}

impl Check {
    /// A check with a status and summary and nothing else yet.
    pub fn new(id: &'static str, title: &str, status: Status, summary: impl Into<String>) -> Self {
        Self {
            id,
            title: title.into(),
            status,
            summary: summary.into(),
            evidence: Vec::new(),
            hint: None,
            permission: None,
            items: Vec::new(),
        }
    }

    /// Adds a hint.
    pub fn hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }

    /// Adds evidence.
    pub fn evidence(mut self, line: impl Into<String>) -> Self {
        self.evidence.push(line.into());
        self
    }

    /// A check that could not run for want of a permission (or another API error).
    pub fn from_error(id: &'static str, title: &str, err: &tandem_kube::KubeError) -> Self {
        let mut c = Check::new(id, title, Status::Error, format!("could not check: {err}"));
        if let Some(access) = err.forbidden() {
            c.summary = format!("could not check: permission to {access} is missing");
            c.hint = Some(format!(
                "grant it (check with `{}`), or run the doctor as an identity that has it",
                access.can_i()
            ));
            c.permission = Some(access.clone());
        }
        c
    }
}

/// Counts per status.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Summary {
    /// Passed checks.
    pub pass: usize,
    /// Warnings.
    pub warn: usize,
    /// Failed checks.
    pub fail: usize,
    /// Checks that could not run.
    pub error: usize,
    /// Skipped checks.
    pub skip: usize,
}

/// The whole report.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Report {
    /// Always 1 for this layout.
    pub schema_version: u32,
    /// The checks, in the order they ran.
    pub checks: Vec<Check>,
    /// Counts.
    pub summary: Summary,
    /// The process exit code.
    pub exit_code: u8,
}

/// Exit code: 1 when a check failed (problems found), else 2 when a check could not
/// run (no permission, API errors), else 0. Warnings don't fail the run.
pub fn exit_code(checks: &[Check]) -> u8 {
    if checks.iter().any(|c| c.status == Status::Fail) {
        1
    } else if checks.iter().any(|c| c.status == Status::Error) {
        2
    } else {
        0
    }
}

impl Report {
    /// A report from checks.
    pub fn new(checks: Vec<Check>) -> Self {
        let mut summary = Summary::default();
        for c in &checks {
            match c.status {
                Status::Pass => summary.pass += 1,
                Status::Warn => summary.warn += 1,
                Status::Fail => summary.fail += 1,
                Status::Error => summary.error += 1,
                Status::Skip => summary.skip += 1,
            }
        }
        Self {
            schema_version: 1,
            exit_code: exit_code(&checks),
            checks,
            summary,
        }
    }

    /// The text rendering: 80 columns, one block per check.
    pub fn to_text(&self) -> String {
        let mut s = String::new();
        for c in &self.checks {
            s.push_str(&text::wrap_first(
                &c.title,
                &format!("{} ", c.status.mark()),
                "  ",
            ));
            if c.status != Status::Pass || c.items.is_empty() {
                s.push_str(&text::wrap(&c.summary, "    "));
            }
            for e in &c.evidence {
                s.push_str(&text::wrap_first(e, "    · ", "      "));
            }
            for item in &c.items {
                let head = format!("{}: {}", item.subject, item.detail);
                s.push_str(&text::wrap_first(
                    &head,
                    &format!("    {} ", item.status.mark()),
                    "      ",
                ));
                if !item.nodes.is_empty() {
                    const SHOWN: usize = 5;
                    let mut names = item
                        .nodes
                        .iter()
                        .take(SHOWN)
                        .cloned()
                        .collect::<Vec<_>>()
                        .join(", ");
                    if item.nodes.len() > SHOWN {
                        names.push_str(&format!(" and {} more", item.nodes.len() - SHOWN));
                    }
                    s.push_str(&text::wrap_first(&names, "      nodes: ", "        "));
                }
            }
            if let Some(h) = &c.hint {
                s.push_str(&text::wrap_first(h, "    hint: ", "      "));
            }
        }
        let verdict = match self.exit_code {
            0 if self.summary.warn > 0 => "√ ready for native sidecars, with warnings",
            0 => "√ ready for native sidecars",
            1 => "× problems found",
            _ => "× the doctor could not check everything",
        };
        let n =
            |k: usize, one: &str, many: &str| format!("{k} {}", if k == 1 { one } else { many });
        s.push('\n');
        s.push_str(&text::wrap_first(
            &format!(
                "{verdict}: {} passed, {}, {} failed, {} could not run",
                self.summary.pass,
                n(self.summary.warn, "warning", "warnings"),
                self.summary.fail,
                self.summary.error
            ),
            "",
            "  ",
        ));
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tandem_kube::KubeError;

    #[test]
    fn exit_codes() {
        let pass = Check::new("a", "A", Status::Pass, "ok");
        let warn = Check::new("b", "B", Status::Warn, "hm");
        let fail = Check::new("c", "C", Status::Fail, "bad");
        let err = Check::new("d", "D", Status::Error, "can't");
        assert_eq!(exit_code(&[pass.clone(), warn.clone()]), 0);
        assert_eq!(exit_code(&[pass.clone(), err.clone()]), 2);
        assert_eq!(exit_code(&[fail.clone(), err.clone()]), 1);
        let r = Report::new(vec![pass, warn, fail, err]);
        assert_eq!(
            r.summary,
            Summary {
                pass: 1,
                warn: 1,
                fail: 1,
                error: 1,
                skip: 0
            }
        );
        assert_eq!(r.exit_code, 1);
    }

    #[test]
    fn permission_errors_name_verb_and_resource() {
        let e = KubeError::Forbidden {
            access: Access::new("create", "pods").in_namespace("default"),
            message: "no".into(),
        };
        let c = Check::from_error("webhooks", "W", &e);
        assert_eq!(c.status, Status::Error);
        assert!(
            c.summary.contains("create pods in namespace default"),
            "{}",
            c.summary
        );
        assert!(
            c.hint
                .unwrap()
                .contains("kubectl auth can-i create pods -n default")
        );
        let v = serde_json::to_value(Report::new(vec![Check::from_error("webhooks", "W", &e)]))
            .unwrap();
        assert_eq!(v["checks"][0]["permission"]["verb"], "create");
        assert_eq!(v["checks"][0]["permission"]["namespace"], "default");
        assert_eq!(v["exitCode"], 2);
    }

    #[test]
    fn text_fits_80_columns() {
        let mut c = Check::new(
            "nodes",
            "Every node runs native sidecars",
            Status::Fail,
            "2 of 5 nodes can't run native sidecars",
        );
        c.items.push(Item {
            status: Status::Fail,
            subject: "kubelet v1.27.9 (2 nodes)".into(),
            detail: "older than 1.28: it ignores restartPolicy on init containers, so a sidecar that never exits keeps the pod in Init".into(),
            nodes: (0..9).map(|i| format!("node-with-a-long-name-{i}")).collect(),
        });
        c.hint = Some("upgrade those kubelets, or keep native sidecars off them with tandem label-nodes and affinity mode".into());
        let text = Report::new(vec![c]).to_text();
        for l in text.lines() {
            assert!(l.chars().count() <= 80, "{l:?}");
        }
        assert!(text.contains("and 4 more"), "{text}");
        assert!(text.contains("× problems found"), "{text}");
    }
}

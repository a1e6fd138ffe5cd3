//! A configuration finding, as `contrail-cni-plugin config check` and
//! `contrail-mesos-manager --check-config` both print it: `error: <key>: <what and how to fix>`
//! or `warning: ...`, the key as the operator writes it. One type, so the two commands (and the
//! log lines of ADD and of the manager's start) cannot drift apart.

use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Severity {
    /// The program refuses the config, or does something else than the operator meant.
    Error,
    /// It runs, but not as the operator probably expects.
    Warning,
}

/// One finding: the config key it is about and what to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub severity: Severity,
    pub key: String,
    pub msg: String,
}

impl Problem {
    pub fn error(key: impl Into<String>, msg: impl Into<String>) -> Self {
        Problem {
            severity: Severity::Error,
            key: key.into(),
            msg: msg.into(),
        }
    }

    pub fn warning(key: impl Into<String>, msg: impl Into<String>) -> Self {
        Problem {
            severity: Severity::Warning,
            key: key.into(),
            msg: msg.into(),
        }
    }

    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }
}

/// How many of `problems` are errors.
pub fn errors(problems: &[Problem]) -> usize {
    problems.iter().filter(|p| p.is_error()).count()
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = match self.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
        };
        write!(f, "{s}: {}: {}", self.key, self.msg)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn printed_as_severity_key_message() {
        let p = [
            Problem::error("api.listen", "not an address"),
            Problem::warning("log.file", "empty"),
        ];
        assert_eq!(p[0].to_string(), "error: api.listen: not an address");
        assert_eq!(p[1].to_string(), "warning: log.file: empty");
        assert_eq!(errors(&p), 1);
    }
}

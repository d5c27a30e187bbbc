//! Which numbers are agent extensions, and so which way a call goes.

use crate::model::Direction;
use regex::RegexSet;

/// Errors building [`ExtensionPatterns`].
#[derive(Debug, thiserror::Error)]
#[error("invalid agent extension pattern: {0}")]
pub struct PatternError(#[from] regex::Error);

/// The configured patterns of agent extensions (regular expressions matched
/// against the whole number, e.g. `2\d\d` for 200–299).
#[derive(Debug, Clone)]
pub struct ExtensionPatterns {
    set: RegexSet,
}

impl ExtensionPatterns {
    /// Patterns are anchored: `2\d\d` matches `201`, not `12013`.
    pub fn new<I, S>(patterns: I) -> Result<Self, PatternError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let anchored = patterns
            .into_iter()
            .map(|p| format!("^(?:{})$", p.as_ref()));
        Ok(Self {
            set: RegexSet::new(anchored)?,
        })
    }

    /// True when `number` is one of the agents' extensions.
    pub fn is_agent(&self, number: &str) -> bool {
        self.set.is_match(number)
    }

    /// Inbound unless the caller is an agent; internal when both are.
    pub fn direction(&self, caller: Option<&str>, callee: Option<&str>) -> Direction {
        let caller_is_agent = caller.is_some_and(|c| self.is_agent(c));
        let callee_is_agent = callee.is_some_and(|c| self.is_agent(c));
        match (caller_is_agent, callee_is_agent) {
            (true, true) => Direction::Internal,
            (true, false) => Direction::Outbound,
            _ => Direction::Inbound,
        }
    }
}

impl Default for ExtensionPatterns {
    /// Two- to five-digit numbers not starting with 0: the usual PBX extension range.
    fn default() -> Self {
        Self::new([r"[1-9]\d{1,4}"])
            .unwrap_or_else(|_| unreachable!("the default pattern is valid"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn direction_follows_agent_patterns() {
        let p = ExtensionPatterns::new([r"2\d\d"]).unwrap();
        assert_eq!(
            p.direction(Some("0612345678"), Some("201")),
            Direction::Inbound
        );
        assert_eq!(
            p.direction(Some("201"), Some("0612345678")),
            Direction::Outbound
        );
        assert_eq!(p.direction(Some("201"), Some("202")), Direction::Internal);
        assert_eq!(p.direction(None, Some("202")), Direction::Inbound);
        assert!(!p.is_agent("2013"), "patterns are anchored");
    }

    #[test]
    fn bad_pattern_is_an_error() {
        assert!(ExtensionPatterns::new(["("]).is_err());
    }
}

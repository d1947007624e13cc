//! `version_policy` in config.toml: which version directories of a model serve at once
//! (Triton's version policy), so a new version can go live beside the old one and clients
//! that name a version keep getting it.

use serde::Deserialize;

/// Which versions serve. In TOML: `{ latest = 2 }`, `"all"`, `{ specific = [1, 3] }`;
/// `"latest"` alone is `{ latest = 1 }`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(try_from = "PolicyText")]
pub enum VersionPolicy {
    /// The `n` highest versions (default: the highest only).
    Latest(u32),
    /// Every version directory.
    All,
    /// Exactly these versions; one that is missing fails the load.
    Specific(Vec<u64>),
}

/// What TOML may hold for a policy; read into [`VersionPolicy`] with an error that lists
/// the forms (serde's own names enum variants in its terms).
#[derive(Deserialize)]
#[serde(untagged)]
enum PolicyText {
    Name(String),
    Table(PolicyTable),
    Other(toml::Value),
}

#[derive(Deserialize)]
#[serde(rename_all = "lowercase", deny_unknown_fields)]
enum PolicyTable {
    Latest(u32),
    Specific(Vec<u64>),
}

const FORMS: &str = "`{ latest = N }`, `\"all\"` (or `\"latest\"`), or `{ specific = [1, 3] }`";

impl TryFrom<PolicyText> for VersionPolicy {
    type Error = String;

    fn try_from(text: PolicyText) -> Result<Self, String> {
        match text {
            PolicyText::Name(name) if name == "all" => Ok(VersionPolicy::All),
            PolicyText::Name(name) if name == "latest" => Ok(VersionPolicy::Latest(1)),
            PolicyText::Table(PolicyTable::Latest(n)) => Ok(VersionPolicy::Latest(n)),
            PolicyText::Table(PolicyTable::Specific(v)) => Ok(VersionPolicy::Specific(v)),
            PolicyText::Name(name) => Err(format!("`{name}` is not a version policy; use {FORMS}")),
            PolicyText::Other(value) => {
                Err(format!("{value} is not a version policy; use {FORMS}"))
            }
        }
    }
}

impl Default for VersionPolicy {
    fn default() -> Self {
        VersionPolicy::Latest(1)
    }
}

impl VersionPolicy {
    /// Checks what config.toml says, before any directory is looked at.
    pub(crate) fn check(&self) -> Result<(), String> {
        match self {
            VersionPolicy::Latest(0) => Err("`version_policy.latest` must be at least 1".into()),
            VersionPolicy::Specific(v) if v.is_empty() => {
                Err("`version_policy.specific` names no version".into())
            }
            _ => Ok(()),
        }
    }

    /// The versions to serve, ascending, out of those `present` (ascending); the error
    /// says what is missing and what is there.
    pub fn select(&self, present: &[u64]) -> Result<Vec<u64>, String> {
        if present.is_empty() {
            return Err("holds no version directory (expected `1/` holding the model file)".into());
        }
        match self {
            VersionPolicy::Latest(n) => {
                let n = usize::try_from(*n).unwrap_or(usize::MAX).min(present.len());
                Ok(present[present.len() - n..].to_vec())
            }
            VersionPolicy::All => Ok(present.to_vec()),
            VersionPolicy::Specific(wanted) => {
                let missing: Vec<_> = wanted.iter().filter(|v| !present.contains(v)).collect();
                if !missing.is_empty() {
                    return Err(format!(
                        "`version_policy.specific` names versions {missing:?} that have no \
                         directory; versions present: {present:?}"
                    ));
                }
                let mut chosen = wanted.clone();
                chosen.sort_unstable();
                chosen.dedup();
                Ok(chosen)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Deserialize)]
    struct Config {
        version_policy: VersionPolicy,
    }

    fn parse(text: &str) -> Result<VersionPolicy, String> {
        let policy = toml::from_str::<Config>(text)
            .map_err(|e| e.to_string())?
            .version_policy;
        policy.check()?;
        Ok(policy)
    }

    #[test]
    fn the_three_forms_parse() {
        assert_eq!(
            parse("version_policy = { latest = 2 }"),
            Ok(VersionPolicy::Latest(2))
        );
        assert_eq!(parse("version_policy = \"all\""), Ok(VersionPolicy::All));
        assert_eq!(
            parse("version_policy = { specific = [3, 1] }"),
            Ok(VersionPolicy::Specific(vec![3, 1]))
        );
        assert!(
            parse("version_policy = { latest = 0 }")
                .unwrap_err()
                .contains("at least 1")
        );
        assert!(
            parse("version_policy = { specific = [] }")
                .unwrap_err()
                .contains("no version")
        );
        assert_eq!(
            parse("version_policy = \"latest\""),
            Ok(VersionPolicy::Latest(1))
        );
        for bad in [
            "version_policy = \"newest\"",
            "version_policy = { newest = 2 }",
            "version_policy = 3",
        ] {
            let e = parse(bad).unwrap_err();
            assert!(e.contains("is not a version policy; use"), "{bad}: {e}");
        }
    }

    #[test]
    fn each_policy_picks_its_versions() {
        let present = [1, 2, 5];
        assert_eq!(VersionPolicy::default().select(&present), Ok(vec![5]));
        assert_eq!(VersionPolicy::Latest(2).select(&present), Ok(vec![2, 5]));
        assert_eq!(VersionPolicy::Latest(9).select(&present), Ok(vec![1, 2, 5]));
        assert_eq!(VersionPolicy::All.select(&present), Ok(vec![1, 2, 5]));
        assert_eq!(
            VersionPolicy::Specific(vec![5, 1, 5]).select(&present),
            Ok(vec![1, 5])
        );
        let e = VersionPolicy::Specific(vec![1, 3])
            .select(&present)
            .unwrap_err();
        assert!(e.contains("[3]") && e.contains("[1, 2, 5]"), "{e}");
        let e = VersionPolicy::All.select(&[]).unwrap_err();
        assert!(e.contains("no version directory"), "{e}");
    }
}

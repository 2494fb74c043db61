//! Consistency levels: which writes a search is guaranteed to see.
//!
//! The logical clock is the write-ahead-log sequence number: every acknowledged write gets
//! one, and every segment knows the sequence it has applied up to.

use serde::{Deserialize, Deserializer, Serialize};
use std::fmt;
use std::str::FromStr;

use crate::error::Error;

/// A sequence number of the write-ahead log (the logical clock of a collection).
pub type Seq = u64;

/// The four consistency levels of the Milvus model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ConsistencyLevel {
    /// Sees every write acknowledged before the search started.
    Strong,
    /// Sees the state at most a configured staleness behind the newest acknowledged write.
    #[default]
    Bounded,
    /// Sees every write of the caller's session (the caller passes the last sequence it got).
    Session,
    /// Sees whatever has been applied; never waits.
    Eventually,
}

impl ConsistencyLevel {
    /// The sequence a search must wait for before it runs.
    ///
    /// * `acked` — the newest acknowledged sequence when the search started;
    /// * `session_seq` — the caller's last sequence (Session level);
    /// * `bounded_floor` — the newest sequence acknowledged longer ago than the allowed
    ///   staleness (Bounded level).
    pub fn required_seq(self, acked: Seq, session_seq: Option<Seq>, bounded_floor: Seq) -> Seq {
        match self {
            ConsistencyLevel::Strong => acked,
            ConsistencyLevel::Bounded => bounded_floor.min(acked),
            ConsistencyLevel::Session => session_seq.unwrap_or(0).min(acked),
            ConsistencyLevel::Eventually => 0,
        }
    }

    /// The lowercase name used in APIs.
    pub fn as_str(self) -> &'static str {
        match self {
            ConsistencyLevel::Strong => "strong",
            ConsistencyLevel::Bounded => "bounded",
            ConsistencyLevel::Session => "session",
            ConsistencyLevel::Eventually => "eventually",
        }
    }
}

/// Accepts the names in any case, as the query-string form ([`FromStr`]) does.
impl<'de> Deserialize<'de> for ConsistencyLevel {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let name = std::borrow::Cow::<str>::deserialize(d)?;
        name.parse().map_err(serde::de::Error::custom)
    }
}

impl fmt::Display for ConsistencyLevel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for ConsistencyLevel {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "strong" => Ok(Self::Strong),
            "bounded" => Ok(Self::Bounded),
            "session" => Ok(Self::Session),
            "eventually" => Ok(Self::Eventually),
            _ => Err(Error::invalid(
                "consistency",
                s,
                "expected one of strong, bounded, session, eventually",
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn required_sequences() {
        use ConsistencyLevel::*;
        assert_eq!(Strong.required_seq(100, None, 10), 100);
        assert_eq!(Bounded.required_seq(100, None, 90), 90);
        assert_eq!(Bounded.required_seq(5, None, 10), 5);
        assert_eq!(Session.required_seq(100, Some(42), 10), 42);
        assert_eq!(Session.required_seq(100, Some(420), 10), 100);
        assert_eq!(Eventually.required_seq(100, Some(42), 10), 0);
        assert_eq!("STRONG".parse::<ConsistencyLevel>().unwrap(), Strong);
        assert!("linearizable".parse::<ConsistencyLevel>().is_err());
        let json: ConsistencyLevel = serde_json::from_str("\"Bounded\"").unwrap();
        assert_eq!(json, Bounded);
        assert!(serde_json::from_str::<ConsistencyLevel>("\"sometimes\"").is_err());
        assert_eq!(serde_json::to_string(&Session).unwrap(), "\"session\"");
    }
}

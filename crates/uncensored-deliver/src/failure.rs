//! Why a delivery stopped, as one typed reason: an API failure (the SDK's
//! [`FailureReason`], owned there), or a failure of this crate's own steps
//! (storage, notification, journal), owned here. The CLI maps every
//! reason to its exit code, the MCP server to its error object; nothing
//! matches strings back.

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use uncensored::FailureReason;

/// The class of a delivery's failure. Serialised as one snake_case word:
/// the API reason's own (`moderation`, `gave_up`, ...), or `storage`,
/// `notification`, `journal`.
///
/// ```
/// use uncensored::FailureReason;
/// use uncensored_deliver::DeliveryReason;
///
/// assert_eq!(DeliveryReason::Journal.as_str(), "journal");
/// assert_eq!(DeliveryReason::from(FailureReason::Moderation).as_str(), "moderation");
/// assert_eq!(DeliveryReason::parse("storage"), DeliveryReason::Storage);
/// assert_eq!(DeliveryReason::parse("gave_up"), DeliveryReason::Api(FailureReason::GaveUp));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum DeliveryReason {
    /// The API refused or failed (or the client is misconfigured): the
    /// SDK's reason.
    Api(FailureReason),
    /// The image could not be stored (the image is safe at the API's URL).
    Storage,
    /// A notification could not be delivered (the image is stored).
    Notification,
    /// The journal could not be read or written: progress may not be
    /// recorded, so nothing more is sent until it works again.
    Journal,
    /// The batch's budget (`--max-spend`) is reached: the next line's price
    /// would pass it. Nothing failed; untried lines stay pending.
    Budget,
}

impl DeliveryReason {
    /// The reason as its snake_case word.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Api(reason) => reason.as_str(),
            Self::Storage => "storage",
            Self::Notification => "notification",
            Self::Journal => "journal",
            Self::Budget => "budget_reached",
        }
    }

    /// The reason of a word written by [`DeliveryReason::as_str`]; a word no
    /// owner knows is [`FailureReason::Other`].
    pub fn parse(word: &str) -> Self {
        match word {
            "storage" => Self::Storage,
            "notification" => Self::Notification,
            "journal" => Self::Journal,
            "budget_reached" => Self::Budget,
            other => Self::Api(
                serde_json::from_value(serde_json::Value::String(other.to_string()))
                    .unwrap_or(FailureReason::Other),
            ),
        }
    }

    /// What a person should do next: the API reason's own advice
    /// ([`FailureReason::advice`]), or this crate's for its steps.
    pub fn advice(self) -> &'static str {
        match self {
            Self::Api(reason) => reason.advice(),
            Self::Storage => {
                "check the storage: that the bucket or container exists and its credentials (AWS_*, GOOGLE_*, AZURE_*) are accepted, or a directory's disk space and permissions"
            }
            Self::Notification => {
                "the image is stored; run the same command again to retry the notification"
            }
            Self::Journal => {
                "check the journal: its directory's permissions and disk space (SQLite), or that its PostgreSQL server is up and accepts the connection; then run the same command again (nothing is paid twice)"
            }
            Self::Budget => {
                "the batch spent what its budget allows; rerun with a larger --max-spend to continue (finished lines are skipped, nothing is paid twice)"
            }
        }
    }
}

impl From<FailureReason> for DeliveryReason {
    fn from(reason: FailureReason) -> Self {
        Self::Api(reason)
    }
}

impl std::fmt::Display for DeliveryReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for DeliveryReason {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for DeliveryReason {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let word = String::deserialize(deserializer)?;
        Ok(Self::parse(&word))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_reason_round_trips_as_its_word() {
        for reason in [
            DeliveryReason::Storage,
            DeliveryReason::Notification,
            DeliveryReason::Journal,
            DeliveryReason::Budget,
            DeliveryReason::Api(FailureReason::Moderation),
            DeliveryReason::Api(FailureReason::GaveUp),
            DeliveryReason::Api(FailureReason::Other),
        ] {
            let text = serde_json::to_string(&reason).unwrap();
            assert_eq!(text, format!("\"{}\"", reason.as_str()));
            assert_eq!(
                serde_json::from_str::<DeliveryReason>(&text).unwrap(),
                reason
            );
        }
        assert_eq!(
            DeliveryReason::parse("permission"),
            DeliveryReason::Api(FailureReason::Forbidden),
            "the SDK's old words are read as it reads them"
        );
        assert_eq!(
            DeliveryReason::parse("something_new"),
            DeliveryReason::Api(FailureReason::Other)
        );
    }

    #[test]
    fn a_journal_failure_has_its_own_word_and_advice() {
        assert_ne!(DeliveryReason::Journal, DeliveryReason::Storage);
        assert_ne!(
            DeliveryReason::Journal.advice(),
            DeliveryReason::Storage.advice()
        );
        assert!(DeliveryReason::Journal.advice().contains("journal"));
    }
}

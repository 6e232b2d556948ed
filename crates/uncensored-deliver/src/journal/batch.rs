//! The values a journal's batches are made of: how a line is known (by its
//! content), what a load reports, a claim and its fencing token, a stop that
//! holds for every worker, and where a batch stands.

use std::collections::HashMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sha2::Digest as _;
use uncensored::{FailureReason, GenerateRequest};

use super::Entry;
use crate::DeliveryReason;

/// Gives each line of a batch its entry id, from its content: a hash of the
/// batch's name and the normalised request (defaults filled in, the
/// Idempotency-Key left out), plus its occurrence among identical lines (a
/// prompt written twice is two images). Inserting, deleting or reordering
/// lines leaves every other line's id as it was; an edited line gets a new
/// one. Also digests the whole file (ids in order), so that a worker finds
/// an unchanged batch loaded without reading its lines.
///
/// Memory: one small counter per distinct request (about 30 MB for a
/// million distinct lines).
#[derive(Debug)]
pub struct LineIds {
    batch: String,
    seen: HashMap<u128, u32>,
    digest: sha2::Sha256,
    lines: u64,
}

impl LineIds {
    /// Ids for the lines of the batch `batch`.
    pub fn new(batch: &str) -> Self {
        Self {
            batch: batch.to_string(),
            seen: HashMap::new(),
            digest: sha2::Sha256::new(),
            lines: 0,
        }
    }

    /// The id of the next line, whose request is `request`.
    pub fn next(&mut self, request: &GenerateRequest) -> String {
        let content = content_hash(&self.batch, request);
        let occurrence = self
            .seen
            .entry(u128::from_be_bytes(content))
            .and_modify(|n| *n += 1)
            .or_insert(1);
        let hex: String = content.iter().map(|b| format!("{b:02x}")).collect();
        let id = format!("b-{hex}-{occurrence}");
        self.digest.update(id.as_bytes());
        self.digest.update(b"\n");
        self.lines += 1;
        id
    }

    /// The batch file these ids describe, once every line has had its id.
    pub fn file(self) -> BatchFile {
        let digest: String = self
            .digest
            .finalize()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        BatchFile {
            name: self.batch,
            digest,
            lines: self.lines,
        }
    }
}

/// 128 bits of SHA-256 over the batch name and the normalised request.
fn content_hash(batch: &str, request: &GenerateRequest) -> [u8; 16] {
    let mut value = super::record::request_value(request);
    if let Some(object) = value.as_object_mut() {
        let (width, height) = request.dimensions();
        object.remove("idempotency_key");
        object.insert("width".into(), width.into());
        object.insert("height".into(), height.into());
        object.insert(
            "model".into(),
            request
                .model_name()
                .unwrap_or(uncensored::api::limits::generate_image_request::MODEL_DEFAULT)
                .into(),
        );
        object.insert("prompt".into(), request.prompt().trim().into());
        object.retain(|_, v| !v.is_null());
    }
    // serde_json's maps are sorted: the text is canonical.
    let mut hasher = sha2::Sha256::new();
    hasher.update(batch.as_bytes());
    hasher.update([0]);
    hasher.update(value.to_string().as_bytes());
    let digest = hasher.finalize();
    let mut out = [0u8; 16];
    out.copy_from_slice(&digest[..16]);
    out
}

/// A batch as one run of it reads its file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BatchFile {
    /// The batch's name (by default the file's name): lines are jobs of
    /// their batch, so one prompt in two batches is two images.
    pub name: String,
    /// SHA-256 of the lines' ids in file order.
    pub digest: String,
    /// How many lines the file has.
    pub lines: u64,
}

/// One line on its way into the journal.
#[derive(Debug, Clone)]
pub struct BatchLine {
    /// Its line number in the file (1-based), for people.
    pub line: u64,
    /// Its pending entry (id from [`LineIds`], with its Idempotency-Key).
    pub entry: Entry,
}

/// What loading a batch did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LoadReport {
    /// Lines written by this load (0 for a second worker or an unchanged rerun).
    pub added: u64,
    /// Lines of the journal's batch that are no longer in the file (deleted
    /// or edited since): kept, but no longer claimed.
    pub no_longer_in_file: u64,
    /// The stop an earlier run recorded, lifted by this load.
    pub lifted: Option<BatchStop>,
}

/// A batch as the journal holds it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BatchInfo {
    /// Its name.
    pub name: String,
    /// Lines in its file at the last load.
    pub lines: u64,
    /// Why it is stopped, when it is.
    pub stop: Option<BatchStop>,
}

/// Why a whole batch stopped: a failure no other line can get past (the
/// account's funds, the key), or the batch's budget reached, recorded in
/// the journal so that every worker stops claiming. Lines not yet tried
/// stay pending; the next run continues.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BatchStop {
    /// The reason, with its advice (and, in the CLI, its exit code): an API
    /// reason ([`BatchStop::stops_batch`]) or [`DeliveryReason::Budget`].
    pub reason: DeliveryReason,
    /// What the API said.
    pub message: String,
    /// The worker that saw it.
    pub holder: String,
    /// When.
    pub at: DateTime<Utc>,
}

impl BatchStop {
    /// Whether a failure of `reason` stops the whole batch: the account's
    /// funds, a revoked key, a key without the scope. Moderation, a failed
    /// job and the like stay with their line.
    pub fn stops_batch(reason: FailureReason) -> bool {
        matches!(
            reason,
            FailureReason::InsufficientFunds
                | FailureReason::Unauthorized
                | FailureReason::Forbidden
        )
    }
}

/// Which claim may write an entry: its holder and the fencing token the
/// claim got. Every claim of an entry gets a new token; a write carrying an
/// older one is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fence {
    /// The entry.
    pub id: String,
    /// The claim's holder.
    pub holder: String,
    /// The claim's token.
    pub token: i64,
}

/// An entry under a claim.
#[derive(Debug, Clone)]
pub struct Claim {
    /// The entry as the claim found it.
    pub entry: Entry,
    /// What its writes must carry.
    pub fence: Fence,
    /// Its line number in the batch file, for a batch line.
    pub line: Option<u64>,
    /// The batch it is a line of, as the journal knows it (`None` for an
    /// entry of no batch): whose budget settles its reservation
    /// ([`Budgets::settle`](super::Budgets::settle)), whoever ends it.
    pub batch: Option<String>,
}

/// What a claim got.
#[derive(Debug, Clone, Default)]
pub struct Claimed {
    /// The lines claimed (none when the batch is stopped or nothing is free).
    pub lines: Vec<Claim>,
    /// The batch's stop, when it is stopped: nothing is claimed.
    pub stop: Option<BatchStop>,
    /// When nothing was free: how soon the earliest live lease of another
    /// holder expires (`None` when no other holder has one).
    pub others_expire_in: Option<Duration>,
}

/// Where a batch stands.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BatchStatus {
    /// Lines delivered (stored and announced).
    pub done: u64,
    /// Lines that ended without an image, for good.
    pub failed: u64,
    /// Lines under a live lease, per holder (worker).
    pub in_flight: std::collections::BTreeMap<String, u64>,
    /// Lines nobody holds and nobody has finished.
    pub left: u64,
    /// Lines submitted with a callback URL and handed off to the callback
    /// service ([`super::Batches::hand_off`]): paid for, not yet delivered.
    #[serde(default)]
    pub handed_off: u64,
}

impl BatchStatus {
    /// Adds `count` entries in `state` (`done`, `failed`, `held`,
    /// `handed_off`, `left`).
    #[cfg_attr(not(any(feature = "sqlite", feature = "postgres")), allow(dead_code))]
    pub(crate) fn add(&mut self, state: &str, holder: Option<String>, count: u64) {
        match (state, holder) {
            ("done", _) => self.done += count,
            ("failed", _) => self.failed += count,
            ("held", Some(holder)) => *self.in_flight.entry(holder).or_default() += count,
            ("handed_off", _) => self.handed_off += count,
            _ => self.left += count,
        }
    }

    /// Lines in flight, all holders together.
    pub fn in_flight_total(&self) -> u64 {
        self.in_flight.values().sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_line_is_known_by_its_content_and_occurrence() {
        let mut first = LineIds::new("prompts.txt");
        let a = first.next(&GenerateRequest::new("a cat"));
        let b = first.next(&GenerateRequest::new("a dog"));
        let a2 = first.next(&GenerateRequest::new("a cat"));
        assert_ne!(a, a2, "a prompt written twice is two lines");
        let file = first.file();
        assert_eq!(file.lines, 3);

        let mut edited = LineIds::new("prompts.txt");
        let new = edited.next(&GenerateRequest::new("a bird"));
        let b_again = edited.next(&GenerateRequest::new("a dog"));
        let a_again = edited.next(&GenerateRequest::new("  a cat "));
        assert_eq!(b_again, b, "a moved line keeps its id");
        assert_eq!(a_again, a, "the prompt is normalised");
        assert!(![a.as_str(), b.as_str(), a2.as_str()].contains(&new.as_str()));
        assert_ne!(edited.file().digest, file.digest);

        let mut other = LineIds::new("other.txt");
        assert_ne!(
            other.next(&GenerateRequest::new("a cat")),
            a,
            "batches apart"
        );
        let mut defaults = LineIds::new("prompts.txt");
        let explicit = GenerateRequest::new("a cat")
            .model(uncensored::api::limits::generate_image_request::MODEL_DEFAULT);
        assert_eq!(defaults.next(&explicit), a, "defaults are filled in");
        let mut sized = LineIds::new("prompts.txt");
        assert_ne!(sized.next(&GenerateRequest::new("a cat").size(512, 512)), a);
    }

    #[test]
    fn ids_make_valid_idempotency_keys() {
        let mut ids = LineIds::new("x");
        let id = ids.next(&GenerateRequest::new("p"));
        uncensored::validate_idempotency_key(&format!("dlv-{id}")).unwrap();
    }
}

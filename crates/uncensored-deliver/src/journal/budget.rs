//! A batch's budget in the journal: the most the whole batch may spend,
//! every worker together, and what its lines have reserved and spent.
//!
//! A line's price is reserved on the line's own entry (and added to the
//! batch's totals in the same transaction) before it is sent, under the
//! claim's fence, and only if the batch's reserved and spent plus the price
//! stay within the budget. A reservation belongs to the line, not to the
//! worker: a worker that dies leaves it on the line, and the worker that
//! takes the line over finds it reserved and sends it (with the same
//! Idempotency-Key) without reserving again. When the line ends its
//! reservation is settled once: moved to spent when the line was paid,
//! released when it was refused before a job existed.

use serde::{Deserialize, Serialize};
use uncensored::Money;

use super::{Fence, JournalError};

/// What a batch may spend and has committed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BatchSpend {
    /// The most the batch may spend (`None`: no budget, nothing is tracked).
    #[serde(rename = "budget_nanos")]
    pub budget: Option<Money>,
    /// Prices reserved by lines sent or about to be sent, not yet settled.
    #[serde(rename = "reserved_nanos")]
    pub reserved: Money,
    /// Prices of lines that were paid.
    #[serde(rename = "spent_nanos")]
    pub spent: Money,
}

impl BatchSpend {
    /// Reserved and spent together: what the budget must cover.
    pub fn committed(&self) -> Money {
        self.reserved.saturating_add(self.spent)
    }

    /// Whether a line of `price` fits in the budget (always, without one).
    pub fn fits(&self, price: Money) -> bool {
        self.budget
            .is_none_or(|budget| self.committed().saturating_add(price) <= budget)
    }
}

/// What a reservation did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Reservation {
    /// The price is reserved for the line now.
    Reserved,
    /// The line held a reservation already (taken over from a worker that
    /// died, or sent before): nothing more is reserved.
    Already(Money),
    /// The batch has no budget: nothing is tracked.
    NoBudget,
    /// The price does not fit: nothing was reserved. The batch's spend as
    /// it was.
    Exceeds(BatchSpend),
}

/// How a line's reservation ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Settlement {
    /// The line was paid: its reservation moves to spent.
    Paid,
    /// The line was not charged (refused before a job existed, or its job
    /// failed): its reservation is released.
    NotCharged,
}

/// The budgets of batches ([`BatchSpend`]), kept by the journal that holds
/// the batches, so that every worker on it shares them.
#[async_trait::async_trait]
pub trait Budgets: Send + Sync + std::fmt::Debug {
    /// Sets (or, with `None`, removes) the budget of the loaded batch
    /// `batch`; what was reserved and spent is kept. Returns the batch's
    /// spend, or `None` when no batch of that name is loaded.
    async fn set_budget(
        &self,
        batch: &str,
        budget: Option<Money>,
    ) -> Result<Option<BatchSpend>, JournalError>;

    /// The budget and spend of `batch` (`None`: not loaded).
    async fn spend(&self, batch: &str) -> Result<Option<BatchSpend>, JournalError>;

    /// Reserves `price` for the line under the claim `fence`, in one atomic
    /// step: only if the batch's reserved + spent + `price` stays within its
    /// budget; two handles reserving together never pass it.
    /// [`JournalError::LeaseLost`] when the claim no longer holds the line.
    async fn reserve(
        &self,
        batch: &str,
        fence: &Fence,
        price: Money,
    ) -> Result<Reservation, JournalError>;

    /// Settles the reservation of the line under `fence` (a line without
    /// one is left as it is); returns the amount settled. Settling twice
    /// settles once.
    async fn settle(
        &self,
        batch: &str,
        fence: &Fence,
        how: Settlement,
    ) -> Result<Money, JournalError>;
}

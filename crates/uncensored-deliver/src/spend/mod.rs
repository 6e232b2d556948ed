//! What a batch costs and may spend: each line's price from the API's
//! estimate (`POST /v1/billing/estimate`, once per distinct request shape),
//! a budget the whole batch shares through its journal ([`Budgets`]), and
//! the estimate of what a batch has left to pay ([`estimate`]).
//!
//! # How a line's spending is reconciled
//!
//! The balance the API documents (`balance`, `held`, `available`,
//! `daily_spend`, `monthly_spend`) is the account's, shared by every worker
//! and every other client of the account: a change in it cannot be told
//! apart per line. What is known per line is its price before it is sent
//! (the estimate) and how it ended. So a line's estimated price is reserved
//! before its POST — the batch's counterpart of the API's `held` — and
//! settled when it ends:
//!
//! - an image was generated (stored or not): paid, its price moves to spent
//!   (the batch's share of `daily_spend`);
//! - the POST was refused before a job existed (402, 401, 403, 400,
//!   moderation): not charged, the reservation is released;
//! - a job that was accepted and then failed is counted as paid: the API
//!   documents that an async job holds its price until it ends, not that a
//!   failure gives it back; counting it can stop the batch early, never let
//!   it overspend;
//! - anything else (the API unreachable, the worker stopped or killed): the
//!   reservation stays on the line; whoever takes the line again sends it
//!   with the same Idempotency-Key (a replay is not charged twice) and
//!   settles it then, without reserving twice.
//!
//! A budget counts what its batch spent while it had one: lines sent by a
//! run without a budget are not in it.
//!
//! [`Budgets`]: crate::journal::Budgets

mod estimate;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};

pub use estimate::{BatchEstimate, ShapeCost, estimate};
use uncensored::{Client, FailureReason, GenerateRequest, Money};

use crate::journal::{BatchSpend, Claim, Entry, Fence, Journal, Reservation, Settlement, Stage};
use crate::worker::LineSteps;
use crate::{Deliverer, DeliveryError};

/// Distinct request shapes priced and remembered at most; past it a shape
/// is priced again each time (correct, only slower).
const MAX_SHAPES: usize = 4_096;

/// Prices of requests, from [`Client::estimate`], asked once per distinct
/// shape: the request without its prompt, Idempotency-Key and callback URL,
/// defaults filled in (model, size, resolution, quality and settings are
/// what a price depends on; the prompt is assumed not to be).
#[derive(Debug)]
pub struct Prices {
    client: Client,
    known: tokio::sync::Mutex<HashMap<String, Money>>,
    calls: AtomicU64,
}

impl Prices {
    /// Prices asked of the API through `client`.
    pub fn new(client: Client) -> Self {
        Self {
            client,
            known: Default::default(),
            calls: AtomicU64::new(0),
        }
    }

    /// The price of `request`: the estimate of its shape, asked once. An
    /// estimate that is negative is refused.
    pub async fn price(&self, request: &GenerateRequest) -> Result<Money, uncensored::Error> {
        let shape = shape(request);
        // Held across the call: lines of one shape wait for its one estimate.
        let mut known = self.known.lock().await;
        if let Some(price) = known.get(&shape) {
            return Ok(*price);
        }
        self.calls.fetch_add(1, Ordering::Relaxed);
        let cost = self.client.estimate(request).await?.cost;
        if cost.is_negative() {
            return Err(uncensored::Error::UnexpectedResponse {
                status: 200,
                detail: format!("the estimate is negative: {cost}"),
            });
        }
        if known.len() < MAX_SHAPES {
            known.insert(shape, cost);
        }
        Ok(cost)
    }

    /// How many estimates were asked of the API.
    pub fn calls(&self) -> u64 {
        self.calls.load(Ordering::Relaxed)
    }
}

/// The shape of a request that its price depends on, as canonical JSON.
pub(crate) fn shape(request: &GenerateRequest) -> String {
    let mut value = serde_json::to_value(request).unwrap_or_default();
    if let Some(object) = value.as_object_mut() {
        let (width, height) = request.dimensions();
        for field in ["prompt", "idempotency_key", "callback_url"] {
            object.remove(field);
        }
        object.insert("width".into(), width.into());
        object.insert("height".into(), height.into());
        object.insert(
            "model".into(),
            request
                .model_name()
                .unwrap_or(uncensored::api::limits::generate_image_request::MODEL_DEFAULT)
                .into(),
        );
        object.retain(|_, v| !v.is_null() && v.as_object().is_none_or(|o| !o.is_empty()));
    }
    // serde_json's maps are sorted: the text is canonical.
    value.to_string()
}

/// A line whose price does not fit in what is left of its batch's budget:
/// it was not sent.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "the batch's budget of {budget} is reached: {spent} spent and {reserved} reserved by lines in flight; the next line costs {price}"
)]
pub struct OverBudget {
    /// The line's price.
    pub price: Money,
    /// The batch's budget.
    pub budget: Money,
    /// What the batch has spent.
    pub spent: Money,
    /// What lines in flight have reserved.
    pub reserved: Money,
}

impl OverBudget {
    fn new(price: Money, spend: BatchSpend) -> Self {
        Self {
            price,
            budget: spend.budget.unwrap_or(Money::ZERO),
            spent: spend.spent,
            reserved: spend.reserved,
        }
    }
}

/// Keeps a batch's lines within its budget (when the journal holds one for
/// the batch): reserves each line's price before it is sent and settles it
/// when the line ends (see the [module](self)'s reconciliation).
#[derive(Debug)]
pub struct Spending {
    prices: Prices,
}

impl Spending {
    /// Spending priced through `prices`.
    pub fn new(prices: Prices) -> Self {
        Self { prices }
    }

    /// The prices it asked.
    pub fn prices(&self) -> &Prices {
        &self.prices
    }

    /// Takes the claimed line of `batch` to its end as
    /// [`Deliverer::continue_claim`] does, within the batch's budget: a
    /// line not yet sent is sent only once its price is reserved; a price
    /// that does not fit is [`DeliveryError::OverBudget`], nothing sent.
    pub async fn continue_claim(
        &self,
        deliverer: &Deliverer,
        batch: &str,
        claim: Claim,
    ) -> Result<Entry, DeliveryError> {
        self.take_on(deliverer, batch, claim, None).await
    }

    /// [`continue_claim`](Self::continue_claim), with the line taken on by
    /// `steps` when given (a line submitted with a callback URL and handed
    /// off: its reservation stays until the line is settled).
    pub async fn take_on(
        &self,
        deliverer: &Deliverer,
        batch: &str,
        claim: Claim,
        steps: Option<&dyn LineSteps>,
    ) -> Result<Entry, DeliveryError> {
        let run = |claim: Claim| async move {
            match steps {
                Some(steps) => steps.run(deliverer, claim).await,
                None => deliverer.continue_claim(claim).await,
            }
        };
        let journal = deliverer.journal();
        let fence = claim.fence.clone();
        let budgeted = journal
            .spend(batch)
            .await?
            .is_some_and(|spend| spend.budget.is_some());
        if !budgeted {
            return run(claim).await;
        }
        if matches!(claim.entry.stage, Stage::Pending) {
            let price = self
                .prices
                .price(&claim.entry.request)
                .await
                .map_err(DeliveryError::Api)?;
            match journal.reserve(batch, &fence, price).await? {
                Reservation::Exceeds(spend) => {
                    return Err(OverBudget::new(price, spend).into());
                }
                Reservation::Reserved | Reservation::Already(_) | Reservation::NoBudget => {}
            }
        }
        let result = run(claim).await;
        settle_line(journal.as_ref(), batch, &fence, &result).await;
        result
    }
}

/// Settles the reservation of the line of `batch` under `fence`, as
/// `result` left it (see the [module](self)'s reconciliation): paid,
/// released, or (when its end is not known yet) left reserved. The one
/// settlement of a line, whoever ends it: its worker
/// ([`Spending::take_on`]), or the callback service that delivered it once
/// it was handed off. A line without a reservation is left as it is.
pub(crate) async fn settle_line(
    journal: &dyn Journal,
    batch: &str,
    fence: &Fence,
    result: &Result<Entry, DeliveryError>,
) {
    let how = match result {
        Ok(entry) => settlement(&entry.stage, None),
        Err(DeliveryError::Journal(_)) => None,
        Err(error) => match journal.get(&fence.id).await {
            Ok(Some(entry)) => settlement(&entry.stage, Some(error)),
            _ => None,
        },
    };
    if let Some(how) = how
        && let Err(error) = journal.settle(batch, fence, how).await
    {
        tracing::warn!(%error, line = %fence.id, "cannot settle the line's reservation; it stays reserved until the line is settled by a later run");
    }
}

/// How a line at `stage` (that stopped on `error`, if it did) settles; `None`
/// when it cannot be known yet (its reservation stays).
fn settlement(stage: &Stage, error: Option<&DeliveryError>) -> Option<Settlement> {
    match stage {
        Stage::Generated { .. } | Stage::Stored { .. } => Some(Settlement::Paid),
        Stage::Failed {
            job_id: Some(_), ..
        } => Some(Settlement::Paid),
        Stage::Failed { job_id: None, .. } => Some(Settlement::NotCharged),
        // Sent but not known to be refused: a job may exist.
        Stage::Accepted { .. } => None,
        Stage::Pending => match error? {
            DeliveryError::Invalid(_) | DeliveryError::OverBudget(_) => {
                Some(Settlement::NotCharged)
            }
            DeliveryError::Api(error)
                if matches!(
                    error.reason(),
                    FailureReason::InsufficientFunds
                        | FailureReason::Unauthorized
                        | FailureReason::Forbidden
                        | FailureReason::InvalidRequest
                        | FailureReason::Moderation
                ) =>
            {
                Some(Settlement::NotCharged)
            }
            _ => None,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_shape_is_what_a_price_depends_on() {
        let a = GenerateRequest::new("a cat").idempotency_key("k1");
        let b = GenerateRequest::new("a dog")
            .idempotency_key("k2")
            .callback_url("https://example.com/cb");
        assert_eq!(shape(&a), shape(&b), "prompt, key and callback aside");
        let explicit = GenerateRequest::new("x")
            .model(uncensored::api::limits::generate_image_request::MODEL_DEFAULT);
        assert_eq!(shape(&a), shape(&explicit), "defaults filled in");
        for other in [
            GenerateRequest::new("a cat").size(512, 512),
            GenerateRequest::new("a cat").model("model-pro"),
            GenerateRequest::new("a cat").resolution("2k"),
            GenerateRequest::new("a cat").quality("high"),
            GenerateRequest::new("a cat").setting("steps", 30),
        ] {
            assert_ne!(shape(&a), shape(&other), "{other:?}");
        }
    }

    #[test]
    fn a_refused_line_is_released_and_a_generated_one_paid() {
        let generated = Stage::Generated {
            job_id: "j".into(),
            image_url: "u".into(),
            generation_time: None,
            model: None,
        };
        assert_eq!(settlement(&generated, None), Some(Settlement::Paid));
        let moderated = Stage::Failed {
            job_id: None,
            reason: FailureReason::Moderation,
            message: String::new(),
        };
        assert_eq!(settlement(&moderated, None), Some(Settlement::NotCharged));
        let unknown = DeliveryError::Api(uncensored::Error::UnexpectedResponse {
            status: 503,
            detail: String::new(),
        });
        assert_eq!(
            settlement(&Stage::Pending, Some(&unknown)),
            None,
            "a job may exist: the reservation stays"
        );
        assert_eq!(
            settlement(&Stage::Accepted { job_id: "j".into() }, None),
            None
        );
    }
}

//! The billing group: the balance, the cost of a request before it is sent,
//! the transaction history as a stream over its pages, and the spend limits.
//! Every amount is a [`Money`] (integer nanos); the API's rounded `*_usd`
//! fields are never read.
//!
//! Reading the balance and the transactions needs the scope `billing:read`
//! (`image:*` does not imply it): a key without it gets
//! [`Error::Api`](crate::Error::Api) with [`ApiErrorKind::Permission`]
//! (reason [`FailureReason::Forbidden`](crate::FailureReason::Forbidden)), as
//! any scope error. A spend limit reached is not an error of its own: a
//! generation then gets `402` ([`ApiErrorKind::InsufficientFunds`]), the same
//! stop as funds running out.
//!
//! [`ApiErrorKind::Permission`]: crate::ApiErrorKind::Permission
//! [`ApiErrorKind::InsufficientFunds`]: crate::ApiErrorKind::InsufficientFunds

use std::collections::VecDeque;

use chrono::{DateTime, Utc};
use futures_util::stream::{self, BoxStream, StreamExt as _};
use serde::Serialize;
use uncensored_api::limits::list_billing_transactions as page_spec;
use uncensored_api::limits::spend_limits_request as limits_spec;
use uncensored_api::types;

use crate::client::Client;
use crate::error::{Error, Result, ValidationError};
use crate::money::Money;
use crate::request::GenerateRequest;

/// The account's balance (`GET /v1/billing/balance`), from the documented
/// `*_nanos` fields. Serialises with the API's field names, in nanos.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct Balance {
    /// The whole balance, held funds included (`balance_nanos`).
    #[serde(rename = "balance_nanos")]
    pub balance: Money,
    /// Funds held for async jobs still pending (`held_nanos`).
    #[serde(rename = "held_nanos")]
    pub held: Money,
    /// What can be spent now (`available_nanos`).
    #[serde(rename = "available_nanos")]
    pub available: Money,
    /// Spent since UTC midnight (`daily_spend_nanos`).
    #[serde(rename = "daily_spend_nanos")]
    pub daily_spend: Money,
    /// Spent in the current UTC calendar month (`monthly_spend_nanos`).
    #[serde(rename = "monthly_spend_nanos")]
    pub monthly_spend: Money,
}

impl From<types::Balance> for Balance {
    fn from(wire: types::Balance) -> Self {
        Self {
            balance: Money::from_nanos(wire.balance_nanos),
            held: Money::from_nanos(wire.held_nanos),
            available: Money::from_nanos(wire.available_nanos),
            daily_spend: Money::from_nanos(wire.daily_spend_nanos),
            monthly_spend: Money::from_nanos(wire.monthly_spend_nanos),
        }
    }
}

/// What a request would cost (`POST /v1/billing/estimate`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct Estimate {
    /// The cost (`cost_nanos`).
    #[serde(rename = "cost_nanos")]
    pub cost: Money,
    /// The model it was priced for, when the API says.
    pub model: Option<String>,
}

/// What moved the balance.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum TransactionKind {
    /// A job's price, taken when it ended.
    Charge,
    /// A kind openapi.yaml does not name, kept as data.
    Other(String),
}

impl TransactionKind {
    fn from_wire(kind: String) -> Self {
        match kind.as_str() {
            "charge" => Self::Charge,
            _ => Self::Other(kind),
        }
    }

    /// The wire word.
    pub fn as_str(&self) -> &str {
        match self {
            Self::Charge => "charge",
            Self::Other(other) => other,
        }
    }
}

/// One movement of the balance (`GET /v1/billing/transactions`).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Transaction {
    /// Its identifier.
    pub id: String,
    /// What it is.
    pub kind: TransactionKind,
    /// The amount (`amount_nanos`); a charge is positive.
    pub amount: Money,
    /// The job it is about, when there is one.
    pub job_id: Option<String>,
    /// That job's model, when there is one.
    pub model: Option<String>,
    /// When it happened.
    pub created_at: DateTime<Utc>,
}

impl From<types::Transaction> for Transaction {
    fn from(wire: types::Transaction) -> Self {
        Self {
            id: wire.id,
            kind: TransactionKind::from_wire(wire.type_),
            amount: Money::from_nanos(wire.amount_nanos),
            job_id: wire.job_id,
            model: wire.model,
            created_at: wire.created_at,
        }
    }
}

/// A daily and a monthly spend limit (`PUT /v1/billing/limits`); `None` is
/// no limit.
///
/// ```
/// use uncensored::{Money, SpendLimits};
///
/// let limits = SpendLimits::none().daily("5".parse().unwrap());
/// assert_eq!(limits.daily, Money::from_usd(5));
/// assert_eq!(limits.monthly, None);
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct SpendLimits {
    /// The most that may be spent in a UTC day (`daily_limit_nanos`).
    #[serde(rename = "daily_limit_nanos")]
    pub daily: Option<Money>,
    /// The most that may be spent in a UTC calendar month (`monthly_limit_nanos`).
    #[serde(rename = "monthly_limit_nanos")]
    pub monthly: Option<Money>,
}

impl SpendLimits {
    /// No limits.
    pub fn none() -> Self {
        Self::default()
    }

    /// With a daily limit.
    pub fn daily(mut self, limit: Money) -> Self {
        self.daily = Some(limit);
        self
    }

    /// With a monthly limit.
    pub fn monthly(mut self, limit: Money) -> Self {
        self.monthly = Some(limit);
        self
    }

    fn to_api(self) -> Result<types::SpendLimitsRequest> {
        let check = |field: &'static str, minimum: u64, limit: Option<Money>| match limit {
            Some(money) if u64::try_from(money.nanos()).is_ok_and(|n| n >= minimum) => {
                Ok(Some(money.nanos()))
            }
            Some(money) => Err(ValidationError::new(
                field,
                format!(
                    "must be at least {}, not {money}",
                    Money::from_nanos(i64::try_from(minimum).unwrap_or(i64::MAX))
                ),
            )),
            None => Ok(None),
        };
        Ok(types::SpendLimitsRequest {
            daily_limit_nanos: check(
                "daily_limit_nanos",
                limits_spec::DAILY_LIMIT_NANOS_MINIMUM,
                self.daily,
            )?,
            monthly_limit_nanos: check(
                "monthly_limit_nanos",
                limits_spec::MONTHLY_LIMIT_NANOS_MINIMUM,
                self.monthly,
            )?,
        })
    }
}

impl From<types::SpendLimits> for SpendLimits {
    fn from(wire: types::SpendLimits) -> Self {
        Self {
            daily: wire.daily_limit_nanos.map(Money::from_nanos),
            monthly: wire.monthly_limit_nanos.map(Money::from_nanos),
        }
    }
}

impl Client {
    /// The account's balance: the whole of it, the funds held for pending
    /// async jobs, what is available, and the day's and month's spend.
    /// Needs the scope `billing:read`.
    pub async fn balance(&self) -> Result<Balance> {
        let (response, _) = self
            .send("GET", "/v1/billing/balance", || {
                self.api().get_billing_balance().send()
            })
            .await?;
        Ok(response.into_inner().into())
    }

    /// What `request` would cost if it were sent now. Validates it first
    /// (no network I/O if it is invalid); nothing is charged or held.
    pub async fn estimate(&self, request: &GenerateRequest) -> Result<Estimate> {
        request.validate()?;
        let body = request.to_api()?;
        let (response, _) = self
            .send("POST", "/v1/billing/estimate", || {
                self.api().estimate_billing_cost().body(body.clone()).send()
            })
            .await?;
        let wire = response.into_inner();
        Ok(Estimate {
            cost: Money::from_nanos(wire.cost_nanos),
            model: wire.model,
        })
    }

    /// Replaces the spend limits (one left `None` is removed) and returns
    /// the limits now in force. A generation that would pass one gets `402`.
    pub async fn set_limits(&self, limits: &SpendLimits) -> Result<SpendLimits> {
        let body = limits.to_api()?;
        let (response, _) = self
            .send("PUT", "/v1/billing/limits", || {
                self.api().set_billing_limits().body(body.clone()).send()
            })
            .await?;
        Ok(response.into_inner().into())
    }

    /// The transaction history, newest first, as a stream that reads the
    /// next page when the last one is used up (the API's default page
    /// size). Needs the scope `billing:read`. The stream ends after an
    /// error.
    pub fn transactions(&self) -> BoxStream<'static, Result<Transaction>> {
        self.transactions_paged(page_spec::LIMIT_DEFAULT)
    }

    /// [`Client::transactions`] with pages of `page_size` transactions
    /// (the spec's `limit`: 1 to 100; another value gives one
    /// [`Error::Invalid`] and no request).
    pub fn transactions_paged(&self, page_size: u32) -> BoxStream<'static, Result<Transaction>> {
        let range = page_spec::LIMIT_MINIMUM..=page_spec::LIMIT_MAXIMUM;
        if !range.contains(&page_size) {
            let error = ValidationError::new(
                "limit",
                format!(
                    "a page holds {} to {} transactions, not {page_size}",
                    range.start(),
                    range.end()
                ),
            );
            return stream::once(async move { Err(error.into()) }).boxed();
        }
        let pages = Pages {
            client: self.clone(),
            page_size,
            cursor: None,
            buffer: VecDeque::new(),
            done: false,
        };
        stream::unfold(pages, |mut pages| async move {
            let next = pages.next().await?;
            if next.is_err() {
                pages.done = true;
            }
            Some((next, pages))
        })
        .boxed()
    }
}

/// Where a transactions stream stands.
struct Pages {
    client: Client,
    page_size: u32,
    /// The cursor of the next page to read.
    cursor: Option<String>,
    buffer: VecDeque<Transaction>,
    done: bool,
}

impl Pages {
    /// The next transaction, reading a page when needed; `None` at the end.
    async fn next(&mut self) -> Option<Result<Transaction>> {
        if let Some(transaction) = self.buffer.pop_front() {
            return Some(Ok(transaction));
        }
        if self.done {
            return None;
        }
        let sent = self.cursor.take();
        let page = match self.read(sent.as_deref()).await {
            Ok(page) => page,
            Err(error) => return Some(Err(error)),
        };
        // A page that brings nothing new, or names the cursor it was read
        // with, would make the stream ask forever.
        let stuck =
            page.next_cursor.is_some() && (page.data.is_empty() || page.next_cursor == sent);
        if stuck {
            return Some(Err(Error::UnexpectedResponse {
                status: 200,
                detail: "the transactions page gives no progress (an empty page or the same cursor again)".into(),
            }));
        }
        self.done = page.next_cursor.is_none();
        self.cursor = page.next_cursor;
        self.buffer
            .extend(page.data.into_iter().map(Transaction::from));
        self.buffer.pop_front().map(Ok)
    }

    async fn read(&self, cursor: Option<&str>) -> Result<types::TransactionPage> {
        let (response, _) = self
            .client
            .send("GET", "/v1/billing/transactions", || {
                let request = self
                    .client
                    .api()
                    .list_billing_transactions()
                    .limit(self.page_size);
                match cursor {
                    Some(cursor) => request.cursor(cursor).send(),
                    None => request.send(),
                }
            })
            .await?;
        Ok(response.into_inner())
    }
}

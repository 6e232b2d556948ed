//! The SQLite journal's budgets: a batch's budget and totals in its row,
//! each line's reservation on the line, moved together in one IMMEDIATE
//! transaction.

use rusqlite::OptionalExtension as _;
use uncensored::Money;

use super::{SqliteJournal, error};
use crate::journal::{BatchSpend, Budgets, Fence, JournalError, Reservation, Settlement};

/// The budget and totals of `batch`.
fn spend_row(
    connection: &rusqlite::Connection,
    batch: &str,
) -> Result<Option<BatchSpend>, JournalError> {
    connection
        .query_row(
            "SELECT budget_nanos, reserved_nanos, spent_nanos FROM batches WHERE name = ?1",
            [batch],
            |row| {
                Ok(BatchSpend {
                    budget: row.get::<_, Option<i64>>(0)?.map(Money::from_nanos),
                    reserved: Money::from_nanos(row.get(1)?),
                    spent: Money::from_nanos(row.get(2)?),
                })
            },
        )
        .optional()
        .map_err(error)
}

/// The reservation of the line under `fence` (of `batch`), when the claim
/// still holds it.
fn reservation_of(
    connection: &rusqlite::Connection,
    batch: &str,
    fence: &Fence,
) -> Result<i64, JournalError> {
    connection
        .query_row(
            "SELECT reserved_nanos FROM entries
             WHERE id = ?1 AND holder = ?2 AND token = ?3 AND batch = ?4",
            rusqlite::params![fence.id, fence.holder, fence.token, batch],
            |row| row.get(0),
        )
        .optional()
        .map_err(error)?
        .ok_or_else(|| JournalError::LeaseLost {
            id: fence.id.clone(),
        })
}

#[async_trait::async_trait]
impl Budgets for SqliteJournal {
    async fn set_budget(
        &self,
        batch: &str,
        budget: Option<Money>,
    ) -> Result<Option<BatchSpend>, JournalError> {
        let connection = self.connection();
        connection
            .execute(
                "UPDATE batches SET budget_nanos = ?2 WHERE name = ?1",
                rusqlite::params![batch, budget.map(Money::nanos)],
            )
            .map_err(error)?;
        spend_row(&connection, batch)
    }

    async fn spend(&self, batch: &str) -> Result<Option<BatchSpend>, JournalError> {
        spend_row(&self.connection(), batch)
    }

    async fn reserve(
        &self,
        batch: &str,
        fence: &Fence,
        price: Money,
    ) -> Result<Reservation, JournalError> {
        if price.is_negative() {
            return Err(JournalError::new(format!("a negative price: {price}")));
        }
        let mut connection = self.connection();
        // IMMEDIATE: the check and the update are one step, across processes.
        let transaction = connection
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(error)?;
        let reserved = reservation_of(&transaction, batch, fence)?;
        if reserved > 0 {
            return Ok(Reservation::Already(Money::from_nanos(reserved)));
        }
        let fitted = transaction
            .execute(
                "UPDATE batches SET reserved_nanos = reserved_nanos + ?2
                 WHERE name = ?1 AND budget_nanos IS NOT NULL
                   AND reserved_nanos + spent_nanos + ?2 <= budget_nanos",
                rusqlite::params![batch, price.nanos()],
            )
            .map_err(error)?;
        if fitted == 0 {
            let spend = spend_row(&transaction, batch)?.unwrap_or_default();
            return Ok(match spend.budget {
                None => Reservation::NoBudget,
                Some(_) => Reservation::Exceeds(spend),
            });
        }
        transaction
            .execute(
                "UPDATE entries SET reserved_nanos = ?2 WHERE id = ?1",
                rusqlite::params![fence.id, price.nanos()],
            )
            .map_err(error)?;
        transaction.commit().map_err(error)?;
        Ok(Reservation::Reserved)
    }

    async fn settle(
        &self,
        batch: &str,
        fence: &Fence,
        how: Settlement,
    ) -> Result<Money, JournalError> {
        let mut connection = self.connection();
        let transaction = connection
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(error)?;
        let reserved = reservation_of(&transaction, batch, fence)?;
        if reserved <= 0 {
            return Ok(Money::ZERO);
        }
        let paid = i64::from(how == Settlement::Paid) * reserved;
        transaction
            .execute(
                "UPDATE entries SET reserved_nanos = 0, spent_nanos = spent_nanos + ?2 WHERE id = ?1",
                rusqlite::params![fence.id, paid],
            )
            .map_err(error)?;
        transaction
            .execute(
                "UPDATE batches SET reserved_nanos = reserved_nanos - ?2,
                     spent_nanos = spent_nanos + ?3
                 WHERE name = ?1",
                rusqlite::params![batch, reserved, paid],
            )
            .map_err(error)?;
        transaction.commit().map_err(error)?;
        Ok(Money::from_nanos(reserved))
    }
}

//! The PostgreSQL journal's budgets: a batch's budget and totals in its
//! row, each line's reservation on the line, each change one statement
//! (no lock held between calls).

use uncensored::Money;

use super::PostgresJournal;
use crate::journal::{BatchSpend, Budgets, Fence, JournalError, Reservation, Settlement};

fn spend_of(row: &tokio_postgres::Row) -> BatchSpend {
    BatchSpend {
        budget: row.get::<_, Option<i64>>(0).map(Money::from_nanos),
        reserved: Money::from_nanos(row.get(1)),
        spent: Money::from_nanos(row.get(2)),
    }
}

const SPEND: &str =
    "SELECT budget_nanos, reserved_nanos, spent_nanos FROM uncensored_batches WHERE name = $1";

#[async_trait::async_trait]
impl Budgets for PostgresJournal {
    async fn set_budget(
        &self,
        batch: &str,
        budget: Option<Money>,
    ) -> Result<Option<BatchSpend>, JournalError> {
        let budget = budget.map(Money::nanos);
        let rows = self
            .database
            .run(|client| async move {
                client
                    .query(
                        "UPDATE uncensored_batches SET budget_nanos = $2 WHERE name = $1
                         RETURNING budget_nanos, reserved_nanos, spent_nanos",
                        &[&batch, &budget],
                    )
                    .await
            })
            .await?;
        Ok(rows.first().map(spend_of))
    }

    async fn spend(&self, batch: &str) -> Result<Option<BatchSpend>, JournalError> {
        let rows = self
            .database
            .run(|client| async move { client.query(SPEND, &[&batch]).await })
            .await?;
        Ok(rows.first().map(spend_of))
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
        let (id, holder, token, nanos) = (
            fence.id.as_str(),
            fence.holder.as_str(),
            fence.token,
            price.nanos(),
        );
        // One statement, so that no lock is held between two calls (a
        // worker's lines are futures that wait while it settles another).
        // Repeating it after a lost answer is harmless: a committed
        // reservation is found on the line the second time.
        let rows = self
            .database
            .run(|client| async move {
                client
                    .query(
                        "WITH line AS (
                             SELECT reserved_nanos FROM uncensored_entries
                             WHERE id = $1 AND holder = $2 AND token = $3 AND batch = $4
                         ),
                         fitted AS (
                             UPDATE uncensored_batches
                                 SET reserved_nanos = reserved_nanos + $5
                                 WHERE name = $4 AND budget_nanos IS NOT NULL
                                   AND reserved_nanos + spent_nanos + $5 <= budget_nanos
                                   AND EXISTS (SELECT 1 FROM line WHERE reserved_nanos = 0)
                                 RETURNING 1
                         ),
                         marked AS (
                             UPDATE uncensored_entries SET reserved_nanos = $5
                                 WHERE id = $1 AND EXISTS (SELECT 1 FROM fitted)
                                 RETURNING 1
                         )
                         SELECT (SELECT reserved_nanos FROM line),
                                EXISTS (SELECT 1 FROM fitted),
                                budget_nanos, reserved_nanos, spent_nanos
                         FROM uncensored_batches WHERE name = $4",
                        &[&id, &holder, &token, &batch, &nanos],
                    )
                    .await
            })
            .await?;
        let lost = || JournalError::LeaseLost { id: id.to_string() };
        let row = rows.first().ok_or_else(lost)?;
        let Some(reserved) = row.get::<_, Option<i64>>(0) else {
            return Err(lost());
        };
        // The batch's figures are those from before this statement.
        let spend = BatchSpend {
            budget: row.get::<_, Option<i64>>(2).map(Money::from_nanos),
            reserved: Money::from_nanos(row.get(3)),
            spent: Money::from_nanos(row.get(4)),
        };
        Ok(if reserved > 0 {
            Reservation::Already(Money::from_nanos(reserved))
        } else if row.get::<_, bool>(1) {
            Reservation::Reserved
        } else if spend.budget.is_none() {
            Reservation::NoBudget
        } else {
            Reservation::Exceeds(spend)
        })
    }

    async fn settle(
        &self,
        batch: &str,
        fence: &Fence,
        how: Settlement,
    ) -> Result<Money, JournalError> {
        let (id, holder, token) = (fence.id.as_str(), fence.holder.as_str(), fence.token);
        let paid = how == Settlement::Paid;
        // One statement, as for `reserve`. Repeating it is harmless: a
        // settled line holds no reservation.
        let rows = self
            .database
            .run(|client| async move {
                client
                    .query(
                        "WITH line AS (
                             UPDATE uncensored_entries AS e
                                 SET reserved_nanos = 0,
                                     spent_nanos = e.spent_nanos
                                         + CASE WHEN $5 THEN old.reserved_nanos ELSE 0 END
                                 FROM (SELECT id, reserved_nanos FROM uncensored_entries
                                       WHERE id = $1 AND holder = $2 AND token = $3 AND batch = $4
                                       FOR UPDATE) AS old
                                 WHERE e.id = old.id
                                 RETURNING old.reserved_nanos AS reserved
                         ),
                         moved AS (
                             UPDATE uncensored_batches AS b
                                 SET reserved_nanos = b.reserved_nanos - line.reserved,
                                     spent_nanos = b.spent_nanos
                                         + CASE WHEN $5 THEN line.reserved ELSE 0 END
                                 FROM line
                                 WHERE b.name = $4 AND line.reserved > 0
                                 RETURNING 1
                         )
                         SELECT reserved FROM line",
                        &[&id, &holder, &token, &batch, &paid],
                    )
                    .await
            })
            .await?;
        rows.first()
            .map(|row| Money::from_nanos(row.get::<_, i64>(0).max(0)))
            .ok_or_else(|| JournalError::LeaseLost { id: id.to_string() })
    }
}

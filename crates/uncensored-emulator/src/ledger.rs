//! The accounts' money: balances in credits, funds held for jobs still
//! running, daily and monthly spend (reset at UTC midnight), spend limits in
//! nanos, and a transaction per charge.
//!
//! A job's price is held when it is accepted and settled (charged, with a
//! transaction) when it completes, or released when it fails: what
//! `available` shows is the balance less what is held. Credits become nanos
//! at the configured `nanos_per_credit`; the wire shows nanos only.

use std::collections::{HashMap, VecDeque};

use chrono::{DateTime, Datelike as _, NaiveDate, Utc};

/// Spend limits, in nanos (`None`: no limit).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Limits {
    /// The most that may be spent in a UTC day.
    pub daily_nanos: Option<u64>,
    /// The most that may be spent in a UTC calendar month.
    pub monthly_nanos: Option<u64>,
}

/// One charge.
#[derive(Debug, Clone, PartialEq)]
pub struct Transaction {
    /// Its number: ids and cursors are made from it, newer is larger.
    pub seq: u64,
    /// Credits charged.
    pub credits: u64,
    /// The job charged for.
    pub job_id: String,
    /// Its model.
    pub model: String,
    /// When it was charged.
    pub at: DateTime<Utc>,
}

/// An account's money at one moment, in credits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Snapshot {
    /// The whole balance, held funds included.
    pub balance: u64,
    /// Funds held for jobs still running.
    pub held: u64,
    /// What can be spent now.
    pub available: u64,
    /// Spent since UTC midnight.
    pub daily_spend: u64,
    /// Spent in the current UTC calendar month.
    pub monthly_spend: u64,
}

/// Why a job's price could not be held.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Not enough available.
    Funds {
        /// The price, in credits.
        price: u64,
        /// What is available, in credits.
        available: u64,
    },
    /// The daily limit would be passed.
    DailyLimit,
    /// The monthly limit would be passed.
    MonthlyLimit,
}

#[derive(Debug, Clone)]
struct Hold {
    credits: u64,
    model: String,
}

/// Spend of the current UTC day and month.
#[derive(Debug, Clone, Copy, Default)]
struct Spend {
    day: Option<NaiveDate>,
    daily: u64,
    month: Option<(i32, u32)>,
    monthly: u64,
}

impl Spend {
    /// Forgets the day's (the month's) spend once `now` is in another one.
    fn roll(&mut self, now: DateTime<Utc>) {
        let day = now.date_naive();
        if self.day != Some(day) {
            self.day = Some(day);
            self.daily = 0;
        }
        let month = (now.year(), now.month());
        if self.month != Some(month) {
            self.month = Some(month);
            self.monthly = 0;
        }
    }
}

#[derive(Debug, Clone, Default)]
struct Account {
    balance: u64,
    held: u64,
    holds: HashMap<String, Hold>,
    spend: Spend,
    limits: Limits,
    transactions: VecDeque<Transaction>,
}

/// Every account's money.
#[derive(Debug, Default)]
pub struct Ledger {
    accounts: HashMap<String, Account>,
    next_seq: u64,
    /// Credits to nanos.
    rate: u64,
    /// Transactions kept per account (the oldest go first).
    keep: usize,
}

impl Ledger {
    /// Accounts with these starting balances (credits), priced at `rate`
    /// nanos per credit, keeping at most `keep` transactions each.
    pub fn new(balances: impl IntoIterator<Item = (String, u64)>, rate: u64, keep: usize) -> Self {
        Self {
            accounts: balances
                .into_iter()
                .map(|(name, balance)| {
                    (
                        name,
                        Account {
                            balance,
                            ..Account::default()
                        },
                    )
                })
                .collect(),
            next_seq: 1,
            rate,
            keep: keep.max(1),
        }
    }

    /// Credits as nanos (saturating: a configuration is checked to fit).
    pub fn nanos(&self, credits: u64) -> u64 {
        credits.saturating_mul(self.rate)
    }

    fn account(&mut self, owner: &str) -> &mut Account {
        self.accounts.entry(owner.to_string()).or_default()
    }

    /// Holds `price` credits for `job`, or says why not: funds short, or a
    /// limit passed counting what is spent and held already.
    pub fn hold(
        &mut self,
        owner: &str,
        job: &str,
        price: u64,
        model: &str,
        now: DateTime<Utc>,
    ) -> Result<(), Refusal> {
        let rate = u128::from(self.rate);
        let account = self.account(owner);
        account.spend.roll(now);
        let available = account.balance - account.held;
        if available < price {
            return Err(Refusal::Funds { price, available });
        }
        let nanos = |credits: u64| u128::from(credits) * rate;
        let after = |spent: u64| nanos(spent) + nanos(account.held) + nanos(price);
        if let Some(limit) = account.limits.daily_nanos
            && after(account.spend.daily) > u128::from(limit)
        {
            return Err(Refusal::DailyLimit);
        }
        if let Some(limit) = account.limits.monthly_nanos
            && after(account.spend.monthly) > u128::from(limit)
        {
            return Err(Refusal::MonthlyLimit);
        }
        if account
            .holds
            .insert(
                job.to_string(),
                Hold {
                    credits: price,
                    model: model.to_string(),
                },
            )
            .is_none()
        {
            account.held += price;
        }
        Ok(())
    }

    /// Charges what `job` holds: the balance goes down, the spend up, and a
    /// transaction records it. Returns the credits charged.
    pub fn settle(&mut self, owner: &str, job: &str, now: DateTime<Utc>) -> Option<u64> {
        let seq = self.next_seq;
        let keep = self.keep;
        let account = self.account(owner);
        let hold = account.holds.remove(job)?;
        account.held -= hold.credits;
        account.balance -= hold.credits;
        account.spend.roll(now);
        account.spend.daily += hold.credits;
        account.spend.monthly += hold.credits;
        if account.transactions.len() >= keep {
            account.transactions.pop_front();
        }
        account.transactions.push_back(Transaction {
            seq,
            credits: hold.credits,
            job_id: job.to_string(),
            model: hold.model,
            at: now,
        });
        self.next_seq += 1;
        Some(hold.credits)
    }

    /// Gives back what `job` holds (it failed): nothing is charged.
    pub fn release(&mut self, owner: &str, job: &str) -> Option<u64> {
        let account = self.account(owner);
        let hold = account.holds.remove(job)?;
        account.held -= hold.credits;
        Some(hold.credits)
    }

    /// The account's money at `now`.
    pub fn snapshot(&mut self, owner: &str, now: DateTime<Utc>) -> Snapshot {
        let account = self.account(owner);
        account.spend.roll(now);
        Snapshot {
            balance: account.balance,
            held: account.held,
            available: account.balance - account.held,
            daily_spend: account.spend.daily,
            monthly_spend: account.spend.monthly,
        }
    }

    /// Replaces the limits.
    pub fn set_limits(&mut self, owner: &str, limits: Limits) {
        self.account(owner).limits = limits;
    }

    /// Up to `limit` transactions older than `before` (all, without it),
    /// newest first, and the cursor of the next page when there are more.
    pub fn page(
        &mut self,
        owner: &str,
        before: Option<u64>,
        limit: usize,
    ) -> (Vec<Transaction>, Option<u64>) {
        let account = self.account(owner);
        let mut older = account
            .transactions
            .iter()
            .rev()
            .filter(|t| before.is_none_or(|before| t.seq < before));
        let page: Vec<Transaction> = older.by_ref().take(limit).cloned().collect();
        let next = match (page.last(), older.next()) {
            (Some(last), Some(_)) => Some(last.seq),
            _ => None,
        };
        (page, next)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> DateTime<Utc> {
        text.parse().unwrap()
    }

    #[test]
    fn a_hold_is_available_no_more_until_it_is_settled_or_released() {
        let mut ledger = Ledger::new([("a".to_string(), 10)], 1_000, 100);
        let now = at("2026-05-09T10:00:00Z");
        ledger.hold("a", "j1", 4, "m", now).unwrap();
        ledger.hold("a", "j2", 4, "m", now).unwrap();
        assert_eq!(
            ledger.hold("a", "j3", 4, "m", now),
            Err(Refusal::Funds {
                price: 4,
                available: 2
            })
        );
        let held = ledger.snapshot("a", now);
        assert_eq!((held.balance, held.held, held.available), (10, 8, 2));
        assert_eq!(ledger.settle("a", "j1", now), Some(4));
        assert_eq!(ledger.release("a", "j2"), Some(4));
        assert_eq!(ledger.settle("a", "j1", now), None, "settled once");
        let after = ledger.snapshot("a", now);
        assert_eq!((after.balance, after.held, after.available), (6, 0, 6));
        assert_eq!((after.daily_spend, after.monthly_spend), (4, 4));
    }

    #[test]
    fn spend_resets_at_utc_midnight_and_at_the_month() {
        let mut ledger = Ledger::new([("a".to_string(), 100)], 1, 100);
        ledger
            .hold("a", "j1", 3, "m", at("2026-05-31T23:59:59Z"))
            .unwrap();
        ledger.settle("a", "j1", at("2026-05-31T23:59:59Z"));
        let late = ledger.snapshot("a", at("2026-05-31T23:59:59Z"));
        assert_eq!((late.daily_spend, late.monthly_spend), (3, 3));
        let next = ledger.snapshot("a", at("2026-06-01T00:00:00Z"));
        assert_eq!((next.daily_spend, next.monthly_spend), (0, 0));
        ledger
            .hold("a", "j2", 2, "m", at("2026-06-01T00:00:00Z"))
            .unwrap();
        ledger.settle("a", "j2", at("2026-06-01T00:00:00Z"));
        let day_after = ledger.snapshot("a", at("2026-06-02T12:00:00Z"));
        assert_eq!((day_after.daily_spend, day_after.monthly_spend), (0, 2));
    }

    #[test]
    fn limits_count_what_is_spent_and_held() {
        let mut ledger = Ledger::new([("a".to_string(), 100)], 10, 100);
        let now = at("2026-05-09T10:00:00Z");
        ledger.set_limits(
            "a",
            Limits {
                daily_nanos: Some(50),
                monthly_nanos: Some(80),
            },
        );
        ledger.hold("a", "j1", 3, "m", now).unwrap();
        ledger.settle("a", "j1", now);
        ledger.hold("a", "j2", 2, "m", now).unwrap();
        assert_eq!(
            ledger.hold("a", "j3", 1, "m", now),
            Err(Refusal::DailyLimit)
        );
        ledger.release("a", "j2");
        ledger.hold("a", "j3", 2, "m", now).unwrap();
        ledger.settle("a", "j3", now);
        let tomorrow = at("2026-05-10T00:00:00Z");
        ledger.hold("a", "j4", 3, "m", tomorrow).unwrap();
        ledger.settle("a", "j4", tomorrow);
        assert_eq!(
            ledger.hold("a", "j5", 1, "m", tomorrow),
            Err(Refusal::MonthlyLimit)
        );
    }

    #[test]
    fn pages_run_newest_first_and_end() {
        let mut ledger = Ledger::new([("a".to_string(), 100)], 1, 4);
        let now = at("2026-05-09T10:00:00Z");
        for n in 0..5 {
            let job = format!("j{n}");
            ledger.hold("a", &job, 1, "m", now).unwrap();
            ledger.settle("a", &job, now);
        }
        let (first, next) = ledger.page("a", None, 3);
        let jobs: Vec<&str> = first.iter().map(|t| t.job_id.as_str()).collect();
        assert_eq!(jobs, ["j4", "j3", "j2"]);
        let (second, end) = ledger.page("a", next, 3);
        assert_eq!(second.len(), 1, "only 4 are kept");
        assert_eq!(second[0].job_id, "j1");
        assert_eq!(end, None);
    }
}

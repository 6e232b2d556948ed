//! What every [`Journal`] must do: entries written durably and inserted
//! once, callback nonces bound once, batches loaded once and known by their
//! lines' content, claims that never hand one line to two holders, leases
//! that expire and renew, fencing tokens that refuse a stale holder's
//! writes, stops that hold for every worker, budgets that concurrent
//! reservations never pass, and lines handed off to the callback service
//! that workers leave to it until their grace ends.
//!
//! `open` is called several times: each call must return a new handle on
//! the same journal (another connection, as another process would have),
//! empty the first time.

use std::collections::BTreeSet;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use uncensored::{FailureReason, GenerateRequest, Money};

use crate::Deliverer;
use crate::journal::{
    BatchFile, BatchLine, BatchSpend, BatchStop, HANDED_OFF, Journal, JournalError, LineIds,
    Reservation, Settlement, Stage,
};

/// A batch file of `prompts`, as a run reads it: its file and its lines.
fn batch(name: &str, prompts: &[&str]) -> (BatchFile, Vec<BatchLine>) {
    let mut ids = LineIds::new(name);
    let lines = prompts
        .iter()
        .enumerate()
        .map(|(n, prompt)| {
            let request = GenerateRequest::new(*prompt).size(256, 256);
            let id = ids.next(&request);
            BatchLine {
                line: n as u64 + 1,
                entry: Deliverer::new_entry(&id, &request),
            }
        })
        .collect();
    (ids.file(), lines)
}

async fn load(journal: &dyn Journal, (file, lines): &(BatchFile, Vec<BatchLine>)) -> (u64, u64) {
    let mut lines = lines.iter().cloned().map(Ok);
    let report = journal
        .load(file, &mut lines)
        .await
        .unwrap_or_else(|e| panic!("load of {}: {e}", file.name));
    (report.added, report.no_longer_in_file)
}

fn prompts(claims: &[crate::journal::Claim]) -> Vec<String> {
    claims
        .iter()
        .map(|c| c.entry.request.prompt().to_string())
        .collect()
}

const LONG: Duration = Duration::from_secs(60);
const SHORT: Duration = Duration::from_millis(300);

/// Runs every check on the journal `open` opens; panics naming the broken
/// guarantee.
pub async fn conformance<F, Fut>(open: F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = Arc<dyn Journal>>,
{
    let one = open().await;
    let two = open().await;
    entries(&one, &two).await;
    nonces(&one, &two).await;
    loads(&one, &two).await;
    claims(&one, &two).await;
    fencing(&one, &two).await;
    stops(&one, &two).await;
    budgets(&one, &two).await;
    hand_offs(&one, &two).await;
}

async fn entries(one: &Arc<dyn Journal>, two: &Arc<dyn Journal>) {
    let first = Deliverer::new_entry("order-1", &GenerateRequest::new("p1"));
    let second = Deliverer::new_entry("order-2", &GenerateRequest::new("p2"));
    one.put(&first).await.unwrap();
    one.put(&second).await.unwrap();
    let mut moved = first.clone();
    moved.stage = Stage::Accepted {
        job_id: "job-1".into(),
    };
    two.put(&moved).await.unwrap();
    assert_eq!(
        one.get("order-1").await.unwrap().map(|e| e.stage),
        Some(moved.stage.clone()),
        "a put is seen by every handle"
    );
    let open: Vec<String> = one
        .unfinished()
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.id)
        .collect();
    assert_eq!(
        open,
        ["order-1", "order-2"],
        "oldest first; an update keeps its place"
    );
    assert_eq!(
        one.recent(1).await.unwrap()[0].id,
        "order-1",
        "recent: the last changed first"
    );
    let third = Deliverer::new_entry("order-3", &GenerateRequest::new("p3"));
    let (a, b) = tokio::join!(one.insert(&third), two.insert(&third));
    assert_eq!(
        [a.unwrap(), b.unwrap()].iter().filter(|w| **w).count(),
        1,
        "two inserts of one id write it once"
    );
    assert_eq!(one.counts().await.unwrap(), (3, 0));
    assert!(one.get("absent").await.unwrap().is_none());
}

async fn nonces(one: &Arc<dyn Journal>, two: &Arc<dyn Journal>) {
    assert_eq!(one.callback_nonce_job("n1").await.unwrap(), None);
    let (a, b) = tokio::join!(
        one.bind_callback_nonce("n1", "job-a"),
        two.bind_callback_nonce("n1", "job-b")
    );
    let (a, b) = (a.unwrap(), b.unwrap());
    assert_eq!(a, b, "two bindings of one nonce: one wins for both");
    assert_eq!(
        one.bind_callback_nonce("n1", "job-c").await.unwrap(),
        a,
        "a binding never changes"
    );
    assert_eq!(one.callback_nonce_job("n1").await.unwrap(), Some(a.clone()));
    // From the job back to its nonce, on every handle.
    assert_eq!(
        two.callback_job_nonce(&a).await.unwrap().as_deref(),
        Some("n1"),
        "a bound job finds its nonce"
    );
    assert_eq!(
        one.callback_job_nonce("job-never-bound").await.unwrap(),
        None
    );
    let loser = if a == "job-a" { "job-b" } else { "job-a" };
    assert_eq!(
        one.callback_job_nonce(loser).await.unwrap(),
        None,
        "a binding that lost names no nonce"
    );
    two.bind_callback_nonce("n2", "job-d").await.unwrap();
    assert_eq!(
        one.callback_job_nonce("job-d").await.unwrap().as_deref(),
        Some("n2")
    );
    assert_eq!(
        one.callback_job_nonce(&a).await.unwrap().as_deref(),
        Some("n1"),
        "other bindings leave it as it was"
    );
    assert_eq!(one.counts().await.unwrap().0, 3, "bindings are not entries");
}

async fn loads(one: &Arc<dyn Journal>, two: &Arc<dyn Journal>) {
    let original = batch("loads.txt", &["a", "b", "c", "b", "d"]);
    let (x, y) = tokio::join!(load(one.as_ref(), &original), load(two.as_ref(), &original));
    assert_eq!(x.0 + y.0, 5, "two loaders together write each line once");
    // Unchanged: nothing is read.
    let mut untouched = std::iter::from_fn(|| -> Option<Result<BatchLine, JournalError>> {
        panic!("an unchanged batch must not read its lines")
    });
    let report = one.load(&original.0, &mut untouched).await.unwrap();
    assert_eq!((report.added, report.no_longer_in_file), (0, 0));
    let info = one.batch(Some("loads.txt")).await.unwrap().unwrap();
    assert_eq!(
        (info.name.as_str(), info.lines, info.stop),
        ("loads.txt", 5, None)
    );
    assert!(
        one.unfinished()
            .await
            .unwrap()
            .iter()
            .all(|e| e.id.starts_with("order")),
        "batch lines are claimed, not resumed as single entries"
    );

    // One line inserted at the top, one deleted from the middle, one moved.
    let edited = batch("loads.txt", &["new", "a", "d", "b", "b"]);
    assert_eq!(
        load(two.as_ref(), &edited).await,
        (1, 1),
        "an edited file adds its new line; the deleted one is no longer in it"
    );
    let claimed = one.claim("loads.txt", "w1", 10, LONG).await.unwrap();
    assert_eq!(
        prompts(&claimed.lines),
        ["new", "a", "d", "b", "b"],
        "the file's lines, in its order, and only them"
    );
    assert_eq!(claimed.lines[0].line, Some(1));
    one.release("w1", None).await.unwrap();

    // Another batch is apart.
    let other = batch("other.txt", &["a"]);
    assert_eq!(
        load(one.as_ref(), &other).await,
        (1, 0),
        "one prompt in two batches: two lines"
    );
    assert_eq!(
        one.batch(None).await.unwrap().unwrap().name,
        "other.txt",
        "the batch loaded last"
    );
    let status = one.status("loads.txt").await.unwrap();
    assert_eq!((status.left, status.done), (5, 0), "{status:?}");
}

async fn claims(one: &Arc<dyn Journal>, two: &Arc<dyn Journal>) {
    let names: Vec<String> = (0..40).map(|n| format!("line {n}")).collect();
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    load(one.as_ref(), &batch("claims.txt", &refs)).await;
    let take = |journal: Arc<dyn Journal>, holder: &'static str| async move {
        let mut got = Vec::new();
        loop {
            let claimed = journal.claim("claims.txt", holder, 3, LONG).await.unwrap();
            if claimed.lines.is_empty() {
                return got;
            }
            got.extend(claimed.lines.into_iter().map(|c| c.entry.id));
        }
    };
    let (a, b) = tokio::join!(take(one.clone(), "w1"), take(two.clone(), "w2"));
    let all: BTreeSet<&String> = a.iter().chain(&b).collect();
    assert_eq!(a.len() + b.len(), 40, "every line claimed once");
    assert_eq!(all.len(), 40, "no line claimed twice");
    let status = one.status("claims.txt").await.unwrap();
    assert_eq!(status.in_flight_total(), 40, "{status:?}");
    let nothing = one.claim("claims.txt", "w3", 1, LONG).await.unwrap();
    assert!(nothing.lines.is_empty());
    assert!(
        nothing.others_expire_in.is_some_and(|d| d <= LONG),
        "a claimer with nothing free learns when a lease expires"
    );
    assert_eq!(one.renew("w1", &a, LONG).await.unwrap(), a.len() as u64);
    assert_eq!(one.renew("w1", &b, LONG).await.unwrap(), 0, "not w1's");
    two.release("w2", None).await.unwrap();
    let freed = one.claim("claims.txt", "w3", 100, LONG).await.unwrap();
    assert_eq!(
        freed.lines.len(),
        b.len(),
        "released lines are free at once"
    );
}

async fn fencing(one: &Arc<dyn Journal>, two: &Arc<dyn Journal>) {
    load(one.as_ref(), &batch("fenced.txt", &["x", "y"])).await;
    let stale = one.claim("fenced.txt", "stalled", 1, SHORT).await.unwrap();
    let stale = stale.lines.into_iter().next().expect("a line");
    // The lease runs out; another holder takes the line over.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let taken = loop {
        let claimed = two.claim("fenced.txt", "fresh", 2, LONG).await.unwrap();
        if let Some(claim) = claimed
            .lines
            .into_iter()
            .find(|c| c.entry.id == stale.entry.id)
        {
            break claim;
        }
        two.release("fresh", None).await.unwrap();
        assert!(
            tokio::time::Instant::now() < deadline,
            "an expired lease is taken over"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    };
    assert_ne!(
        taken.fence.token, stale.fence.token,
        "a claim gets a new token"
    );
    let mut late = stale.entry.clone();
    late.stage = Stage::Accepted {
        job_id: "job-stale".into(),
    };
    assert!(
        matches!(
            one.write_claimed(&late, &stale.fence).await,
            Err(JournalError::LeaseLost { .. })
        ),
        "a holder whose claim was taken over cannot write"
    );
    let mut done = taken.entry.clone();
    done.done = true;
    two.write_claimed(&done, &taken.fence).await.unwrap();
    assert!(one.get(&done.id).await.unwrap().unwrap().done);
    assert_eq!(
        one.renew("stalled", &[done.id.clone()], LONG)
            .await
            .unwrap(),
        0
    );

    // A holder that claims again gets a new token: its older claim is stale too.
    let single = Deliverer::new_entry("order-9", &GenerateRequest::new("p9"));
    one.put(&single).await.unwrap();
    let first = one
        .claim_entry("order-9", "me", SHORT)
        .await
        .unwrap()
        .unwrap();
    let again = one
        .claim_entry("order-9", "me", LONG)
        .await
        .unwrap()
        .unwrap();
    assert!(
        one.write_claimed(&first.entry, &first.fence).await.is_err(),
        "an older claim of the same holder is fenced"
    );
    one.write_claimed(&again.entry, &again.fence).await.unwrap();
    assert!(
        two.claim_entry("order-9", "other", LONG)
            .await
            .unwrap()
            .is_none()
    );
}

async fn stops(one: &Arc<dyn Journal>, two: &Arc<dyn Journal>) {
    let file = batch("stopped.txt", &["p", "q", "r"]);
    load(one.as_ref(), &file).await;
    let first = one.claim("stopped.txt", "w1", 1, LONG).await.unwrap();
    assert_eq!(first.lines.len(), 1);
    let stop = BatchStop {
        reason: FailureReason::InsufficientFunds.into(),
        message: "402: balance too low".into(),
        holder: "w1".into(),
        at: chrono::Utc::now(),
    };
    one.stop("stopped.txt", &stop).await.unwrap();
    let later = BatchStop {
        reason: FailureReason::Unauthorized.into(),
        ..stop.clone()
    };
    two.stop("stopped.txt", &later).await.unwrap();
    let refused = two.claim("stopped.txt", "w2", 10, LONG).await.unwrap();
    assert!(
        refused.lines.is_empty(),
        "a stopped batch hands out nothing"
    );
    assert_eq!(refused.stop.as_ref(), Some(&stop), "the first stop is kept");
    assert_eq!(
        two.batch(Some("stopped.txt")).await.unwrap().unwrap().stop,
        Some(stop.clone())
    );
    let status = two.status("stopped.txt").await.unwrap();
    assert_eq!(
        (status.left, status.failed),
        (2, 0),
        "untried lines stay pending"
    );
    assert!(
        one.claim("claims.txt", "w2", 1, LONG)
            .await
            .unwrap()
            .stop
            .is_none(),
        "a stop holds for its batch only"
    );
    // The next run loads the batch again: the stop is lifted.
    let mut unread = std::iter::empty();
    let report = two.load(&file.0, &mut unread).await.unwrap();
    assert_eq!(report.lifted, Some(stop), "the rerun says what it lifted");
    let resumed = two.claim("stopped.txt", "w2", 10, LONG).await.unwrap();
    assert_eq!(
        resumed.lines.len(),
        2,
        "the rerun continues with the untried lines"
    );
}

async fn budgets(one: &Arc<dyn Journal>, two: &Arc<dyn Journal>) {
    let names: Vec<String> = (0..12).map(|n| format!("priced {n}")).collect();
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    let file = batch("budget.txt", &refs);
    load(one.as_ref(), &file).await;
    assert_eq!(one.spend("absent.txt").await.unwrap(), None);
    assert_eq!(one.set_budget("absent.txt", None).await.unwrap(), None);
    assert_eq!(
        one.spend("budget.txt").await.unwrap(),
        Some(BatchSpend::default()),
        "a batch starts with no budget and nothing spent"
    );
    let price = Money::from_nanos(30);
    let first = one.claim("budget.txt", "w1", 6, LONG).await.unwrap().lines;
    let second = two.claim("budget.txt", "w2", 6, LONG).await.unwrap().lines;
    assert_eq!(
        one.reserve("budget.txt", &first[0].fence, price)
            .await
            .unwrap(),
        Reservation::NoBudget,
        "nothing is tracked without a budget"
    );
    let budget = Money::from_nanos(100);
    let set = two.set_budget("budget.txt", Some(budget)).await.unwrap();
    assert_eq!(set.map(|s| s.budget), Some(Some(budget)));

    // Two handles reserve together: never more than the budget.
    let reserve_all = |journal: Arc<dyn Journal>, claims: Vec<crate::journal::Claim>| async move {
        let mut outcomes = Vec::new();
        for claim in &claims {
            outcomes.push(
                journal
                    .reserve("budget.txt", &claim.fence, price)
                    .await
                    .unwrap(),
            );
        }
        outcomes
    };
    let (a, b) = tokio::join!(
        reserve_all(one.clone(), first.clone()),
        reserve_all(two.clone(), second.clone())
    );
    let reserved = a
        .iter()
        .chain(&b)
        .filter(|r| **r == Reservation::Reserved)
        .count();
    assert_eq!(reserved, 3, "100 holds three lines of 30: {a:?} {b:?}");
    assert!(
        a.iter()
            .chain(&b)
            .all(|r| matches!(r, Reservation::Reserved | Reservation::Exceeds(_))),
        "{a:?} {b:?}"
    );
    let spend = one.spend("budget.txt").await.unwrap().unwrap();
    assert_eq!(
        (spend.reserved, spend.spent),
        (Money::from_nanos(90), Money::ZERO)
    );
    assert!(!spend.fits(price));

    let holding: Vec<&crate::journal::Claim> = first
        .iter()
        .zip(&a)
        .chain(second.iter().zip(&b))
        .filter(|(_, r)| **r == Reservation::Reserved)
        .map(|(c, _)| c)
        .collect();
    let journal_of = |claim: &crate::journal::Claim| {
        if claim.fence.holder == "w1" {
            one.clone()
        } else {
            two.clone()
        }
    };
    assert_eq!(
        journal_of(holding[0])
            .reserve("budget.txt", &holding[0].fence, price)
            .await
            .unwrap(),
        Reservation::Already(price),
        "a line is reserved once"
    );
    let stale = crate::journal::Fence {
        token: holding[0].fence.token - 1,
        ..holding[0].fence.clone()
    };
    assert!(
        matches!(
            one.reserve("budget.txt", &stale, price).await,
            Err(JournalError::LeaseLost { .. })
        ),
        "a reservation is made under the line's claim"
    );

    // Settled once: paid moves to spent, not charged gives it back.
    let paid = journal_of(holding[0]);
    assert_eq!(
        paid.settle("budget.txt", &holding[0].fence, Settlement::Paid)
            .await
            .unwrap(),
        price
    );
    assert_eq!(
        paid.settle("budget.txt", &holding[0].fence, Settlement::Paid)
            .await
            .unwrap(),
        Money::ZERO,
        "settling twice settles once"
    );
    journal_of(holding[1])
        .settle("budget.txt", &holding[1].fence, Settlement::NotCharged)
        .await
        .unwrap();
    let spend = two.spend("budget.txt").await.unwrap().unwrap();
    assert_eq!(
        (spend.reserved, spend.spent),
        (Money::from_nanos(30), Money::from_nanos(30))
    );

    // A worker that dies leaves its reservation on the line: whoever takes
    // the line over finds it reserved, and the dead one can settle nothing.
    one.release("w1", None).await.unwrap();
    two.release("w2", None).await.unwrap();
    let kept = holding[2].entry.id.clone();
    let dead = one.claim("budget.txt", "dead", 12, SHORT).await.unwrap();
    let dead = dead
        .lines
        .into_iter()
        .find(|c| c.entry.id == kept)
        .expect("the reserved line is claimable again");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let taken = loop {
        let claimed = two.claim("budget.txt", "heir", 12, LONG).await.unwrap();
        if let Some(claim) = claimed.lines.into_iter().find(|c| c.entry.id == kept) {
            break claim;
        }
        two.release("heir", None).await.unwrap();
        assert!(
            tokio::time::Instant::now() < deadline,
            "an expired lease is taken over"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    };
    assert_eq!(
        two.reserve("budget.txt", &taken.fence, price)
            .await
            .unwrap(),
        Reservation::Already(price),
        "a taken-over line keeps its reservation"
    );
    assert!(
        one.settle("budget.txt", &dead.fence, Settlement::NotCharged)
            .await
            .is_err(),
        "the dead holder cannot release the heir's reservation"
    );

    // A larger budget keeps what is reserved and spent; a rerun keeps it.
    let raised = one
        .set_budget("budget.txt", Some(Money::from_nanos(200)))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (raised.reserved, raised.spent),
        (spend.reserved, spend.spent)
    );
    let mut unread = std::iter::empty();
    two.load(&file.0, &mut unread).await.unwrap();
    assert_eq!(
        one.spend("budget.txt").await.unwrap().unwrap().budget,
        Some(Money::from_nanos(200)),
        "the budget belongs to the batch"
    );
    let done: Vec<String> = vec![kept.clone(), "absent".into()];
    assert!(one.done_among(&done).await.unwrap().is_empty());
    let mut finished = taken.entry.clone();
    finished.done = true;
    two.write_claimed(&finished, &taken.fence).await.unwrap();
    assert_eq!(one.done_among(&done).await.unwrap(), [kept]);
}

async fn hand_offs(one: &Arc<dyn Journal>, two: &Arc<dyn Journal>) {
    load(one.as_ref(), &batch("handed.txt", &["h1", "h2", "h3"])).await;
    let claimed = one.claim("handed.txt", "w", 3, LONG).await.unwrap();
    let [first, second, third]: [_; 3] = claimed.lines.try_into().expect("three lines");
    let mut accepted = first.entry.clone();
    accepted.stage = Stage::Accepted {
        job_id: "job-h1".into(),
    };
    one.hand_off(&accepted, &first.fence, LONG).await.unwrap();
    assert_eq!(
        two.get(&accepted.id).await.unwrap().unwrap().stage,
        accepted.stage,
        "the entry is written with its hand-off"
    );
    one.hand_off(&second.entry, &second.fence, SHORT)
        .await
        .unwrap();
    assert!(
        matches!(
            one.write_claimed(&accepted, &first.fence).await,
            Err(JournalError::LeaseLost { .. })
        ),
        "a hand-off ends the worker's claim"
    );
    assert!(
        matches!(
            one.hand_off(&accepted, &first.fence, LONG).await,
            Err(JournalError::LeaseLost { .. })
        ),
        "a line is handed off once per claim"
    );
    assert_eq!(
        one.renew("w", std::slice::from_ref(&first.entry.id), LONG)
            .await
            .unwrap(),
        0
    );
    let status = two.status("handed.txt").await.unwrap();
    assert_eq!(status.handed_off, 2, "{status:?}");
    assert_eq!(status.in_flight.get("w"), Some(&1), "{status:?}");
    assert!(!status.in_flight.contains_key(HANDED_OFF), "{status:?}");
    let handed: BTreeSet<String> = two
        .handed_off(10)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.id)
        .collect();
    assert_eq!(
        handed,
        BTreeSet::from([first.entry.id.clone(), second.entry.id.clone()])
    );
    assert_eq!(two.handed_off(1).await.unwrap().len(), 1, "at most `limit`");
    let mut done = third.entry.clone();
    done.done = true;
    one.write_claimed(&done, &third.fence).await.unwrap();

    // Workers leave a handed-off line alone until its grace ends; then a
    // worker's claim may take it (the same recovery: it polls the job).
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let late = loop {
        let claimed = two.claim("handed.txt", "late", 3, LONG).await.unwrap();
        assert!(
            claimed.lines.iter().all(|c| c.entry.id != first.entry.id),
            "a line handed off for longer is not claimed by workers"
        );
        if let Some(claim) = claimed.lines.into_iter().next() {
            break claim;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "a hand-off whose grace ended is claimed"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    };
    assert_eq!(late.entry.id, second.entry.id);
    let nothing = two.claim("handed.txt", "late", 3, LONG).await.unwrap();
    assert!(nothing.lines.is_empty());
    assert_eq!(
        nothing.others_expire_in, None,
        "a worker does not wait for lines handed off"
    );

    // The callback service takes a hand-off over at once, with a new token.
    let service = two
        .claim_entry(&first.entry.id, "service", LONG)
        .await
        .unwrap()
        .expect("the service takes a handed-off line");
    assert_eq!(service.entry.stage, accepted.stage);
    assert!(service.fence.token > first.fence.token);
    assert!(
        two.claim_entry(&first.entry.id, "replica", LONG)
            .await
            .unwrap()
            .is_none(),
        "once taken it is held"
    );
    assert!(
        one.handed_off(10).await.unwrap().is_empty(),
        "held by the service: not for the recovery of another replica"
    );
    let status = one.status("handed.txt").await.unwrap();
    assert_eq!(
        status.handed_off, 1,
        "still handed off while the service delivers it: {status:?}"
    );
    assert!(!status.in_flight.contains_key("service"), "{status:?}");
    let mut finished = late.entry.clone();
    finished.done = true;
    two.write_claimed(&finished, &late.fence).await.unwrap();
    let waiting = one.claim("handed.txt", "w", 3, LONG).await.unwrap();
    assert!(waiting.lines.is_empty());
    assert_eq!(
        waiting.others_expire_in, None,
        "workers do not wait for the service either"
    );
    let mut delivered = service.entry.clone();
    delivered.done = true;
    two.write_claimed(&delivered, &service.fence).await.unwrap();
    let status = one.status("handed.txt").await.unwrap();
    assert_eq!((status.done, status.handed_off), (3, 0), "{status:?}");
}

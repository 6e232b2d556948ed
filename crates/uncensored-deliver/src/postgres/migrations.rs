//! The schema, as numbered migrations. Each runs once, in its own
//! transaction, under an advisory lock so that workers starting together
//! migrate once; applied versions are recorded in `uncensored_migrations`.

use deadpool_postgres::Object;

/// The migrations, in order. Never edit one that has shipped: add the next.
const MIGRATIONS: &[(i32, &str)] = &[
    (
        1,
        "CREATE SEQUENCE uncensored_changes;
     CREATE TABLE uncensored_entries (
         id          text PRIMARY KEY,
         seq         bigserial NOT NULL,
         done        boolean NOT NULL DEFAULT false,
         failed      boolean NOT NULL DEFAULT false,
         body        jsonb NOT NULL,
         changed     bigint NOT NULL DEFAULT nextval('uncensored_changes'),
         holder      text,
         lease_until timestamptz
     );
     CREATE INDEX uncensored_entries_open ON uncensored_entries (seq) WHERE NOT done;
     CREATE INDEX uncensored_entries_changed ON uncensored_entries (changed);
     CREATE TABLE uncensored_callback_nonces (
         nonce  text PRIMARY KEY,
         job_id text NOT NULL
     );
     CREATE TABLE uncensored_batch (
         only_one integer PRIMARY KEY CHECK (only_one = 1),
         manifest jsonb NOT NULL
     );
     CREATE TABLE uncensored_pacing (
         key          text PRIMARY KEY,
         interval_ms  double precision NOT NULL,
         tat          timestamptz NOT NULL DEFAULT now(),
         paused_until timestamptz NOT NULL DEFAULT '-infinity'
     );",
    ),
    (
        2,
        // Batches known by name, lines by content (`LineIds`), claims with
        // fencing tokens. A batch of the one-batch schema is dropped: its
        // line ids were positions, not contents.
        "ALTER TABLE uncensored_entries
             ADD COLUMN batch text,
             ADD COLUMN line bigint,
             ADD COLUMN generation bigint,
             ADD COLUMN token bigint NOT NULL DEFAULT 0;
         CREATE INDEX uncensored_entries_batch ON uncensored_entries (batch, generation, line)
             WHERE NOT done;
         DROP TABLE uncensored_batch;
         CREATE TABLE uncensored_batches (
             name       text PRIMARY KEY,
             digest     text NOT NULL,
             lines      bigint NOT NULL,
             generation bigint NOT NULL,
             stop       jsonb,
             loaded     bigint NOT NULL DEFAULT 0
         );
         CREATE SEQUENCE uncensored_loads;",
    ),
    (
        3,
        // The key's rate-limit window as the API reports it (postgres/pacer.rs):
        // `window_ends` NULL: no window followed (requests are spaced);
        // `window_reset` NULL: a window begun by a worker, not yet answered.
        "ALTER TABLE uncensored_pacing
             ADD COLUMN window_limit     integer NOT NULL DEFAULT 0,
             ADD COLUMN window_reset     timestamptz,
             ADD COLUMN window_previous  timestamptz,
             ADD COLUMN window_ends      timestamptz,
             ADD COLUMN window_remaining integer NOT NULL DEFAULT 0;",
    ),
    (
        4,
        // Budgets: a batch's budget and totals, and each line's own
        // reservation and spend (the totals change with them, in one
        // transaction).
        "ALTER TABLE uncensored_entries
             ADD COLUMN reserved_nanos bigint NOT NULL DEFAULT 0,
             ADD COLUMN spent_nanos bigint NOT NULL DEFAULT 0;
         ALTER TABLE uncensored_batches
             ADD COLUMN budget_nanos bigint,
             ADD COLUMN reserved_nanos bigint NOT NULL DEFAULT 0,
             ADD COLUMN spent_nanos bigint NOT NULL DEFAULT 0;",
    ),
    (
        5,
        // Batch lines handed off to the callback service (`Batches::hand_off`).
        "ALTER TABLE uncensored_entries
             ADD COLUMN handed_off boolean NOT NULL DEFAULT false;
         CREATE INDEX uncensored_entries_handed_off ON uncensored_entries (lease_until)
             WHERE handed_off AND NOT done;",
    ),
    (
        6,
        // The nonce bound to a job (`CallbackNonces::callback_job_nonce`).
        "CREATE INDEX uncensored_callback_nonces_job
             ON uncensored_callback_nonces (job_id, nonce);",
    ),
];

/// A key for `pg_advisory_xact_lock`: "uncensored" in ASCII, folded.
const LOCK: i64 = 0x756e_6365_6e73_6f72;

/// Applies every migration the database has not seen.
pub(super) async fn run(client: &mut Object) -> Result<(), tokio_postgres::Error> {
    let transaction = client.transaction().await?;
    transaction
        .execute("SELECT pg_advisory_xact_lock($1)", &[&LOCK])
        .await?;
    transaction
        .batch_execute(
            "CREATE TABLE IF NOT EXISTS uncensored_migrations (
                 version    integer PRIMARY KEY,
                 applied_at timestamptz NOT NULL DEFAULT now()
             )",
        )
        .await?;
    let applied: i32 = transaction
        .query_one(
            "SELECT COALESCE(MAX(version), 0) FROM uncensored_migrations",
            &[],
        )
        .await?
        .get(0);
    for (version, sql) in MIGRATIONS.iter().filter(|(v, _)| *v > applied) {
        tracing::info!(version, "migrating the journal's schema");
        transaction.batch_execute(sql).await?;
        transaction
            .execute(
                "INSERT INTO uncensored_migrations (version) VALUES ($1)",
                &[version],
            )
            .await?;
    }
    transaction.commit().await
}

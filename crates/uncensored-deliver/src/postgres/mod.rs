//! PostgreSQL: one connection pool shared by the journal and the pacer (its
//! URL read as libpq reads it, TLS included: [`settings`], [`tls`]), the
//! schema's versioned migrations, and the one retry loop of a database call
//! (a lost connection is retried on a new one; nothing else is).

mod migrations;
mod pacer;
mod settings;
mod tls;

pub use pacer::PostgresPacer;

use std::fmt;
use std::future::Future;
use std::time::Duration;

use backon::{ExponentialBuilder, Retryable as _};
use deadpool_postgres::{Manager, ManagerConfig, Object, Pool, RecyclingMethod};
use settings::Settings;
use tokio_postgres::error::SqlState;

use crate::journal::JournalError;

/// How long a database call keeps retrying a lost connection (a restart of
/// the server, a network cut) before it reports the database unavailable.
const RECONNECT_FOR: Duration = Duration::from_secs(60);

/// A pool of connections to one database, with a description that never
/// holds the password.
#[derive(Clone)]
pub(crate) struct Database {
    pool: Pool,
    /// `user@host:port/dbname`, for messages.
    pub(crate) target: String,
    /// `sslmode=…` and what it trusts, for messages.
    tls: String,
    reconnect_for: Duration,
}

impl fmt::Debug for Database {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Database")
            .field("target", &self.target)
            .field("tls", &self.tls)
            .finish_non_exhaustive()
    }
}

enum Failure {
    Pool(deadpool_postgres::PoolError),
    Database(tokio_postgres::Error),
}

impl Failure {
    /// The database's own error, when the pool failed to open a connection
    /// because of one (refused, or answered with an error).
    fn database_error(&self) -> Option<&tokio_postgres::Error> {
        match self {
            Failure::Pool(deadpool_postgres::PoolError::Backend(error))
            | Failure::Database(error) => Some(error),
            Failure::Pool(_) => None,
        }
    }

    /// Whether a new connection may succeed where this one failed: not when
    /// the server answered that the password is wrong or the database is
    /// missing, nor when the TLS handshake was refused.
    fn is_connection(&self) -> bool {
        match self.database_error() {
            None => true,
            Some(error) if tls::refusal(error).is_some() => false,
            Some(error) => {
                error.is_closed()
                    || error.as_db_error().is_none() && error.code().is_none()
                    || error.code().is_some_and(|code| {
                        [
                            SqlState::ADMIN_SHUTDOWN,
                            SqlState::CRASH_SHUTDOWN,
                            SqlState::CANNOT_CONNECT_NOW,
                            SqlState::CONNECTION_FAILURE,
                            SqlState::CONNECTION_EXCEPTION,
                            SqlState::SQLCLIENT_UNABLE_TO_ESTABLISH_SQLCONNECTION,
                        ]
                        .contains(code)
                    })
            }
        }
    }

    fn describe(&self) -> String {
        match (self, self.database_error()) {
            // The server's own message (never the connection string):
            // `database "x" does not exist`, `password authentication failed
            // for user "u"`.
            (_, Some(error)) => match (error.as_db_error(), tls::refusal(error)) {
                (Some(db), _) => db.message().to_string(),
                (None, Some(refusal)) => tls::describe(refusal),
                (None, None) => with_causes(error),
            },
            (Failure::Pool(error), None) => error.to_string(),
            (Failure::Database(error), None) => error.to_string(),
        }
    }
}

/// `error: its cause: …` (tokio-postgres's own message leaves its cause out:
/// `error connecting to server`, not why).
fn with_causes(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut cause = error.source();
    while let Some(error) = cause {
        text.push_str(&format!(": {error}"));
        cause = error.source();
    }
    text
}

impl Database {
    /// A pool for `url` (`postgres://user:password@host:port/dbname?options`,
    /// with libpq's `sslmode` and `sslrootcert`, else `PGSSLMODE` and
    /// `PGSSLROOTCERT`), checked by running the migrations. A mistake in the
    /// URL or an unreadable root certificate file is reported
    /// ([`JournalError::Location`]) before connecting; an unreachable
    /// server, a refused certificate or credentials, a missing database
    /// when connecting.
    pub(crate) async fn connect(url: &str) -> Result<Self, JournalError> {
        let settings = Settings::read(url, &|name| std::env::var(name).ok())?;
        let connector = tls::Connector::new(&settings)?;
        let tls = settings.describe();
        let config = settings.config;
        let host = config
            .get_hosts()
            .first()
            .map(|host| match host {
                tokio_postgres::config::Host::Tcp(name) => name.clone(),
                tokio_postgres::config::Host::Unix(path) => path.display().to_string(),
            })
            .unwrap_or_else(|| "localhost".into());
        let port = config.get_ports().first().copied().unwrap_or(5432);
        let target = format!(
            "{}@{host}:{port}/{}",
            config.get_user().unwrap_or("(default user)"),
            config.get_dbname().unwrap_or("(default database)")
        );
        let manager = Manager::from_connect(
            config,
            connector,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(8)
            .runtime(deadpool_postgres::Runtime::Tokio1)
            .create_timeout(Some(Duration::from_secs(5)))
            .wait_timeout(Some(Duration::from_secs(30)))
            .build()
            .map_err(|e| JournalError::new(e.to_string()))?;
        let database = Self {
            pool,
            target,
            tls,
            reconnect_for: RECONNECT_FOR,
        };
        // At start a refused connection is a mistake to report, not to wait for.
        let mut client = database.pool.get().await.map_err(|e| {
            let failure = Failure::Pool(e);
            let message = format!(
                "cannot connect to PostgreSQL at {} ({}): {}",
                database.target,
                database.tls,
                failure.describe()
            );
            if failure.is_connection() {
                JournalError::Unavailable(message)
            } else {
                JournalError::Backend(message)
            }
        })?;
        migrations::run(&mut client)
            .await
            .map_err(|e| database.error(Failure::Database(e)))?;
        Ok(database)
    }

    fn error(&self, failure: Failure) -> JournalError {
        if failure.is_connection() {
            JournalError::Unavailable(format!(
                "PostgreSQL at {}: {}",
                self.target,
                failure.describe()
            ))
        } else {
            JournalError::Backend(format!(
                "PostgreSQL at {}: {}",
                self.target,
                failure.describe()
            ))
        }
    }

    /// Runs `call` once on a pooled connection (waiting for one as
    /// [`Database::run`] does): for a call that cannot be repeated, such as
    /// a load that consumes its lines.
    pub(crate) async fn run_once<T, F, Fut>(&self, call: F) -> Result<T, JournalError>
    where
        F: FnOnce(Object) -> Fut,
        Fut: Future<Output = Result<T, tokio_postgres::Error>>,
    {
        let client = self.run(|client| async move { Ok(client) }).await?;
        call(client)
            .await
            .map_err(|e| self.error(Failure::Database(e)))
    }

    /// Runs `call` on a pooled connection; a lost connection is retried on a
    /// new one for up to a minute. Calls must be safe to repeat (upserts,
    /// conditional updates): a call whose answer was lost may have run.
    pub(crate) async fn run<T, F, Fut>(&self, call: F) -> Result<T, JournalError>
    where
        F: Fn(Object) -> Fut,
        Fut: Future<Output = Result<T, tokio_postgres::Error>>,
    {
        let attempt = || async {
            let client = self.pool.get().await.map_err(Failure::Pool)?;
            call(client).await.map_err(Failure::Database)
        };
        let started = tokio::time::Instant::now();
        attempt
            .retry(
                ExponentialBuilder::default()
                    .with_min_delay(Duration::from_millis(50))
                    .with_max_delay(Duration::from_secs(2))
                    .with_jitter()
                    .without_max_times(),
            )
            .when(|failure: &Failure| {
                failure.is_connection() && started.elapsed() < self.reconnect_for
            })
            .notify(|failure, delay| {
                tracing::warn!(target = %self.target, error = %failure.describe(), ?delay, "PostgreSQL unreachable; reconnecting");
            })
            .await
            .map_err(|failure| self.error(failure))
    }
}

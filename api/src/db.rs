//! PostgreSQL, where users and refresh sessions live: the pool, the embedded migrations
//! run at start, and what an error means (PostgreSQL unreachable, or our bug).

use std::time::Duration;

use sqlx::PgPool;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};

/// Connections one api keeps to PostgreSQL.
const MAX_CONNECTIONS: u32 = 16;
/// How long a query waits for a connection before it fails (and the request gets 503).
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(2);
/// The longest a statement may run on the server (PostgreSQL's `statement_timeout`).
const STATEMENT_TIMEOUT: Duration = Duration::from_secs(2);
/// The longest the api waits for PostgreSQL in one request, whatever the network does
/// (a link that drops packets answers nothing at all): then it answers 503.
pub const QUERY_TIMEOUT: Duration = Duration::from_secs(3);

/// Why PostgreSQL could not be used at start.
#[derive(Debug, thiserror::Error)]
pub enum DbStartError {
    #[error("cannot reach PostgreSQL")]
    Connect(#[source] sqlx::Error),
    #[error("PostgreSQL migration failed")]
    Migrate(#[source] sqlx::migrate::MigrateError),
}

/// Connects (a missing database or a refused connection fails here, at start) and
/// brings the schema up to date; running the migrations again changes nothing.
pub async fn connect(url: &str) -> Result<PgPool, DbStartError> {
    let options: PgConnectOptions = url.parse().map_err(DbStartError::Connect)?;
    let options = options.options([(
        "statement_timeout",
        STATEMENT_TIMEOUT.as_millis().to_string(),
    )]);
    let pool = PgPoolOptions::new()
        .max_connections(MAX_CONNECTIONS)
        .acquire_timeout(ACQUIRE_TIMEOUT)
        .connect_with(options)
        .await
        .map_err(DbStartError::Connect)?;
    migrate(&pool).await?;
    Ok(pool)
}

/// Runs the migrations embedded from `api/migrations`.
pub async fn migrate(pool: &PgPool) -> Result<(), DbStartError> {
    sqlx::migrate!("./migrations")
        .run(pool)
        .await
        .map_err(DbStartError::Migrate)
}

/// Whether a database error means PostgreSQL could not answer (a 503, retry later)
/// rather than that our query or data was wrong (a 500).
pub fn is_outage(error: &sqlx::Error) -> bool {
    matches!(
        error,
        sqlx::Error::Io(_)
            | sqlx::Error::Tls(_)
            // We never speak the wire protocol ourselves: an answer sqlx cannot parse comes
            // from a dying server or a proxy in between (a connection closed mid-handshake
            // reads as "unexpected response from SSLRequest").
            | sqlx::Error::Protocol(_)
            | sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::WorkerCrashed
    ) || matches!(error, sqlx::Error::Database(e) if e.code().is_some_and(|c| {
        // 08: connection exceptions; 53: out of resources (too many connections, disk
        // full); 57: the server is shutting down or starting, or the statement ran out
        // of time (57014, our statement_timeout).
        c.starts_with("08") || c.starts_with("53") || c.starts_with("57")
    }))
}

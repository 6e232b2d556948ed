//! The PostgreSQL server does what the journal's tests rely on: its URL
//! connects, databases are created, it survives a restart on the same port
//! (cutting the open connections), and a role's password is checked.

use tokio_postgres::NoTls;

async fn one(url: &str, sql: &str) -> Result<String, tokio_postgres::Error> {
    let (client, connection) = tokio_postgres::connect(url, NoTls).await?;
    let connection = tokio::spawn(connection);
    let row = client.query_one(sql, &[]).await?;
    drop(client);
    let _ = connection.await;
    Ok(row.get(0))
}

#[tokio::test]
async fn it_starts_creates_databases_and_restarts() {
    let Some(server) = uncensored_test_servers::postgres() else {
        return;
    };
    assert_eq!(
        server.url(),
        format!("postgres://postgres@127.0.0.1:{}/postgres", server.port())
    );
    assert_eq!(one(&server.url(), "SELECT 'up'").await.unwrap(), "up");

    let url = server.create_database("journal one");
    assert_eq!(
        one(&url, "SELECT current_database()::text").await.unwrap(),
        "journal one"
    );

    // A connection open across the restart is cut; a new one works.
    let (client, connection) = tokio_postgres::connect(&url, NoTls).await.unwrap();
    let connection = tokio::spawn(connection);
    server.restart();
    assert!(client.query_one("SELECT 1", &[]).await.is_err());
    drop(client);
    let _ = connection.await;
    assert_eq!(
        one(&url, "SELECT current_database()::text").await.unwrap(),
        "journal one",
        "the database outlives the restart"
    );

    server.stop();
    assert!(one(&server.url(), "SELECT 'up'").await.is_err());
    server.start();
    assert_eq!(one(&server.url(), "SELECT 'up'").await.unwrap(), "up");
}

#[tokio::test]
async fn a_role_logs_in_with_its_password_only() {
    let Some(server) = uncensored_test_servers::postgres() else {
        return;
    };
    let url = server.with_password("worker", "s3cret pass");
    assert_eq!(
        url,
        format!(
            "postgres://worker:s3cret%20pass@127.0.0.1:{}/postgres",
            server.port()
        )
    );
    assert_eq!(
        one(&url, "SELECT current_user::text").await.unwrap(),
        "worker"
    );
    let wrong = url.replace("s3cret%20pass", "wrong");
    let error = one(&wrong, "SELECT 1").await.unwrap_err();
    assert_eq!(
        error.code(),
        Some(&tokio_postgres::error::SqlState::INVALID_PASSWORD),
        "{error}"
    );
    let no_password = url.replace(":s3cret%20pass", "");
    assert!(one(&no_password, "SELECT 1").await.is_err());
}

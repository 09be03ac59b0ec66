//! Throw-away databases on the shared PostgreSQL server.

use tokio_postgres::NoTls;

/// `DATABASE_ADMIN_URL`, defaulting to the project-local server.
pub fn admin_url() -> String {
    std::env::var("DATABASE_ADMIN_URL")
        .unwrap_or_else(|_| common::config::local_database_url("postgres"))
}

/// A database created for one test. Dropped by [`TestDb::drop_db`]; a test
/// that panics leaves it behind for `scripts/test.sh` to sweep (all test
/// databases start with `t`).
pub struct TestDb {
    pub name: String,
    pub url: String,
    /// The server's admin URL, to drop the database again.
    admin: String,
}

impl TestDb {
    pub async fn create(name: &str) -> Self {
        Self::create_on(&admin_url(), name).await
    }

    /// Creates the database on the server of `admin` (an admin URL).
    pub async fn create_on(admin: &str, name: &str) -> Self {
        let client = connect(admin).await;
        client
            .batch_execute(&format!("CREATE DATABASE \"{name}\""))
            .await
            .unwrap_or_else(|e| panic!("cannot create database {name}: {e}"));
        // Replace the database part of the admin URL.
        let base = admin.rsplit_once('/').map(|(b, _)| b).unwrap_or(admin);
        Self {
            name: name.to_owned(),
            url: format!("{base}/{name}"),
            admin: admin.to_owned(),
        }
    }

    /// A client connected to this database.
    pub async fn client(&self) -> tokio_postgres::Client {
        connect(&self.url).await
    }

    pub async fn drop_db(self) {
        let client = connect(&self.admin).await;
        let _ = client
            .batch_execute(&format!(
                "DROP DATABASE IF EXISTS \"{}\" WITH (FORCE)",
                self.name
            ))
            .await;
    }
}

async fn connect(url: &str) -> tokio_postgres::Client {
    let (client, conn) = tokio_postgres::connect(url, NoTls)
        .await
        .unwrap_or_else(|e| {
            panic!("cannot connect to {url}: {e} (is PostgreSQL up? run scripts/infra.sh up)")
        });
    tokio::spawn(conn);
    client
}

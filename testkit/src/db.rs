//! Throw-away databases on the shared PostgreSQL server.

use tokio_postgres::NoTls;

/// `DATABASE_ADMIN_URL`, defaulting to the project-local server as
/// `postgres` with the password `scripts/infra.sh` generated.
pub fn admin_url() -> String {
    std::env::var("DATABASE_ADMIN_URL").unwrap_or_else(|_| {
        let password = crate::secrets::secret("pg-admin").unwrap_or_default();
        format!(
            "postgres://postgres:{password}@127.0.0.1:{}/postgres",
            runtime::config::LOCAL_PG_PORT
        )
    })
}

/// A database created for one test, owned by a role of the same name made
/// for it (LOGIN with a random SCRAM password, no superuser, no CREATEDB,
/// no CREATEROLE), as the installation's service roles are: [`TestDb::url`]
/// connects as that role, so every test runs the services without
/// superuser rights. Dropped, role too, by [`TestDb::drop_db`]; a test that
/// panics leaves them behind for `scripts/test.sh` to sweep (all test
/// databases and roles start with `t`).
pub struct TestDb {
    pub name: String,
    /// As the database's owner role.
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
        let password = uuid::Uuid::new_v4().simple().to_string();
        // One statement each: CREATE DATABASE cannot run in a transaction.
        for sql in [
            format!(
                "CREATE ROLE \"{name}\" LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE \
                 PASSWORD '{password}'"
            ),
            format!("CREATE DATABASE \"{name}\" OWNER \"{name}\""),
            format!("REVOKE ALL ON DATABASE \"{name}\" FROM PUBLIC"),
        ] {
            client
                .batch_execute(&sql)
                .await
                .unwrap_or_else(|e| panic!("cannot create role and database {name}: {e:?}"));
        }
        Self {
            name: name.to_owned(),
            url: as_role(admin, name, &password),
            admin: admin.to_owned(),
        }
    }

    /// A client connected to this database.
    pub async fn client(&self) -> tokio_postgres::Client {
        connect(&self.url).await
    }

    pub async fn drop_db(self) {
        let client = connect(&self.admin).await;
        for sql in [
            format!("DROP DATABASE IF EXISTS \"{}\" WITH (FORCE)", self.name),
            format!("DROP ROLE IF EXISTS \"{}\"", self.name),
        ] {
            let _ = client.batch_execute(&sql).await;
        }
    }
}

/// The admin URL with user, password and database replaced:
/// `postgres://postgres:pw@h:5432/postgres?x` becomes
/// `postgres://{role}:{password}@h:5432/{role}?x` (role and database share the name).
fn as_role(admin: &str, role: &str, password: &str) -> String {
    let mut url = url::Url::parse(admin)
        .unwrap_or_else(|e| panic!("DATABASE_ADMIN_URL {admin:?} is not a URL: {e}"));
    url.set_username(role).expect("a URL with a host");
    url.set_password(Some(password)).expect("a URL with a host");
    url.set_path(role);
    url.to_string()
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

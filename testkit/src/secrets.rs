//! The installation's generated credentials (`scripts/infra.sh` writes them
//! to `.local/secrets/`, mode 600): the NATS users' passwords, which the
//! services get as `NATS_USER`/`NATS_PASSWORD` and tests use to connect.
//! PostgreSQL needs none of them here: [`crate::TestDb`] makes a role per
//! test database with the admin connection.

use std::path::PathBuf;

use runtime::config::NatsAuth;

/// `CHECKOUT_SECRETS_DIR` (scripts/test.sh exports it), else the
/// workspace's `.local/secrets`.
pub fn secrets_dir() -> PathBuf {
    std::env::var_os("CHECKOUT_SECRETS_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| crate::workspace_root().join(".local/secrets"))
}

/// The generated secret `name` (a file in [`secrets_dir`]), if there is one.
pub fn secret(name: &str) -> Option<String> {
    let text = std::fs::read_to_string(secrets_dir().join(name)).ok()?;
    let value = text.trim();
    (!value.is_empty()).then(|| value.to_owned())
}

/// The password of NATS user `user` (`nats/auth.conf`), if this
/// installation generated one; `None` means a nats-server without
/// authentication (then everyone connects anonymously).
pub fn nats_password(user: &str) -> Option<String> {
    secret(&format!("nats-{user}"))
}

/// `user` with its password, when there is one.
pub fn nats_auth(user: &str) -> Option<NatsAuth> {
    nats_password(user).map(|password| NatsAuth {
        user: user.to_owned(),
        password,
    })
}

/// The environment nats-server needs for `nats/auth.conf`
/// (`NATS_<USER>_PASSWORD` of every user); panics when a password is
/// missing, as nats-server would refuse the configuration.
pub fn nats_server_env() -> Vec<(String, String)> {
    ["admin", "api", "order", "stock", "payment"]
        .into_iter()
        .map(|user| {
            let password = nats_password(user).unwrap_or_else(|| {
                panic!(
                    "no NATS password for {user} in {} (scripts/infra.sh up generates them)",
                    secrets_dir().display()
                )
            });
            (format!("NATS_{}_PASSWORD", user.to_uppercase()), password)
        })
        .collect()
}

/// A client connected to the servers of `url` as `admin` (everything
/// allowed: tests look behind the services' backs and clean up streams).
pub async fn nats_admin(url: &str) -> async_nats::Client {
    nats_as(url, nats_auth("admin").as_ref()).await
}

/// A client connected to the servers of `url` as `auth` (anonymous when
/// `None`); panics when the server refuses.
pub async fn nats_as(url: &str, auth: Option<&NatsAuth>) -> async_nats::Client {
    try_nats_as(url, auth)
        .await
        .unwrap_or_else(|e| panic!("cannot connect to NATS at {url}: {e}"))
}

/// Like [`nats_as`], returning the refusal.
pub async fn try_nats_as(
    url: &str,
    auth: Option<&NatsAuth>,
) -> Result<async_nats::Client, async_nats::ConnectError> {
    let addrs = runtime::nats::server_addrs(url).expect("a valid NATS URL");
    let mut options = async_nats::ConnectOptions::new();
    if let Some(auth) = auth {
        options = options.user_and_password(auth.user.clone(), auth.password.clone());
        if auth.user != "admin" {
            options = options.custom_inbox_prefix(format!("_INBOX_{}", auth.user));
        }
    }
    options.connect(addrs).await
}

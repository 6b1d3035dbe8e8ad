//! How to reach a PostgreSQL server: the connection options of pitr-backup and pitr-monitor,
//! resolved as libpq resolves them (the option, else `PGHOST`, `PGPORT`, `PGUSER`,
//! `PGDATABASE`, `PGPASSWORD`, else libpq's defaults), and connecting (feature `pgclient`: the
//! `postgres` crate, no TLS, the runbook's trusted network, no psql or libpq needed; pitr-restore
//! uses it only to ask a server for a setting its files do not tell). What a session asks is
//! the binary's.

use crate::exit::{self, Failure};

/// How long connecting may take before it is an error.
#[cfg(feature = "pgclient")]
pub const CONNECT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// PostgreSQL's SQLSTATE `cannot_connect_now`: starting up, shutting down, or a standby with
/// `hot_standby = off` ("the database system is not accepting connections").
const CANNOT_CONNECT_NOW: &str = "57P03";

/// Where the server is and who we are there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Connection {
    /// Host name, address or Unix socket directory (starting with `/`).
    pub host: String,
    /// Port.
    pub port: u16,
    /// Database user.
    pub user: String,
    /// Database.
    pub dbname: String,
    /// Password, from `$PGPASSWORD` (never from the command line).
    pub password: Option<String>,
}

fn env_nonempty(key: &str) -> Option<String> {
    std::env::var(key).ok().filter(|v| !v.is_empty())
}

impl Connection {
    /// The options given, else the libpq environment variables, else the defaults. A `$PGPORT`
    /// that is not a port number is a usage error.
    pub fn from_options(
        host: Option<String>,
        port: Option<u16>,
        username: Option<String>,
        database: Option<String>,
    ) -> Result<Connection, Failure> {
        let port = match port {
            Some(p) => p,
            None => match env_nonempty("PGPORT") {
                Some(p) => p.parse().map_err(|_| {
                    Failure::new(format!("$PGPORT {p:?} is not a port number"))
                        .hint("fix PGPORT or give --port")
                        .status(exit::USAGE)
                })?,
                None => 5432,
            },
        };
        Ok(Connection {
            host: host
                .or_else(|| env_nonempty("PGHOST"))
                .unwrap_or_else(|| "/var/run/postgresql".to_string()),
            port,
            user: username
                .or_else(|| env_nonempty("PGUSER"))
                .or_else(|| env_nonempty("USER"))
                .or_else(|| env_nonempty("LOGNAME"))
                .unwrap_or_else(|| "postgres".to_string()),
            dbname: database
                .or_else(|| env_nonempty("PGDATABASE"))
                .unwrap_or_else(|| "postgres".to_string()),
            password: env_nonempty("PGPASSWORD"),
        })
    }

    /// `HOST:port P as user U (database D)`, or `SOCKETDIR port P …`, for messages.
    pub fn describe(&self) -> String {
        format!(
            "{}{}port {} as user {} (database {})",
            self.host,
            if self.host.starts_with('/') { " " } else { ":" },
            self.port,
            self.user,
            self.dbname
        )
    }

    /// The error of a failed connection, with the HINT its cause calls for. `message` is the
    /// server's or the client's text, `sqlstate` the server's error code if it sent one.
    pub fn connect_failure(&self, message: &str, sqlstate: Option<&str>) -> Failure {
        let failure = Failure::new(format!(
            "cannot connect to the database server at {}: {message}",
            self.describe()
        ));
        if sqlstate == Some(CANNOT_CONNECT_NOW) {
            failure.hint(
                "the server is starting up or shutting down, or it is a standby with \
                 hot_standby = off: a standby is backed up and checked over a connection, so set \
                 hot_standby = on in its postgresql.conf and restart it (or back up the primary)",
            )
        } else {
            failure.hint(
                "check that the server runs and --host/--port/--username/--database \
                 (or PGHOST, PGPORT, PGUSER, PGDATABASE, PGPASSWORD) point at it",
            )
        }
    }

    /// Opens a session named `application` (its `application_name`).
    #[cfg(feature = "pgclient")]
    pub fn connect(&self, application: &str) -> anyhow::Result<postgres::Client> {
        let mut config = postgres::Config::new();
        config
            .host(&self.host)
            .port(self.port)
            .user(&self.user)
            .dbname(&self.dbname)
            .application_name(application)
            .connect_timeout(CONNECT_TIMEOUT);
        if let Some(p) = &self.password {
            config.password(p);
        }
        config.connect(postgres::NoTls).map_err(|e| {
            let code = e.as_db_error().map(|db| db.code().code().to_string());
            self.connect_failure(&message(&e), code.as_deref()).into()
        })
    }
}

/// A database error's message (PostgreSQL's own text, with its severity), or the client error.
#[cfg(feature = "pgclient")]
pub fn message(e: &postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => format!("{}: {}", db.severity(), db.message()),
        None => e.to_string(),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// Options for a server on socket directory `/run/postgresql`, port 5433.
    fn socket_5433() -> Connection {
        Connection::from_options(
            Some("/run/postgresql".into()),
            Some(5433),
            Some("u".into()),
            Some("d".into()),
        )
        .unwrap()
    }

    #[test]
    fn a_standby_without_hot_standby_gets_a_hint_naming_it() {
        let c = socket_5433();
        let f = c.connect_failure(
            "FATAL: the database system is not accepting connections",
            Some("57P03"),
        );
        assert_eq!(
            f.to_string(),
            "cannot connect to the database server at /run/postgresql port 5433 as user u \
             (database d): FATAL: the database system is not accepting connections"
        );
        assert!(f.hint_text().unwrap().contains("hot_standby = on"));
        let f = c.connect_failure("connection refused", None);
        assert!(f
            .hint_text()
            .unwrap()
            .starts_with("check that the server runs"));
    }

    #[test]
    fn given_options_win_and_describe_names_the_socket_or_host() {
        let c = socket_5433();
        assert_eq!(
            c.describe(),
            "/run/postgresql port 5433 as user u (database d)"
        );
        let c = Connection {
            host: "db1".into(),
            ..c
        };
        assert_eq!(c.describe(), "db1:port 5433 as user u (database d)");
    }
}

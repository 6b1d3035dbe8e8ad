//! How to reach a PostgreSQL server: the connection options of pitr-backup and pitr-monitor,
//! resolved as libpq resolves them (the option, else `PGHOST`, `PGPORT`, `PGUSER`,
//! `PGDATABASE`, `PGPASSWORD`, else libpq's defaults). The session itself is the binary's: only
//! those two link a PostgreSQL client.

use crate::exit::{self, Failure};

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
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn given_options_win_and_describe_names_the_socket_or_host() {
        let c = Connection::from_options(
            Some("/run/postgresql".into()),
            Some(5433),
            Some("u".into()),
            Some("d".into()),
        )
        .unwrap();
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

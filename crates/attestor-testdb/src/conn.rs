//! Connection parameters and URLs.
//!
//! Owns the one place where connection URLs are rendered, for both the
//! private unix-socket clusters (`postgresql://user@/db?host=/dir&port=N`,
//! understood by libpq and tokio-postgres) and TCP servers named by
//! `DATABASE_URL`. It never opens a connection itself.

use std::path::Path;

use url::Url;

use crate::{Error, Result};

/// Where and as whom to connect.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnParams {
    /// A host name, or the directory holding the server's unix socket.
    pub host: String,
    /// TCP port, or the number in the socket file's name.
    pub port: u16,
    /// Role to log in as.
    pub user: String,
    /// Password, if the server wants one.
    pub password: Option<String>,
    /// Database name.
    pub database: String,
    /// Extra query parameters kept from `DATABASE_URL` (e.g. `sslmode`).
    pub options: Vec<(String, String)>,
}

const QUERY: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

fn enc(s: &str) -> String {
    percent_encoding::utf8_percent_encode(s, QUERY).to_string()
}

impl ConnParams {
    /// Parameters for a server listening on a unix socket in `dir`.
    pub fn unix_socket(dir: &Path, port: u16, user: &str, database: &str) -> Self {
        ConnParams {
            host: dir.display().to_string(),
            port,
            user: user.to_owned(),
            password: None,
            database: database.to_owned(),
            options: Vec::new(),
        }
    }

    /// Parse a `postgres://` or `postgresql://` URL (e.g. `DATABASE_URL`).
    pub fn parse(url: &str) -> Result<Self> {
        // `user@/db` (unix socket named in the query) has an empty host,
        // which URL parsers refuse; give it a placeholder that `host=` replaces.
        let patched;
        let url = match url.split_once("@/") {
            Some((head, tail)) if !head.contains('/') || head.ends_with(':') || head.contains("://") => {
                patched = format!("{head}@localhost/{tail}");
                patched.as_str()
            }
            _ => url,
        };
        let parsed = Url::parse(url).map_err(|e| Error::BadUrl(format!("{e}")))?;
        if !matches!(parsed.scheme(), "postgres" | "postgresql") {
            return Err(Error::BadUrl(format!(
                "scheme must be postgres:// or postgresql://, got {}://",
                parsed.scheme()
            )));
        }
        let decode = |s: &str| {
            percent_encoding::percent_decode_str(s)
                .decode_utf8_lossy()
                .into_owned()
        };
        let mut params = ConnParams {
            host: parsed.host_str().map(decode).unwrap_or_default(),
            port: parsed.port().unwrap_or(5432),
            user: decode(parsed.username()),
            password: parsed.password().map(decode),
            database: decode(parsed.path().trim_start_matches('/')),
            options: Vec::new(),
        };
        for (k, v) in parsed.query_pairs() {
            match k.as_ref() {
                "host" => params.host = v.into_owned(),
                "port" => params.port = v.parse().map_err(|_| Error::BadUrl(format!("bad port {v}")))?,
                "user" => params.user = v.into_owned(),
                "password" => params.password = Some(v.into_owned()),
                "dbname" => params.database = v.into_owned(),
                _ => params.options.push((k.into_owned(), v.into_owned())),
            }
        }
        if params.host.is_empty() {
            params.host = "localhost".into();
        }
        if params.user.is_empty() {
            params.user = "postgres".into();
        }
        if params.database.is_empty() {
            params.database = params.user.clone();
        }
        Ok(params)
    }

    /// Whether `host` names a unix-socket directory.
    pub fn is_unix_socket(&self) -> bool {
        self.host.starts_with('/')
    }

    /// The same server and credentials, another database.
    pub fn with_database(&self, database: &str) -> Self {
        ConnParams {
            database: database.to_owned(),
            ..self.clone()
        }
    }

    /// The same server and database, another role (and its password).
    pub fn with_user(&self, user: &str, password: Option<&str>) -> Self {
        ConnParams {
            user: user.to_owned(),
            password: password.map(str::to_owned),
            ..self.clone()
        }
    }

    /// Render as a `postgresql://` URL.
    pub fn url(&self) -> String {
        let auth = match &self.password {
            Some(p) => format!("{}:{}@", enc(&self.user), enc(p)),
            None => format!("{}@", enc(&self.user)),
        };
        let mut query: Vec<String> = Vec::new();
        let host = if self.is_unix_socket() {
            query.push(format!("host={}", enc(&self.host)));
            query.push(format!("port={}", self.port));
            String::new()
        } else {
            let h = if self.host.contains(':') {
                format!("[{}]", self.host)
            } else {
                self.host.clone()
            };
            format!("{h}:{}", self.port)
        };
        query.extend(self.options.iter().map(|(k, v)| format!("{}={}", enc(k), enc(v))));
        let mut url = format!("postgresql://{auth}{host}/{}", enc(&self.database));
        if !query.is_empty() {
            url.push('?');
            url.push_str(&query.join("&"));
        }
        url
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unix_socket_url_round_trips() {
        let p = ConnParams::unix_socket(Path::new("/tmp/a b"), 5432, "attestor_app", "t1");
        let url = p.url();
        assert_eq!(url, "postgresql://attestor_app@/t1?host=%2Ftmp%2Fa%20b&port=5432");
        assert_eq!(ConnParams::parse(&url).unwrap(), p);
    }

    #[test]
    fn tcp_url_keeps_options_and_password() {
        let p = ConnParams::parse("postgres://u:p%40ss@db.example:6543/app?sslmode=require").unwrap();
        assert_eq!(p.host, "db.example");
        assert_eq!(p.port, 6543);
        assert_eq!(p.password.as_deref(), Some("p@ss"));
        assert_eq!(
            p.with_database("x").url(),
            "postgresql://u:p%40ss@db.example:6543/x?sslmode=require"
        );
    }

    #[test]
    fn rejects_other_schemes() {
        assert!(matches!(ConnParams::parse("mysql://x/y"), Err(Error::BadUrl(_))));
    }
}

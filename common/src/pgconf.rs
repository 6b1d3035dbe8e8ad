//! PostgreSQL configuration files, read the way the server reads them: one `name = value` per
//! line (the `=` optional), `#` comments, values quoted with `'` (`''` inside), and the
//! `include`, `include_if_exists` and `include_dir` directives followed (relative names are
//! relative to the including file's directory). `postgresql.auto.conf` is read after
//! `postgresql.conf`, and a later setting wins, as in the server.
//!
//! pitr reads only what it must know without a connection (is `recovery_prefetch` off for a
//! warm spare?), and writes nothing here: the recovery settings of `--from-backup` are
//! rendered by pitr-restore.

use std::path::{Path, PathBuf};

/// The parameter a configuration line sets, lower case, if it sets one.
pub fn parameter_of(line: &str) -> Option<String> {
    let t = line.trim_start();
    let end = t
        .find(|c: char| c.is_whitespace() || c == '=')
        .unwrap_or(t.len());
    let name = &t[..end];
    let plain = !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'.');
    plain.then(|| name.to_ascii_lowercase())
}

/// Splits one line into its parameter (lower case) and its value (unquoted), if it sets one.
pub fn parse_line(line: &str) -> Option<(String, String)> {
    let name = parameter_of(line)?;
    let t = line.trim_start();
    let rest = t[name.len()..].trim_start();
    let rest = rest.strip_prefix('=').unwrap_or(rest).trim_start();
    let value = if let Some(q) = rest.strip_prefix('\'') {
        let mut v = String::new();
        let mut chars = q.chars().peekable();
        while let Some(c) = chars.next() {
            match c {
                '\'' if chars.peek() == Some(&'\'') => {
                    chars.next();
                    v.push('\'');
                }
                '\'' => break,
                '\\' => {
                    if let Some(n) = chars.next() {
                        v.push(n);
                    }
                }
                c => v.push(c),
            }
        }
        v
    } else {
        rest.split('#').next().unwrap_or("").trim().to_string()
    };
    Some((name, value))
}

/// The last value of `parameter` in `file` and the files it includes; nesting is bounded as
/// in the server (depth 10). Unreadable files are skipped: the answer is a best guess for a
/// warning, never for a decision about data.
fn find_in(file: &Path, parameter: &str, depth: u32, found: &mut Option<String>) {
    if depth > 10 {
        return;
    }
    let Ok(text) = std::fs::read_to_string(file) else {
        return;
    };
    let dir = file.parent().map(Path::to_path_buf).unwrap_or_default();
    let resolve = |v: &str| -> PathBuf {
        let p = Path::new(v);
        if p.is_absolute() {
            p.to_path_buf()
        } else {
            dir.join(p)
        }
    };
    for line in text.lines() {
        let Some((name, value)) = parse_line(line) else {
            continue;
        };
        match name.as_str() {
            "include" | "include_if_exists" => {
                find_in(&resolve(&value), parameter, depth + 1, found);
            }
            "include_dir" => {
                let d = resolve(&value);
                let mut files: Vec<PathBuf> = std::fs::read_dir(&d)
                    .map(|rd| {
                        rd.filter_map(Result::ok)
                            .map(|e| e.path())
                            .filter(|p| {
                                p.extension().is_some_and(|e| e == "conf")
                                    && !p
                                        .file_name()
                                        .is_some_and(|n| n.to_string_lossy().starts_with('.'))
                            })
                            .collect()
                    })
                    .unwrap_or_default();
                files.sort();
                for f in files {
                    find_in(&f, parameter, depth + 1, found);
                }
            }
            n if n == parameter => *found = Some(value),
            _ => {}
        }
    }
}

/// The value of `parameter` the server of `data_dir` would read from `config_file` (its
/// `postgresql.conf`, by default the one in the data directory) and then the data directory's
/// `postgresql.auto.conf`, or `None` when neither sets it.
pub fn setting(data_dir: &Path, config_file: Option<&Path>, parameter: &str) -> Option<String> {
    let mut found = None;
    let main = config_file.map_or_else(
        || data_dir.join(crate::pg::POSTGRESQL_CONF),
        Path::to_path_buf,
    );
    find_in(&main, parameter, 0, &mut found);
    find_in(
        &data_dir.join(crate::pg::POSTGRESQL_AUTO_CONF),
        parameter,
        0,
        &mut found,
    );
    found
}

/// The configuration file the server of `data_dir` was started with, when its command line in
/// `postmaster.opts` names one (`-c config_file=…` or `--config-file=…`, as Debian's
/// `pg_ctlcluster` starts it with `/etc/postgresql/…`).
pub fn started_config_file(data_dir: &Path) -> Option<PathBuf> {
    let text = std::fs::read_to_string(data_dir.join(crate::pg::POSTMASTER_OPTS)).ok()?;
    let args: Vec<&str> = text
        .split('"')
        .enumerate()
        .filter(|(i, _)| i % 2 == 1)
        .map(|(_, a)| a)
        .collect();
    args.iter().find_map(|a| {
        a.strip_prefix("config_file=")
            .or_else(|| a.strip_prefix("--config-file="))
            .or_else(|| a.strip_prefix("--config_file="))
            .map(PathBuf::from)
    })
}

/// Is this boolean setting value off, as the server reads it (`off`, `false`, `no`, `0` and
/// their unique prefixes from two letters)?
pub fn is_off(value: &str) -> bool {
    let v = value.trim().to_ascii_lowercase();
    matches!(
        v.as_str(),
        "off" | "of" | "false" | "f" | "fa" | "fal" | "fals" | "no" | "n" | "0"
    )
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn lines() {
        assert_eq!(
            parse_line("recovery_prefetch = 'off' # x"),
            Some(("recovery_prefetch".into(), "off".into()))
        );
        assert_eq!(
            parse_line("  Recovery_Prefetch off"),
            Some(("recovery_prefetch".into(), "off".into()))
        );
        assert_eq!(
            parse_line("restore_command='a ''b'' %f'"),
            Some(("restore_command".into(), "a 'b' %f".into()))
        );
        assert_eq!(parse_line("# recovery_prefetch = off"), None);
        assert_eq!(parse_line(""), None);
        assert!(is_off("OFF") && is_off("false") && is_off("0") && !is_off("try"));
    }

    #[test]
    fn config_file_from_the_servers_command_line() {
        let d = tempfile::tempdir().unwrap();
        assert_eq!(started_config_file(d.path()), None);
        std::fs::write(
            d.path().join("postmaster.opts"),
            "/usr/lib/postgresql/15/bin/postgres \"-D\" \"/var/lib/postgresql/15/main\" \"-c\" \"config_file=/etc/postgresql/15/main/postgresql.conf\"\n",
        )
        .unwrap();
        assert_eq!(
            started_config_file(d.path()),
            Some(PathBuf::from("/etc/postgresql/15/main/postgresql.conf"))
        );
    }

    #[test]
    fn follows_includes_and_auto_conf_wins() {
        let d = tempfile::tempdir().unwrap();
        let etc = d.path().join("etc");
        std::fs::create_dir_all(etc.join("conf.d")).unwrap();
        std::fs::write(
            etc.join("postgresql.conf"),
            "recovery_prefetch = on\ninclude_dir 'conf.d'\ninclude_if_exists = 'missing.conf'\n",
        )
        .unwrap();
        std::fs::write(
            etc.join("conf.d/10-standby.conf"),
            "recovery_prefetch = off\n",
        )
        .unwrap();
        let data = d.path().join("data");
        std::fs::create_dir_all(&data).unwrap();
        let conf = etc.join("postgresql.conf");
        assert_eq!(
            setting(&data, Some(&conf), "recovery_prefetch").as_deref(),
            Some("off")
        );
        std::fs::write(
            data.join("postgresql.auto.conf"),
            "recovery_prefetch = 'try'\n",
        )
        .unwrap();
        assert_eq!(
            setting(&data, Some(&conf), "recovery_prefetch").as_deref(),
            Some("try")
        );
        assert_eq!(
            setting(&data, None, "recovery_prefetch").as_deref(),
            Some("try")
        );
        assert_eq!(setting(&data, None, "work_mem"), None);
    }
}

//! PostgreSQL configuration files, read the way the server reads them: one `name = value` per
//! line (the `=` optional), `#` comments, values quoted with `'` (`''` inside), and the
//! `include`, `include_if_exists` and `include_dir` directives followed (relative names are
//! relative to the including file's directory). `postgresql.auto.conf` is read after
//! `postgresql.conf`, and a later setting wins, as in the server.
//!
//! pitr reads only what it must know without a connection (is `recovery_prefetch` off for a
//! warm spare? which files does a restored `postgresql.conf` include?), and writes nothing
//! here: the recovery settings of `--from-backup` are rendered by pitr-restore.

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
/// in the server (depth 10). A file that cannot be read is noted in `unreadable` (the first
/// one), except an `include_if_exists` that does not exist, which the server skips too.
fn find_in(file: &Path, parameter: &str, depth: u32, walk: &mut Walk) {
    visit(file, depth, &mut |event| match event {
        Visit::Line(name, value) if name == parameter => walk.found = Some(value.to_string()),
        Visit::Line(..) | Visit::File(_) => {}
        Visit::Unreadable(p) => {
            walk.unreadable.get_or_insert_with(|| p.to_path_buf());
        }
    });
}

/// `file` and every file it includes, in the order the server reads them (each once: a file
/// included twice is listed at its first reading). Files that cannot be read are left out.
pub fn included_files(file: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = Vec::new();
    visit(file, 0, &mut |event| {
        if let Visit::File(p) = event {
            if !files.iter().any(|f| f == p) {
                files.push(p.to_path_buf());
            }
        }
    });
    files
}

/// What [`visit`] meets on its way through configuration files.
enum Visit<'a> {
    /// A file it read (before its lines).
    File(&'a Path),
    /// A setting: the parameter (lower case) and its value.
    Line(&'a str, &'a str),
    /// A file or directory it could not read.
    Unreadable(&'a Path),
}

/// Reads `file` as the server does, following its includes (nesting bounded as in the
/// server, depth 10; an `include_if_exists` that does not exist skipped), and tells `f` each
/// file, setting and unreadable file on the way, in order.
fn visit(file: &Path, depth: u32, f: &mut dyn FnMut(Visit<'_>)) {
    if depth > 10 {
        return;
    }
    let Ok(text) = std::fs::read_to_string(file) else {
        f(Visit::Unreadable(file));
        return;
    };
    f(Visit::File(file));
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
            "include" => visit(&resolve(&value), depth + 1, f),
            "include_if_exists" => {
                let p = resolve(&value);
                if p.exists() {
                    visit(&p, depth + 1, f);
                }
            }
            "include_dir" => {
                let d = resolve(&value);
                let mut files: Vec<PathBuf> = match std::fs::read_dir(&d) {
                    Ok(rd) => rd
                        .filter_map(Result::ok)
                        .map(|e| e.path())
                        .filter(|p| {
                            p.extension().is_some_and(|e| e == "conf")
                                && !p
                                    .file_name()
                                    .is_some_and(|n| n.to_string_lossy().starts_with('.'))
                        })
                        .collect(),
                    Err(_) => {
                        f(Visit::Unreadable(&d));
                        continue;
                    }
                };
                files.sort();
                for file in files {
                    visit(&file, depth + 1, f);
                }
            }
            _ => f(Visit::Line(&name, &value)),
        }
    }
}

/// What a walk through configuration files found.
#[derive(Default)]
struct Walk {
    found: Option<String>,
    unreadable: Option<PathBuf>,
}

/// The value of `parameter` the server of `data_dir` would read from `config_file` (its
/// `postgresql.conf`, by default the one in the data directory) and then the data directory's
/// `postgresql.auto.conf`, or `None` when neither sets it. Files that cannot be read are
/// skipped: a best guess, for a warning about a restored copy, never for a decision about data.
pub fn setting(data_dir: &Path, config_file: Option<&Path>, parameter: &str) -> Option<String> {
    walk(data_dir, config_file, parameter).found
}

fn walk(data_dir: &Path, config_file: Option<&Path>, parameter: &str) -> Walk {
    let mut walk = Walk::default();
    let main = config_file.map_or_else(
        || data_dir.join(crate::pg::POSTGRESQL_CONF),
        Path::to_path_buf,
    );
    find_in(&main, parameter, 0, &mut walk);
    let auto = data_dir.join(crate::pg::POSTGRESQL_AUTO_CONF);
    if auto.exists() {
        let mut from_auto = Walk::default();
        find_in(&auto, parameter, 0, &mut from_auto);
        if from_auto.found.is_some() {
            // postgresql.auto.conf is read last: what it sets wins whatever came before.
            return from_auto;
        }
        walk.unreadable = walk.unreadable.or(from_auto.unreadable);
    }
    walk
}

/// What the configuration of a server says of one parameter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lookup {
    /// Set to this value: on the server's command line, or last in the files it reads.
    Set(String),
    /// Set nowhere: the server runs with the default.
    Default,
    /// A file the server reads cannot be read here, so the value cannot be told from files.
    Unreadable(PathBuf),
}

/// The value of `parameter` for the server of `data_dir`, as the server decides it: its command
/// line in `postmaster.opts` (`-c name=value`, `--name=value`) wins; else the last value in its
/// configuration file (the one it was started with, includes followed) and then
/// `postgresql.auto.conf`.
pub fn lookup(data_dir: &Path, parameter: &str) -> Lookup {
    if let Some(value) = command_line_setting(data_dir, parameter) {
        return Lookup::Set(value);
    }
    let config = started_config_file(data_dir);
    let walk = walk(data_dir, config.as_deref(), parameter);
    match (walk.found, walk.unreadable) {
        (_, Some(path)) => Lookup::Unreadable(path),
        (Some(value), None) => Lookup::Set(value),
        (None, None) => Lookup::Default,
    }
}

/// The arguments of the server's command line as `postmaster.opts` records them (each in
/// double quotes after the program), or `None` when there is no such file.
fn server_args(data_dir: &Path) -> Option<Vec<String>> {
    let text = std::fs::read_to_string(data_dir.join(crate::pg::POSTMASTER_OPTS)).ok()?;
    Some(
        text.split('"')
            .enumerate()
            .filter(|(i, _)| i % 2 == 1)
            .map(|(_, a)| a.to_owned())
            .collect(),
    )
}

/// `name=value` settings on the server's command line: `-c name=value`, `-cname=value` and
/// `--name=value` (dashes in the name read as underscores), in order.
fn command_line_settings(data_dir: &Path) -> Vec<(String, String)> {
    let Some(args) = server_args(data_dir) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    let mut iter = args.iter();
    while let Some(arg) = iter.next() {
        let assignment = if arg == "-c" {
            iter.next().map(String::as_str)
        } else if let Some(rest) = arg.strip_prefix("--") {
            Some(rest)
        } else {
            arg.strip_prefix("-c")
        };
        if let Some((name, value)) = assignment.and_then(|a| a.split_once('=')) {
            out.push((
                name.to_ascii_lowercase().replace('-', "_"),
                value.to_owned(),
            ));
        }
    }
    out
}

/// The last value the server's command line gives `parameter`.
fn command_line_setting(data_dir: &Path, parameter: &str) -> Option<String> {
    command_line_settings(data_dir)
        .into_iter()
        .rev()
        .find(|(name, _)| name == parameter)
        .map(|(_, value)| value)
}

/// The configuration file the server of `data_dir` was started with, when its command line in
/// `postmaster.opts` names one (`-c config_file=…` or `--config-file=…`, as Debian's
/// `pg_ctlcluster` starts it with `/etc/postgresql/…`).
pub fn started_config_file(data_dir: &Path) -> Option<PathBuf> {
    command_line_setting(data_dir, "config_file").map(PathBuf::from)
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
        assert_eq!(
            included_files(&conf),
            [conf.clone(), etc.join("conf.d/10-standby.conf")]
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

    #[test]
    fn lookup_puts_the_command_line_first_and_tells_what_it_cannot_read() {
        let d = tempfile::tempdir().unwrap();
        let data = d.path().join("data");
        std::fs::create_dir_all(&data).unwrap();
        // No postgresql.conf where the server would read it: the value cannot be told.
        assert_eq!(
            lookup(&data, "recovery_prefetch"),
            Lookup::Unreadable(data.join("postgresql.conf"))
        );
        std::fs::write(data.join("postgresql.conf"), "include 'gone.conf'\n").unwrap();
        assert_eq!(
            lookup(&data, "recovery_prefetch"),
            Lookup::Unreadable(data.join("gone.conf"))
        );
        std::fs::write(
            data.join("postgresql.conf"),
            "include_if_exists 'gone.conf'\n",
        )
        .unwrap();
        assert_eq!(lookup(&data, "recovery_prefetch"), Lookup::Default);
        // A config file elsewhere, named on the command line, and a setting there too.
        let etc = d.path().join("etc.conf");
        std::fs::write(&etc, "recovery_prefetch = on\n").unwrap();
        let opts = |args: &str| {
            std::fs::write(
                data.join("postmaster.opts"),
                format!("/usr/lib/postgresql/15/bin/postgres \"-D\" \"/data\" {args}\n"),
            )
            .unwrap()
        };
        opts(&format!("\"-c\" \"config_file={}\"", etc.display()));
        assert_eq!(lookup(&data, "recovery_prefetch"), Lookup::Set("on".into()));
        opts(&format!(
            "\"--config-file={}\" \"-c\" \"recovery_prefetch=off\"",
            etc.display()
        ));
        assert_eq!(
            lookup(&data, "recovery_prefetch"),
            Lookup::Set("off".into())
        );
        opts("\"--recovery-prefetch=try\" \"-c\" \"config_file=/nowhere.conf\"");
        assert_eq!(
            lookup(&data, "recovery_prefetch"),
            Lookup::Set("try".into())
        );
        // postgresql.auto.conf wins over an unreadable main file.
        opts("\"-c\" \"config_file=/nowhere.conf\"");
        assert_eq!(
            lookup(&data, "recovery_prefetch"),
            Lookup::Unreadable(PathBuf::from("/nowhere.conf"))
        );
        std::fs::write(
            data.join("postgresql.auto.conf"),
            "recovery_prefetch = 'off'\n",
        )
        .unwrap();
        assert_eq!(
            lookup(&data, "recovery_prefetch"),
            Lookup::Set("off".into())
        );
    }
}

//! Configuration files (`--config-file FILE`, also spelled `--config` and `--cfg`), as OmniPITR
//! reads them.
//!
//! A configuration file holds one option per line: `--verbose`, `--dst-local gzip=/x` or
//! `--dst-local=gzip=/x`. The value runs to the end of the line with trailing whitespace
//! stripped and needs no quoting; empty lines and lines starting with `#` are ignored. The
//! options of a file are inserted into the argument list where `--config-file` appeared, so
//! that options after it on the command line add to them (an option that may be given only
//! once is a usage error when both give it). One-dash spellings (`-config-file`) name a file
//! too, as OmniPITR's option parser took them. [`parse`] is
//! the pure parser of a file's text, [`read`] the I/O around it, [`expand`] the in-place
//! expansion and [`split_equals`] the `--opt=value` splitting the command line gets too.

use std::path::{Path, PathBuf};

/// The spellings of the option that names a configuration file.
pub const OPTION_NAMES: [&str; 3] = ["--config-file", "--config", "--cfg"];

/// Whether `arg` names a configuration file: one of [`OPTION_NAMES`], or the same with one dash
/// (`-config-file`), as OmniPITR's option parser took long names.
fn is_option_name(arg: &str) -> bool {
    OPTION_NAMES.contains(&arg)
        || (!arg.starts_with("--") && OPTION_NAMES.contains(&format!("-{arg}").as_str()))
}

/// How deep configuration files may include one another before we assume a loop.
const MAX_DEPTH: usize = 8;

/// A line of a configuration file that is not an option (the text carries no path; [`read`]
/// adds it). The line itself is never shown: a configuration file may hold credentials (an
/// `aws_secret_access_key = ...` line written where an option was meant), and the message goes
/// to stderr, which PostgreSQL copies into its log.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line} is not an option (it does not start with -; its text is not shown)")]
pub struct ParseError {
    /// The line number, from 1.
    pub line: usize,
}

/// A configuration file that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The file could not be read.
    #[error("cannot read config file {}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The file is not valid UTF-8.
    #[error("cannot parse config file {}: it is not valid UTF-8", path.display())]
    NotUtf8 {
        /// The file.
        path: PathBuf,
    },
    /// A line is not an option (its text is not shown: see [`ParseError`]).
    #[error("cannot parse line {line} of config file {}: it does not start with - (an option); its text is not shown, as it may hold a secret", path.display())]
    Parse {
        /// The file.
        path: PathBuf,
        /// The line number, from 1.
        line: usize,
    },
    /// `--config-file` is the last argument.
    #[error("option {option} needs a file name")]
    MissingFileName {
        /// The spelling used.
        option: String,
    },
    /// Configuration files include one another too deeply (probably a loop).
    #[error("config file {} is nested more than {MAX_DEPTH} deep (does it include itself?)", path.display())]
    TooDeep {
        /// The file that would have been read next.
        path: PathBuf,
    },
}

/// Parses the text of a configuration file into arguments, each option already split from its
/// value (`--dst-local gzip=/x` and `--dst-local=gzip=/x` both give `["--dst-local", "gzip=/x"]`).
pub fn parse(text: &str) -> Result<Vec<String>, ParseError> {
    let mut args = Vec::new();
    for (index, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        // "-" alone, "--" alone, or anything not starting with "-" is not an option.
        if !line.starts_with('-') || line == "-" || line == "--" {
            return Err(ParseError { line: index + 1 });
        }
        // The option name ends at the first '=' or whitespace, whichever comes first. After '='
        // the value is the rest of the line as is; after whitespace, the rest without the
        // whitespace.
        match line.find(|c: char| c == '=' || c.is_whitespace()) {
            None => args.push(line.to_string()),
            Some(at) => {
                let (name, rest) = line.split_at(at);
                let value = match rest.strip_prefix('=') {
                    Some(v) => v,
                    None => rest.trim_start(),
                };
                args.push(name.to_string());
                args.push(value.to_string());
            }
        }
    }
    Ok(args)
}

/// Reads and parses the configuration file `path`.
pub fn read(path: &Path) -> Result<Vec<String>, Error> {
    let bytes = std::fs::read(path).map_err(|source| Error::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let text = String::from_utf8(bytes).map_err(|_| Error::NotUtf8 {
        path: path.to_path_buf(),
    })?;
    parse(&text).map_err(|e| Error::Parse {
        path: path.to_path_buf(),
        line: e.line,
    })
}

/// Splits every `--opt=value` argument into `--opt` and `value`, at the first `=`. Only
/// arguments starting with `--` are split, and nothing after a `--` argument (the end of
/// options) is touched.
pub fn split_equals(args: Vec<String>) -> Vec<String> {
    let mut out = Vec::with_capacity(args.len());
    let mut options_ended = false;
    for arg in args {
        if options_ended {
            out.push(arg);
            continue;
        }
        if arg == "--" {
            options_ended = true;
            out.push(arg);
            continue;
        }
        match arg.strip_prefix("--").and_then(|a| a.split_once('=')) {
            Some((name, value)) if !name.is_empty() => {
                out.push(format!("--{name}"));
                out.push(value.to_string());
            }
            _ => out.push(arg),
        }
    }
    out
}

/// Replaces every `--config-file FILE` (or `--config-file=FILE`, `--config`, `--cfg`) before
/// `--` by the options read from `FILE`; files may name further files.
pub fn expand(args: Vec<String>) -> Result<Vec<String>, Error> {
    expand_with(args, &mut |p| read(p))
}

/// [`expand`] with the file reader given, for tests.
fn expand_with(
    args: Vec<String>,
    reader: &mut dyn FnMut(&Path) -> Result<Vec<String>, Error>,
) -> Result<Vec<String>, Error> {
    let mut out = Vec::with_capacity(args.len());
    expand_into(args, reader, &mut out, 0)?;
    Ok(out)
}

fn expand_into(
    args: Vec<String>,
    reader: &mut dyn FnMut(&Path) -> Result<Vec<String>, Error>,
    out: &mut Vec<String>,
    depth: usize,
) -> Result<(), Error> {
    let mut iter = args.into_iter();
    while let Some(arg) = iter.next() {
        if arg == "--" {
            out.push(arg);
            out.extend(iter);
            break;
        }
        let file = if is_option_name(&arg) {
            match iter.next() {
                Some(f) => f,
                None => return Err(Error::MissingFileName { option: arg }),
            }
        } else {
            match arg.split_once('=') {
                Some((name, f)) if is_option_name(name) => f.to_string(),
                _ => {
                    out.push(arg);
                    continue;
                }
            }
        };
        let path = PathBuf::from(file);
        if depth >= MAX_DEPTH {
            return Err(Error::TooDeep { path });
        }
        let included = reader(&path)?;
        // Options of a file end where the file ends: a "--" inside a file must not swallow
        // the rest of the command line, so files are expanded on their own.
        expand_into(included, reader, out, depth + 1)?;
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|a| a.to_string()).collect()
    }

    #[test]
    fn parses_options_values_and_comments() {
        let text = "# archive settings\n\
                    --verbose\n\
                    \n\
                    --dst-local gzip=/var/lib/pitr/a b  \n\
                    --dst-remote=zstd=host:/x\n\
                    \t--log   /var/log/pitr/^Y.log\t\n\
                    -h=127.0.0.1\n\
                    --empty=\n";
        assert_eq!(
            parse(text).unwrap(),
            s(&[
                "--verbose",
                "--dst-local",
                "gzip=/var/lib/pitr/a b",
                "--dst-remote",
                "zstd=host:/x",
                "--log",
                "/var/log/pitr/^Y.log",
                "-h",
                "127.0.0.1",
                "--empty",
                "",
            ])
        );
    }

    #[test]
    fn non_option_line_is_an_error() {
        let e = parse("--verbose\n\ndst-local /x\n").unwrap_err();
        assert_eq!(e, ParseError { line: 3 });
    }

    #[test]
    fn read_errors_name_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("pitr.conf");
        let e = read(&p).unwrap_err();
        assert_eq!(
            e.to_string(),
            format!("cannot read config file {}", p.display())
        );
        // A line that is not an option is never shown: it may be a credential.
        std::fs::write(&p, "--verbose\naws_secret_access_key = S3CRETVALUE\n").unwrap();
        let e = read(&p).unwrap_err();
        assert_eq!(
            e.to_string(),
            format!(
                "cannot parse line 2 of config file {}: it does not start with - (an option); its text is not shown, as it may hold a secret",
                p.display()
            )
        );
        std::fs::write(&p, "--verbose\n--log -\n").unwrap();
        assert_eq!(read(&p).unwrap(), s(&["--verbose", "--log", "-"]));
    }

    #[test]
    fn splits_at_first_equals_until_double_dash() {
        assert_eq!(
            split_equals(s(&[
                "--dst-local=gzip=/x",
                "-r=1",
                "--flag",
                "--=x",
                "p=q",
                "--",
                "--not=split"
            ])),
            s(&[
                "--dst-local",
                "gzip=/x",
                "-r=1",
                "--flag",
                "--=x",
                "p=q",
                "--",
                "--not=split"
            ])
        );
    }

    #[test]
    fn expands_in_place_and_nested() {
        let mut reader = |p: &Path| -> Result<Vec<String>, Error> {
            match p.to_str().unwrap() {
                "a.conf" => Ok(s(&["--verbose", "--cfg", "b.conf", "--log", "-"])),
                "b.conf" => Ok(s(&["--dst-local", "/b"])),
                "loop.conf" => Ok(s(&["--config", "loop.conf"])),
                _ => Err(Error::Read {
                    path: p.to_path_buf(),
                    source: std::io::ErrorKind::NotFound.into(),
                }),
            }
        };
        let out = expand_with(
            s(&[
                "--first",
                "--config-file",
                "a.conf",
                "--last",
                "--",
                "--config",
                "x",
            ]),
            &mut reader,
        )
        .unwrap();
        assert_eq!(
            out,
            s(&[
                "--first",
                "--verbose",
                "--dst-local",
                "/b",
                "--log",
                "-",
                "--last",
                "--",
                "--config",
                "x"
            ])
        );
        let out = expand_with(s(&["--config=b.conf", "%p"]), &mut reader).unwrap();
        assert_eq!(out, s(&["--dst-local", "/b", "%p"]));
        // OmniPITR's single-dash long spellings name a file too.
        for one_dash in [
            &["-config-file", "b.conf"][..],
            &["-cfg=b.conf"],
            &["-config", "b.conf"],
        ] {
            let mut args = s(one_dash);
            args.push("%p".into());
            let out = expand_with(args, &mut reader).unwrap();
            assert_eq!(out, s(&["--dst-local", "/b", "%p"]), "{one_dash:?}");
        }
        let e = expand_with(s(&["--cfg"]), &mut reader).unwrap_err();
        assert_eq!(e.to_string(), "option --cfg needs a file name");
        let e = expand_with(s(&["--cfg", "loop.conf"]), &mut reader).unwrap_err();
        assert!(matches!(e, Error::TooDeep { .. }), "{e}");
        let e = expand_with(s(&["--cfg", "missing.conf"]), &mut reader).unwrap_err();
        assert_eq!(e.to_string(), "cannot read config file missing.conf");
    }
}

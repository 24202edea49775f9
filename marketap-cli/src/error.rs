//! Errors that stop a command before or outside its items (a missing
//! credential, an unreadable file, a bad option, a checkpoint for another
//! file), each naming the option, file or variable at fault and never the
//! API key, and the exit codes. What goes wrong with one line is a
//! [`LineError`](crate::records::LineError) instead, and does not stop the
//! run.

use std::{io, path::PathBuf, process::ExitCode};

/// How a command ended, as its exit code; see [`crate::args::EXIT_CODES`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// 0: everything accepted, or valid.
    Success,
    /// 1: some lines rejected or requests failed, or the input was not read to its end.
    Partial,
    /// 2: usage or configuration error.
    Usage,
    /// 3: the key or project was not accepted.
    Unauthorized,
    /// 130: interrupted.
    Interrupted,
}

impl Exit {
    /// The number.
    pub fn code(self) -> u8 {
        match self {
            Exit::Success => 0,
            Exit::Partial => 1,
            Exit::Usage => 2,
            Exit::Unauthorized => 3,
            Exit::Interrupted => 130,
        }
    }
}

impl From<Exit> for ExitCode {
    fn from(exit: Exit) -> Self {
        ExitCode::from(exit.code())
    }
}

/// A command could not run (exit code 2).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CliError {
    /// A spool cannot be opened (in use, another format version, missing).
    #[error("spool {}", path.display())]
    Spool {
        /// The spool's directory.
        path: PathBuf,
        /// Why.
        source: marketap_ext::spool::SpoolError,
    },

    /// The input (or another named file) cannot be opened or read.
    #[error("{}", path.display())]
    File {
        /// The file.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },

    /// The input is a directory.
    #[error("{} is a directory; give a file (or - for stdin)", path.display())]
    Directory {
        /// The path.
        path: PathBuf,
    },

    /// The input holds nothing.
    #[error("{label} is empty: nothing to {verb}")]
    Empty {
        /// The file, or `stdin`.
        label: String,
        /// What the command would do.
        verb: &'static str,
    },

    /// The input is not text.
    #[error(
        "{label} looks binary (a NUL byte at byte {offset} of its content); expected NDJSON or \
         CSV text, plain or gzip-compressed"
    )]
    Binary {
        /// The file, or `stdin`.
        label: String,
        /// Where the first NUL byte is, in the (decompressed) content.
        offset: usize,
    },

    /// The input read as UTF-8 is not, and looks like another encoding.
    #[error("{label} is not UTF-8 ({problem}): {hint}")]
    Encoding {
        /// The file, or `stdin`.
        label: String,
        /// What is not UTF-8 about it.
        problem: String,
        /// What it looks like, and the option that reads it.
        hint: &'static str,
    },

    /// A credential is missing.
    #[error("no {what}: set {env} or pass {flag}")]
    MissingCredential {
        /// `API key` or `project id`.
        what: &'static str,
        /// The environment variable.
        env: &'static str,
        /// The option.
        flag: &'static str,
    },

    /// The key file holds no key.
    #[error("--api-key-file {}: the file is empty", path.display())]
    EmptyKeyFile {
        /// The file.
        path: PathBuf,
    },

    /// The client refused its configuration (the key is never shown).
    #[error("invalid configuration")]
    Config(#[from] marketap_ext::ConfigError),

    /// An option's value cannot be used.
    #[error("{option} `{value}`: {reason}")]
    Option {
        /// The option, e.g. `--column`.
        option: &'static str,
        /// What was given.
        value: String,
        /// Why it is refused.
        reason: String,
    },

    /// A CSV header that does not fit the kind.
    #[error("{label}: the CSV header {reason}")]
    Header {
        /// The file, or `stdin`.
        label: String,
        /// What is wrong with it.
        reason: String,
    },

    /// A checkpoint that cannot be used.
    #[error("checkpoint {}: {reason}", path.display())]
    Checkpoint {
        /// The checkpoint file.
        path: PathBuf,
        /// Why; says what to do.
        reason: String,
    },

    /// A file the run would write cannot be written (found before the
    /// first request).
    #[error("cannot write the {what} {}: {source}; nothing was sent", path.display())]
    Unwritable {
        /// `checkpoint`, `rejects file` or `dead-letter file`.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },

    /// A deletion that was not confirmed.
    #[error("refusing to delete without confirmation: {reason}")]
    Unconfirmed {
        /// Why no confirmation could be asked for.
        reason: &'static str,
    },
}

impl CliError {
    /// The error for a failed operation on `path`.
    pub fn file(path: impl Into<PathBuf>, source: io::Error) -> Self {
        CliError::File {
            path: path.into(),
            source,
        }
    }

    /// The error for an unusable option value.
    pub fn option(option: &'static str, value: &str, reason: impl Into<String>) -> Self {
        CliError::Option {
            option,
            value: value.to_owned(),
            reason: reason.into(),
        }
    }
}

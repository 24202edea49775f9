//! The question `delete users` asks before anything is deleted: how many
//! users, in which project, and a `yes` typed on the terminal. Without a
//! terminal to ask on, it refuses (unless `--yes`), and says why.

use std::io::{BufRead, IsTerminal, Write};

use crate::error::CliError;

/// Refuses unless stdin is a terminal, so that someone can answer.
pub fn can_ask() -> Result<(), CliError> {
    if std::io::stdin().is_terminal() {
        Ok(())
    } else {
        Err(CliError::Unconfirmed {
            reason: "stdin is not a terminal, so nobody can answer; pass --yes to confirm",
        })
    }
}

/// Whether the person at the terminal confirms deleting `count` users of
/// `project` (from `input`). Refuses when stdin is not a terminal.
pub fn deletion(count: u64, project: &str, input: &str, rejected: u64) -> Result<bool, CliError> {
    can_ask()?;
    let stdin = std::io::stdin();
    let invalid = if rejected > 0 {
        format!(" ({rejected} invalid lines will be skipped)")
    } else {
        String::new()
    };
    let mut err = std::io::stderr().lock();
    let _ = write!(
        err,
        "This requests deletion of {count} users of project {project} (ids from {input}){invalid}.\n\
         Deletion cannot be undone. Type yes to continue: "
    );
    let _ = err.flush();
    let mut answer = String::new();
    stdin
        .lock()
        .read_line(&mut answer)
        .map_err(|e| CliError::file("stdin", e))?;
    Ok(matches!(
        answer.trim().to_ascii_lowercase().as_str(),
        "yes" | "y"
    ))
}

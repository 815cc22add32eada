//! `strata hash-password`: the argon2 hash of a password, for a Flight SQL config file.

use std::io::{BufRead, Write};

use crate::error::CliError;

/// Reads one password from standard input (its first line) and prints its hash.
pub(crate) fn run(input: &mut impl BufRead, out: &mut impl Write) -> Result<(), CliError> {
    let mut line = String::new();
    input.read_line(&mut line).map_err(|error| {
        CliError::Input(format!(
            "cannot read the password from standard input: {error}"
        ))
    })?;
    let password = line.trim_end_matches(['\n', '\r']);
    if password.is_empty() {
        return Err(CliError::Input(
            "no password on standard input: pipe one in, as in `printf %s 'secret' | strata hash-password`"
                .to_owned(),
        ));
    }
    writeln!(out, "{}", strata_flightsql::password::hash(password)?)?;
    Ok(())
}

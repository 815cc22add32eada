//! The README's commands that run on one machine without servers, run as the README
//! writes them (with `cargo run -p strata --` as the built binary, and the scratch
//! paths in a work directory): a command the README shows must work.

use std::path::Path;
use std::process::Command;

use crate::support::workdir;

/// The commands of the README's `sh` blocks, continuation lines joined.
fn commands(readme: &str) -> Vec<String> {
    let mut commands = Vec::new();
    let mut in_block = false;
    let mut pending = String::new();
    for line in readme.lines() {
        if line.starts_with("```") {
            in_block = line == "```sh";
            continue;
        }
        if !in_block {
            continue;
        }
        match line.trim_end().strip_suffix('\\') {
            Some(start) => pending.push_str(start),
            None => {
                pending.push_str(line);
                commands.push(std::mem::take(&mut pending).trim().to_owned());
            }
        }
    }
    commands
}

/// The command's `strata` arguments, if it is one this test runs: those that need no
/// server, no store service and no cluster, and end by themselves.
fn offline(command: &str) -> Option<&str> {
    let rest = command
        .strip_prefix("cargo run -p strata -- ")
        .or_else(|| command.strip_prefix("strata "))?;
    let subcommand = rest.split_whitespace().next()?;
    let runs = match subcommand {
        "demo" | "gen" | "check" | "lineage" | "query" => true,
        "run" => !rest.contains("--continuous") && !rest.contains("--schedule"),
        "schedule" => rest.starts_with("schedule add") || rest.starts_with("schedule list"),
        _ => false,
    };
    let in_a_store = ["s3://", "gs://", "az://", "abfss://"]
        .iter()
        .any(|scheme| rest.contains(scheme));
    (runs && !in_a_store).then_some(rest)
}

#[test]
fn the_readme_s_offline_commands_run_as_written() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
    let dir = workdir("readme");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("my_query.sql"),
        "SELECT jaccard(['a'], ['a', 'b']) AS j",
    )
    .unwrap();
    let scratch = dir.join("recruitment");
    let mut ran = Vec::new();
    for command in commands(&readme) {
        let Some(args) = offline(&command) else {
            continue;
        };
        let args = args
            .replace("/tmp/recruitment", scratch.to_str().unwrap())
            .replace(
                "/tmp/openlineage.ndjson",
                dir.join("openlineage.ndjson").to_str().unwrap(),
            )
            .replace(
                " examples/",
                &format!(" {}/", root.join("examples").display()),
            )
            // The README's data at a fiftieth of its scale: the commands are what is checked.
            .replace("--scale 0.1", "--scale 0.02");
        let output = Command::new("bash")
            .arg("-c")
            .arg(format!("\"$STRATA\" {args}"))
            .env("STRATA", env!("CARGO_BIN_EXE_strata"))
            .current_dir(&dir)
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "the README's `{command}` failed:\n{}\n{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        ran.push(command);
    }
    assert!(ran.len() >= 12, "ran only {ran:#?}");
    assert!(
        ran.iter()
            .any(|command| command == "cargo run -p strata -- demo")
    );
}

//! Real files nobody here wrote (the data sets vega_datasets, statsmodels and
//! palmerpenguins ship: empty columns, "NA" strings, tab, semicolon and space
//! separated "CSV", quoted headers, a file with no header, JSON with missing keys),
//! each ingested into a raw table with the columns inferred and with them declared:
//! every row Python's own readers find is written, and none is set aside.

use std::path::Path;

use serde_json::Value;

use crate::support::{python_file, stderr, stdout, strata, table_report, workdir};

/// One landing source and its raw table, over one corpus file.
fn source(entry: &Value, declared: bool) -> (String, String) {
    let name = entry["name"].as_str().unwrap();
    let table = if declared {
        format!("{name}_declared")
    } else {
        name.to_owned()
    };
    let columns = match (declared, entry["format"].as_str().unwrap()) {
        (false, _) => String::new(),
        (true, "csv") => {
            let count = entry["columns"].as_u64().unwrap();
            let columns: Vec<String> = (1..=count).map(|i| format!("c{i} VARCHAR")).collect();
            format!("({})", columns.join(", "))
        }
        (true, _) => {
            let columns: Vec<String> = entry["declared"]
                .as_array()
                .unwrap()
                .iter()
                .map(|column| {
                    format!(
                        "\"{}\" {}",
                        column[0].as_str().unwrap(),
                        column[1].as_str().unwrap()
                    )
                })
                .collect();
            format!("({})", columns.join(", "))
        }
    };
    let (format, options) = match entry["format"].as_str().unwrap() {
        "csv" => (
            "CSV",
            format!(
                "OPTIONS ('format.has_header' '{}', 'format.delimiter' '{}')",
                entry["header"].as_bool().unwrap(),
                entry["delimiter"].as_str().unwrap()
            ),
        ),
        _ => ("JSON", String::new()),
    };
    let names: Vec<&str> = if declared && format == "CSV" {
        Vec::new()
    } else {
        entry["names"]
            .as_array()
            .unwrap()
            .iter()
            .map(|name| name.as_str().unwrap())
            .collect()
    };
    let sql = format!(
        "CREATE EXTERNAL TABLE landing.{table} {columns} STORED AS {format} \
         LOCATION 'landing/{name}/' {options};\n\
         CREATE TABLE raw.{table} AS SELECT {} FROM landing.{table};\n",
        plain_names(&names)
    );
    (format!("raw.{table}"), sql)
}

/// The select list that stores `names` under plain ones, as a user writes it: a raw
/// table's columns need names Avro allows, and real headers hold spaces, units in
/// parentheses, leading digits and quotes.
fn plain_names(names: &[&str]) -> String {
    let plain = |name: &str| {
        let mut chars = name.chars();
        chars
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
    };
    if names.iter().all(|name| plain(name)) {
        return "*".to_owned();
    }
    let mut taken = std::collections::HashSet::new();
    let columns: Vec<String> = names
        .iter()
        .enumerate()
        .map(|(index, name)| {
            let mut alias: String = name
                .chars()
                .map(|c| {
                    if c.is_ascii_alphanumeric() {
                        c.to_ascii_lowercase()
                    } else {
                        '_'
                    }
                })
                .collect::<String>()
                .trim_matches('_')
                .to_owned();
            if !alias.starts_with(|c: char| c.is_ascii_alphabetic()) {
                alias = format!("c_{alias}");
            }
            if !taken.insert(alias.clone()) {
                alias = format!("{alias}_{index}");
            }
            format!("\"{}\" AS {alias}", name.replace('"', "\"\""))
        })
        .collect();
    columns.join(", ")
}

#[test]
fn real_files_are_ingested_whole_with_inferred_and_with_declared_columns() {
    let dir = workdir("corpus");
    let collect = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/corpus/collect.py");
    python_file(&collect, &[dir.to_str().unwrap()]);
    let mut manifest: Vec<Value> =
        serde_json::from_slice(&std::fs::read(dir.join("manifest.json")).unwrap()).unwrap();
    assert!(
        manifest.len() >= 40,
        "{} files in the corpus",
        manifest.len()
    );
    // The export with an unused column that was once rejected whole, as it was reported.
    std::fs::create_dir_all(dir.join("landing/unused_column")).unwrap();
    std::fs::write(
        dir.join("landing/unused_column/a.csv"),
        "a,b,c\n1,,x\n2,,y\n",
    )
    .unwrap();
    manifest.push(serde_json::json!({
        "name": "unused_column", "format": "csv", "delimiter": ",", "header": true,
        "rows": 2, "columns": 3, "names": ["a", "b", "c"], "source": "the issue's report",
    }));

    let mut pipeline = String::new();
    let mut expected = Vec::new();
    for entry in &manifest {
        for declared in [false, true] {
            let (table, sql) = source(entry, declared);
            pipeline.push_str(&sql);
            expected.push((
                table,
                entry["rows"].as_u64().unwrap(),
                entry["source"].clone(),
            ));
        }
    }
    let file = dir.join("corpus.sql");
    std::fs::write(&file, &pipeline).unwrap();
    let run = strata(&[
        "run",
        file.to_str().unwrap(),
        "--warehouse",
        dir.to_str().unwrap(),
    ]);
    let said = stdout(&run);
    assert!(run.status.success(), "{said}\n{}", stderr(&run));

    let mut wrong = Vec::new();
    for (table, rows, source) in expected {
        let report = table_report(&said, &table);
        let written = report["rows_written"].as_u64().unwrap();
        let rejected = report["rows_rejected"].as_u64().unwrap();
        let files_rejected = report["files_rejected"].as_u64().unwrap();
        if (written, rejected, files_rejected) != (rows, 0, 0) {
            wrong.push(format!(
                "{table} ({source}): {written} written, {rejected} rows and {files_rejected} \
                 files rejected of {rows} rows; {}",
                report["rejected_files"]
            ));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

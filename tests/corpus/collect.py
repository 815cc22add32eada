"""Lays out a corpus of real CSV and JSON files nobody here wrote, taken from the data
sets that PyPI packages ship (vega_datasets, statsmodels, palmerpenguins), as landing
directories, and writes what an independent reader (Python's csv and json modules)
finds in each: its rows and its columns.

    python3 collect.py OUT_DIR

OUT_DIR/landing/<name>/<file> holds one file each (JSON arrays become newline-delimited
JSON, the one framing Strata reads); OUT_DIR/manifest.json lists them.
"""
import csv
import glob
import json
import os
import re
import shutil
import sys

import palmerpenguins
import statsmodels
import vega_datasets


def package_files(package, pattern):
    return sorted(glob.glob(os.path.join(os.path.dirname(package.__file__), pattern)))


def name_of(prefix, path):
    stem = os.path.splitext(os.path.basename(path))[0]
    return re.sub(r"[^a-z0-9]+", "_", f"{prefix}_{stem}".lower()).strip("_")


def sql_type(values):
    """The SQL type that holds every one of a JSON key's values."""
    kinds = {type(value) for value in values if value is not None}
    if kinds == {bool}:
        return "BOOLEAN"
    if kinds == {int}:
        return "BIGINT"
    if kinds and kinds <= {int, float}:
        return "DOUBLE"
    return "VARCHAR"


def main(out):
    landing = os.path.join(out, "landing")
    shutil.rmtree(landing, ignore_errors=True)
    manifest = []
    csvs = (
        [("vega", p) for p in package_files(vega_datasets, "_data/*.csv")]
        + [("statsmodels", p) for p in package_files(statsmodels, "datasets/*/*.csv")]
        + [("penguins", p) for p in package_files(palmerpenguins, "data/*.csv")]
    )
    for prefix, path in csvs:
        # utf-8-sig: one file starts with a byte order mark, as Excel writes them.
        with open(path, newline="", encoding="utf-8-sig") as f:
            text = f.read()
        # Some "CSV" files are tab, semicolon or space separated: as delivered.
        sniffer = csv.Sniffer()
        delimiter = sniffer.sniff(text[:4096], delimiters=",;\t ").delimiter
        # And some have no header line.
        header = sniffer.has_header(text[:4096])
        records = [row for row in csv.reader(text.splitlines(), delimiter=delimiter) if row]
        name = name_of(prefix, path)
        os.makedirs(os.path.join(landing, name))
        shutil.copy(path, os.path.join(landing, name, os.path.basename(path)))
        manifest.append(
            {"name": name, "format": "csv", "delimiter": delimiter, "header": header,
             "rows": len(records) - int(header), "columns": len(records[0]),
             "names": records[0] if header else
                      [f"column_{i}" for i in range(1, len(records[0]) + 1)],
             "source": os.path.relpath(path, os.path.dirname(os.path.dirname(path)))}
        )
    for path in package_files(vega_datasets, "_data/*.json"):
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
        if not isinstance(data, list) or not all(isinstance(row, dict) for row in data):
            continue
        name = name_of("vega", path)
        os.makedirs(os.path.join(landing, name))
        with open(os.path.join(landing, name, f"{name}.json"), "w", encoding="utf-8") as f:
            for row in data:
                f.write(json.dumps(row) + "\n")
        keys = list(dict.fromkeys(key for row in data for key in row))
        manifest.append(
            {"name": name, "format": "json", "rows": len(data), "columns": len(keys),
             "names": keys,
             "declared": [[key, sql_type([row.get(key) for row in data])] for key in keys],
             "source": os.path.basename(path)}
        )
    with open(os.path.join(out, "manifest.json"), "w") as f:
        json.dump(manifest, f, indent=1)
    print(f"{len(manifest)} files")


if __name__ == "__main__":
    main(sys.argv[1])

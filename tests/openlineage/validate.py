"""Validates OpenLineage run events (one JSON object a line) offline.

Each event must be a RunEvent of the spec in ./spec, each facet valid against its own
facet schema, every schema URL the one openlineage-python writes for that type, and
every column-lineage transformation one of the types and subtypes the spec documents.
Prints how many events were valid; exits non-zero at the first invalid one.
"""

import json
import sys
from pathlib import Path

from jsonschema import Draft202012Validator
from openlineage.client.generated.base import RunEvent
from openlineage.client.generated.column_lineage_dataset import ColumnLineageDatasetFacet
from openlineage.client.generated.error_message_run import ErrorMessageRunFacet
from openlineage.client.generated.schema_dataset import SchemaDatasetFacet
from referencing import Registry, Resource
from referencing.exceptions import NoSuchResource

SPEC = Path(__file__).parent / "spec"
FACETS = {
    "columnLineage": ColumnLineageDatasetFacet._get_schema(),
    "schema": SchemaDatasetFacet._get_schema(),
    "errorMessage": ErrorMessageRunFacet._get_schema(),
}
SUBTYPES = {
    "DIRECT": {"IDENTITY", "TRANSFORMATION", "AGGREGATION"},
    "INDIRECT": {"JOIN", "GROUP_BY", "FILTER", "SORT", "WINDOW", "CONDITIONAL"},
}


def offline(uri):
    raise NoSuchResource(ref=uri)


def registry():
    resources = []
    for path in SPEC.rglob("*.json"):
        schema = json.loads(path.read_text())
        resources.append((schema["$id"], Resource.from_contents(schema)))
    return Registry(retrieve=offline).with_resources(resources).crawl()


def main(paths):
    known = registry()

    def validator(uri):
        return Draft202012Validator(
            {"$ref": uri}, registry=known, format_checker=Draft202012Validator.FORMAT_CHECKER
        )

    events = validator(RunEvent._get_schema())
    facets = {key: validator(uri) for key, uri in FACETS.items()}
    count = 0
    for path in paths:
        for number, line in enumerate(Path(path).read_text().splitlines(), 1):
            where = f"{path}:{number}"
            event = json.loads(line)
            events.validate(event)
            assert event["schemaURL"] == RunEvent._get_schema(), where
            datasets = event.get("outputs", []) + event.get("inputs", [])
            all_facets = [event["run"].get("facets", {})] + [d.get("facets", {}) for d in datasets]
            for facet_set in all_facets:
                for key, facet in facet_set.items():
                    assert key in FACETS, f"{where}: a facet Strata does not write: {key}"
                    assert facet["_schemaURL"] == FACETS[key], f"{where}: {key}"
                    facets[key].validate(facet)
            for output in event["outputs"]:
                lineage = output["facets"]["columnLineage"]
                fields = [f for column in lineage["fields"].values() for f in column["inputFields"]]
                for field in fields + lineage.get("dataset", []):
                    for step in field["transformations"]:
                        assert step.get("subtype") in SUBTYPES[step["type"]], f"{where}: {step}"
            count += 1
    print(f"{count} OpenLineage events valid")


if __name__ == "__main__":
    main(sys.argv[1:])

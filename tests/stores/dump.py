"""Every table of a Strata warehouse, read by independent readers from wherever it is:
Delta tables with the `deltalake` package, raw tables with `fastavro` over the files
their commit log names, fetched from the local disk, S3 (`boto3`) or Azure Blob Storage
(`azure-storage-blob`). Prints {table: sorted rows} as JSON; columns that name a run or
a landing file's location are left out, since they differ by design between warehouses.

Usage: dump.py WAREHOUSE TABLE...   (WAREHOUSE: a path, s3://bucket/prefix or az://container/prefix)
"""

import io
import json
import os
import sys
from urllib.parse import urlparse

import fastavro
from deltalake import DeltaTable

RUN_COLUMNS = {"_run_id", "run_id"}


class Local:
    def __init__(self, root):
        self.root = root.rstrip("/")

    def uri(self, key):
        return os.path.join(self.root, key)

    def list(self, prefix):
        base = self.uri(prefix)
        return sorted(os.path.join(prefix, name) for name in os.listdir(base)) if os.path.isdir(base) else []

    def read(self, key):
        with open(self.uri(key), "rb") as handle:
            return handle.read()

    options = None


class S3:
    def __init__(self, url):
        import boto3

        parsed = urlparse(url)
        self.bucket, self.prefix = parsed.netloc, parsed.path.strip("/")
        self.client = boto3.client("s3", endpoint_url=os.environ["AWS_ENDPOINT_URL"])
        self.options = {
            "AWS_ENDPOINT_URL": os.environ["AWS_ENDPOINT_URL"],
            "AWS_ACCESS_KEY_ID": os.environ["AWS_ACCESS_KEY_ID"],
            "AWS_SECRET_ACCESS_KEY": os.environ["AWS_SECRET_ACCESS_KEY"],
            "AWS_REGION": os.environ["AWS_REGION"],
            "AWS_ALLOW_HTTP": "true",
        }

    def key(self, key):
        return f"{self.prefix}/{key}" if self.prefix else key

    def uri(self, key):
        return f"s3://{self.bucket}/{self.key(key)}"

    def list(self, prefix):
        pages = self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=self.key(prefix) + "/")
        keys = [item["Key"] for page in pages for item in page.get("Contents", [])]
        return sorted(key[len(self.key("")):] for key in keys)

    def read(self, key):
        return self.client.get_object(Bucket=self.bucket, Key=self.key(key))["Body"].read()


class Azure:
    def __init__(self, url):
        from azure.storage.blob import BlobServiceClient

        parsed = urlparse(url)
        self.container, self.prefix = parsed.netloc, parsed.path.strip("/")
        endpoint = os.environ["AZURITE_BLOB_STORAGE_URL"].rstrip("/") + "/devstoreaccount1"
        key = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
        connection = f"DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey={key};BlobEndpoint={endpoint};"
        self.client = BlobServiceClient.from_connection_string(connection).get_container_client(self.container)
        self.options = {"AZURE_STORAGE_USE_EMULATOR": "true"}

    def key(self, key):
        return f"{self.prefix}/{key}" if self.prefix else key

    def uri(self, key):
        return f"az://{self.container}/{self.key(key)}"

    def list(self, prefix):
        names = [blob.name for blob in self.client.list_blobs(name_starts_with=self.key(prefix) + "/")]
        return sorted(name[len(self.key("")):] for name in names)

    def read(self, key):
        return self.client.download_blob(self.key(key)).readall()


def store(location):
    if location.startswith("s3://"):
        return S3(location)
    if location.startswith("az://"):
        return Azure(location)
    return Local(location)


def cleaned(row):
    out = {}
    for name, value in row.items():
        if name in RUN_COLUMNS:
            continue
        if name == "landing_file" and value is not None:
            value = value.rsplit("/", 1)[-1]
        out[name] = value
    return out


def sorted_rows(rows):
    return sorted(json.dumps(cleaned(row), sort_keys=True, default=str) for row in rows)


def raw_rows(warehouse, table, kind):
    layer, name = table.split(".")
    if name.endswith("__rejects"):
        name, kind = name[: -len("__rejects")], "rejects"
    directory = f"{layer}/{name}"
    commits = [json.loads(warehouse.read(key)) for key in warehouse.list(f"{directory}/_strata_log") if key.endswith(".json")]
    last_reset = max([i for i, commit in enumerate(commits) if commit["reset"]], default=0)
    rows = []
    for commit in commits[last_reset:]:
        for written in commit.get(kind, []):
            rows.extend(fastavro.reader(io.BytesIO(warehouse.read(f"{directory}/{written['path']}"))))
    return rows


def main():
    warehouse = store(sys.argv[1])
    dump = {}
    for table in sys.argv[2:]:
        layer, name = table.split(".")
        if layer == "raw":
            rows = raw_rows(warehouse, table, "files")
        else:
            uri = warehouse.uri(f"{layer}/{name}")
            if not DeltaTable.is_deltatable(uri, storage_options=warehouse.options):
                continue
            rows = DeltaTable(uri, storage_options=warehouse.options).to_pyarrow_table().to_pylist()
        dump[table] = sorted_rows(rows)
    print(json.dumps(dump))
    sys.stdout.flush()
    os._exit(0)


main()

"""Reads a Parquet file of result rows with pyarrow and checks it against the CSV export
of the same rows, value by value: same columns in the same order, typed as documented,
nulls exactly where the CSV is empty. Prints a JSON summary; exits non-zero on a mismatch.

    parquet_matches_csv.py ROWS.parquet ROWS.csv
"""

import csv
import json
import sys

import pyarrow as pa
import pyarrow.parquet as pq

TYPES = {
    "width": pa.uint32(), "depth": pa.uint32(), "kernel": pa.uint32(), "epoch": pa.uint32(),
    "layer": pa.uint32(), "seed": pa.uint64(), "n": pa.uint64(), "distinct": pa.uint64(),
    "projections": pa.uint32(), "k": pa.uint32(), "i_yt": pa.float64(), "sigma_rule": pa.string(),
    "dataset": pa.string(), "estimator": pa.string(), "bin_size": pa.float64(),
}


def main(parquet_path, csv_path):
    table = pq.read_table(parquet_path)
    with open(csv_path, newline="") as f:
        reader = csv.DictReader(f)
        header = reader.fieldnames
        rows = list(reader)
    if table.column_names != header:
        sys.exit(f"columns differ:\n parquet {table.column_names}\n csv     {header}")
    if table.num_rows != len(rows):
        sys.exit(f"{table.num_rows} Parquet rows, {len(rows)} CSV rows")
    for name, want in TYPES.items():
        got = table.schema.field(name).type
        if got != want:
            sys.exit(f"column {name} is {got}, documented as {want}")
    nulls = 0
    for name in header:
        field = table.schema.field(name)
        for i, (value, row) in enumerate(zip(table.column(name).to_pylist(), rows)):
            text = row[name]
            if value is None:
                nulls += 1
                ok = field.nullable and text == ""
            elif pa.types.is_floating(field.type):
                ok = float(text) == value
            elif pa.types.is_integer(field.type):
                ok = int(text) == value
            else:
                ok = text == value
            if not ok:
                sys.exit(f"row {i} column {name}: Parquet {value!r}, CSV {text!r}")
    print(json.dumps({"rows": table.num_rows, "columns": len(header), "nulls": nulls,
                      "row_groups": pq.ParquetFile(parquet_path).num_row_groups,
                      "pyarrow": pa.__version__}))


if __name__ == "__main__":
    main(*sys.argv[1:])

#!/usr/bin/env python3
"""Validates a JSON document against a JSON Schema (draft 2020-12) with the `jsonschema`
package, formats checked. Prints OK, or every error and exits 1.

usage: validate_json.py SCHEMA DOCUMENT
"""
import json
import sys

import jsonschema


def main():
    schema = json.load(open(sys.argv[1], encoding="utf-8"))
    document = json.load(open(sys.argv[2], encoding="utf-8"))
    validator = jsonschema.Draft202012Validator(
        schema, format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER
    )
    jsonschema.Draft202012Validator.check_schema(schema)
    # Without rfc3339-validator, jsonschema skips "date-time" silently.
    if "date-time" not in jsonschema.Draft202012Validator.FORMAT_CHECKER.checkers:
        sys.exit("FAIL: date-time cannot be checked (pip install rfc3339-validator)")
    errors = sorted(validator.iter_errors(document), key=lambda e: list(e.path))
    for e in errors:
        print(f"FAIL: {'/'.join(map(str, e.path))}: {e.message}")
    if errors:
        sys.exit(1)
    print("OK")


if __name__ == "__main__":
    main()

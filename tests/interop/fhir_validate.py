"""Validates FHIR JSON resources with an independent implementation.

Usage: fhir_validate.py DIR

Every *.json file in DIR is parsed by fhir.resources (PyPI; its R4B models,
whose ImagingStudy, Bundle, OperationOutcome and CapabilityStatement are R4's)
as the resource its resourceType names: required elements, cardinalities,
value types, code values and unknown elements are all checked. Prints one
line per file and exits 1 if any failed.
"""

import json
import pathlib
import sys

from fhir.resources.R4B import get_fhir_model_class


def main() -> int:
    failed = 0
    files = sorted(pathlib.Path(sys.argv[1]).glob("*.json"))
    if not files:
        print("no resources to validate", file=sys.stderr)
        return 1
    for path in files:
        data = json.loads(path.read_text(encoding="utf-8"))
        kind = data.get("resourceType")
        try:
            get_fhir_model_class(kind).model_validate(data)
        except Exception as e:  # noqa: BLE001 - every failure is reported
            failed += 1
            print(f"INVALID {path.name} ({kind}): {e}")
        else:
            print(f"valid {path.name} ({kind})")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

"""Parses an OpenMetrics exposition from stdin with prometheus_client's strict
OpenMetrics parser (an implementation independent of runplane's) and prints
every sample as one JSON line: {"name": ..., "labels": {...}, "value": ...,
"exemplar": {"labels": {...}, "value": ..., "timestamp": ...} or null}.
Exits non-zero, with the parser's complaint, on an invalid exposition."""
import json
import sys

from prometheus_client.openmetrics.parser import text_string_to_metric_families

for family in text_string_to_metric_families(sys.stdin.read()):
    for sample in family.samples:
        print(json.dumps({
            "family": family.name,
            "type": family.type,
            "name": sample.name,
            "labels": sample.labels,
            "value": sample.value,
            "timestamp": None if sample.timestamp is None else str(sample.timestamp),
            "exemplar": None if sample.exemplar is None else {
                "labels": sample.exemplar.labels,
                "value": sample.exemplar.value,
                "timestamp": None if sample.exemplar.timestamp is None
                else str(sample.exemplar.timestamp),
            },
        }))

"""Names of step inputs and outputs and of the files the steps read and write.

An input or output name is also the folder it lands in: `<input root>/<name>/` in a processing
container (/opt/ml/processing/input/<name>) and in a local run directory alike.
"""

from __future__ import annotations

# Names of inputs and outputs; also the file names the step code reads and writes.
CONFIG_INPUT = "config"
CONFIG_FILE = "config.json"
CATALOG_INPUT = "catalog"
DATASET = "dataset"
PROCESSED_FILE = "processed.jsonl"
MANIFEST_FILE = "manifest.json"
QUARANTINE_FILE = "quarantine.jsonl"
FINETUNE = "finetune"
FINETUNE_FILE = "finetune.json"
DEPLOYMENT = "deployment"
DEPLOYMENT_FILE = "deployment.json"
EVALUATION = "evaluation"
SUMMARY_FILE = "summary.json"
RECORDS_FILE = "records.jsonl"
# The evaluate step writes algorithms/<stem>_worst_records.json beside each EvalOutput algorithms/<stem>.json.
WORST_RECORDS_SUFFIX = "_worst_records.json"
# ... and algorithms/<stem>_record_scores.jsonl: {"record_id", "scores": {score: value}} per scored record.
RECORD_SCORES_SUFFIX = "_record_scores.jsonl"
SUMMARIES = "summaries"
DECISION = "decision"
DECISION_FILE = "decision.json"
COMPARISON_REPORT_FILE = "comparison.html"
COMPARISON_PDF_FILE = "comparison.pdf"
REGISTRATION = "registration"
REGISTRATION_FILE = "registration.json"
CLEANUP = "cleanup"
CLEANUP_FILE = "cleanup.json"
# The champion step's output: champion.json and, per model package group answered, `<group>/` holding the
# champion's evaluation output (the layout of EVALUATION).
CHAMPION = "champion"
CHAMPION_FILE = "champion.json"
# Beside a registered winner's stored summary.json: what it was evaluated as (results.EvaluatedAs).
EVALUATED_AS_FILE = "evaluated_as.json"

# JSON paths in decision.json read by the condition and fail steps (PropertyFile + JsonGet).
DECISION_MEETS_POLICY = "meets_policy"
DECISION_REASON = "reason"

# The approval statuses a registered model package can get.
APPROVAL_STATUSES = ("PendingManualApproval", "Approved", "Rejected")
DEFAULT_APPROVAL_STATUS = "PendingManualApproval"
# The evaluate step's `--response-cache`: `bypass` sends every prompt to the model and leaves the cache alone
# (`evalops run --no-cache`; the pipeline parameter `ResponseCache`).
RESPONSE_CACHE_USE = "use"
RESPONSE_CACHE_BYPASS = "bypass"
RESPONSE_CACHE_MODES = (RESPONSE_CACHE_USE, RESPONSE_CACHE_BYPASS)

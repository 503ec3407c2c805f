"""Tag keys on the AWS resources a run creates.

The safety-net Lambda (`stacks/safety_net_lambda/index.py`, which cannot import this package) matches on
the same keys, and a test keeps the two lists equal.
"""

from __future__ import annotations

TAG_EXECUTION_ID = "evalops:execution-id"
TAG_EXECUTION_ARN = "evalops:execution-arn"
TAG_MODEL = "evalops:model"
TAG_PIPELINE = "evalops:pipeline"
TAG_PROVIDER = "evalops:provider"
TAG_MANAGED_BY = "evalops:managed-by"
MANAGED_BY = "evalops"
# An endpoint tagged so outlives its run: the safety net leaves it alone.
TAG_KEEP = "evalops:keep"
KEEP = "true"

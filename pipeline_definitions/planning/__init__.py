"""The evaluation plan: which steps run, with which inputs and outputs, in which order."""

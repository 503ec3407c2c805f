"""What the pipeline and the step code share: config and result models, file and input names, naming, tables."""

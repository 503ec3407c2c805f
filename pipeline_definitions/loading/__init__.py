"""Reading a config file: YAML with line numbers, the pydantic model, and the checks across fields."""

"""What a run will cost and how many prompts it sends, before it runs."""

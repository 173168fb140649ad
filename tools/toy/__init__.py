"""The embedded toy VLM: training (`python -m tools.toy.train`) and what it shows (`python -m tools.toy.science`)."""

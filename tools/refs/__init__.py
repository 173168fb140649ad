"""Reference files for the tests, computed with transformers or llama.cpp (`python -m tools.refs.<name>`)."""

"""Fuzz targets (C++, libFuzzer) and their seed corpora (`python -m tools.fuzz.make_seeds`)."""

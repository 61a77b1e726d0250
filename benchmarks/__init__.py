"""CleanGAN benchmarks: run the scripts (run.py), score their artefacts (metrics.py), write the report (report.py)."""

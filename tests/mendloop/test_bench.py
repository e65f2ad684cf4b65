"""The benchmark code runs and reports what BENCHMARKS.md quotes (shape only: figures are
measured by `mendloop bench`, never asserted here)."""

from mendloop.bench import bench_ingest
from rules.catalog import load_catalog


def test_bench_ingest_reports_its_fields_and_counts_every_series():
    catalog = load_catalog()
    result = bench_ingest(catalog, targets=2, ticks=20)
    assert result["series"] == 2 * len(catalog) and result["metrics"] == len(catalog)
    assert {"samples_per_s", "peak_rss_mb", "rss_growth_mb", "validated_samples_per_s"} <= set(
        result
    )

"""A/B experiments: assignment, design, analysis, sequential monitoring, reports.

* :mod:`~mktlab.experiments.assignment` — salted MurmurHash3 bucketing, layers
  (orthogonal) and exclusive namespaces, traffic and holdouts, stable ramp-up.
* :mod:`~mktlab.experiments.design` — sample size, MDE and duration.
* :mod:`~mktlab.experiments.stats` / :mod:`~mktlab.experiments.analysis` — lifts, CIs,
  p-values, chance to beat control, CUPED, SRM, multiple-comparison corrections.
* :mod:`~mktlab.experiments.sequential` — anytime-valid confidence sequences and
  guardrail auto-stop.
* :mod:`~mktlab.experiments.report` — plots and MLflow logging (through tracking).
"""

from mktlab.experiments._hash import N_BUCKETS, hash_buckets, murmur3_32
from mktlab.experiments.analysis import ExperimentResult, analyze, analyze_summary, summarize
from mktlab.experiments.assignment import Assigner, Experiment, Layer, assign
from mktlab.experiments.design import (
    Duration,
    SampleSize,
    duration,
    mde_mean,
    mde_proportion,
    sample_size_mean,
    sample_size_proportion,
)
from mktlab.experiments.report import log_monitor, log_result, plot_lifts, plot_sequential
from mktlab.experiments.sequential import (
    ConfidenceSequence,
    Guardrail,
    MonitorResult,
    SequentialMonitor,
    cumulative_stats,
    mixture_boundary,
    monitor,
    peeking_table,
    simulate_peeking,
)
from mktlab.experiments.stats import (
    Comparison,
    SRMResult,
    adjust_pvalues,
    beta_chance_to_beat,
    compare_means,
    compare_proportions,
    cuped_adjust,
    srm_test,
)

__all__ = [
    "N_BUCKETS",
    "Assigner",
    "Comparison",
    "ConfidenceSequence",
    "Duration",
    "Experiment",
    "ExperimentResult",
    "Guardrail",
    "Layer",
    "MonitorResult",
    "SRMResult",
    "SampleSize",
    "SequentialMonitor",
    "adjust_pvalues",
    "analyze",
    "analyze_summary",
    "assign",
    "beta_chance_to_beat",
    "compare_means",
    "compare_proportions",
    "cumulative_stats",
    "cuped_adjust",
    "duration",
    "hash_buckets",
    "log_monitor",
    "log_result",
    "mde_mean",
    "mde_proportion",
    "mixture_boundary",
    "monitor",
    "murmur3_32",
    "peeking_table",
    "plot_lifts",
    "plot_sequential",
    "sample_size_mean",
    "sample_size_proportion",
    "simulate_peeking",
    "srm_test",
    "summarize",
]

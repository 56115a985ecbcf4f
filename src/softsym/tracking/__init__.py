"""The MLflow side of a job: the tracker (parent run per job, nested run per stage), the run status on
failures and signals, and the job's provenance (source commit, input files). See docs/architecture.md."""

from softsym.tracking.tracker import (
    CONFIG_HASH_TAG,
    EXPERIMENT_KIND_TAG,
    HEADLINE_METRICS,
    MlflowTracker,
    NullTracker,
    PrepareTrackingStore,
    Tracker,
    TrackingError,
    artifact_location,
    bound_http_retries,
    check_reachable,
    finished_job_run,
    flatten,
    is_headline,
    metric_key,
    prepare_store,
)

__all__ = [
    "CONFIG_HASH_TAG", "EXPERIMENT_KIND_TAG", "HEADLINE_METRICS", "MlflowTracker", "NullTracker",
    "PrepareTrackingStore", "Tracker", "TrackingError", "artifact_location", "bound_http_retries",
    "check_reachable", "finished_job_run", "flatten", "is_headline", "metric_key", "prepare_store",
]

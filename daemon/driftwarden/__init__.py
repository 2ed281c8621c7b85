"""driftwarden: GitOps reconciliation of Airflow platform Clusters and Deployments on AWS."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("driftwarden")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0+unknown"

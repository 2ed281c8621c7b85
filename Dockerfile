# driftwarden: the reconcile daemon, `driftwarden run`, configured by DRIFTWARDEN_* variables.
#
#   docker build -t driftwarden .                    (buildah/podman: add --format docker, or
#                                                      the HEALTHCHECK is dropped from the image)
#   docker build --build-arg WITH_SANDBOX=true -t driftwarden:sandbox .
#                                                    (for demos: adds moto, for --sandbox)
#   docker run --read-only -v driftwarden-cache:/var/cache/driftwarden \
#     -e DRIFTWARDEN_SOURCE=https://git.example.com/platform/manifests.git \
#     -e DRIFTWARDEN_HTTPS_TOKEN_FILE=/run/secrets/git-token -p 9108:9108 driftwarden
#
# Every `driftwarden run` option is also the variable DRIFTWARDEN_<OPTION> (`--drift-interval`
# is DRIFTWARDEN_DRIFT_INTERVAL; flags such as --sandbox and --prune take "1"). Arguments after
# the image name are appended to `driftwarden run`. The only state is the Git cache in the
# volume /var/cache/driftwarden, which is also HOME and TMPDIR: with that volume mounted the
# root filesystem can be read-only. scripts/container-smoke.sh builds this file with buildah and
# checks the result.

# Any Debian-based image with python3 >= 3.11, venv and ensurepip will do (the smoke script
# uses a debootstrap'd bookworm where Docker Hub is out of reach). Every stage uses this one
# base: the venv is copied between stages, and its interpreter is the base's python3.
ARG BASE_IMAGE=docker.io/library/python:3.11-slim-bookworm
# The production image leaves out the `sandbox` extra (moto and its ~45 dependencies, over
# 200 MB: a simulated AWS has no business next to real credentials); `true` adds it, for the
# demo image whose `DRIFTWARDEN_SANDBOX=1` runs without AWS.
ARG WITH_SANDBOX=false

# --- deps: a venv with the pinned dependencies, nothing else ---------------------------------
FROM ${BASE_IMAGE} AS deps
# Only for closed networks: a PyPI mirror and the CA bundle of a TLS-inspecting proxy. A build
# argument lives in the environment of these throw-away stages only, never in the final image.
ARG PIP_INDEX_URL
ARG PIP_CERT
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1

# From the locks alone: --no-deps, so nothing outside them gets in; --only-binary, so no
# compiler and no sdist build running arbitrary code; pip check, so a missing dependency fails
# the build. The sandbox lock holds only what the sandbox extra adds to requirements.lock.
# pip and setuptools leave in the same layer: the runtime venv needs neither. This stage, the
# biggest layer of the image, changes only when a lock (or WITH_SANDBOX) does.
ARG WITH_SANDBOX
COPY deploy/container/requirements.lock deploy/container/requirements-sandbox.lock /tmp/
RUN case "$WITH_SANDBOX" in \
      true) sandbox_lock="--requirement /tmp/requirements-sandbox.lock" ;; \
      false) sandbox_lock="" ;; \
      *) echo "WITH_SANDBOX must be true or false, not '$WITH_SANDBOX'" >&2; exit 1 ;; \
    esac \
 && python3 -m venv /opt/venv \
 && /opt/venv/bin/pip install --no-deps --only-binary=:all: --requirement /tmp/requirements.lock $sandbox_lock \
 && /opt/venv/bin/pip check \
 && /opt/venv/bin/python -m pip uninstall --yes --quiet setuptools pip

# --- package: driftwarden itself, staged under /staged for a small layer of its own -----------
FROM deps AS package
ARG PIP_INDEX_URL
ARG PIP_CERT
# daemon/driftwarden/schemas is a symlink to the top-level schemas/: both are needed.
COPY pyproject.toml README.md /src/
COPY daemon /src/daemon
COPY schemas /src/schemas
# The wheel is built by the lock's pinned setuptools in a tools venv (no build isolation, which
# would fetch an unpinned one), then installed for /opt/venv's interpreter under /staged; its
# .pyc files are compiled with their final paths. Then, installed for real in this throw-away
# stage: pip check of the whole venv, and `driftwarden schema` proves the JSON Schemas are in.
RUN python3 -m venv /opt/tools \
 && /opt/tools/bin/pip install --no-deps --only-binary=:all: "$(grep '^setuptools==' /tmp/requirements.lock)" \
 && /opt/tools/bin/pip wheel --no-deps --no-build-isolation --wheel-dir /dist /src \
 && /opt/tools/bin/pip --python /opt/venv/bin/python install --no-deps --no-compile --no-warn-script-location --root /staged /dist/*.whl \
 && /opt/venv/bin/python -m compileall -q -s /staged -p / /staged/opt/venv \
 && cp -a /staged/. / \
 && /opt/tools/bin/pip --python /opt/venv/bin/python check \
 && /opt/venv/bin/driftwarden --version \
 && /opt/venv/bin/driftwarden schema cluster >/dev/null

# --- runtime ---------------------------------------------------------------------------------
FROM ${BASE_IMAGE}

# git and ssh: gitpython runs the git binary, and SSH remotes need ssh; gpg verifies signed
# commits (--verify-signatures-gpg-keyring; SSH signatures use ssh-keygen); ca-certificates for
# HTTPS remotes; tini is PID 1: it forwards SIGTERM to driftwarden (which then finishes its pass
# and exits 0) and reaps the git and ssh processes it leaves behind. apt's package caches
# (*.bin, some 80 MB once bookworm's lists are read) go with the lists: a base without
# Debian's docker-clean setting would keep them in this layer.
# git depends on perl for its commands written in Perl (send-email, svn, cvs, instaweb), none of
# which gitpython runs; perl's module trees (~47 MB, a fifth of the image) are kept out the way
# slim images keep out documentation, by dpkg path-exclude: the package database stays whole,
# and perl-base (what dpkg and debconf use) is untouched. container-smoke.sh clones and fetches
# with gitpython inside the image.
RUN printf '%s\n' 'path-exclude /usr/share/perl/*' 'path-exclude /usr/lib/*/perl/*' \
        >/etc/dpkg/dpkg.cfg.d/driftwarden-no-perl-modules \
 && apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
        ca-certificates git gpg openssh-client tini \
 && rm -rf /var/lib/apt/lists/* /var/cache/apt/archives/*.deb /var/cache/apt/*.bin /var/log/apt /var/log/dpkg.log

# A fixed numeric uid, so `runAsNonRoot` can check it without reading /etc/passwd. Its home
# is the cache: git, ssh and gpg write there, and nowhere else.
RUN groupadd --gid 10001 driftwarden \
 && useradd --uid 10001 --gid 10001 --home-dir /var/cache/driftwarden --no-create-home \
        --no-log-init --shell /usr/sbin/nologin driftwarden \
 && install -d -o 10001 -g 10001 -m 0750 /var/cache/driftwarden \
 && install -d -m 0755 /srv/manifests

COPY --from=deps /opt/venv /opt/venv
COPY --from=package /staged/ /
# The example platform and the JSON Schemas (for editors and for
# `driftwarden validate /usr/share/driftwarden/manifests`; the package carries its own copy).
COPY manifests /usr/share/driftwarden/manifests
COPY schemas /usr/share/driftwarden/schemas

# XDG_CACHE_HOME puts driftwarden's cache at /var/cache/driftwarden (Git sources under git/,
# validation results beside them). PYTHONDONTWRITEBYTECODE: the .pyc files were compiled at
# install time and the root filesystem may be read-only. DRIFTWARDEN_SOURCE defaults to an
# empty directory to mount manifests on; set it to a Git URL instead to follow a branch.
ENV PATH=/opt/venv/bin:$PATH \
    HOME=/var/cache/driftwarden \
    XDG_CACHE_HOME=/var/cache \
    TMPDIR=/var/cache/driftwarden \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    LANG=C.UTF-8 \
    DRIFTWARDEN_SOURCE=/srv/manifests \
    DRIFTWARDEN_METRICS_PORT=9108 \
    DRIFTWARDEN_LOG_FORMAT=json

WORKDIR /srv/manifests
USER 10001:10001
VOLUME ["/var/cache/driftwarden"]
# /metrics, /healthz, /readyz, /status and /webhook.
EXPOSE 9108

# /healthz answers 200 while the scheduler runs; urlopen raises (exit 1) on a 503 or no answer.
# It follows DRIFTWARDEN_METRICS_PORT and DRIFTWARDEN_METRICS_HOST (any-address means loopback).
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
    CMD ["/opt/venv/bin/python", "-c", "import os, urllib.request; h = os.environ.get('DRIFTWARDEN_METRICS_HOST') or '127.0.0.1'; h = '127.0.0.1' if h in ('0.0.0.0', '::') else h; urllib.request.urlopen('http://%s:%s/healthz' % (h, os.environ.get('DRIFTWARDEN_METRICS_PORT') or '9108'), timeout=4)"]

ENTRYPOINT ["/usr/bin/tini", "--", "/opt/venv/bin/driftwarden", "run"]

ARG VERSION=0.1.0
ARG REVISION=unknown
ARG BASE_IMAGE
ARG WITH_SANDBOX
LABEL org.opencontainers.image.title="driftwarden" \
      dev.driftwarden.sandbox="${WITH_SANDBOX}" \
      org.opencontainers.image.description="GitOps reconciliation daemon for an Airflow platform on AWS: Git manifests in, AWS that matches them out, drift in Prometheus." \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.base.name="${BASE_IMAGE}"

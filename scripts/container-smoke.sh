#!/usr/bin/env bash
# Build the Dockerfile with buildah (no Docker engine needed) and check the image works.
set -euo pipefail

usage() {
  cat <<'EOF'
Usage: scripts/container-smoke.sh [--base IMAGE | --local-base] [--rebuild-base] [--keep]
       scripts/container-smoke.sh --update-lock
       scripts/container-smoke.sh -h | --help

Builds the repository's Dockerfile with buildah twice, the production image (WITH_SANDBOX=false:
no moto) and the sandbox image for demos (WITH_SANDBOX=true), prints both sizes, and checks
them, stopping at the first failure (exit 1):
  1. the production image is under SMOKE_MAX_PRODUCTION_MB (250);
  2. the config of both: a non-root numeric USER, a HEALTHCHECK on /healthz, an ENTRYPOINT that
     runs `driftwarden run` under tini, the cache VOLUME, the OCI labels and the sandbox label;
  3. inside the production image: `id -u` is not 0, `driftwarden --version`,
     `driftwarden validate /usr/share/driftwarden/manifests`, no moto, and `--sandbox` naming
     the extra to install;
  4. the daemon, in the sandbox image: its ENTRYPOINT with DRIFTWARDEN_SANDBOX=1 and
     DRIFTWARDEN_SOURCE set to the bundled manifests, until the image's own HEALTHCHECK command
     passes and /readyz says a first sync completed; then SIGTERM must end it with status 0, and
     it must have written nothing outside /var/cache/driftwarden (what a read-only root
     filesystem needs).
Prints how long each step took, and a closing line "smoke: N passed, N failed".

The base image: the Dockerfile's default (python:3.11-slim-bookworm from Docker Hub) when it is
already in buildah's storage or can be pulled; otherwise a stand-in made here with debootstrap
(Debian bookworm minbase + python3-venv, from the Debian mirror, slimmed as Debian's slim
images are: no documentation, manual pages or translations), committed as
localhost/driftwarden-base:bookworm-slim and reused by later runs. Its root filesystem tarball is
kept in the cache directory, so even a wiped image store does not run debootstrap again.

Options:
  --base IMAGE     build on IMAGE as it is (pulled if missing); no debootstrap
  --local-base     use (or make) the debootstrap base without trying Docker Hub
  --rebuild-base   run debootstrap again even if a base is cached (implies --local-base)
  --keep           keep the working container of the checks, for `buildah run` by hand
  --update-lock    rewrite deploy/container/requirements.lock (runtime) and
                   requirements-sandbox.lock (what the sandbox extra adds) from .venv (the
                   versions the tests ran with) and PyPI, then exit; builds nothing
  -h, --help       this text

Environment:
  SMOKE_CACHE           cache directory (default: ${XDG_CACHE_HOME:-$HOME/.cache}/driftwarden-smoke)
  SMOKE_IMAGE           tag of the production image (default: localhost/driftwarden:smoke)
  SMOKE_SANDBOX_IMAGE   tag of the sandbox image (default: localhost/driftwarden:smoke-sandbox)
  SMOKE_MAX_PRODUCTION_MB  the production image's size limit in MB (default: 250)
  SMOKE_STORAGE_DRIVER  buildah storage driver (default: buildah's own, overlay; vfs, with its
                        own storage under SMOKE_CACHE, when overlay does not work here)
  SMOKE_CA_BUNDLE       CA bundle for pip inside the build, for a TLS-inspecting proxy
                        (default: $PIP_CERT, or the cert of /etc/pip.conf, when set)
  PIP_INDEX_URL         the index pip uses inside the build (default: https://pypi.org/simple)
  DEBIAN_MIRROR         for debootstrap (default: http://deb.debian.org/debian)

Needs root (buildah's storage, debootstrap) and network access to PyPI and a Debian mirror.
Installs buildah and debootstrap with apt-get when they are missing.
EOF
}

cd "$(dirname "$0")/.."
ROOT=$PWD
LOCK=deploy/container/requirements.lock
SANDBOX_LOCK=deploy/container/requirements-sandbox.lock
IMAGE=${SMOKE_IMAGE:-localhost/driftwarden:smoke}
SANDBOX_IMAGE=${SMOKE_SANDBOX_IMAGE:-localhost/driftwarden:smoke-sandbox}
MAX_PRODUCTION_MB=${SMOKE_MAX_PRODUCTION_MB:-250}
LOCAL_BASE=localhost/driftwarden-base:bookworm-slim
SMOKE_CACHE=${SMOKE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/driftwarden-smoke}
DEBIAN_MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
CACHE_IN_IMAGE=/var/cache/driftwarden

base_choice=auto base_image='' rebuild_base=0 keep=0 update_lock=0
while (($#)); do
  case $1 in
    -h | --help) usage; exit 0 ;;
    --base) base_choice=given base_image=${2:?--base needs an image}; shift ;;
    --base=*) base_choice=given base_image=${1#--base=} ;;
    --local-base) base_choice=local ;;
    --rebuild-base) base_choice=local rebuild_base=1 ;;
    --keep) keep=1 ;;
    --update-lock) update_lock=1 ;;
    *) echo "container-smoke: unknown argument: $1 (try --help)" >&2; exit 2 ;;
  esac
  shift
done

# --- the lock --------------------------------------------------------------------------------

if ((update_lock)); then
  py=${VENV:-.venv}/bin/python
  [[ -x $py ]] || { echo "container-smoke: no $py: run 'make test' (or pip install -e '.[dev]') first" >&2; exit 1; }
  work=$(mktemp -d)
  trap 'rm -rf "$work"' EXIT
  # The venv's versions are the tested ones: they constrain two resolutions, the runtime
  # dependencies alone (with the build backend, resolved by itself) and with the sandbox extra
  # (not dev). The sandbox lock holds only what the second adds: the production image installs
  # the first lock, the sandbox image both.
  "$py" -m pip freeze --exclude-editable >"$work/venv.txt"
  backend=$("$py" -c 'import tomllib; print(*tomllib.load(open("pyproject.toml", "rb"))["build-system"]["requires"])')
  # shellcheck disable=SC2086  # one word per build requirement
  "$py" -m pip install --quiet --dry-run --ignore-installed --report "$work/runtime.json" \
    --constraint "$work/venv.txt" . $backend
  "$py" -m pip install --quiet --dry-run --ignore-installed --report "$work/sandbox.json" \
    --constraint "$work/venv.txt" '.[sandbox]'
  "$py" - "$work/runtime.json" "$work/sandbox.json" "$LOCK" "$SANDBOX_LOCK" "$backend" <<'PY'
import json, re, sys
runtime_report, sandbox_report, out, sandbox_out = sys.argv[1:5]
backend = sys.argv[5].split()
canon = lambda name: re.sub(r"[-_.]+", "-", name).lower()
backend_names = {canon(re.split(r"[<>=!~ ;\[]", b, maxsplit=1)[0]) for b in backend}
def pins(report):
    found = {canon(i["metadata"]["name"]): i["metadata"]["version"] for i in json.load(open(report))["install"]}
    found.pop("driftwarden")
    return found
runtime_pins, sandbox_pins = pins(runtime_report), pins(sandbox_report)
runtime = sorted(n for n in runtime_pins if n not in backend_names)
changed = sorted(n for n in runtime if sandbox_pins.get(n, runtime_pins[n]) != runtime_pins[n])
if changed:
    sys.exit(f"the sandbox extra would change runtime pins: {', '.join(changed)}")
sandbox = sorted(n for n in sandbox_pins if n not in runtime_pins)
lines = [
    "# The Python packages of the driftwarden image (Dockerfile), every one pinned: the runtime",
    "# dependencies of pyproject.toml and everything they need, at the versions of the",
    "# development venv the tests ran with; not the `sandbox` extra (requirements-sandbox.lock,",
    "# added only to the sandbox image) nor `dev`. Installed with `pip install --no-deps",
    "# --only-binary=:all:`: nothing outside the lock gets in, and `pip check` in the build fails",
    "# when something is missing. Regenerate with: scripts/container-smoke.sh --update-lock",
    *(f"{n}=={runtime_pins[n]}" for n in runtime),
    "",
    "# The build backend ([build-system] requires): the wheel is built without build isolation.",
    *(f"{n}=={runtime_pins[n]}" for n in sorted(backend_names)),
]
open(out, "w").write("\n".join(lines) + "\n")
sandbox_lines = [
    "# The `sandbox` extra of pyproject.toml (moto, for `driftwarden run --sandbox`) and what it",
    "# needs beyond requirements.lock, pinned at the versions of the development venv. Only the",
    "# sandbox image installs it (Dockerfile: --build-arg WITH_SANDBOX=true), on top of",
    "# requirements.lock. Regenerate with: scripts/container-smoke.sh --update-lock",
    *(f"{n}=={sandbox_pins[n]}" for n in sandbox),
]
open(sandbox_out, "w").write("\n".join(sandbox_lines) + "\n")
print(f"{out}: {len(runtime)} runtime packages, build backend {', '.join(sorted(backend_names))}")
print(f"{sandbox_out}: {len(sandbox)} packages of the sandbox extra")
PY
  exit 0
fi

# --- steps, timings and the tally ------------------------------------------------------------

((EUID == 0)) || { echo "container-smoke: needs root (buildah's storage, debootstrap)" >&2; exit 1; }

started=$(date +%s.%N)
work=$(mktemp -d)
passed=0 failed=0 step_name='' step_start=''
step_names=() step_times=()
containers=()

elapsed() { awk -v a="$1" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }'; }
step() {
  step_done
  step_name=$1 step_start=$(date +%s.%N)
  printf '\n==> %s\n' "$step_name"
}
step_done() {
  if [[ -n $step_name ]]; then
    local t
    t=$(elapsed "$step_start")
    printf '<== %s: %ss\n' "$step_name" "$t"
    step_names+=("$step_name") step_times+=("$t")
    step_name=''
  fi
}
pass() { passed=$((passed + 1)); printf 'ok: %s\n' "$*"; }
fail() { failed=$((failed + 1)); printf 'FAIL: %s\n' "$*" >&2; exit 1; }

finish() {
  local rc=$?
  step_done
  for ctr in "${containers[@]}"; do
    if ((keep)); then echo "kept working container: $ctr (buildah rm $ctr)"; else bah rm "$ctr" >/dev/null 2>&1 || true; fi
  done
  ((rc == 0 || failed > 0)) || failed=$((failed + 1)) # stopped by an error outside a check
  printf '\n--- timings\n'
  local i
  for i in "${!step_names[@]}"; do printf '%8ss  %s\n' "${step_times[$i]}" "${step_names[$i]}"; done
  printf '%8ss  total\n' "$(elapsed "$started")"
  printf 'smoke: %d passed, %d failed\n' "$passed" "$failed"
  rm -rf "$work"
  exit "$rc"
}
trap finish EXIT

# --- tools and storage -----------------------------------------------------------------------

step "tools (buildah, debootstrap)"
need=()
command -v buildah >/dev/null || need+=(buildah)
[[ $base_choice == given ]] || command -v debootstrap >/dev/null || need+=(debootstrap)
if ((${#need[@]})); then
  echo "installing ${need[*]} with apt-get"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
buildah --version

storage=()
if [[ -n ${SMOKE_STORAGE_DRIVER:-} ]]; then
  storage=(--storage-driver "$SMOKE_STORAGE_DRIVER")
  [[ $SMOKE_STORAGE_DRIVER == vfs ]] && storage+=(--root "$SMOKE_CACHE/storage-vfs")
elif ! probe=$(buildah from scratch 2>/dev/null) || ! buildah mount "$probe" >/dev/null 2>&1; then
  echo "buildah's default storage does not work here: using vfs under $SMOKE_CACHE/storage-vfs"
  storage=(--storage-driver vfs --root "$SMOKE_CACHE/storage-vfs")
fi
[[ -n ${probe:-} ]] && buildah rm "$probe" >/dev/null 2>&1
bah() { buildah "${storage[@]}" "$@"; }
have_image() { bah inspect --type image "$1" >/dev/null 2>&1; }
echo "storage driver: $(bah info --format '{{.store.GraphDriverName}}' 2>/dev/null || echo "?")"

# --- the base image --------------------------------------------------------------------------

make_local_base() {
  local tarball=$SMOKE_CACHE/base-bookworm-rootfs.tar rootfs=$SMOKE_CACHE/rootfs.partial ctr
  mkdir -p "$SMOKE_CACHE"
  if ((rebuild_base)) || [[ ! -s $tarball ]]; then
    echo "debootstrap bookworm (minbase + python3-venv) from $DEBIAN_MIRROR"
    rm -rf "$rootfs"
    debootstrap --variant=minbase --include=python3,python3-venv bookworm "$rootfs" "$DEBIAN_MIRROR" \
      >"$SMOKE_CACHE/debootstrap.log" 2>&1 || { tail -20 "$SMOKE_CACHE/debootstrap.log" >&2; return 1; }
    # The sources of the official Debian images, so apt-get in the Dockerfile sees the same.
    printf 'deb %s bookworm main\ndeb %s bookworm-updates main\ndeb %s bookworm-security main\n' \
      "$DEBIAN_MIRROR" "$DEBIAN_MIRROR" "${DEBIAN_MIRROR%/debian}/debian-security" >"$rootfs/etc/apt/sources.list"
    rm -rf "${rootfs:?}"/var/cache/apt/archives/*.deb "${rootfs:?}"/var/lib/apt/lists/* "${rootfs:?}"/var/log/* "${rootfs:?}"/dev/*
    tar -C "$rootfs" --numeric-owner -cf "$tarball.partial" .
    mv "$tarball.partial" "$tarball"
    rm -rf "$rootfs"
  else
    echo "reusing the cached root filesystem $tarball"
  fi
  ctr=$(bah from scratch)
  bah add --quiet "$ctr" "$tarball" / >/dev/null
  # What debian:bookworm-slim (under python:3.11-slim-bookworm) leaves out, and keeps out of
  # later apt-get installs: documentation but its copyright files, manual pages, translations;
  # and apt's package caches. Without this the stand-in weighs some 80 MB more than the real
  # base, and the production image's size check would measure the stand-in.
  # shellcheck disable=SC2016  # expanded inside the base, by its sh
  bah run --isolation chroot "$ctr" -- sh -c '
    set -e
    mkdir -p /etc/dpkg/dpkg.cfg.d /etc/apt/apt.conf.d
    printf "%s\n" "path-exclude /usr/share/doc/*" "path-include /usr/share/doc/*/copyright" \
      "path-exclude /usr/share/man/*" "path-exclude /usr/share/info/*" "path-exclude /usr/share/groff/*" \
      "path-exclude /usr/share/lintian/*" "path-exclude /usr/share/linda/*" "path-exclude /usr/share/locale/*" \
      >/etc/dpkg/dpkg.cfg.d/docker-slim
    printf "%s\n" "Dir::Cache::pkgcache \"\";" "Dir::Cache::srcpkgcache \"\";" >/etc/apt/apt.conf.d/docker-clean
    find /usr/share/doc -mindepth 1 ! -type d ! -name copyright -delete
    find /usr/share/doc -mindepth 1 -type d -empty -delete
    rm -rf /usr/share/man/* /usr/share/info/* /usr/share/groff/* /usr/share/lintian/* /usr/share/locale/* \
      /var/cache/apt/*.bin /var/cache/debconf/*-old /var/lib/dpkg/*-old'
  bah config --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin --env LANG=C.UTF-8 \
    --cmd /bin/bash --label org.opencontainers.image.description="Debian bookworm minbase + python3-venv, slim (driftwarden container smoke)" "$ctr"
  bah commit --quiet --rm "$ctr" "$LOCAL_BASE" >/dev/null
  echo "rootfs tarball: $(($(stat -c %s "$tarball") / 1048576)) MiB"
}

step "base image"
default_base=$(sed -n 's/^ARG BASE_IMAGE=//p' Dockerfile | head -1)
case $base_choice in
  given)
    have_image "$base_image" || bah pull --quiet "$base_image" >/dev/null
    ;;
  auto)
    if have_image "$default_base"; then
      base_image=$default_base
    elif timeout 300 buildah "${storage[@]}" pull --quiet "$default_base" >/dev/null 2>"$work/pull.err"; then
      base_image=$default_base
    else
      echo "cannot pull $default_base ($(tail -1 "$work/pull.err" | cut -c1-160)): using a local base"
      base_choice=local
    fi
    ;;
esac
if [[ $base_choice == local ]]; then
  base_image=$LOCAL_BASE
  if ((rebuild_base)) || ! have_image "$LOCAL_BASE"; then
    make_local_base
  else
    echo "reusing $LOCAL_BASE"
  fi
fi
echo "base: $base_image"

# --- build ---------------------------------------------------------------------------------

build=(--format docker --layers --isolation chroot -f Dockerfile
  --build-arg "BASE_IMAGE=$base_image"
  --build-arg "VERSION=$(sed -n 's/^version = "\(.*\)"/\1/p' pyproject.toml | head -1)")
revision=$(git rev-parse HEAD 2>/dev/null || echo unknown)
[[ -z $(git status --porcelain 2>/dev/null) ]] || revision+=-dirty
build+=(--build-arg "REVISION=$revision")
ca=${SMOKE_CA_BUNDLE:-${PIP_CERT:-$(sed -n 's/^ *cert *= *//p' /etc/pip.conf 2>/dev/null | head -1)}}
if [[ -n $ca && -r $ca ]]; then
  echo "pip inside the build trusts $ca"
  build+=(--volume "$(readlink -f "$ca"):/run/build-ca.pem:ro" --build-arg PIP_CERT=/run/build-ca.pem)
fi
build+=(--build-arg "PIP_INDEX_URL=${PIP_INDEX_URL:-https://pypi.org/simple}")

# The image's size as `buildah images` prints it ("212 MB", decimal units), and in MB.
image_size() { bah images --format '{{.Size}}' "$1" | head -1; }
size_mb() {
  awk '{ u = $2; f = (u == "kB" || u == "KB") ? 0.001 : (u == "MB") ? 1 : (u == "GB") ? 1000 : (u == "B") ? 1e-6 : -1;
         if (f < 0) exit 1; printf "%.0f", $1 * f }' <<<"$1"
}

step "build $IMAGE (production: WITH_SANDBOX=false)"
bah bud "${build[@]}" --build-arg WITH_SANDBOX=false -t "$IMAGE" "$ROOT"
step "build $SANDBOX_IMAGE (demos: WITH_SANDBOX=true)"
bah bud "${build[@]}" --build-arg WITH_SANDBOX=true -t "$SANDBOX_IMAGE" "$ROOT"

step "image sizes"
production_size=$(image_size "$IMAGE") sandbox_size=$(image_size "$SANDBOX_IMAGE")
echo "image size: $IMAGE (production) $production_size"
echo "image size: $SANDBOX_IMAGE (sandbox) $sandbox_size"
production_mb=$(size_mb "$production_size") || fail "cannot read the size '$production_size'"
((production_mb < MAX_PRODUCTION_MB)) || fail "the production image is $production_size, not under $MAX_PRODUCTION_MB MB"
pass "production image $production_size (< $MAX_PRODUCTION_MB MB); sandbox image $sandbox_size"

# --- checks ----------------------------------------------------------------------------------

# Checks an image's config; writes its entrypoint and healthcheck command as NUL-separated lists.
check_config() {
  bah inspect --type image "$1" >"$work/inspect.json"
  python3 - "$CACHE_IN_IMAGE" "$work/inspect.json" "$2" "$3" <<'PY'
import json, sys
cache, inspect, out, sandbox = sys.argv[1:]
c = json.load(open(inspect))["Docker"]["config"]
problems = []
user = (c.get("User") or "root").split(":")[0]
print("user:", c.get("User"))
if not user.isdigit() or int(user) == 0:
    problems.append(f"USER {user!r} is not a non-zero numeric uid")
hc = (c.get("Healthcheck") or {}).get("Test") or []
print("healthcheck:", hc[:1], "...", "interval", (c.get("Healthcheck") or {}).get("Interval"))
if not hc or hc[0] != "CMD" or not any("/healthz" in a for a in hc):
    problems.append("no exec-form HEALTHCHECK on /healthz (built without --format docker?)")
ep = c.get("Entrypoint") or []
print("entrypoint:", ep, "cmd:", c.get("Cmd"))
if len(ep) < 4 or not ep[0].endswith("/tini") or ep[1] != "--" or not ep[-2].endswith("/driftwarden") or ep[-1] != "run":
    problems.append("ENTRYPOINT is not tini -- driftwarden run")
volumes = sorted(c.get("Volumes") or {})
print("volumes:", volumes)
if cache not in volumes:
    problems.append(f"no VOLUME {cache}")
labels = c.get("Labels") or {}
for key in ("title", "version", "revision", "licenses", "base.name"):
    print(f"label {key}: {labels.get('org.opencontainers.image.' + key)}")
    if not labels.get("org.opencontainers.image." + key):
        problems.append(f"no label org.opencontainers.image.{key}")
print("label dev.driftwarden.sandbox:", labels.get("dev.driftwarden.sandbox"))
if labels.get("dev.driftwarden.sandbox") != sandbox:
    problems.append(f"label dev.driftwarden.sandbox is not {sandbox}")
env = dict(e.split("=", 1) for e in c.get("Env") or [])
for key in ("HOME", "TMPDIR"):
    if not env.get(key, "").startswith(cache):
        problems.append(f"{key}={env.get(key)} is not in the volume {cache}")
for p in problems:
    print("problem:", p)
with open(out, "wb") as f:
    f.write(b"\0".join(a.encode() for a in ep) + b"\0\0" + b"\0".join(a.encode() for a in hc[1:]))
sys.exit(1 if problems else 0)
PY
}

step "image config (production)"
check_config "$IMAGE" "$work/commands-production" false || fail "image config of $IMAGE (above)"
pass "production image config: non-root USER, HEALTHCHECK /healthz, ENTRYPOINT tini -- driftwarden run, VOLUME, labels"
step "image config (sandbox)"
check_config "$SANDBOX_IMAGE" "$work/commands" true || fail "image config of $SANDBOX_IMAGE (above)"
pass "sandbox image config: the same"
mapfile -d '' -t both <"$work/commands"
entrypoint=() healthcheck=() into=entrypoint
for arg in "${both[@]}"; do
  if [[ -z $arg ]]; then into=healthcheck; elif [[ $into == entrypoint ]]; then entrypoint+=("$arg"); else healthcheck+=("$arg"); fi
done

in_image() { bah run --isolation chroot "$@"; }
ctr=$(bah from --quiet "$IMAGE")
containers+=("$ctr")

step "non-root user (production)"
uid=$(in_image "$ctr" -- id -u)
echo "id -u: $uid ($(in_image "$ctr" -- id -un 2>/dev/null || true))"
[[ $uid =~ ^[0-9]+$ && $uid != 0 ]] || fail "the image runs as uid $uid"
pass "runs as uid $uid"

step "driftwarden --version (production)"
version=$(in_image "$ctr" -- driftwarden --version) || fail "driftwarden --version"
echo "$version"
pass "$version"

step "driftwarden validate /usr/share/driftwarden/manifests (production)"
in_image "$ctr" -- driftwarden validate /usr/share/driftwarden/manifests || fail "driftwarden validate exited $?"
pass "validate of the bundled manifests"

step "git in the production image (gitpython: init, commit, clone, fetch)"
# The image keeps perl's modules out (Dockerfile): what driftwarden's Git source does must work.
git_check='
import os, tempfile, git
base = tempfile.mkdtemp(dir=os.environ["HOME"])
origin = git.Repo.init(os.path.join(base, "origin"), initial_branch="main")
with open(os.path.join(origin.working_tree_dir, "cluster.yaml"), "w") as f:
    f.write("kind: Cluster\n")
origin.index.add(["cluster.yaml"])
who = git.Actor("smoke", "smoke@example.invalid")
commit = origin.index.commit("one", author=who, committer=who)
clone = git.Repo.clone_from(origin.git_dir, os.path.join(base, "clone"))
clone.remotes.origin.fetch()
assert clone.head.commit.hexsha == commit.hexsha, (clone.head.commit, commit)
print("git", ".".join(map(str, git.Git().version_info)), "clone and fetch of", commit.hexsha[:12])
'
in_image "$ctr" -- python -c "$git_check" || fail "git in $IMAGE"
pass "git works for gitpython (init, commit, clone, fetch)"

step "no sandbox in the production image"
# moto is not there, and --sandbox says how to get it instead of failing with a traceback.
if in_image "$ctr" -- python -c "import moto" 2>/dev/null; then fail "moto is installed in $IMAGE"; fi
set +e
refusal=$(in_image "$ctr" -- driftwarden plan --sandbox --source /usr/share/driftwarden/manifests 2>&1)
refused=$?
set -e
echo "driftwarden plan --sandbox: exit $refused: $(grep -m1 'driftwarden:' <<<"$refusal" | cut -c1-200)"
((refused != 0)) && grep -q "driftwarden\[sandbox\]" <<<"$refusal" || fail "--sandbox in $IMAGE does not name the extra to install"
pass "no moto; --sandbox names the extra to install"

ctr=$(bah from --quiet "$SANDBOX_IMAGE")
containers+=("$ctr")

step "daemon (sandbox image): entrypoint on --sandbox until healthy and ready, then SIGTERM"
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
# Inside the image: the entrypoint in the background; the HEALTHCHECK command until it passes;
# /readyz until the first sync is done; SIGTERM to tini; then every file written since start
# outside the cache volume (none allowed: the root filesystem may be read-only).
# shellcheck disable=SC2016  # expanded inside the image, by its bash
daemon_check='
set -u
n=$1; shift
entry=("${@:1:n}"); health=("${@:n+1}")
marker=$HOME/.smoke-started
: >"$marker"
"${entry[@]}" >"$HOME/.smoke-daemon.log" 2>&1 &
pid=$!
status=1
for i in $(seq 1 240); do
  if ! kill -0 "$pid" 2>/dev/null; then echo "the daemon exited before it was ready"; break; fi
  if [ -z "${healthy:-}" ] && "${health[@]}" 2>/dev/null; then healthy=1; echo "HEALTHCHECK command passed after ${i}s"; fi
  if [ -n "${healthy:-}" ] && python -c "import urllib.request, sys; urllib.request.urlopen(sys.argv[1], timeout=4)" \
      "http://127.0.0.1:$DRIFTWARDEN_METRICS_PORT/readyz" 2>/dev/null; then
    echo "/readyz 200 after ${i}s"; status=0; break
  fi
  sleep 1
done
python - "http://127.0.0.1:$DRIFTWARDEN_METRICS_PORT/status" <<"PY" || true
import json, sys, urllib.request
s = json.load(urllib.request.urlopen(sys.argv[1], timeout=4))
print("status:", {k: v for k, v in s.items() if isinstance(v, (str, int, float, bool)) or v is None})
PY
kill -TERM "$pid" 2>/dev/null
wait "$pid"; rc=$?
echo "exit status after SIGTERM: $rc"
[ "$rc" = 0 ] || status=1
echo "--- last lines of the daemon log"
tail -n 5 "$HOME/.smoke-daemon.log" | cut -c1-300
written=$(find / -xdev -newer "$marker" ! -path "$HOME" ! -path "$HOME/*" 2>/dev/null)
if [ -n "$written" ]; then echo "written outside $HOME:"; echo "$written" | head -20; status=1
else echo "nothing written outside $HOME"; fi
exit $status
'
in_image --env DRIFTWARDEN_SANDBOX=1 --env DRIFTWARDEN_SOURCE=/usr/share/driftwarden/manifests \
  --env "DRIFTWARDEN_METRICS_PORT=$port" --env DRIFTWARDEN_METRICS_HOST=127.0.0.1 \
  --env DRIFTWARDEN_INTERVAL=1h --env DRIFTWARDEN_DRIFT_INTERVAL=1h \
  "$ctr" -- bash -c "$daemon_check" bash "${#entrypoint[@]}" "${entrypoint[@]}" "${healthcheck[@]}" ||
  fail "the daemon in the image (above)"
pass "daemon healthy, ready, SIGTERM exit 0, writes only to $CACHE_IN_IMAGE"

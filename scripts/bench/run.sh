#!/usr/bin/env bash
# Runs every benchmark of scripts/bench/ beside its anchor and writes BENCHMARKS.md.
#
# Usage: scripts/bench/run.sh [--quick] [--only NAME,...] [--out FILE]
#   (also: bun run bench -- [--quick] ...)
#   --quick   small parameters and one run each: a smoke test of the whole chain in a few minutes
#   --only    run only these benchmarks: index, index-vs-apt, dht-lookup, peer-serving, footprint, swarm, apt
#   --out     the report to write (default: BENCHMARKS.md at the top of the repository; with --only,
#             BENCHMARKS.md in the results directory, so that a partial run does not replace the report)
#
# Installs the anchors it needs from Debian (aria2, nginx-light, apt-cacher-ng, wrk, hyperfine; as root)
# and from npm (bittorrent-dht, a devDependency). Benchmarks run one after the other, never at once, as
# they would disturb each other; each one's output is kept in a results directory under /tmp, whose
# path is printed. Benchmarks are not run by CI.
set -euo pipefail

cd "$(dirname "$0")/../.."
repo=$(pwd)
quick=0
only=""
out=""
while [ $# -gt 0 ]; do
  case "$1" in
    --quick) quick=1 ;;
    --only) only="${2:?--only needs a list of benchmarks}"; shift ;;
    --out) out="${2:?--out needs a file}"; shift ;;
    -h|--help) sed -n '2,14p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "run.sh: unknown argument '$1' (see --help)" >&2; exit 2 ;;
  esac
  shift
done

if [ -x node_modules/.bin/bun ]; then bun=$repo/node_modules/.bin/bun; else bun=$(command -v bun || true); fi
[ -n "$bun" ] || { echo "run.sh: bun not found (run npm install, or install Bun)" >&2; exit 1; }

# ---- anchors ----
declare -A package_of=([wrk]=wrk [nginx]=nginx-light [hyperfine]=hyperfine [apt-cacher-ng]=apt-cacher-ng [aria2c]=aria2 [tc]=iproute2 [ss]=iproute2
  [apt-ftparchive]=apt-utils [dpkg-deb]=dpkg [gpg]=gnupg [gpgv]=gpgv [xz]=xz-utils)
missing=()
for tool in "${!package_of[@]}"; do
  PATH="$PATH:/usr/sbin:/sbin" command -v "$tool" >/dev/null 2>&1 || missing+=("${package_of[$tool]}")
done
if [ ${#missing[@]} -gt 0 ]; then
  mapfile -t missing < <(printf '%s\n' "${missing[@]}" | sort -u)
  if [ "$(id -u)" -ne 0 ]; then
    echo "run.sh: missing ${missing[*]}: run as root, or apt-get install -y ${missing[*]}" >&2
    exit 1
  fi
  echo "run.sh: installing ${missing[*]}" >&2
  DEBIAN_FRONTEND=noninteractive timeout 600 apt-get install -y --no-install-recommends "${missing[@]}" >&2
fi
if [ ! -f node_modules/bittorrent-dht/package.json ]; then
  echo "run.sh: installing the npm devDependencies (bittorrent-dht)" >&2
  timeout 600 "$bun" install >&2
fi
# apt-cacher-ng's package starts its system service; the APT benchmark runs a private one.
export PATH="$PATH:/usr/sbin:/sbin"

# ---- the benchmarks ----
results=$(mktemp -d /tmp/apt-p2p-bench-results-XXXXXX)
if [ -z "$out" ]; then
  if [ -n "$only" ]; then out="$results/BENCHMARKS.md"; else out="$repo/BENCHMARKS.md"; fi
fi
current=""
on_signal() {
  echo "run.sh: interrupted${current:+ during $current}; outputs so far in $results" >&2
  exit 130
}
trap on_signal INT TERM

if [ $quick -eq 1 ]; then
  runs_index=1; runs_dht=1
  args_index_vs_apt=(--rounds 1 --cold-runs 1 --warm-runs 3)
  args_dht=(--nodes 100 --lookups 40)
  args_peer=(--runs 1 --duration 2 --big-mb 16 --small 50)
  args_footprint=(--files 1000 --nodes 100 --settle 5 --window 35)
  args_swarm=(--size-mb 10 --seeders 3 --small 10 --runs 1)
  args_apt=(--packages 20 --total-mb 20 --large 2 --peers 2 --runs 1)
else
  runs_index=3; runs_dht=3
  args_index_vs_apt=(--rounds 3 --cold-runs 2 --warm-runs 10)
  args_dht=(--nodes 500 --lookups 200)
  args_peer=(--runs 3 --duration 10)
  args_footprint=(--files 10000 --nodes 1000 --settle 20 --window 60 --runs 3)
  args_swarm=(--runs 3)
  args_apt=(--runs 3)
fi

wanted() {
  [ -z "$only" ] && return 0
  case ",$only," in *",$1,"*) return 0 ;; *) return 1 ;; esac
}

# The swarm and APT benchmarks shape lo with an htb root qdisc, of which there is one per device: wait
# (bounded) until no other benchmark on this machine holds it, or they would fall back or fail.
LO_WAIT_S=900
wait_for_lo() {
  wanted "$1" || return 0
  local waited=0
  while tc qdisc show dev lo 2>/dev/null | grep -q htb && [ $waited -lt $LO_WAIT_S ]; do
    [ $((waited % 60)) -eq 0 ] && echo "run.sh: lo is shaped by someone else (tc qdisc show dev lo); waiting before $1" >&2
    sleep 5
    waited=$((waited + 5))
  done
}

# run_bench NAME RUNS COMMAND...: runs COMMAND RUNS times; keeps stdout, stderr, exit code and seconds.
run_bench() {
  local name=$1 runs=$2
  shift 2
  wanted "$name" || return 0
  current=$name
  echo "${*/#$bun/bun}" >"$results/$name.cmd"
  for i in $(seq 1 "$runs"); do
    echo "run.sh: $name, run $i of $runs: $*" >&2
    local start=$SECONDS rc=0
    "$@" >"$results/$name-$i.out" 2>"$results/$name-$i.err" || rc=$?
    echo "$rc $((SECONDS - start))" >"$results/$name-$i.status"
    if [ $rc -ne 0 ]; then
      echo "run.sh: $name failed (exit $rc); the last lines of its output:" >&2
      tail -n 15 "$results/$name-$i.err" >&2
    else
      tail -n 12 "$results/$name-$i.out" | grep -v '^BENCH_JSON ' >&2 || true
    fi
  done
  current=""
}

run_bench index "$runs_index" "$bun" scripts/bench/index.ts
run_bench index-vs-apt 1 "$bun" scripts/bench/index-vs-apt.ts "${args_index_vs_apt[@]}"
run_bench dht-lookup "$runs_dht" "$bun" scripts/bench/dht-lookup.ts "${args_dht[@]}"
run_bench peer-serving 1 "$bun" scripts/bench/peer-serving.ts "${args_peer[@]}"
run_bench footprint 1 "$bun" scripts/bench/footprint.ts "${args_footprint[@]}"
wait_for_lo swarm
run_bench swarm 1 "$bun" scripts/bench/swarm.ts "${args_swarm[@]}"
wait_for_lo apt
run_bench apt 1 "$bun" scripts/bench/apt.ts "${args_apt[@]}"

report_args=("$results" "$out")
[ $quick -eq 1 ] && report_args+=(--quick)
"$bun" scripts/bench/lib/write-report.ts "${report_args[@]}"
echo "run.sh: wrote $out; every benchmark's output is in $results" >&2

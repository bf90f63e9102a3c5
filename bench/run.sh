#!/usr/bin/env bash
# Runs the authgress benchmarks side by side on this machine: installs wrk,
# nginx and squid (Debian packages, as root) when missing, builds authgress,
# a bare goproxy floor, a token endpoint and helpers, starts everything on
# 127.0.0.1 and prints the tables (also written to bench/results/latest.md).
#   bench/run.sh                       # everything (~12 minutes)
#   bench/run.sh -only plain,latency   # sections: plain, mtls, reverse, agent, intercept, latency, openloop, tokens, scale
#   bench/run.sh -rounds 5 -d 10s
set -euo pipefail
cd "$(dirname "$0")/.."
need=()
command -v wrk >/dev/null 2>&1 || need+=(wrk)
[ -x /usr/sbin/nginx ] || command -v nginx >/dev/null 2>&1 || need+=(nginx)
[ -x /usr/sbin/squid ] || command -v squid >/dev/null 2>&1 || need+=(squid)
if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ]; then
    apt-get update
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${need[@]}"
  else
    echo "bench/run.sh: please install: ${need[*]}" >&2
    exit 1
  fi
fi
# squid's Debian postinst may start a system squid on :3128; ours uses :13128.
mkdir -p bench/results
# smokescreen (stripe) as a peer forward proxy: its released module, built
# once from the Go module proxy into a cache (pinned; ~10 s). Skipped with a
# note if the module proxy does not serve it.
extra=()
case " $* " in *" -smokescreen-bin "*) ;; *)
  smk="${XDG_CACHE_HOME:-$HOME/.cache}/authgress-bench/smokescreen-v0.1.0"
  if [ ! -x "$smk/smokescreen" ]; then
    GOBIN="$smk" go install github.com/stripe/smokescreen@v0.1.0 >&2 || echo "bench/run.sh: smokescreen v0.1.0 could not be built; its row is left out" >&2
  fi
  [ -x "$smk/smokescreen" ] && extra=(-smokescreen-bin "$smk/smokescreen")
  ;;
esac
exec go run ./bench/harness -out bench/results/latest.md "${extra[@]}" "$@"

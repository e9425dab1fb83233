#!/bin/sh
# campaign.sh - the long fuzzing campaign of docs/reliability.md.
#
#   cd build-fuzz            # CC=clang ../configure --enable-fuzzers; make
#   nice -n 19 sh ../tests/fuzz/campaign.sh [RUNS] [TARGET...]
#
# Runs each target (default: all eight) for RUNS executions (default
# 1000000) on one core, corpus in fuzz-campaign/TARGET (seeded from
# tests/fuzz/corpus/TARGET), log in fuzz-campaign/TARGET.log; then
# replays the corpus with -print_coverage=1 and prints, per source file,
# the instrumented edges covered.  Exit status 1 if any target found
# something (its crash-*, leak-*, timeout-* or oom-* file is kept).
# FUZZ_MAX_TIME=SECONDS stops a target earlier (libFuzzer's
# -max_total_time).  TMPDIR=/dev/shm speeds up the data targets, which
# write each input to a file.
set -u
top=$(cd "$(dirname "$0")/../.." && pwd)
runs=${1:-1000000}
[ $# -gt 0 ] && shift
targets=${*:-fuzz_model fuzz_idx fuzz_npy fuzz_cifar fuzz_pb fuzz_config fuzz_cli fuzz_spec}
mkdir -p fuzz-campaign
fail=0
for t in $targets; do
	case $t in
	fuzz_model|fuzz_pb) dict=onnx.dict ;; fuzz_config) dict=config.dict ;;
	fuzz_cli) dict=cli.dict ;; fuzz_spec) dict=spec.dict ;; *) dict= ;;
	esac
	mkdir -p fuzz-campaign/$t
	start=$(date +%s)
	./tests/fuzz/$t -runs="$runs" ${FUZZ_MAX_TIME:+-max_total_time=$FUZZ_MAX_TIME} \
		${dict:+-dict="$top/tests/fuzz/$dict"} \
		-timeout=20 -rss_limit_mb=2048 -close_fd_mask=1 -print_final_stats=1 \
		-artifact_prefix=fuzz-campaign/$t- fuzz-campaign/$t \
		"$top/tests/fuzz/corpus/$t" > fuzz-campaign/$t.log 2>&1 || fail=1
	end=$(date +%s)
	execs=$(sed -n 's/^stat::number_of_executed_units: *//p' fuzz-campaign/$t.log)
	echo "$t: $execs executions in $((end - start)) s, corpus $(ls fuzz-campaign/$t | wc -l) inputs"
	./tests/fuzz/$t -runs=0 -print_coverage=1 -close_fd_mask=1 fuzz-campaign/$t \
		> fuzz-campaign/$t.cov 2>&1
done
# COVERED_FUNC: hits: H edges: C/T FUNC FILE:LINE (UNCOVERED_FUNC: ...
# adds the functions never entered: 0 of their edges).
cat fuzz-campaign/*.cov | awk '
	/^(COVERED|UNCOVERED)_FUNC:/ {
		file = $NF; sub(/:[0-9]+$/, "", file); sub(/.*\.\.\//, "", file)
		if ($1 == "COVERED_FUNC:") { split($5, e, "/"); c = e[1]; n = e[2] }
		else { c = 0; n = 0 }
		key = file " " $(NF-1)
		if (!(key in seen) || c > cov[key]) {
			if (key in seen) { C[file] -= cov[key]; T[file] -= tot[key] }
			seen[key] = 1; cov[key] = c; tot[key] = n
			C[file] += c; T[file] += n; F[file]++
		}
	}
	END { for (f in C) if (f ~ /^(src|runtime|passes)\//)
		printf "%-24s %6d/%-6d edges (%5.1f%%) in %d functions\n", f, C[f], T[f],
		       T[f] ? 100 * C[f] / T[f] : 0, F[f] }' | sort
ls fuzz-campaign | grep -E -- '-(crash|leak|timeout|oom|slow-unit)-' && fail=1
exit $fail

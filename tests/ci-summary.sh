#!/bin/sh
# ci-summary.sh BUILD... - one line "N passed, N failed, N skipped" for the
# last `make check` in the build folders, counting every TAP result of every
# test (the :test-result: lines of the *.trs files automake's drivers write).
# PASS and XFAIL count as passed; FAIL, XPASS and ERROR as failed.
# Exit status: 0 if nothing failed, 1 if something failed, 2 if a folder is
# missing or holds no results (then the line still comes, from what exists).
[ $# -gt 0 ] || set -- .
status=0
for build do
	if [ -z "$(find "$build" -name '*.trs' -type f 2>/dev/null | head -n 1)" ]
	then
		echo "ci-summary.sh: $build: no test results (*.trs); run make check" >&2
		status=2
	fi
done
find "$@" -name '*.trs' -type f -exec cat {} + 2>/dev/null | awk '
	$1 == ":test-result:" {
		if ($2 == "PASS" || $2 == "XFAIL") pass++
		else if ($2 == "SKIP") skip++
		else fail++
	}
	END {
		printf "%d passed, %d failed, %d skipped\n", pass, fail, skip
		exit fail ? 1 : 0
	}'
rc=$?     # awk's: 1 if a result failed
[ "$status" -ne 0 ] || status=$rc
exit "$status"

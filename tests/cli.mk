## tests/cli.mk - included by Makefile.am: the command-line surface: depfiles,
## the run configuration file, the manual, progress lines.
##   depfile.test   -MD, -MF, -MT, --depfile: the rule, the empty rules,
##                  escaping, nothing written by a failed run
##   config.test    the run configuration file: lookup order, flags win,
##                  relative paths, malformed and schema-invalid files,
##                  no data source
##   usage.test     options a run would ignore are usage errors (exit 2)

CLI_TESTS = \
	tests/depfile.test \
	tests/config.test \
	tests/usage.test

TESTS += $(CLI_TESTS)
dist_check_SCRIPTS += $(CLI_TESTS)
EXTRA_DIST += $(CLI_TESTS)

##   manual.test    doc/nepenc.1: groff -ww finds nothing; every flag and
##                  command of --help is in it, with the same defaults;
##                  every flag of its OPTIONS is one nepenc accepts
##   progress.test  progress on stderr: plain lines to a file (every step,
##                  throttled, -q, --json), redrawn in place under script
MAN_TESTS = \
	tests/manual.test \
	tests/progress.test

TESTS += $(MAN_TESTS)
dist_check_SCRIPTS += $(MAN_TESTS)
EXTRA_DIST += $(MAN_TESTS)

##   example.test   examples/fashion-mnist: make runs the pipeline (PyTorch,
##                  nepenc -MD --json, onnxruntime latency, summary); a second
##                  make does nothing; touching the data or the model reruns
##                  only what depends on it; make clean
EXAMPLE_TESTS = \
	tests/example.test

TESTS += $(EXAMPLE_TESTS)
dist_check_SCRIPTS += $(EXAMPLE_TESTS)
EXTRA_DIST += $(EXAMPLE_TESTS)

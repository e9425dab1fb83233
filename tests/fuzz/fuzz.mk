## tests/fuzz/fuzz.mk - included by Makefile.am: libFuzzer targets (issue
## 11), built by `CC=clang ./configure --enable-fuzzers`, which also
## instruments the whole library (coverage, ASan, UBSan).
##   fuzz_model   loader + inspector + save/reload (np_model_clone)
##   fuzz_idx, fuzz_npy, fuzz_cifar, fuzz_pb
##                the data readers (examples, or examples "\n--\n" labels)
##   fuzz_config  the run configuration, through the command line
##   fuzz_cli     the command-line parser (argv split at NUL bytes)
##   fuzz_spec    the data-spec parser
##   fuzz_image   the folder: decoders (PNG, JPEG) and preprocessing
## Seeds: tests/fuzz/corpus/TARGET/; dictionaries: tests/fuzz/*.dict.
## `make fuzz-smoke` runs each for FUZZ_SECONDS (default 20) on one core;
## docs/reliability.md has the long campaign.

FUZZ_TARGETS = fuzz_model fuzz_idx fuzz_npy fuzz_cifar fuzz_pb \
	fuzz_config fuzz_cli fuzz_spec fuzz_image
FUZZ_SECONDS = 20
FUZZ_FLAGS = -timeout=20 -rss_limit_mb=2048 -close_fd_mask=1 -print_final_stats=1

EXTRA_DIST += tests/fuzz

if FUZZERS
noinst_PROGRAMS = tests/fuzz/fuzz_model tests/fuzz/fuzz_idx \
	tests/fuzz/fuzz_npy tests/fuzz/fuzz_cifar tests/fuzz/fuzz_pb \
	tests/fuzz/fuzz_config tests/fuzz/fuzz_cli tests/fuzz/fuzz_spec \
	tests/fuzz/fuzz_image
FUZZ_LD = $(NP_FUZZ_FLAGS)
tests_fuzz_fuzz_model_SOURCES = tests/fuzz/fuzz_model.c tests/fuzz/fuzz.h
tests_fuzz_fuzz_model_LDADD = $(NP_LIBS)
tests_fuzz_fuzz_model_LDFLAGS = $(AM_LDFLAGS) $(FUZZ_LD)
tests_fuzz_fuzz_idx_SOURCES = tests/fuzz/fuzz_data.c tests/fuzz/fuzz.h
tests_fuzz_fuzz_idx_CPPFLAGS = $(AM_CPPFLAGS) -DFUZZ_FORMAT=idx
tests_fuzz_fuzz_idx_LDADD = $(NP_LIBS)
tests_fuzz_fuzz_idx_LDFLAGS = $(AM_LDFLAGS) $(FUZZ_LD)
tests_fuzz_fuzz_npy_SOURCES = tests/fuzz/fuzz_data.c tests/fuzz/fuzz.h
tests_fuzz_fuzz_npy_CPPFLAGS = $(AM_CPPFLAGS) -DFUZZ_FORMAT=npy
tests_fuzz_fuzz_npy_LDADD = $(NP_LIBS)
tests_fuzz_fuzz_npy_LDFLAGS = $(AM_LDFLAGS) $(FUZZ_LD)
tests_fuzz_fuzz_cifar_SOURCES = tests/fuzz/fuzz_data.c tests/fuzz/fuzz.h
tests_fuzz_fuzz_cifar_CPPFLAGS = $(AM_CPPFLAGS) -DFUZZ_FORMAT=cifar10
tests_fuzz_fuzz_cifar_LDADD = $(NP_LIBS)
tests_fuzz_fuzz_cifar_LDFLAGS = $(AM_LDFLAGS) $(FUZZ_LD)
tests_fuzz_fuzz_pb_SOURCES = tests/fuzz/fuzz_data.c tests/fuzz/fuzz.h
tests_fuzz_fuzz_pb_CPPFLAGS = $(AM_CPPFLAGS) -DFUZZ_FORMAT=pb
tests_fuzz_fuzz_pb_LDADD = $(NP_LIBS)
tests_fuzz_fuzz_pb_LDFLAGS = $(AM_LDFLAGS) $(FUZZ_LD)
tests_fuzz_fuzz_config_SOURCES = tests/fuzz/fuzz_config.c tests/fuzz/fuzz.h
tests_fuzz_fuzz_config_LDADD = $(NP_LIBS)
tests_fuzz_fuzz_config_LDFLAGS = $(AM_LDFLAGS) $(FUZZ_LD)
tests_fuzz_fuzz_cli_SOURCES = tests/fuzz/fuzz_cli.c tests/fuzz/fuzz.h
tests_fuzz_fuzz_cli_LDADD = $(NP_LIBS)
tests_fuzz_fuzz_cli_LDFLAGS = $(AM_LDFLAGS) $(FUZZ_LD)
tests_fuzz_fuzz_spec_SOURCES = tests/fuzz/fuzz_spec.c tests/fuzz/fuzz.h
tests_fuzz_fuzz_spec_LDADD = $(NP_LIBS)
tests_fuzz_fuzz_spec_LDFLAGS = $(AM_LDFLAGS) $(FUZZ_LD)
tests_fuzz_fuzz_image_SOURCES = tests/fuzz/fuzz_image.c tests/fuzz/fuzz.h
tests_fuzz_fuzz_image_LDADD = $(NP_LIBS)
tests_fuzz_fuzz_image_LDFLAGS = $(AM_LDFLAGS) $(FUZZ_LD)


# New inputs go to fuzz-work/TARGET (the committed seeds stay as they
# are); a crash leaves fuzz-work/TARGET-crash-* and fails the target.
fuzz-smoke: $(noinst_PROGRAMS)
	@fail=0; for t in $(FUZZ_TARGETS); do \
	  mkdir -p fuzz-work/$$t; \
	  case $$t in \
	    fuzz_model|fuzz_pb) dict=onnx.dict ;; fuzz_config) dict=config.dict ;; \
	    fuzz_cli) dict=cli.dict ;; fuzz_spec) dict=spec.dict ;; *) dict= ;; \
	  esac; \
	  d=$${dict:+-dict=$(srcdir)/tests/fuzz/$$dict}; \
	  printf 'fuzz-smoke: %-12s %ss ... ' $$t $(FUZZ_SECONDS); \
	  if ./tests/fuzz/$$t $(FUZZ_FLAGS) $$d -max_total_time=$(FUZZ_SECONDS) \
	       -artifact_prefix=fuzz-work/$$t- fuzz-work/$$t \
	       $(srcdir)/tests/fuzz/corpus/$$t > fuzz-work/$$t.log 2>&1; then \
	    sed -n 's/^stat::number_of_executed_units: */ok, executions: /p' fuzz-work/$$t.log; \
	  else \
	    echo FAILED; tail -n 40 fuzz-work/$$t.log; fail=1; \
	  fi; \
	done; exit $$fail
else
fuzz-smoke:
	@echo "fuzz-smoke: configure with CC=clang --enable-fuzzers first" >&2; exit 1
endif
.PHONY: fuzz-smoke
clean-local: clean-local-fuzz
clean-local-fuzz:
	-rm -rf fuzz-work
.PHONY: clean-local-fuzz

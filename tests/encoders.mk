## tests/encoders.mk - included by Makefile.am: NEPENTHE on transformer
## encoders (issue 13, item 4; DESIGN.md section 13).
##   test_encoders   an encoder MLP on tiny hand-built graphs: the GELU
##                   layer's neuron axis, its profile per token against a
##                   hand count, the all-OFF / all-ON / mixed rewrites and
##                   fold_gemm through a bias Add
##   encoders.test   inspect, eval and the main job (--fold approx and
##                   exact) on tests/fixtures/encoders (made by
##                   tests/make-encoder-fixtures.py with PyTorch;
##                   committed), checked with onnx.checker and onnxruntime

check_PROGRAMS += tests/test_encoders
tests_test_encoders_SOURCES = tests/test_encoders.c tests/graphkit.h tests/tap.h
tests_test_encoders_LDADD = $(NP_LIBS)

TESTS += tests/test_encoders

TESTS += tests/encoders.test
dist_check_SCRIPTS += tests/encoders.test
EXTRA_DIST += tests/make-encoder-fixtures.py

## tests/runtime.mk - the runtime's tests, included by Makefile.am:
## conformance against the ONNX backend node tests, Gelu (opset 20, newer
## than the suite) against onnxruntime through the same harness, and
## gradients against finite differences.

check_PROGRAMS += tests/test_conformance tests/test_gradcheck tests/test_ops

tests_test_conformance_SOURCES = tests/test_conformance.c tests/tap.h
tests_test_conformance_LDADD = $(NP_LIBS)

tests_test_gradcheck_SOURCES = tests/test_gradcheck.c tests/tap.h
tests_test_gradcheck_LDADD = $(NP_LIBS)

# test_ops: every ops.def line against its np_op (.name, np_op_find), the
# facts against the ONNX spec, np_node_kind, weight_geom on known nodes.
tests_test_ops_SOURCES = tests/test_ops.c tests/tap.h
tests_test_ops_LDADD = $(NP_LIBS)

TESTS += tests/test_conformance tests/test_gradcheck tests/test_ops

TESTS += tests/gelu-ort.test
dist_check_SCRIPTS += tests/gelu-ort.test
EXTRA_DIST += tests/gelu-ort.test

## tests/e2e.mk - included by Makefile.am: end-to-end script tests of the
## commands on Fashion-MNIST ($FASHION_MNIST) and the shared models
## ($NP_SHARED/models), checked against PyTorch's numbers and onnxruntime
## (node + onnxruntime-node).  Each skips, saying why, when its inputs
## are missing.
##   eval.test       nepenc eval; data and usage errors
##   finetune.test   nepenc finetune vs PyTorch (tests/fixtures/torch_finetune_*)
##   pipeline.test   the main job: summary, checker, ORT, report, plot,
##                   determinism, --passes none
##   interrupt.test  SIGINT/SIGTERM leave no output and no temporary file

E2E_TESTS = \
	tests/eval.test \
	tests/finetune.test \
	tests/pipeline.test \
	tests/interrupt.test

TESTS += $(E2E_TESTS)
dist_check_SCRIPTS += $(E2E_TESTS)
EXTRA_DIST += $(E2E_TESTS) tests/fixtures

# Data-parallel runs under mpirun (issue 16); skips when built without MPI.
TESTS += tests/mpi.test
dist_check_SCRIPTS += tests/mpi.test
EXTRA_DIST += tests/mpi.test tests/lsan-openmpi.supp

## tests/paper.mk - included by Makefile.am: the paper's CNN sizes and
## every x86 ISA (issue 10), on the fixtures of tests/fixtures/paper
## (torchvision ResNet-18 with the CIFAR stem, MobileNet-V2; made by
## tests/make-paper-fixtures.py with PyTorch; committed).
##   paper.test   inspect and eval against PyTorch's numbers; an untrained
##                torchvision export (tied BN statistics) trains
##   isa.test     a few training steps of every shared and paper model
##                under ONEDNN_MAX_CPU_ISA=AVX512_CORE, AVX2, SSE41 (as the
##                CPU has them): no reference kernel, losses agree; and
##                test_gradcheck under each

PAPER_TESTS = tests/paper.test tests/isa.test
TESTS += $(PAPER_TESTS)
dist_check_SCRIPTS += $(PAPER_TESTS)
EXTRA_DIST += $(PAPER_TESTS) tests/make-paper-fixtures.py tests/make-paper-data.py \
	tests/paper_data.py tests/paper_models.py

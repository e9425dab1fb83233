## tests/optim.mk - included by Makefile.am: the optimizers and the
## image-encoder fixtures of tests/fixtures/transformers (issue 13; made
## by tests/make-transformer-fixtures.py with PyTorch; committed).
##   test_optim        SGD and AdamW steps and the warmup schedules against
##                     PyTorch's numbers (tests/fixtures/optim_reference.h,
##                     from tests/make-optim-reference.py), masks held at
##                     exact zeros; which initializers are trained
##   transformers.test nepenc eval of the ViT and Swin-like fixtures at
##                     opsets 13 and 17 against PyTorch; one SGD step of
##                     the ViT moves every parameter as PyTorch's does;
##                     one epoch of --optimizer adamw against PyTorch's

check_PROGRAMS += tests/test_optim
tests_test_optim_SOURCES = tests/test_optim.c tests/graphkit.h tests/tap.h \
	tests/fixtures/optim_reference.h
tests_test_optim_LDADD = $(NP_LIBS)
TESTS += tests/test_optim

TESTS += tests/transformers.test
dist_check_SCRIPTS += tests/transformers.test
# tests/fixtures is in EXTRA_DIST already.
EXTRA_DIST += tests/transformers.test tests/make-transformer-fixtures.py \
	tests/transformer_models.py tests/make-optim-reference.py

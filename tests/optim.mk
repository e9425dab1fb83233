## tests/optim.mk - included by Makefile.am: the image-encoder fixtures
## of tests/fixtures/transformers (issue 13; made by
## tests/make-transformer-fixtures.py with PyTorch; committed).
##   transformers.test nepenc eval of the ViT and Swin-like fixtures at
##                     opsets 13 and 17 against PyTorch

TESTS += tests/transformers.test
dist_check_SCRIPTS += tests/transformers.test
# tests/fixtures is in EXTRA_DIST already.
EXTRA_DIST += tests/transformers.test tests/make-transformer-fixtures.py \
	tests/transformer_models.py

## tests/data.mk - included by Makefile.am: the dataset loaders (runtime/data.c).
check_PROGRAMS += tests/test_data
tests_test_data_SOURCES = tests/test_data.c tests/tap.h
tests_test_data_LDADD = $(NP_LIBS)
TESTS += tests/test_data

# folder: data (runtime/image.c, folder.c, stream.c): the preprocessing
# against torchvision's (fixtures made by tests/make-preprocess-fixtures.py)
# and the decoders' edges.
check_PROGRAMS += tests/test_image
tests_test_image_SOURCES = tests/test_image.c tests/tap.h
tests_test_image_LDADD = $(NP_LIBS)
TESTS += tests/test_image
EXTRA_DIST += tests/make-preprocess-fixtures.py

# The PNG path without libpng (runtime/png_fast.c) against libpng.
check_PROGRAMS += tests/test_png_fast
tests_test_png_fast_SOURCES = tests/test_png_fast.c tests/tap.h
tests_test_png_fast_LDADD = $(NP_LIBS)
TESTS += tests/test_png_fast

# folder: end to end (issue 14): a Fashion-MNIST PNG/JPEG folder
# (tests/make-image-folder.py, python3-pil) against IDX, streaming,
# --classes, and the hostile images.
TESTS += tests/folder.test
dist_check_SCRIPTS += tests/folder.test
EXTRA_DIST += tests/make-image-folder.py

# Token data (issue 13, item 3): npy arrays named by model input, int64
# and int32 ids, one plan for every batch, on the BERT-like fixture of
# tests/fixtures/transformers (tests/make-bert-fixture.py, PyTorch;
# committed) with its token task (tests/lib/bert_tokens.py).
TESTS += tests/tokens.test
dist_check_SCRIPTS += tests/tokens.test
EXTRA_DIST += tests/make-bert-fixture.py

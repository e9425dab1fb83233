# NP_CHECK_CFLAG(FLAG, [ACTION-IF-OK], [ACTION-IF-NOT])
# Checks that the C compiler accepts FLAG without a warning turned error.
AC_DEFUN([NP_CHECK_CFLAG], [
  AS_VAR_PUSHDEF([np_var], [np_cv_cflag_$1])
  AC_CACHE_CHECK([whether $CC accepts $1], [np_var], [
    np_save_CFLAGS=$CFLAGS
    CFLAGS="$CFLAGS -Werror $1"
    AC_COMPILE_IFELSE([AC_LANG_PROGRAM([], [])],
                      [AS_VAR_SET([np_var], [yes])], [AS_VAR_SET([np_var], [no])])
    CFLAGS=$np_save_CFLAGS])
  AS_VAR_IF([np_var], [yes], [$2], [$3])
  AS_VAR_POPDEF([np_var])
])

# NP_CHECK_DNNL_VERSION
# oneDNN 2.6 or a later 2.x: nepenc uses the oneDNN 2 C API (plain
# dnnl_memory_desc_t structs, the op descriptors of dnnl_*_desc_init),
# which oneDNN 3 removed, so a 3.x header would fail at compile time with
# errors far from the cause.  Say which version was found and what is
# needed.
AC_DEFUN([NP_CHECK_DNNL_VERSION], [
  AC_MSG_CHECKING([for oneDNN 2.x, 2.6 or newer])
  AC_COMPUTE_INT([np_dnnl_major], [DNNL_VERSION_MAJOR],
    [[#include <oneapi/dnnl/dnnl_version.h>]], [np_dnnl_major=unknown])
  AC_COMPUTE_INT([np_dnnl_minor], [DNNL_VERSION_MINOR],
    [[#include <oneapi/dnnl/dnnl_version.h>]], [np_dnnl_minor=unknown])
  AS_IF([test "x$np_dnnl_major" = xunknown || test "x$np_dnnl_minor" = xunknown],
    [AC_MSG_RESULT([unknown])
     AC_MSG_ERROR([cannot read DNNL_VERSION_MAJOR/MINOR from oneapi/dnnl/dnnl_version.h: install the Debian package libdnnl-dev (oneDNN 2.x)])])
  AS_IF([test "$np_dnnl_major" -lt 2 || { test "$np_dnnl_major" -eq 2 && test "$np_dnnl_minor" -lt 6; }],
    [AC_MSG_RESULT([no, $np_dnnl_major.$np_dnnl_minor])
     AC_MSG_ERROR([oneDNN $np_dnnl_major.$np_dnnl_minor is too old: nepenc needs oneDNN 2.6 or a later 2.x (Debian package libdnnl-dev)])],
    [test "$np_dnnl_major" -gt 2],
    [AC_MSG_RESULT([no, $np_dnnl_major.$np_dnnl_minor])
     AC_MSG_ERROR([oneDNN $np_dnnl_major.$np_dnnl_minor found, but nepenc uses the oneDNN 2 C API, which oneDNN 3 removed: build against oneDNN 2.6 or a later 2.x (Debian bookworm's libdnnl-dev; or point CPPFLAGS and LDFLAGS at a oneDNN 2 install)])])
  AC_MSG_RESULT([yes, $np_dnnl_major.$np_dnnl_minor])
])

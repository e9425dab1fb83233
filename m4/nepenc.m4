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

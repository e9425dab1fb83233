/* commands.h - one function per nepenc command (src/cmd_*.c).  Each
 * returns an np_status and leaves its one-line message in err; main()
 * prints it and picks the exit status. */
#ifndef NEPENC_COMMANDS_H
#define NEPENC_COMMANDS_H

#include "cli.h"
#include "status.h"

np_status np_cmd_inspect(const np_cli *c, np_error *err);
np_status np_cmd_compile(const np_cli *c, np_error *err);
np_status np_cmd_eval(const np_cli *c, np_error *err);
np_status np_cmd_finetune(const np_cli *c, np_error *err);
np_status np_cmd_profile(const np_cli *c, np_error *err);

#endif

/* test_ops.c - the runtime's op table (runtime/ops.def, runtime/ops.c).
 *
 * Each op's name is written twice: in its ops.def line, which np_op_find
 * looks up, and in its np_op's .name (runtime/ops/), which messages and
 * the planner use.  For every ops.def line: the np_op's .name is that
 * name, np_op_find finds that np_op under it (default domain, and as
 * "ai.onnx"), and the name is on no other line; hooks every op needs
 * are set. */
#include <stdio.h>
#include <string.h>

#include "ops.h"
#include "tap.h"

typedef struct op_line {
	const char *name;       /* as ops.def writes it */
	const np_op *op;
} op_line;

static const op_line lines[] = {
#define NP_OP(name, sym) {#name, &sym},
#include "ops.def"
#undef NP_OP
};
#define N_LINES ((int)(sizeof lines / sizeof lines[0]))

int main(void)
{
	for (int i = 0; i < N_LINES; i++) {
		const op_line *l = &lines[i];
		ok(l->op->name && strcmp(l->op->name, l->name) == 0,
		   "ops.def %s: its np_op's .name is '%s'", l->name,
		   l->op->name ? l->op->name : "(null)");
		ok(np_op_find("", l->name) == l->op && np_op_find("ai.onnx", l->name) == l->op,
		   "ops.def %s: np_op_find finds it", l->name);
		int dup = 0;
		for (int k = 0; k < N_LINES; k++)
			dup += k != i && (strcmp(lines[k].name, l->name) == 0 || lines[k].op == l->op);
		ok(dup == 0, "ops.def %s: on one line only", l->name);
		ok(l->op->infer && l->op->forward, "ops.def %s: has infer and forward", l->name);
	}
	ok(np_op_find("", "NoSuchOp") == NULL && np_op_find("com.example", "Relu") == NULL,
	   "np_op_find: unknown op and other domain not found");
	return done_testing();
}
